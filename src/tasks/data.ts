// Examples and batch builders of the classification tasks (VQA, GQA, NLVR2). The builder runs in the
// loader's worker threads like the pre-training ones and makes, from the LXMERT task json:
//   regions (SemVLP, LXMERT-S): input_ids, attention_mask, word_position_ids [R, L]; feats [R, N, D],
//     boxes [R, N, 4], region_valid [R, N]; NLVR2 has R = 2B rows, each statement with img0 then img1;
//   pixels (VLMo): input_ids, attention_mask [B, L]; pixels [B, 3, S, S] (QA) or pixels0 / pixels1 (NLVR2);
// and the targets: `target` [B, answers] soft scores (QA), `label` [B] int64 (NLVR2). Unlabelled
// splits get zeros. `meta.ids` holds the question ids / identifiers in batch order.
//
// ViLT/VLMo Arrow tables (vqav2_*.arrow, nlvr2_*.arrow) are read by row: an example's image id is a
// reference `<table path>#<row>` (NLVR2: `#<row>/0`, `#<row>/1`), and the builder reads the image's
// bytes from the table when a batch needs it (arrowImages), as VLMo's pre-training input does.
import { join } from "node:path";
import { readdirSync } from "node:fs";
import { CaptionArrowReader, Nlvr2ArrowReader, VqaArrowReader } from "../data/formats/arrow.ts";
import type { BatchBuilder, HostArray, HostArrays } from "../data/loader.ts";
import type { TaskBatch, TaskMeta } from "../data/batches.ts";
import { textArrays } from "../data/text_arrays.ts";
import { openRegions } from "../data/regions/index.ts";
import type { RegionSource } from "../data/regions/index.ts";
import { readAns2Label, readLxmertVqa, readVqaAnnotations, readVqaQuestions, toLxmertVqa } from "../data/formats/vqa.ts";
import { readLxmertGqa } from "../data/formats/gqa.ts";
import { nlvr2ToLxmert, readLxmertNlvr2, readNlvr2Jsonl } from "../data/formats/nlvr2.ts";
import { decodeImage, resizeImage, toChw, ImageCache, IMAGE_CACHE_BYTES, VLMO_NORM } from "../vision/image.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import { Rng } from "../engine/rng.ts";

// ---- host arrays shared by the task builders (classification and retrieval) ----------------------

export interface TextArrays {
  input_ids: HostArray;
  attention_mask: HostArray;
  word_position_ids: HostArray;
}

/** Token ids, mask and LXMERT-S word positions [n, L] of texts, padded/truncated to L. */
export function encodeTexts(tok: BertTokenizer, texts: string[], L: number): TextArrays {
  return textArrays(tok, texts, L, { input_ids: "inputIds", attention_mask: "attentionMask", word_position_ids: "wordPositionIds" });
}

export interface RegionArrays {
  feats: HostArray;
  boxes: HostArray;
  region_valid: HostArray;
}

/** Region features [n, N, D], normalised boxes [n, N, 4] and the valid-box mask [n, N] of images. */
export function regionArrays(src: RegionSource, ids: string[], maxBoxes: number): RegionArrays {
  const n = ids.length;
  const N = maxBoxes;
  const regs = ids.map((id) => src.get(id));
  const D = regs[0]?.dim ?? 0;
  const feats = new Float32Array(n * N * D), boxes = new Float32Array(n * N * 4), valid = new Uint8Array(n * N);
  regs.forEach((r, k) => {
    if (r.dim !== D) throw new Error(`img_id ${r.imgId} has ${r.dim}-d features, ${ids[0]} has ${D}-d`);
    const m = Math.min(r.numBoxes, N);
    feats.set(r.features.subarray(0, m * D), k * N * D);
    boxes.set(r.normBoxes.subarray(0, m * 4), k * N * 4);
    valid.fill(1, k * N, k * N + m);
  });
  return {
    feats: { data: feats, shape: [n, N, D], dtype: "float32" },
    boxes: { data: boxes, shape: [n, N, 4], dtype: "float32" },
    region_valid: { data: valid, shape: [n, N], dtype: "bool" },
  };
}

export type TaskFormat = "vqa" | "gqa" | "nlvr2";

export interface TaskExample {
  id: number | string;
  /** One image (VQA, GQA) or two (NLVR2: img0, img1). */
  imgIds: string[];
  text: string;
  /** QA: {answer: soft score}. */
  scores?: Record<string, number>;
  /** NLVR2: 1 = True. */
  label?: 0 | 1;
}

/**
 * A file of task examples as it ships: LXMERT's converted task JSON (vqa, gqa, nlvr2), VQA v2's
 * questions (+ annotations, scored against the answer vocabulary `answers`), or NLVR2's official jsonl.
 */
export type TaskExampleInput =
  | { kind: "lxmert"; path: string }
  | { kind: "vqa-v2"; questions: string; annotations?: string; answers: string }
  | { kind: "nlvr2-jsonl"; path: string }
  | { kind: "vqa-arrow"; tables: string[] }
  | { kind: "nlvr2-arrow"; tables: string[] };

const asInput = (x: string | TaskExampleInput): TaskExampleInput => (typeof x === "string" ? { kind: "lxmert", path: x } : x);

/** The file an input names first (for messages). */
export const inputFile = (x: string | TaskExampleInput): string => {
  const i = asInput(x);
  return i.kind === "vqa-v2" ? i.questions : i.kind === "vqa-arrow" || i.kind === "nlvr2-arrow" ? i.tables.join(", ") : i.path;
};

// ---- ViLT/VLMo Arrow tables ----------------------------------------------------------------------

const ARROW_REF = /^(.+\.arrow)#(\d+)(?:\/([01]))?$/;

/** The image reference of a row of an Arrow table (`which`: NLVR2's image 0 or 1). */
export const arrowRef = (table: string, row: number, which?: 0 | 1): string => `${table}#${row}${which === undefined ? "" : `/${which}`}`;

/** Whether an image id is an Arrow row reference (arrowRef). */
export const isArrowRef = (id: string): boolean => ARROW_REF.test(id);

/**
 * The encoded images of Arrow row references, read from the tables on demand (readers opened on
 * first use and kept open; nothing but the text buffers of the readers is held).
 */
export function arrowImages(): { bytes(ref: string): Uint8Array; name(ref: string): string; close(): void } {
  const readers = new Map<string, CaptionArrowReader | VqaArrowReader | Nlvr2ArrowReader>();
  const parse = (ref: string) => {
    const m = ARROW_REF.exec(ref);
    if (!m) throw new Error(`${ref}: not an Arrow row reference (<table>.arrow#<row>)`);
    return { table: m[1], row: Number(m[2]), which: m[3] === undefined ? undefined : (Number(m[3]) as 0 | 1) };
  };
  return {
    bytes(ref) {
      const { table, row, which } = parse(ref);
      let r = readers.get(table);
      if (!r) {
        r = which !== undefined ? Nlvr2ArrowReader.open(table) : openImageTable(table);
        readers.set(table, r);
      }
      if (r instanceof Nlvr2ArrowReader) {
        if (which === undefined) throw new Error(`${ref}: an NLVR2 table holds two images a row (#<row>/0 or /1)`);
        return r.image(row, which);
      }
      return r.image(row);
    },
    name(ref) {
      const { table, row, which } = parse(ref);
      return `${table}: row ${row}${which === undefined ? "" : ` image_${which}`}`;
    },
    close() {
      for (const r of readers.values()) r.close();
      readers.clear();
    },
  };
}

/** A table with one `image` column: a VQA table when it has questions, else a caption table. */
function openImageTable(table: string): CaptionArrowReader | VqaArrowReader {
  try {
    return VqaArrowReader.open(table);
  } catch {
    return CaptionArrowReader.open(table);
  }
}

/**
 * VQA examples of ViLT's vqav2_*.arrow tables: one per question of a row, its soft scores the row's
 * answers with answer_scores (a test table has none); the image is the row's.
 */
function readVqaArrow(tables: string[]): TaskExample[] {
  return arrowRows(tables, (t) => VqaArrowReader.open(t), (row, table, i) => row.questions.map((q, k) => {
    const scores = row.answers.length ? Object.fromEntries(row.answers[k].map((a, j) => [a, row.answer_scores[k][j]])) : undefined;
    return { id: row.question_id[k], imgIds: [arrowRef(table, i)], text: q, ...(scores ? { scores } : {}) };
  }));
}

/** Every row of each table, in order, through `examples` (the table's reader closed after it). */
function arrowRows<R>(tables: string[], open: (table: string) => { numRows: number; row(i: number): R; close(): void }, examples: (row: R, table: string, i: number) => TaskExample[]): TaskExample[] {
  const out: TaskExample[] = [];
  for (const table of tables) {
    const r = open(table);
    try {
      for (let i = 0; i < r.numRows; i++) out.push(...examples(r.row(i), table, i));
    } finally {
      r.close();
    }
  }
  return out;
}

/**
 * NLVR2 examples of ViLT's nlvr2_*.arrow tables: one per statement of a row (an image pair); the
 * identifier is the row's, with `-<k>` after it when the row holds several statements.
 */
function readNlvr2Arrow(tables: string[]): TaskExample[] {
  return arrowRows(tables, (t) => Nlvr2ArrowReader.open(t), (row, table, i) => row.questions.map((q, k) => (
    { id: row.questions.length === 1 ? row.identifier : `${row.identifier}-${k}`, imgIds: [arrowRef(table, i, 0), arrowRef(table, i, 1)], text: q, label: row.answers[k] === "True" ? 1 : 0 })));
}

/**
 * The answer vocabulary of ViLT's VQA tables, as its head indexes it: label -> answer from every
 * row's answer_labels and answers (labels no table uses are named "<unused N>"); a label given two
 * answers is an error naming the table and row.
 */
export function arrowAnswerVocab(tables: string[]): string[] {
  const label2ans: string[] = [];
  const seen = new Map<number, string>();
  for (const table of tables) {
    const r = VqaArrowReader.open(table);
    try {
      for (let i = 0; i < r.numRows; i++) {
        const row = r.row(i);
        row.answer_labels.forEach((labels, k) => labels.forEach((l, j) => {
          const a = row.answers[k][j];
          const had = seen.get(l);
          if (had !== undefined && had !== a) throw new Error(`${table}: row ${i} column "answer_labels": label ${l} is "${a}" here and "${had}" elsewhere`);
          if (!Number.isInteger(l) || l < 0) throw new Error(`${table}: row ${i} column "answer_labels": ${l} is not a label`);
          seen.set(l, a);
          label2ans[l] = a;
        }));
      }
    } finally {
      r.close();
    }
  }
  if (label2ans.length === 0) throw new Error(`${tables.join(", ")}: no answers (the vocabulary of a vilt-arrow source comes from its tables' answer_labels, or give answers: an ans2label JSON)`);
  for (let l = 0; l < label2ans.length; l++) label2ans[l] ??= `<unused ${l}>`;
  return label2ans;
}

/** VQA v2 questions joined with their annotations as LXMERT's converter does (img_id COCO_<data_subtype>_<12 digits>). */
function readVqaV2(i: Extract<TaskExampleInput, { kind: "vqa-v2" }>) {
  const q = readVqaQuestions(i.questions);
  const subtype = q.meta.data_subtype;
  if (typeof subtype !== "string" || subtype === "") throw new Error(`${i.questions}: no "data_subtype" (e.g. "train2014"): the COCO folder the img_ids are named after`);
  const annotations = i.annotations ? readVqaAnnotations(i.annotations).records : undefined;
  if (annotations) {
    const have = new Set(annotations.map((a) => a.question_id));
    const lost = q.records.find((x) => !have.has(x.question_id));
    if (lost) throw new Error(`${i.annotations}: no annotation for question_id ${lost.question_id} of ${i.questions}`);
  }
  return toLxmertVqa(q.records, annotations, Object.fromEntries(readAns2Label(i.answers)), subtype);
}

/** Examples of a task file, validated by the format readers (errors name file and record). */
export function readTaskExamples(format: TaskFormat, file: string | TaskExampleInput): TaskExample[] {
  const i = asInput(file);
  if (i.kind === "vqa-v2") {
    if (format !== "vqa") throw new Error(`${i.questions}: VQA v2 questions do not feed ${format}`);
    return readVqaV2(i).map((r) => ({ id: r.question_id, imgIds: [r.img_id], text: r.sent, scores: r.label }));
  }
  if (i.kind === "vqa-arrow") {
    if (format !== "vqa") throw new Error(`${i.tables.join(", ")}: VQA tables do not feed ${format}`);
    return readVqaArrow(i.tables);
  }
  if (i.kind === "nlvr2-arrow") {
    if (format !== "nlvr2") throw new Error(`${i.tables.join(", ")}: NLVR2 tables do not feed ${format}`);
    return readNlvr2Arrow(i.tables);
  }
  if (i.kind === "nlvr2-jsonl") {
    if (format !== "nlvr2") throw new Error(`${i.path}: NLVR2 statements do not feed ${format}`);
    return nlvr2ToLxmert(readNlvr2Jsonl(i.path).records).map((r) => ({ id: r.identifier, imgIds: [r.img0, r.img1], text: r.sent, label: r.label }));
  }
  const path = i.path;
  switch (format) {
    case "vqa": return readLxmertVqa(path).records.map((r) => ({ id: r.question_id, imgIds: [r.img_id], text: r.sent, scores: r.label }));
    case "gqa": return readLxmertGqa(path).records.map((r) => ({ id: r.question_id, imgIds: [r.img_id], text: r.sent, scores: r.label }));
    case "nlvr2": return readLxmertNlvr2(path).records.map((r) => ({ id: r.identifier, imgIds: [r.img0, r.img1], text: r.sent, label: r.label }));
  }
}

/** Examples of several task files, in order. */
export function readTaskInputs(format: TaskFormat, files: string | (string | TaskExampleInput)[]): TaskExample[] {
  return (typeof files === "string" ? [files] : files).flatMap((f) => readTaskExamples(format, f));
}

const IMAGE_EXT = /\.(png|jpe?g|webp|bmp|gif|tiff?)$/i;

/**
 * The image files of a folder by img_id (the file name's stem), at any depth: the synthetic world's
 * images/<img_id>.png, COCO's train2014/COCO_train2014_<id>.jpg, NLVR2's train/<n>/<id>-img0.png.
 */
export function imageFilesById(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const f of readdirSync(dir, { recursive: true, encoding: "utf8" })) {
    if (!IMAGE_EXT.test(f)) continue;
    const stem = f.slice(f.lastIndexOf("/") + 1).replace(IMAGE_EXT, "");
    if (!files.has(stem)) files.set(stem, join(dir, f));
  }
  return files;
}

/** QA targets [examples x nAns]: each example's soft scores at its answers' labels (answers outside the vocabulary dropped). */
export function softTargets(exs: TaskExample[], ans2label: Map<string, number>, nAns: number): Float32Array {
  const t = new Float32Array(exs.length * nAns);
  exs.forEach((e, k) => {
    for (const [ans, s] of Object.entries(e.scores ?? {})) {
      const j = ans2label.get(ans);
      if (j !== undefined) t[k * nAns + j] = s;
    }
  });
  return t;
}

export function readAnswers(path: string): Map<string, number> {
  return readAns2Label(path);
}

export interface BalanceOptions {
  /** Within a question type, an answer keeps at most `ratio` times the examples of the next rarer answer. */
  ratio: number;
  /** Answers with fewer examples than this are kept whole and do not bound the others. */
  minTail: number;
  seed: number;
}

/** The question type used for balancing: the question's first two words ("how many", "is the", ...). */
export const questionType = (text: string): string => text.toLowerCase().replace(/[^a-z0-9 ]/g, " ").trim().split(/\s+/).slice(0, 2).join(" ");

/**
 * GQA-style balancing of a question set (our "balanced split"; GQA smooths the answer distribution of
 * each question group so that no answer dominates): per question type, answers sorted from rare to
 * frequent; each answer is capped at `ratio` x the (capped) count of the next rarer one, and capped
 * answers are subsampled (seeded). Returns the kept example indices in their original order.
 */
export function balancedSubset(examples: TaskExample[], o: BalanceOptions): number[] {
  const groups = new Map<string, Map<string, number[]>>();
  examples.forEach((e, i) => {
    const ans = Object.entries(e.scores ?? {}).sort((a, b) => b[1] - a[1])[0]?.[0] ?? "";
    const t = questionType(e.text);
    if (!groups.has(t)) groups.set(t, new Map());
    const g = groups.get(t)!;
    if (!g.has(ans)) g.set(ans, []);
    g.get(ans)!.push(i);
  });
  const rng = new Rng(o.seed * 7919 + 13);
  const keep: number[] = [];
  for (const g of groups.values()) {
    const answers = [...g.entries()].sort((a, b) => a[1].length - b[1].length || (a[0] < b[0] ? -1 : 1));
    let prev = 0;
    for (const [, idx] of answers) {
      if (idx.length < o.minTail) {
        keep.push(...idx);
        continue;
      }
      const cap = prev === 0 ? idx.length : Math.min(idx.length, Math.ceil(o.ratio * prev));
      // seeded partial Fisher-Yates: the first `cap` of a shuffled copy
      const pool = [...idx];
      for (let i = 0; i < cap; i++) {
        const j = i + rng.int(pool.length - i);
        [pool[i], pool[j]] = [pool[j], pool[i]];
      }
      keep.push(...pool.slice(0, cap));
      prev = cap;
    }
  }
  return keep.sort((a, b) => a - b);
}

export interface TaskDataArgs {
  format: TaskFormat;
  /** The task files of the split (a path: LXMERT's task json). */
  examples: string | (string | TaskExampleInput)[];
  /** ans2label JSON (VQA, GQA). */
  answers?: string;
  /** The answers by label when there is no ans2label file (a vilt-arrow source's own vocabulary). */
  label2ans?: string[];
  /** Keep only a balanced subset (GQA's balanced split). */
  balance?: BalanceOptions;
  /** Keep only the first n examples (quick evaluations). */
  limit?: number;
  maxTextLen: number;
  /** Region-feature models: obj36 TSV or `.regions` store (several: their union), boxes per image, the model's feature size. */
  regions?: { path: string | string[]; maxBoxes: number; featDim: number };
  /** Pixel models: the image folder (files `<img_id>.<ext>` at any depth) and the model's input size. */
  images?: { dir: string; size: number };
}

export type { TaskBatch, TaskMeta };

export async function createBuilder(a: TaskDataArgs): Promise<BatchBuilder<TaskBatch, TaskMeta>> {
  let examples = readTaskInputs(a.format, a.examples);
  const named = typeof a.examples === "string" ? a.examples : a.examples.map(inputFile).join(", ");
  if (a.balance) examples = balancedSubset(examples, a.balance).map((i) => examples[i]);
  if (a.limit) examples = examples.slice(0, a.limit);
  if (examples.length === 0) throw new Error(`${named}: no examples`);
  const ans2label = a.answers ? readAnswers(a.answers) : a.label2ans ? new Map(a.label2ans.map((x, l) => [x, l])) : null;
  const nAns = ans2label ? ans2label.size : 0;
  const nlvr2 = a.format === "nlvr2";
  const tok = BertTokenizer.load();
  const L = a.maxTextLen;
  const regions = a.regions ? await openRegions(a.regions.path) : null;
  if (regions && a.regions) {
    const known = new Set(regions.ids());
    const missing = examples.flatMap((e) => e.imgIds).find((id) => !known.has(id));
    if (missing) throw new Error(`${[a.regions.path].flat().join(", ")}: no regions for img_id ${missing} (used by ${named})`);
    const dim = regions.get(examples[0].imgIds[0]).dim;
    if (dim !== a.regions.featDim) throw new Error(`${regions.where(examples[0].imgIds[0])}: ${dim}-d region features, but the model takes ${a.regions.featDim}-d (visualFeatDim)`);
  }
  if (!regions && !a.images) throw new Error("task data: give regions or images");
  // Arrow rows carry their images; a folder is searched only for the other ids
  const arrow = examples.some((e) => isArrowRef(e.imgIds[0])) ? arrowImages() : null;
  const files = a.images && examples.some((e) => !isArrowRef(e.imgIds[0])) ? imageFilesById(a.images.dir) : null;
  if (files) {
    const missing = examples.flatMap((e) => e.imgIds).find((id) => !isArrowRef(id) && !files.has(id));
    if (missing) throw new Error(`${a.images!.dir}: no image file named ${missing}.<png|jpg|...> (used by ${named})`);
  }

  // decoded images are kept (ImageCache, up to IMAGE_CACHE_BYTES): decoding is most of a batch's cost
  const cache = new ImageCache(IMAGE_CACHE_BYTES);
  const image = async (id: string): Promise<Float32Array> => {
    const S = a.images!.size;
    const rgb = await cache.get(id, async () => resizeImage(arrow && isArrowRef(id) ? await decodeImage(arrow.bytes(id), arrow.name(id)) : await decodeImage(files!.get(id)!), { mode: "square", size: S }));
    return toChw(rgb, VLMO_NORM).data;
  };
  const pixelArray = async (imgIds: string[]) => {
    const S = a.images!.size;
    const px = new Float32Array(imgIds.length * 3 * S * S);
    (await Promise.all(imgIds.map(image))).forEach((d, k) => px.set(d, k * 3 * S * S));
    return { data: px, shape: [imgIds.length, 3, S, S], dtype: "float32" as const };
  };

  return {
    length: examples.length,
    async build(indices: number[]) {
      const exs = indices.map((i) => examples[i]);
      const b = exs.length;
      let arrays: HostArrays<TaskBatch>;
      if (regions) {
        // NLVR2: the statement twice, with img0 then img1 (adjacent rows)
        const rows = nlvr2 ? exs.flatMap((e) => [e, e]) : exs;
        arrays = { ...encodeTexts(tok, rows.map((e) => e.text), L), ...regionArrays(regions!, nlvr2 ? exs.flatMap((e) => e.imgIds) : exs.map((e) => e.imgIds[0]), a.regions!.maxBoxes) };
      } else {
        arrays = { ...encodeTexts(tok, exs.map((e) => e.text), L) };
        if (nlvr2) {
          arrays.pixels0 = await pixelArray(exs.map((e) => e.imgIds[0]));
          arrays.pixels1 = await pixelArray(exs.map((e) => e.imgIds[1]));
        } else {
          arrays.pixels = await pixelArray(exs.map((e) => e.imgIds[0]));
        }
      }
      if (nlvr2) {
        arrays.label = { data: BigInt64Array.from(exs, (e) => BigInt(e.label ?? 0)), shape: [b], dtype: "int64" };
      } else if (ans2label) {
        arrays.target = { data: softTargets(exs, ans2label, nAns), shape: [b, nAns], dtype: "float32" };
      }
      return { arrays, meta: { ids: exs.map((e) => e.id) } };
    },
  };
}
