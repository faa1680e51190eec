/**
 * `vlp data inspect PATH`: tell which dataset format a file (or each file of a folder) is in,
 * count what it holds, decode one sample and list the problems a reader finds: malformed
 * records, duplicate ids, inconsistent feature dimensions. Every format is read the way the
 * pipelines read it (the readers in ../formats and ../regions/), streamed where they
 * stream (obj36 TSV, .regions, Arrow, WebDataset).
 */
import fs from "node:fs";
import path from "node:path";
import { OBJ36_FIELDS, readObj36TsvRows, scanTsvLines } from "../formats/obj36.ts";
import { RegionStore, Obj36RowChecker, fromObj36 } from "../regions/index.ts";
import { ArrowFile, CaptionArrowReader, Nlvr2ArrowReader, VqaArrowReader } from "../formats/arrow.ts";
import { WdsReader } from "../formats/wds.ts";
import { FormatError, InvalidItem, type Json } from "../formats/util.ts";
import { JSON_FORMATS } from "./json.ts";
import { Problems, summarize } from "./summary.ts";

export interface InspectReport {
  path: string;
  /** format name, e.g. "obj36-tsv", "vqa-annotations"; "unknown" when nothing matched */
  format: string;
  /** what the format is, with the file names it ships under */
  what: string;
  counts: Record<string, number>;
  /** one decoded record, with long arrays and binary data shortened */
  sample: unknown;
  problems: string[];
}

const IMAGE_EXT = /\.(jpe?g|png|webp|gif|bmp)$/i;
const SHARD_EXT = /\.(tar|tar\.gz|tgz)$/i;

/** Inspect a file, a folder (each dataset file in it, shards grouped) or a brace pattern of shards. */
export async function inspectPath(p: string, opts: { maxProblems?: number } = {}): Promise<InspectReport[]> {
  const max = opts.maxProblems ?? 10;
  if (!fs.existsSync(p)) {
    if (/\{.*\}/.test(p) && SHARD_EXT.test(p)) return [await inspectWds(p, max)];
    throw new Error(`${p}: no such file or folder`);
  }
  if (!fs.statSync(p).isDirectory()) return [await inspectFile(p, max)];
  return inspectFolder(p, max);
}

async function inspectFolder(dir: string, max: number, depth = 0): Promise<InspectReport[]> {
  const entries = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
  const out: InspectReport[] = [];
  const shards = entries.filter((e) => e.isFile() && SHARD_EXT.test(e.name)).map((e) => path.join(dir, e.name));
  const images = entries.filter((e) => e.isFile() && IMAGE_EXT.test(e.name));
  if (images.length > 0) {
    out.push({
      path: dir, format: "images", what: "a folder of image files (img_id = file name without extension)",
      counts: { images: images.length }, sample: images[0].name, problems: [],
    });
  }
  if (shards.length > 0) out.push(await inspectWds(shards, max));
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory() && depth < 3) out.push(...await inspectFolder(full, max, depth + 1));
    else if (e.isFile() && !SHARD_EXT.test(e.name) && !IMAGE_EXT.test(e.name) && !e.name.endsWith(".idx.json") && !e.name.includes(".tmp-")) {
      out.push(await inspectFile(full, max));
    }
  }
  return out;
}

async function inspectFile(file: string, max: number): Promise<InspectReport> {
  if (SHARD_EXT.test(file)) return inspectWds(file, max);
  const head = Buffer.alloc(8);
  const fd = fs.openSync(file, "r");
  const n = fs.readSync(fd, head, 0, 8, 0);
  fs.closeSync(fd);
  const magic = head.subarray(0, n).toString("latin1");
  if (magic === "VLPREGS\n") return inspectStore(file);
  if (magic.startsWith("ARROW1") || file.endsWith(".arrow")) return inspectArrow(file, max);
  if (file.endsWith(".tsv")) return inspectTsv(file, max);
  if (/\.jsonl?$/.test(file)) return inspectJson(file, max);
  return unknown(file, "not a format vlp reads (by extension and magic bytes)");
}

function unknown(file: string, why: string): InspectReport {
  return { path: file, format: "unknown", what: why, counts: {}, sample: null, problems: [] };
}

// ---------------------------------------------------------------- JSON

function parseJsonOrLines(file: string): { data: unknown; jsonl: boolean } | { error: string } {
  const text = fs.readFileSync(file, "utf8");
  try {
    return { data: JSON.parse(text), jsonl: false };
  } catch (err) {
    const line = text.split("\n").find((l) => l.trim() !== "");
    try {
      return { data: JSON.parse(line ?? ""), jsonl: true };
    } catch {
      return { error: `not JSON or JSON lines: ${(err as Error).message}` };
    }
  }
}

function inspectJson(file: string, max: number): InspectReport {
  const parsed = parseJsonOrLines(file);
  if ("error" in parsed) return { ...unknown(file, "unreadable JSON"), problems: [parsed.error] };
  const fmt = JSON_FORMATS.find((f) => f.match(parsed.data, parsed.jsonl));
  if (!fmt) return unknown(file, "JSON that matches none of the dataset formats (or an empty list)");
  const problems = new Problems(max);
  const { records, skipped } = fmt.read(file, { skipInvalid: true }, parsed.data);
  if (skipped > 0) {
    let firstError = "";
    try {
      fmt.read(file, {}, parsed.data);
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      firstError = `; first: ${err.message}`;
    }
    problems.add(`${skipped} malformed records skipped${firstError}`);
  }
  const recs = records.filter((r) => !(r instanceof InvalidItem)) as Json[];
  if (fmt.id) {
    const seen = new Map<string, number>();
    recs.forEach((r, i) => {
      const id = fmt.id!(r);
      const prev = seen.get(id);
      if (prev === undefined) seen.set(id, i);
      else problems.add(`${file}: record ${i}: duplicate ${id.includes(" ") ? id : `id ${id}`}, first at record ${prev}`);
    });
  }
  for (const p of fmt.check?.(recs) ?? []) problems.add(p);
  return {
    path: file, format: fmt.name, what: fmt.what,
    counts: { records: recs.length, ...fmt.counts?.(recs) }, sample: summarize(recs[0] ?? null), problems: problems.list(),
  };
}

// ---------------------------------------------------------------- region features

async function inspectTsv(file: string, max: number): Promise<InspectReport> {
  for await (const { bytes } of scanTsvLines(file)) {
    if (bytes.length === 0) continue;
    let tabs = 0;
    for (let p = bytes.indexOf(9); p >= 0; p = bytes.indexOf(9, p + 1)) tabs++;
    if (tabs !== OBJ36_FIELDS.length - 1) return unknown(file, "a .tsv whose first row is not an obj36 row (10 tab-separated fields)");
    break;
  }
  const problems = new Problems(max);
  const checker = new Obj36RowChecker(file);
  const counts = { rows: 0, valid: 0, boxes: 0, zero_box_rows: 0, dim: 0, max_boxes: 0 };
  let sample: unknown = null;
  let malformed = 0;
  const onSkip = (err: Error) => {
    malformed++;
    problems.add(err.message);
  };
  for await (const { record, lineNo } of readObj36TsvRows(file, { skipInvalid: true, onSkip })) {
    counts.rows++;
    const err = checker.check(record, lineNo);
    if (err) {
      problems.add(err.message);
      continue;
    }
    counts.valid++;
    counts.boxes += record.num_boxes;
    if (record.num_boxes === 0) counts.zero_box_rows++;
    counts.max_boxes = Math.max(counts.max_boxes, record.num_boxes);
    sample ??= summarize(fromObj36(record));
  }
  counts.rows += malformed;
  counts.dim = checker.dim;
  return { path: file, format: "obj36-tsv", what: "bottom-up-attention region features, LXMERT's obj36 TSV (data/mscoco_imgfeat/*_obj36.tsv)", counts, sample, problems: problems.list() };
}

function inspectStore(file: string): InspectReport {
  const what = "vlp.regions store (vlp data convert-regions, vlp features grid)";
  let store: RegionStore;
  try {
    store = RegionStore.open(file);
  } catch (err) {
    return { path: file, format: "vlp.regions", what, counts: {}, sample: null, problems: [(err as Error).message] };
  }
  const problems: string[] = [];
  let sample: unknown = null;
  try {
    for (const i of new Set([0, store.count - 1].filter((k) => k >= 0))) {
      const r = store.getAt(i);
      sample ??= summarize(r);
    }
  } catch (err) {
    problems.push((err as Error).message);
  }
  const counts = { records: store.count, dim: store.dim, max_boxes: store.maxBoxes, bytes: fs.statSync(file).size };
  const source = store.source === "grid" ? "grid features: a detector-free stand-in, not detector regions" : `source: ${store.source ?? "not recorded"}`;
  store.close();
  return { path: file, format: "vlp.regions", what: `${what}; ${store.dtype}; ${source}`, counts, sample, problems };
}

// ---------------------------------------------------------------- Arrow, WebDataset

/** "jpeg", "png", ... from an image's first bytes */
export function sniffImage(b: Uint8Array): string {
  if (b[0] === 0xff && b[1] === 0xd8) return "jpeg";
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return "png";
  if (b[0] === 0x52 && b[1] === 0x49 && b[8] === 0x57 && b[9] === 0x45) return "webp";
  return "unknown image type";
}

const imageNote = (b: Uint8Array) => `<${sniffImage(b)}, ${b.length} bytes>`;

function inspectArrow(file: string, max: number): InspectReport {
  const problems = new Problems(max);
  let columns: string[];
  try {
    const f = ArrowFile.open(file);
    columns = f.columnNames;
    f.close();
  } catch (err) {
    return { ...unknown(file, "unreadable Arrow file"), problems: [(err as Error).message] };
  }
  const kind = columns.includes("image_0") ? "nlvr2" : columns.includes("answers") ? "vqa" : columns.includes("caption") ? "caption" : null;
  if (!kind) return unknown(file, `an Arrow table with columns ${columns.join(", ")}: not a ViLT/VLMo caption, VQA or NLVR2 table`);
  const what = `ViLT/VLMo Arrow ${kind} table (${kind === "caption" ? "coco_caption_karpathy_*.arrow, vg.arrow, sbu_*.arrow, gcc_*.arrow" : `${kind === "vqa" ? "vqav2" : "nlvr2"}_*.arrow`})`;
  let reader: CaptionArrowReader | VqaArrowReader | Nlvr2ArrowReader;
  try {
    reader = kind === "nlvr2" ? Nlvr2ArrowReader.open(file) : kind === "vqa" ? VqaArrowReader.open(file) : CaptionArrowReader.open(file);
  } catch (err) {
    return { path: file, format: `arrow-${kind}`, what, counts: {}, sample: null, problems: [(err as Error).message] };
  }
  const counts: Record<string, number> = { rows: reader.numRows, texts: 0 };
  let sample: unknown = null;
  for (let i = 0; i < reader.numRows; i++) {
    try {
      const row = reader.row(i) as unknown as Json;
      counts.texts += ((row.caption ?? row.questions) as unknown[]).length;
      if (sample === null) {
        const images = reader instanceof Nlvr2ArrowReader
          ? { image_0: imageNote(reader.image(i, 0)), image_1: imageNote(reader.image(i, 1)) }
          : { image: imageNote(reader.image(i)) };
        sample = summarize({ ...row, ...images });
      }
    } catch (err) {
      problems.add((err as Error).message);
    }
  }
  reader.close();
  return { path: file, format: `arrow-${kind}`, what, counts, sample, problems: problems.list() };
}

async function inspectWds(shards: string | string[], max: number): Promise<InspectReport> {
  const problems = new Problems(max);
  const reader = new WdsReader(shards, { skipInvalid: true, onSkip: (e) => problems.add(e.message) });
  const counts: Record<string, number> = { shards: reader.shards.length, samples: 0 };
  let sample: unknown = null;
  for await (const s of reader) {
    counts.samples++;
    for (const ext of Object.keys(s.files)) counts[`files.${ext}`] = (counts[`files.${ext}`] ?? 0) + 1;
    if (sample === null) {
      const files: Record<string, unknown> = {};
      for (const [ext, b] of Object.entries(s.files)) {
        const text = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8");
        files[ext] = ext === "json" ? JSON.parse(text) : ["txt", "cls", "caption"].includes(ext) ? text : imageNote(b);
      }
      sample = summarize({ key: s.key, shard: s.shard, ...files });
    }
  }
  const where = Array.isArray(shards) ? `${path.dirname(shards[0])} (${shards.length} shards)` : shards;
  return { path: where, format: "webdataset", what: "WebDataset tar shards (key.ext entries, e.g. CC3M/LAION-style corpora)", counts, sample, problems: problems.list() };
}
