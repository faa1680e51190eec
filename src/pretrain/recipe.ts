// Recipes: JSON files that describe a pre-training run (method, model preset, data, schedule,
// strategy settings). Their keys are TypeBox schemas (./schema.ts): the common ones here, each
// method's section with its strategy; src/methods/recipe.ts puts them together from the method
// registry and checks a recipe. Unknown keys and wrong types are rejected naming the offending key.
import { readFileSync, existsSync } from "node:fs";
import { resolve } from "node:path";
import { availableParallelism } from "node:os";
import { precisionDtype, PRECISIONS, type Precision } from "../engine/dtype.ts";
import { parseDevice } from "../engine/device.ts";
import { Type, check, choice, describe, num, COUNT, type Filled, type Range, type Static, type TSchema } from "./schema.ts";
import { checkSources, sourceSchema, type DataSource } from "./sources.ts";

/** Loader worker threads: more than twice the cores (at least 8) only cost memory. */
export const MAX_WORKERS = Math.max(8, 2 * availableParallelism());
/** What a recipe's schema allows for `train.workers` (the machine's own bound is checked after it: the schema file is the same on every machine). */
const WORKERS_SCHEMA: Range = { int: true, min: 0, max: 1024, why: "loader threads" };
const WORKERS: Range = { int: true, min: 0, max: MAX_WORKERS, why: `loader threads; this machine has ${availableParallelism()} cores` };

/** The numeric fields of the train section of pre-training and fine-tuning recipes (and of stages that override them). */
export const TRAIN_RANGES = {
  seed: { int: true, min: 0, max: 2 ** 31 - 1 },
  batchSize: { int: true, min: 1, max: 1 << 16 },
  lr: { above: 0, max: 1 },
  warmup: { min: 0, max: 1 },
  epochs: { above: 0, max: 1e6 },
  steps: { int: true, min: 1, max: 1e9 },
  clip: { above: 0, why: "the gradient norm is clipped to it; <= 0 would zero or reverse the gradients" },
  accumulate: { int: true, min: 1, max: 1024 },
  checkpointEvery: COUNT,
  keepCheckpoints: COUNT,
  evalEvery: COUNT,
  logEvery: { int: true, min: 1, max: 1e9 },
  workers: WORKERS_SCHEMA,
  weightDecay: { min: 0, max: 1 },
  headLrMult: { above: 0, max: 1000 },
  probeSteps: { int: true, min: 0, max: 1e9 },
} satisfies Record<string, Range>;

const DOC = {
  seed: "seed of the model's initialisation, the data order and the masking",
  batchSize: "examples per step (per data-parallel worker)",
  lr: "peak learning rate",
  warmup: "linear warmup as a fraction of each stage's steps",
  epochs: "passes over the data (or steps)",
  steps: "optimizer steps (or epochs)",
  clip: "gradient norm clipped to this",
  accumulate: "micro-batches accumulated per optimizer step",
  checkpointEvery: "write a checkpoint every N steps (0: only at the end)",
  keepCheckpoints: "keep only the newest N checkpoints (0: keep all)",
  evalEvery: "evaluate on the held-out split every N steps (0: only at the end of each stage)",
  logEvery: "a metrics.jsonl row every N steps, holding the means over those steps; losses and metrics stay on the device between rows (no host read per step)",
  workers: "loader worker threads",
  weightDecay: "AdamW weight decay",
  headLrMult: "the task head's learning rate is lr x this (the official VLMo and ViLT lr_mult: 20 for VQA); the backbone keeps lr",
  probeSteps: "LP-FT (Kumar et al. 2022): this many steps of the task head alone (the backbone frozen, the head at lr x headLrMult) before the fine-tuning proper trains every tensor; 0: none",
  precision: "fp32, or bf16 (autocast for the forward and loss; weights, gradients and checkpoints stay fp32); fp16 is CUDA-only",
  device: "cpu, cuda or cuda:N (--device overrides it)",
} as const;

/** A train field with its range and, when given, the default filled in when it is absent. */
export function trainField(k: keyof typeof TRAIN_RANGES, dflt?: number) {
  return Type.Optional(num(TRAIN_RANGES[k], { description: DOC[k], ...(dflt !== undefined ? { default: dflt } : {}) }));
}
/** train.precision and train.device, with their defaults. */
export const TRAIN_DEVICE = {
  precision: Type.Optional(choice(PRECISIONS as readonly Precision[] as ["fp32", "bf16", "fp16"], { description: DOC.precision, default: "fp32" })),
  device: Type.Optional(Type.String({ description: DOC.device, default: "cpu" })),
};
/** The train section is optional; absent, it is {} with every default filled in. */
export const TRAIN_OPTIONS = { additionalProperties: false, default: {}, description: "training settings (absent ones take their defaults)" };

/** The train fields pre-training and fine-tuning share, with the learning rate and warmup defaults each gives. */
export function commonTrainFields(d: { lr: number; warmup: number }) {
  return {
    seed: trainField("seed", 0),
    batchSize: trainField("batchSize", 32),
    lr: trainField("lr", d.lr),
    warmup: trainField("warmup", d.warmup),
    epochs: trainField("epochs"),
    steps: trainField("steps"),
    clip: trainField("clip", 1),
    weightDecay: trainField("weightDecay", 0.01),
    workers: trainField("workers", 1),
    evalEvery: trainField("evalEvery", 0),
    checkpointEvery: trainField("checkpointEvery", 0),
    keepCheckpoints: trainField("keepCheckpoints"),
    ...TRAIN_DEVICE,
  };
}

export const PRETRAIN_TRAIN = Type.Object({
  ...commonTrainFields({ lr: 1e-4, warmup: 0.05 }),
  accumulate: trainField("accumulate", 1),
  logEvery: trainField("logEvery", 1),
}, TRAIN_OPTIONS);

/** The train section once checked: every field but epochs, steps and keepCheckpoints filled in. */
export type TrainSection = Filled<Static<typeof PRETRAIN_TRAIN>, Exclude<keyof Static<typeof PRETRAIN_TRAIN>, "epochs" | "steps" | "keepCheckpoints">>;

/** A stage's own settings (`msp.stages.<stage>`, `vlmo.stages.<stage>`): the train fields it overrides. */
export const STAGE_SETTINGS = {
  epochs: Type.Optional(num(TRAIN_RANGES.epochs)),
  steps: Type.Optional(num(TRAIN_RANGES.steps)),
  batchSize: Type.Optional(num(TRAIN_RANGES.batchSize)),
  lr: Type.Optional(num(TRAIN_RANGES.lr)),
};

/** What a region loss is weighted by: the mask, the detector's confidence, or both. */
export const VISUAL_WEIGHTING = choice(["mask", "confidence", "mask*confidence"], { description: "what the visual losses are weighted by (default mask)" });

/** A model as a recipe names it: a preset of the method and overrides of its config. */
export const MODEL = Type.Object({
  preset: Type.String({ minLength: 1, description: "a config preset of the method (tiny, small, base, large...)" }),
  overrides: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: "fields of the preset's config replaced" })),
  init: Type.Optional(Type.String({ minLength: 1, description: "a pre-trained checkpoint (.bin / .pth / .safetensors: Hugging Face BERT or LXMERT, official LXMERT or VLMo names) whose tensors start the model; the others keep their initialisation" })),
}, { additionalProperties: false });

/**
 * The data: either `world`, the synthetic world (or a folder laid out like it) that holds the data
 * files, or `sources`, datasets named by format and path (src/pretrain/sources.ts; `world` is the
 * shorthand of one `synth` source). `karpathy`: the image-text split file VLMo reads, relative to
 * the world (default karpathy/dataset_synth.json; karpathy/dataset_emoji.json for a folder written
 * by `vlp data emoji`). `root`: the folder relative source paths start from (default: the current
 * folder), so that one `--set data.root=DIR` points a recipe at another copy of the same tree.
 */
export const PRETRAIN_DATA = Type.Object({
  world: Type.Optional(Type.String({ description: "a synthetic world (vlp data synth), or a folder laid out like one" })),
  regions: Type.Optional(Type.String({ description: "another region features file of the world" })),
  karpathy: Type.Optional(Type.String({ description: "the image-text split file relative to the world (default karpathy/dataset_synth.json)" })),
  root: Type.Optional(Type.String({ description: "the folder relative source paths start from (default: the current folder)" })),
  sources: Type.Optional(Type.Array(sourceSchema(), { minItems: 1, description: "datasets by format and path" })),
}, { additionalProperties: false, description: "world (the synthetic world) or sources, not both" });

/**
 * The keys every pre-training recipe has; the method sections (`semvlp`, `msp`, `vlmo`) are each
 * method's own (its strategy's `*_SECTION` schema), added by the method registry (src/methods/recipe.ts).
 */
export const RECIPE_KEYS = {
  $schema: Type.Optional(Type.String({ description: "the JSON schema of this file (for editors)" })),
  method: Type.String({ description: "the pre-training method" }),
  description: Type.Optional(Type.String()),
  model: MODEL,
  data: PRETRAIN_DATA,
  train: Type.Optional(PRETRAIN_TRAIN),
};

type RecipeKeys = Static<ReturnType<typeof Type.Object<typeof RECIPE_KEYS>>>;

/** A checked pre-training recipe: the common keys, train filled with its defaults, and the method sections (each read by its strategy). */
export type Recipe = Omit<RecipeKeys, "train" | "data"> & {
  data: Omit<Static<typeof PRETRAIN_DATA>, "sources"> & { sources?: DataSource[] };
  train: TrainSection;
  [section: string]: unknown;
};

/** A method's section of a recipe (`recipe.<method>`), as its schema types it; undefined when absent. */
export function sectionOf<S extends TSchema>(r: Recipe, name: string, _schema: S): Static<S> | undefined {
  return r[name] as Static<S> | undefined;
}

/**
 * Checks a pre-training recipe against `schema` (the common keys and the registered methods'
 * sections: src/methods/recipe.ts builds it), fills in the train defaults and resolves the data
 * paths; throws naming the first offending key (e.g. `recipe.train.lr: expected a number ...`).
 */
export function checkRecipe(schema: TSchema, r: unknown, where = "recipe"): Recipe {
  if (typeof r !== "object" || r === null || Array.isArray(r)) throw new Error(`${where}: expected a JSON object`);
  const data = (r as Record<string, unknown>).data;
  // the sources first: their own checks name the format's keys and files, and resolve the paths
  if (typeof data === "object" && data !== null && !Array.isArray(data)) checkData(data as Recipe["data"], where);
  const rec = check(schema, r, where) as Recipe;
  checkWorkers(rec.train.workers, `${where}.train.workers`);
  checkTrainDevice(rec.train, where);
  return rec;
}

/** train.workers within this machine's bound (the schema's is the same everywhere). */
export function checkWorkers(v: number, key: string): void {
  if (v > WORKERS.max!) throw new Error(`${key}: expected ${describe(num(WORKERS))} (${WORKERS.why}), got ${JSON.stringify(v)}`);
}

/**
 * `data.world` (the synthetic world) or `data.sources` (checked, their paths resolved against
 * `data.root`, itself against the current folder), not both.
 */
function checkData(d: Recipe["data"], where: string): void {
  if (d.sources === undefined) {
    if (!d.world) throw new Error(`${where}.data.world: required (or data.sources)`);
    if (d.root !== undefined) throw new Error(`${where}.data.root: only used with data.sources`);
    return;
  }
  for (const k of ["world", "regions", "karpathy"] as const) {
    if (d[k] !== undefined) throw new Error(`${where}.data.${k}: not with data.sources (a synthetic world is the source {"format": "synth", "world": ...})`);
  }
  if (typeof d.root === "string") {
    d.root = resolve(d.root);
    if (!existsSync(d.root)) throw new Error(`${where}.data.root: no such folder ${d.root}`);
  }
  d.sources = checkSources(d.sources, `${where}.data.sources`, typeof d.root === "string" ? d.root : process.cwd());
}

/** Checks train.device's form and train.precision for that device (fp16 is refused on the CPU). */
export function checkTrainDevice(t: { device: string; precision: Precision }, where: string): void {
  parseDevice(t.device, `${where}.train.device`);
  checkPrecision(t.precision, `${where}.train.precision`, t.device);
}

/** Checks a recipe's train.precision for the device it trains on (the CPU: fp16 is refused). */
export function checkPrecision(p: unknown, key: string, device = "cpu"): void {
  if (!PRECISIONS.includes(p as Precision)) throw new Error(`${key}: expected "fp32", "bf16" or "fp16", got ${JSON.stringify(p)}`);
  try {
    precisionDtype(p as Precision, device);
  } catch (e) {
    throw new Error(`${key}: ${(e as Error).message}`);
  }
}

const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** Apply `--set a.b.c=value` overrides (value parsed as JSON when it parses, else a string). */
export function applySets(r: Record<string, unknown>, sets: string[]): void {
  for (const s of sets) {
    const eq = s.indexOf("=");
    if (eq <= 0) throw new Error(`--set ${s}: expected key=value`);
    const path = s.slice(0, eq).split(".");
    // a path through __proto__ (or constructor.prototype) would change every object of the process
    const bad = path.find((p) => FORBIDDEN_KEYS.has(p) || p === "");
    if (bad !== undefined) throw new Error(`--set ${s}: ${bad === "" ? "empty key part" : `"${bad}" is not a recipe key`}`);
    const raw = s.slice(eq + 1);
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
    let o = r;
    for (const p of path.slice(0, -1)) {
      if (!Object.hasOwn(o, p)) o[p] = {};
      if (typeof o[p] !== "object" || o[p] === null) throw new Error(`--set ${s}: ${p} is not an object`);
      o = o[p] as Record<string, unknown>;
    }
    o[path[path.length - 1]] = value;
  }
}

/** A recipe file's JSON with `--set` overrides applied, before any validation (pre-training and fine-tuning recipes). */
export function readRecipeJson(path: string, sets: string[] = []): Record<string, unknown> {
  if (!existsSync(path)) throw new Error(`${path}: recipe not found`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`);
  }
  applySets(raw, sets);
  return raw;
}
