// Data sources of a recipe (`data.sources`): each names a dataset by format and by the paths it
// ships with (LXMERT's data/ tree, COCO + the Karpathy split, a ViLT/VLMo Arrow root, the synthetic
// world). This module checks a recipe's sources (every key and file, errors naming both) and turns
// them into the inputs of the pipelines: region-text sources for SemVLP and MSP, image-text sources
// for VLMo. The readers are those of src/data/formats; nothing here parses a dataset file.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { expandShards } from "../data/formats/wds.ts";
import type { WebDatasetInput } from "./imagetext_input.ts";
import { Type, num, type TSchema } from "./schema.ts";

export const SOURCE_FORMATS = ["synth", "lxmert", "vg", "karpathy", "coco-captions", "vilt-arrow", "webdataset", "vqa", "gqa", "nlvr2"] as const;
export type SourceFormat = (typeof SOURCE_FORMATS)[number];

/** The part of a source that can differ for the held-out split (`eval`) and the test split (`test`). */
export interface SourceSplit {
  /**
   * lxmert: pre-training JSON files; karpathy / coco-captions: the annotation file; vqa, gqa, nlvr2:
   * LXMERT's converted task JSON (data/vqa/train.json + nominival.json, data/gqa/train.json, data/nlvr2/train.json).
   */
  json?: string | string[];
  /** lxmert, vg, vqa, gqa, nlvr2, karpathy, coco-captions: obj36 TSV files or `.regions` stores (several: their union; vg: keyed by VG image id). */
  regions?: string | string[];
  /**
   * karpathy / coco-captions: the image root (Karpathy's `filepath`/`filename` or COCO's `file_name` below it);
   * vqa, gqa, nlvr2: a folder whose files (at any depth) are named `<img_id>.<jpg|png|...>`.
   */
  images?: string;
  /** vqa: VQA v2's question files (v2_OpenEnded_mscoco_<split>_questions.json). */
  questions?: string | string[];
  /** vqa: VQA v2's annotation files, one per question file (absent for test questions). */
  annotations?: string | string[];
  /** nlvr2: the official statements (train.json, dev.json, test1.json: one JSON object per line). */
  jsonl?: string | string[];
  /** karpathy: the splits to read (default train + restval; eval: val). */
  split?: string[];
  /** vilt-arrow: table names under `root` without `.arrow`; `*` matches any run of characters (`sbu_*`). */
  tables?: string[];
  /** webdataset: tar shard paths or brace patterns ("shards/train-{000..031}.tar"), expanded in order. */
  shards?: string | string[];
}

/** One entry of `data.sources`; which keys a format takes is in FORMAT_KEYS. */
export interface DataSource extends SourceSplit {
  name: string;
  format: SourceFormat;
  /** Relative sampling weight between the sources a stage mixes (default 1). */
  weight?: number;
  /** synth: the world folder. */
  world?: string;
  /** synth: the Karpathy file relative to the world (default karpathy/dataset_synth.json). */
  karpathy?: string;
  /** vilt-arrow: the folder that holds the `.arrow` tables. */
  root?: string;
  /** webdataset: the image file's extensions, alternatives tried in order (default "jpg;jpeg;png;webp"). */
  image?: string;
  /** webdataset: samples in the seeded shuffle buffer (default 1000; 0: the shards' own order). */
  shuffleBuffer?: number;
  /**
   * lxmert: the ans2label JSON of the QA head (LXMERT ships data/vqa/trainval_ans2label.json); vqa, gqa: the task's answer vocabulary;
   * vilt-arrow (VQA): optional, by default the vocabulary is the tables' own (answer_labels -> answers, as ViLT indexes its head).
   */
  answers?: string;
  /** vg: region_descriptions.json (MSP's phrase stage). */
  regionDescriptions?: string;
  /** vg: objects.json (MSP's token stage: the objects' names in order). */
  objects?: string;
  /** lxmert, vg: the detector's objects_vocab.txt (MSP's topic labels). */
  objectVocab?: string;
  /** lxmert, karpathy, coco-captions: a ViLBERT-style hard-negative pool (MSP's ITM_HS; LXMERT-S retrieval); without it, random negatives. */
  hardNegatives?: string;
  /**
   * lxmert: the `sentf` sources to read (e.g. ["mscoco", "vg"]); karpathy: the sentence field, "raw" (default) or "tokens" (joined by spaces);
   * webdataset: the caption file's extension (default "txt": one caption a line; a `json` one: its "caption" or "captions").
   */
  text?: string | string[];
  /** The held-out split: keys that replace the training ones (lxmert: json, regions; karpathy: split; ...). */
  eval?: SourceSplit;
  /** vqa, gqa, nlvr2, karpathy, coco-captions: the test split (`vlp eval --split test`), keys as for `eval`. */
  test?: SourceSplit;
}

type Kind = "file" | "files" | "dir" | "string" | "strings" | "number" | "object" | "patterns";

/** Keys each format takes (besides name, format and weight) and what each holds. */
const FORMAT_KEYS: Record<SourceFormat, { keys: Record<string, Kind>; required: string[]; eval: string[] }> = {
  synth: { keys: { world: "dir", karpathy: "string", regions: "file" }, required: ["world"], eval: [] },
  lxmert: {
    keys: { json: "files", regions: "files", answers: "file", objectVocab: "file", hardNegatives: "file", text: "strings", eval: "object" },
    required: ["json", "regions"],
    eval: ["json", "regions"],
  },
  vg: {
    keys: { regionDescriptions: "file", objects: "file", regions: "files", objectVocab: "file", eval: "object" },
    required: ["regions"],
    eval: ["regionDescriptions", "objects", "regions"],
  },
  karpathy: {
    keys: { json: "file", images: "dir", regions: "files", hardNegatives: "file", split: "strings", text: "string", eval: "object", test: "object" },
    required: ["json", "images"],
    eval: ["split"],
  },
  "coco-captions": {
    keys: { json: "file", images: "dir", regions: "files", hardNegatives: "file", eval: "object", test: "object" },
    required: ["json", "images"],
    eval: ["json", "images", "regions"],
  },
  "vilt-arrow": { keys: { root: "dir", tables: "strings", answers: "file", eval: "object", test: "object" }, required: ["root", "tables"], eval: ["tables"] },
  webdataset: { keys: { shards: "patterns", text: "string", image: "string", shuffleBuffer: "number", eval: "object" }, required: ["shards"], eval: ["shards"] },
  vqa: {
    keys: { json: "files", questions: "files", annotations: "files", answers: "file", regions: "files", images: "dir", eval: "object", test: "object" },
    required: ["answers"],
    eval: ["json", "questions", "annotations", "regions", "images"],
  },
  gqa: { keys: { json: "files", answers: "file", regions: "files", images: "dir", eval: "object", test: "object" }, required: ["json", "answers"], eval: ["json", "regions", "images"] },
  nlvr2: { keys: { json: "files", jsonl: "files", regions: "files", images: "dir", eval: "object", test: "object" }, required: [], eval: ["json", "jsonl", "regions", "images"] },
};

/** A kind of source key as a schema. */
function kindSchema(k: Kind): TSchema {
  const path = Type.String({ minLength: 1 });
  switch (k) {
    case "file": case "dir": case "string": return path;
    case "files": case "patterns": return Type.Union([path, Type.Array(path, { minItems: 1 })]);
    case "strings": return Type.Array(path, { minItems: 1 });
    case "number": return Type.Number();
    case "object": return Type.Object({});
  }
}

/**
 * One entry of `data.sources` as a schema, from FORMAT_KEYS: one object per format (its `format`
 * a constant, its keys and required keys, its `eval` / `test` keys), for editors and for checking
 * recipe files; `checkSources` checks the same keys at run time and the files they name.
 */
export function sourceSchema(): TSchema {
  return Type.Union(SOURCE_FORMATS.map((format) => {
    const spec = FORMAT_KEYS[format];
    const split = Type.Object(Object.fromEntries(spec.eval.map((k) => [k, Type.Optional(kindSchema(spec.keys[k]))])), { additionalProperties: false });
    const props: Record<string, TSchema> = {
      name: Type.String({ pattern: "^[\\w.-]+$", description: "the source's name (letters, digits, _ . -)" }),
      format: Type.Literal(format),
      weight: Type.Optional(num({ above: 0 }, { description: "sampling weight among the sources a stage mixes (default 1)" })),
    };
    for (const [k, kind] of Object.entries(spec.keys)) {
      const schema = k === "eval" || k === "test" ? split : kindSchema(kind);
      props[k] = spec.required.includes(k) ? schema : Type.Optional(schema);
    }
    return Type.Object(props, { additionalProperties: false, title: `a ${format} source` });
  }));
}

const KARPATHY_SPLITS = ["train", "val", "test", "restval"];

/** The pipelines a format feeds. */
export const REGION_TEXT_FORMATS: SourceFormat[] = ["synth", "lxmert", "vg"];
export const IMAGE_TEXT_FORMATS: SourceFormat[] = ["synth", "karpathy", "coco-captions", "vilt-arrow", "webdataset"];
/** The formats each fine-tuning task reads (src/tasks/sources.ts). */
export const TASK_FORMATS: Record<"vqa" | "gqa" | "nlvr2" | "retrieval", SourceFormat[]> = {
  vqa: ["synth", "vqa", "vilt-arrow"],
  gqa: ["synth", "gqa"],
  nlvr2: ["synth", "nlvr2", "vilt-arrow"],
  retrieval: ["synth", "karpathy", "coco-captions", "vilt-arrow"],
};

function describe(k: Kind): string {
  return { file: "a file path", files: "a file path or a list of them", dir: "a folder path", string: "a string", strings: "a list of strings", number: "a number", object: "an object", patterns: "a shard path or brace pattern, or a list of them" }[k];
}

function typeOk(v: unknown, k: Kind): boolean {
  switch (k) {
    case "file": case "dir": case "string": return typeof v === "string" && v !== "";
    case "files": case "patterns": return (typeof v === "string" && v !== "") || (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "string" && x !== ""));
    case "strings": return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "string" && x !== "");
    case "number": return typeof v === "number";
    case "object": return typeof v === "object" && v !== null && !Array.isArray(v);
  }
}

/** `path` resolved against `base`; throws `key: no such file <path>` (or folder) unless it is there. */
function checkedPath(p: string, kind: "file" | "dir", key: string, base: string): string {
  const abs = resolve(base, p);
  if (!existsSync(abs)) throw new Error(`${key}: no such ${kind === "dir" ? "folder" : "file"} ${abs}`);
  const isDir = statSync(abs).isDirectory();
  if (kind === "dir" && !isDir) throw new Error(`${key}: ${abs} is a file, expected a folder`);
  if (kind === "file" && isDir) throw new Error(`${key}: ${abs} is a folder, expected a file`);
  return abs;
}

/** The `.arrow` files of a vilt-arrow source's table names (`*` globs, sorted by their numbers: sbu_2 before sbu_10). */
export function arrowTables(root: string, tables: string[], key: string): string[] {
  const files = readdirSync(root).filter((f) => f.endsWith(".arrow")).map((f) => f.slice(0, -6));
  const byNumber = (a: string, b: string) => a.localeCompare(b, "en", { numeric: true });
  return tables.flatMap((t, i) => {
    if (!t.includes("*")) {
      const p = join(root, `${t}.arrow`);
      if (!existsSync(p)) throw new Error(`${key}[${i}]: no such file ${p}`);
      return [p];
    }
    const re = new RegExp(`^${t.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
    const hits = files.filter((f) => re.test(f)).sort(byNumber);
    if (hits.length === 0) throw new Error(`${key}[${i}]: no table ${t}.arrow in ${root}`);
    return hits.map((f) => join(root, `${f}.arrow`));
  });
}

/** Checks one split's keys (the source itself or its `eval`), resolving paths against `base` in place. */
function checkSplitKeys(o: Record<string, unknown>, keys: Record<string, Kind>, where: string, base: string): void {
  for (const [k, kind] of Object.entries(keys)) {
    const v = o[k];
    if (v === undefined || kind === "object") continue;
    if (!typeOk(v, kind)) throw new Error(`${where}.${k}: expected ${describe(kind)}, got ${JSON.stringify(v)}`);
    if (kind === "file" || kind === "dir") o[k] = checkedPath(v as string, kind, `${where}.${k}`, base);
    if (kind === "files") {
      const list = typeof v === "string" ? [v] : (v as string[]);
      const abs = list.map((p, i) => checkedPath(p, "file", typeof v === "string" ? `${where}.${k}` : `${where}.${k}[${i}]`, base));
      o[k] = typeof v === "string" ? abs[0] : abs;
    }
    if (kind === "patterns") {
      // brace patterns stay patterns (resolved against base); each name they expand to must be a file
      const list = typeof v === "string" ? [v] : (v as string[]);
      const abs = list.map((p, i) => {
        const at = typeof v === "string" ? `${where}.${k}` : `${where}.${k}[${i}]`;
        const pattern = resolve(base, p);
        const names = expandShards(pattern);
        names.forEach((f) => checkedPath(f, "file", at, base));
        const gz = names.find((f) => /\.(tar\.gz|tgz)$/.test(f));
        if (gz) throw new Error(`${at}: ${gz} is gzipped; a webdataset source streams plain .tar shards by position (gunzip them)`);
        return pattern;
      });
      o[k] = typeof v === "string" ? abs[0] : abs;
    }
  }
}

/** The format-specific checks a key's type cannot express (split names, tables that exist, text fields). */
function checkFormatValues(s: DataSource, where: string): void {
  if (s.format === "karpathy") {
    for (const [k, split] of [["split", s.split], ["eval.split", s.eval?.split], ["test.split", s.test?.split]] as const) {
      const bad = split?.find((x) => !KARPATHY_SPLITS.includes(x));
      if (bad !== undefined) throw new Error(`${where}.${k}: unknown split ${JSON.stringify(bad)} (Karpathy files have ${KARPATHY_SPLITS.join(", ")})`);
    }
    if (s.text !== undefined && s.text !== "raw" && s.text !== "tokens") throw new Error(`${where}.text: expected "raw" or "tokens" (the sentence field to train on), got ${JSON.stringify(s.text)}`);
  }
  if (s.format === "webdataset") {
    if (s.text !== undefined && (typeof s.text !== "string" || !/^[\w.-]+$/.test(s.text))) throw new Error(`${where}.text: expected the caption file's extension ("txt", "json"), got ${JSON.stringify(s.text)}`);
    if (s.image !== undefined && !/^[\w.-]+(;[\w.-]+)*$/.test(s.image)) throw new Error(`${where}.image: expected image extensions separated by ";" ("jpg;png"), got ${JSON.stringify(s.image)}`);
    if (s.shuffleBuffer !== undefined && !(Number.isInteger(s.shuffleBuffer) && s.shuffleBuffer >= 0)) throw new Error(`${where}.shuffleBuffer: expected a whole number >= 0 (samples in the shuffle buffer; 0: the shards' order), got ${JSON.stringify(s.shuffleBuffer)}`);
  }
  if (s.format === "vilt-arrow") {
    arrowTables(s.root!, s.tables!, `${where}.tables`);
    if (s.eval?.tables) arrowTables(s.root!, s.eval.tables, `${where}.eval.tables`);
    if (s.test?.tables) arrowTables(s.root!, s.test.tables, `${where}.test.tables`);
  }
  for (const [key, sp] of [["", s], ["eval.", s.eval], ["test.", s.test]] as const) {
    if (!sp) continue;
    if (s.format === "vqa" && key === "" && !sp.json && !sp.questions) throw new Error(`${where}: a vqa source needs json (LXMERT's converted files) or questions (+ annotations: VQA v2's files)`);
    if (s.format === "vqa" && sp.json && sp.questions) throw new Error(`${where}.${key}questions: not with ${key}json (give LXMERT's converted files or VQA v2's, not both)`);
    if (s.format === "vqa" && sp.annotations) {
      const q = sp.questions ? asList(sp.questions).length : 0;
      const a = asList(sp.annotations).length;
      if (q !== a) throw new Error(`${where}.${key}annotations: ${a} file(s) for ${q} question file(s) (one annotation file per question file)`);
    }
    if (s.format === "nlvr2" && key === "" && !sp.json && !sp.jsonl) throw new Error(`${where}: an nlvr2 source needs json (LXMERT's converted files) or jsonl (the official statements)`);
    if (s.format === "nlvr2" && sp.json && sp.jsonl) throw new Error(`${where}.${key}jsonl: not with ${key}json (give LXMERT's converted files or the official ones, not both)`);
  }
  if (s.format === "vg" && !s.regionDescriptions && !s.objects) throw new Error(`${where}: a vg source needs regionDescriptions (MSP's phrase stage) or objects (its token stage)`);
  if (s.format === "synth") {
    const k = join(s.world!, s.karpathy ?? "karpathy/dataset_synth.json");
    if (s.karpathy && !existsSync(k)) throw new Error(`${where}.karpathy: no such file ${k}`);
  }
}

/**
 * Checks `data.sources` (a list of sources, unique names, known formats, each format's keys and
 * files) and resolves every path against `base` (`data.root`, else the current folder). Idempotent:
 * a checked list checks again to the same value (a resumed run compares its recipe's data).
 */
export function checkSources(raw: unknown, where: string, base: string): DataSource[] {
  if (!Array.isArray(raw) || raw.length === 0) throw new Error(`${where}: expected a non-empty list of sources`);
  const names = new Set<string>();
  return raw.map((s, i) => {
    const w = `${where}[${i}]`;
    if (typeof s !== "object" || s === null || Array.isArray(s)) throw new Error(`${w}: expected an object {name, format, ...}`);
    // a copy: the recipe's paths are resolved in it, the caller's object stays as it was
    const o = { ...(s as Record<string, unknown>) };
    if (typeof o.name !== "string" || !/^[\w.-]+$/.test(o.name)) throw new Error(`${w}.name: expected a name of letters, digits, _ . -, got ${JSON.stringify(o.name)}`);
    if (names.has(o.name)) throw new Error(`${w}.name: "${o.name}" names an earlier source too`);
    names.add(o.name);
    const format = o.format as SourceFormat;
    if (!SOURCE_FORMATS.includes(format)) throw new Error(`${w}.format: expected one of ${SOURCE_FORMATS.join(", ")}, got ${JSON.stringify(o.format)}`);
    const spec = FORMAT_KEYS[format];
    for (const k of Object.keys(o)) {
      if (!["name", "format", "weight"].includes(k) && !(k in spec.keys)) throw new Error(`${w}.${k}: unknown key for format "${format}" (allowed: name, format, weight, ${Object.keys(spec.keys).join(", ")})`);
    }
    if (o.weight !== undefined && !(typeof o.weight === "number" && Number.isFinite(o.weight) && o.weight > 0)) throw new Error(`${w}.weight: expected a number > 0 (the source's sampling weight), got ${JSON.stringify(o.weight)}`);
    for (const k of spec.required) if (o[k] === undefined) throw new Error(`${w}.${k}: required for format "${format}"`);
    checkSplitKeys(o, spec.keys, w, base);
    for (const part of ["eval", "test"] as const) {
      if (o[part] === undefined) continue;
      if (!typeOk(o[part], "object")) throw new Error(`${w}.${part}: expected an object, got ${JSON.stringify(o[part])}`);
      const ev = { ...(o[part] as Record<string, unknown>) };
      o[part] = ev;
      const what = part === "eval" ? "held-out" : "test";
      for (const k of Object.keys(ev)) if (!spec.eval.includes(k)) throw new Error(`${w}.${part}.${k}: unknown key (the ${what} split of format "${format}" takes ${spec.eval.join(", ")})`);
      checkSplitKeys(ev, spec.keys, `${w}.${part}`, base);
    }
    checkFormatValues(o as unknown as DataSource, w);
    return o as unknown as DataSource;
  });
}

/** The sources of a recipe's data section: `data.sources`, or the one synthetic world `data.world` names. */
export function recipeSources(data: { world?: string; regions?: string; karpathy?: string; sources?: DataSource[] }): DataSource[] {
  if (data.sources) return data.sources;
  if (!data.world) throw new Error("recipe.data: neither world nor sources");
  return [{ name: "synth", format: "synth", world: data.world, ...(data.regions ? { regions: data.regions } : {}), ...(data.karpathy ? { karpathy: data.karpathy } : {}) }];
}

/** The recipe's sources that `method` can read; any other is an error naming its key and the formats it takes. */
export function sourcesFor(data: Parameters<typeof recipeSources>[0], method: string, formats: SourceFormat[]): DataSource[] {
  const all = recipeSources(data);
  all.forEach((s, i) => {
    if (!formats.includes(s.format)) throw new Error(`recipe.data.sources[${i}].format: "${s.format}" does not feed ${method} (it reads ${formats.join(", ")})`);
  });
  return all;
}

/**
 * The one file the sources give for `key` (`of(s)`: a synthetic world's own file, an lxmert
 * source's key); two different ones are an error naming both, as the model has one vocabulary.
 */
export function sharedFile(sources: DataSource[], key: string, of: (s: DataSource) => string | undefined): string | undefined {
  let found: { v: string; i: number } | undefined;
  sources.forEach((s, i) => {
    const v = of(s);
    if (v === undefined) return;
    if (found && found.v !== v) throw new Error(`recipe.data.sources[${i}].${key}: ${v} differs from sources[${found.i}]'s ${found.v}; the model has one ${key} vocabulary`);
    found ??= { v, i };
  });
  return found?.v;
}

/** A list of one or more paths. */
export const asList = (v: string | string[]): string[] => (typeof v === "string" ? [v] : v);

/** The trainer source name of pipeline source `base` fed by `s`: `base` alone when one source feeds it (as before sources existed). */
export function sourceName(base: string, s: DataSource, count: number): string {
  return count === 1 ? base : `${base}/${s.name}`;
}

/**
 * The keys of a source for one split: "train" = the source's own, "val" = those with its `eval`
 * keys in place (undefined when the format's held-out split needs an `eval` that is not there).
 */
export function splitOf(s: DataSource, split: "train" | "val" | "test"): DataSource | undefined {
  if (split === "train") return s;
  const part = split === "val" ? s.eval : s.test;
  if (s.format === "karpathy") return { ...s, split: part?.split ?? [split] };
  if (!part) return undefined;
  const own: DataSource = { ...s, ...part };
  // a task's split has its own examples: the training ones are not inherited (the image root and region features are)
  if (s.format === "vqa" || s.format === "gqa" || s.format === "nlvr2") for (const k of ["json", "questions", "annotations", "jsonl"] as const) if (part[k] === undefined) delete own[k];
  return own;
}

/** Region-text inputs (examples + regions) of an `lxmert` source's split; `text`: the sentf sources kept by default. */
export function lxmertInputs(s: DataSource, split: "train" | "val", text: string[] | undefined): { examples: { path: string; sources?: string[] }[]; regions: string | string[] } | undefined {
  const sp = splitOf(s, split);
  if (!sp) return undefined;
  const sources = (s.text as string[] | undefined) ?? text;
  return { examples: asList(sp.json!).map((path) => ({ path, sources })), regions: sp.regions! };
}

/**
 * The image-text input of a `webdataset` source's split (undefined: no `eval` shards): its shard
 * patterns expanded in order, the caption and image extensions, the shuffle buffer.
 */
export function webdatasetInput(s: DataSource, split: "train" | "val"): WebDatasetInput | undefined {
  const sp = splitOf(s, split);
  if (!sp) return undefined;
  return {
    format: "webdataset",
    shards: expandShards(sp.shards!),
    text: (s.text as string | undefined) ?? "txt",
    image: (s.image ?? "jpg;jpeg;png;webp").split(";"),
    shuffleBuffer: s.shuffleBuffer ?? 1000,
  };
}
