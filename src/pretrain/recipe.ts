// Recipes: JSON files that describe a pre-training run (method, model preset, data, schedule,
// strategy settings). Unknown keys and wrong types are rejected naming the offending key.
import { readFileSync, existsSync } from "node:fs";
import { resolve } from "node:path";
import { precisionDtype, PRECISIONS, type Precision } from "../engine/dtype.ts";
import { parseDevice } from "../engine/device.ts";
import { checkRange, checkRanges, TRAIN_RANGES, RATIO, WEIGHT, COUNT } from "./ranges.ts";
import { checkSources, type DataSource } from "./sources.ts";

export interface TrainSection {
  seed: number;
  batchSize: number;
  lr: number;
  /** Warmup as a fraction of each stage's steps. */
  warmup: number;
  epochs?: number;
  steps?: number;
  clip: number;
  accumulate: number;
  checkpointEvery: number;
  /** Keep only the newest N checkpoints (0: keep all). */
  keepCheckpoints?: number;
  /** Evaluate on the held-out split every N steps (0: only at the end of each stage). */
  evalEvery: number;
  /**
   * A metrics.jsonl row every N steps (default 1), holding the means over those steps; losses and
   * metrics stay on the device between rows (no host read per step).
   */
  logEvery: number;
  workers: number;
  weightDecay: number;
  /**
   * "fp32" (default) or "bf16": forward and loss under libtorch's autocast to bfloat16 (weights,
   * gradients, optimizer state and checkpoints stay float32). "fp16" is CUDA-only.
   */
  precision: Precision;
  /** "cpu" (default), "cuda" or "cuda:N"; `--device` overrides it. "cuda" is each data-parallel worker's own GPU. */
  device: string;
}

export interface Recipe {
  method: "semvlp" | "msp" | "vlmo";
  description?: string;
  model: { preset: string; overrides?: Record<string, unknown> };
  /**
   * The data: either `world`, the synthetic world (or a folder laid out like it) that holds the data
   * files, or `sources`, datasets named by format and path (src/pretrain/sources.ts; `world` is the
   * shorthand of one `synth` source). `karpathy`: the image-text split file VLMo reads, relative to
   * the world (default karpathy/dataset_synth.json; karpathy/dataset_emoji.json for a folder written
   * by `vlp data emoji`). `root`: the folder relative source paths start from (default: the current
   * folder), so that one `--set data.root=DIR` points a recipe at another copy of the same tree.
   */
  data: { world?: string; regions?: string; karpathy?: string; root?: string; sources?: DataSource[] };
  train: TrainSection;
  semvlp?: { singleRatio: number; losses: Record<string, number>; visualWeighting: "mask" | "confidence" | "mask*confidence"; qa: boolean; itmSources?: string[]; textSources?: string[]; itmPaired?: boolean; textWarmup?: { steps: number; lr?: number } };
  msp?: { order: string[]; joint: boolean; stages: Record<string, { epochs?: number; steps?: number; batchSize?: number; lr?: number; losses?: Record<string, number> }>; visualWeighting: "mask" | "confidence" | "mask*confidence"; lossesOnMismatched?: boolean; hardFraction?: number; itc?: number; itmPaired?: boolean };
  vlmo?: Record<string, unknown>;
}

const TRAIN_DEFAULTS: TrainSection = { seed: 0, batchSize: 32, lr: 1e-4, warmup: 0.05, clip: 1, accumulate: 1, checkpointEvery: 0, evalEvery: 0, logEvery: 1, workers: 1, weightDecay: 0.01, precision: "fp32", device: "cpu" };

type Shape = "number" | "string" | "boolean" | "object" | "string[]" | "any";
const SCHEMA: Record<string, Record<string, Shape>> = {
  "": { method: "string", description: "string", model: "object", data: "object", train: "object", semvlp: "object", msp: "object", vlmo: "object", $schema: "string" },
  model: { preset: "string", overrides: "object" },
  data: { world: "string", regions: "string", karpathy: "string", root: "string", sources: "any" },
  train: { seed: "number", batchSize: "number", lr: "number", warmup: "number", epochs: "number", steps: "number", clip: "number", accumulate: "number", checkpointEvery: "number", keepCheckpoints: "number", evalEvery: "number", logEvery: "number", workers: "number", weightDecay: "number", precision: "string", device: "string" },
  semvlp: { singleRatio: "number", losses: "object", visualWeighting: "string", qa: "boolean", itmSources: "string[]", textSources: "string[]", itmPaired: "boolean", textWarmup: "object" },
  msp: { order: "string[]", joint: "boolean", stages: "object", visualWeighting: "string", lossesOnMismatched: "boolean", hardFraction: "number", itc: "number", itmPaired: "boolean" },
  vlmo: { stages: "object", itmHardNegatives: "boolean", mlmWeight: "number", itmWeight: "number", itmRandomSteps: "number", trimPadding: "boolean", mimTarget: "string", standard: "boolean", order: "string[]" },
};

function typeOk(v: unknown, s: Shape): boolean {
  if (s === "any") return true;
  if (s === "string[]") return Array.isArray(v) && v.every((x) => typeof x === "string");
  if (s === "object") return typeof v === "object" && v !== null && !Array.isArray(v);
  return typeof v === s;
}

/** Check a recipe object; throws naming the first offending key (e.g. `recipe.train.lr: expected a number`). */
export function validateRecipe(r: unknown, where = "recipe"): Recipe {
  if (typeof r !== "object" || r === null) throw new Error(`${where}: expected a JSON object`);
  for (const [section, fields] of Object.entries(SCHEMA)) {
    const obj = section === "" ? r : (r as Record<string, unknown>)[section];
    if (obj === undefined) continue;
    for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
      const key = section ? `${where}.${section}.${k}` : `${where}.${k}`;
      if (!(k in fields)) throw new Error(`${key}: unknown key (allowed: ${Object.keys(fields).join(", ")})`);
      if (!typeOk(v, fields[k])) throw new Error(`${key}: expected ${fields[k] === "string[]" ? "a list of strings" : `a ${fields[k]}`}, got ${JSON.stringify(v)}`);
    }
  }
  const rec = r as Recipe;
  if (!["semvlp", "msp", "vlmo"].includes(rec.method)) throw new Error(`${where}.method: expected "semvlp", "msp" or "vlmo", got ${JSON.stringify(rec.method)}`);
  if (!rec.model?.preset) throw new Error(`${where}.model.preset: required`);
  checkData(rec, where);
  rec.train = { ...TRAIN_DEFAULTS, ...(rec.train ?? {}) };
  const t = rec.train;
  checkRanges(t as unknown as Record<string, unknown>, `${where}.train`, TRAIN_RANGES);
  checkTrainDevice(t, where);
  checkStrategyRanges(rec, where);
  return rec;
}

/**
 * `data.world` (the synthetic world) or `data.sources` (checked, their paths resolved against
 * `data.root`, itself against the current folder), not both.
 */
function checkData(rec: Recipe, where: string): void {
  const d = rec.data;
  if (d?.sources === undefined) {
    if (!d?.world) throw new Error(`${where}.data.world: required (or data.sources)`);
    if (d.root !== undefined) throw new Error(`${where}.data.root: only used with data.sources`);
    return;
  }
  for (const k of ["world", "regions", "karpathy"] as const) {
    if (d[k] !== undefined) throw new Error(`${where}.data.${k}: not with data.sources (a synthetic world is the source {"format": "synth", "world": ...})`);
  }
  if (d.root !== undefined) {
    d.root = resolve(d.root);
    if (!existsSync(d.root)) throw new Error(`${where}.data.root: no such folder ${d.root}`);
  }
  d.sources = checkSources(d.sources, `${where}.data.sources`, d.root ?? process.cwd());
}

/** The numeric settings of each method's section (ratios, loss weights, per-stage steps and learning rates). */
function checkStrategyRanges(rec: Recipe, where: string): void {
  const weights = (m: unknown, key: string) => {
    if (m === undefined) return;
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw new Error(`${key}: expected an object of loss weights`);
    for (const [k, v] of Object.entries(m)) checkRange(v, `${key}.${k}`, WEIGHT);
  };
  const stages = (m: unknown, key: string) => {
    if (m === undefined) return;
    for (const [name, st] of Object.entries(m as Record<string, unknown>)) {
      if (typeof st !== "object" || st === null || Array.isArray(st)) throw new Error(`${key}.${name}: expected an object`);
      const { losses, ...rest } = st as Record<string, unknown>;
      checkRanges(rest, `${key}.${name}`, TRAIN_RANGES);
      weights(losses, `${key}.${name}.losses`);
    }
  };
  const s = rec.semvlp;
  if (s) {
    checkRanges(s as unknown as Record<string, unknown>, `${where}.semvlp`, { singleRatio: RATIO });
    weights(s.losses, `${where}.semvlp.losses`);
    checkRanges(s.textWarmup as Record<string, unknown> | undefined, `${where}.semvlp.textWarmup`, { steps: { int: true, min: 0, max: 1e9 }, lr: TRAIN_RANGES.lr });
  }
  const m = rec.msp;
  if (m) {
    checkRanges(m as unknown as Record<string, unknown>, `${where}.msp`, { hardFraction: RATIO, itc: WEIGHT });
    stages(m.stages, `${where}.msp.stages`);
  }
  const v = rec.vlmo;
  if (v) {
    checkRanges(v, `${where}.vlmo`, { mlmWeight: WEIGHT, itmWeight: WEIGHT, itmRandomSteps: COUNT });
    stages(v.stages, `${where}.vlmo.stages`);
  }
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

/** Read a recipe file; relative data paths are resolved against the current directory. */
export function loadRecipe(path: string, sets: string[] = []): Recipe {
  const r = validateRecipe(readRecipeJson(path, sets), path);
  if (r.data.world !== undefined) r.data.world = resolve(r.data.world);
  return r;
}
