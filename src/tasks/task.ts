// The contract between `vlp finetune` / `vlp eval` and the downstream tasks: each task module
// (src/tasks/<task>.ts) exports `finetune(args)` and `evaluate(args)`, and reads a fine-tuning recipe.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { checkSources } from "../pretrain/sources.ts";
import { taskSource, type TaskRecipeData } from "./sources.ts";
import { readRecipeJson, checkTrainDevice } from "../pretrain/recipe.ts";
import { checkRanges, TRAIN_RANGES } from "../pretrain/ranges.ts";
import type { Precision } from "../engine/dtype.ts";
import { methodNames, type TaskName } from "../methods/index.ts";
import type { ProgressFactory } from "../train/progress.ts";

export interface FinetuneRecipe {
  task: TaskName;
  description?: string;
  /** For runs from scratch (no --from): the method and model; with --from they come from the pre-trained run. */
  method?: string;
  model?: { preset: string; overrides?: Record<string, unknown> };
  /**
   * `world` (a synthetic world, optionally with another `regions` file) or `sources`: the task's
   * dataset by format and path (vqa, gqa, nlvr2, karpathy, coco-captions, synth; src/pretrain/sources.ts),
   * relative paths starting from `root` (default: the current folder).
   */
  data: TaskRecipeData;
  train: {
    seed: number;
    batchSize: number;
    lr: number;
    /** Warmup as a fraction of the steps. */
    warmup: number;
    epochs?: number;
    steps?: number;
    clip: number;
    weightDecay: number;
    workers: number;
    /** Evaluate (task metric on the val split) every N steps; 0 = at the end only. */
    evalEvery: number;
    checkpointEvery: number;
    /** Keep only the newest N checkpoints (0: keep all). */
    keepCheckpoints?: number;
    /** "fp32" (default) or "bf16" (autocast for the forward and loss; see the pre-training recipe). */
    precision: Precision;
    /** "cpu" (default), "cuda" or "cuda:N"; `--device` overrides it. */
    device: string;
  };
  /** Task-specific settings (answer sets, two-stage GQA, negatives, image size...), validated by the task. */
  options?: Record<string, unknown>;
}

const TRAIN_DEFAULTS: FinetuneRecipe["train"] = { seed: 0, batchSize: 32, lr: 5e-5, warmup: 0.1, clip: 1, weightDecay: 0.01, workers: 1, evalEvery: 0, checkpointEvery: 0, precision: "fp32", device: "cpu" };
const TRAIN_KEYS = new Set([...Object.keys(TRAIN_DEFAULTS), "epochs", "steps", "keepCheckpoints"]);
const TOP_KEYS = new Set(["task", "description", "method", "model", "data", "train", "options", "$schema"]);
const TASKS: TaskName[] = ["vqa", "gqa", "nlvr2", "retrieval"];

/** Read and check a fine-tuning recipe (`--set k=v` overrides applied first); errors name the key. */
export function loadFinetuneRecipe(path: string, sets: string[] = []): FinetuneRecipe {
  return validateFinetuneRecipe(readRecipeJson(path, sets), path);
}

export function validateFinetuneRecipe(raw: Record<string, unknown>, where = "recipe"): FinetuneRecipe {
  for (const k of Object.keys(raw)) if (!TOP_KEYS.has(k)) throw new Error(`${where}.${k}: unknown key (allowed: ${[...TOP_KEYS].join(", ")})`);
  const r = raw as unknown as FinetuneRecipe;
  if (!TASKS.includes(r.task)) throw new Error(`${where}.task: expected one of ${TASKS.join(", ")}, got ${JSON.stringify(r.task)}`);
  if (r.method !== undefined && !methodNames().includes(r.method)) throw new Error(`${where}.method: expected ${methodNames().map((m) => JSON.stringify(m)).join(", ")}, got ${JSON.stringify(r.method)}`);
  checkTaskData(r, where);
  for (const [k, v] of Object.entries(r.train ?? {})) {
    if (!TRAIN_KEYS.has(k)) throw new Error(`${where}.train.${k}: unknown key (allowed: ${[...TRAIN_KEYS].join(", ")})`);
    if (k === "precision" || k === "device") continue; // checked below
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${where}.train.${k}: expected a number, got ${JSON.stringify(v)}`);
  }
  r.train = { ...TRAIN_DEFAULTS, ...(r.train ?? {}) };
  checkRanges(r.train as unknown as Record<string, unknown>, `${where}.train`, TRAIN_RANGES);
  checkTrainDevice(r.train, where);
  if (r.options !== undefined && (typeof r.options !== "object" || r.options === null || Array.isArray(r.options))) throw new Error(`${where}.options: expected an object`);
  return r;
}

const DATA_KEYS = ["world", "regions", "root", "sources"];

/** `data.world` (+ `regions`) or `data.sources` (checked, paths resolved against `data.root`), not both; the task must read the source. */
function checkTaskData(r: FinetuneRecipe, where: string): void {
  const d = r.data;
  if (typeof d !== "object" || d === null || Array.isArray(d)) throw new Error(`${where}.data: expected an object with world or sources`);
  for (const k of Object.keys(d)) if (!DATA_KEYS.includes(k)) throw new Error(`${where}.data.${k}: unknown key (allowed: ${DATA_KEYS.join(", ")})`);
  if (d.sources === undefined) {
    if (typeof d.world !== "string") throw new Error(`${where}.data.world: required (a world written by \`vlp data synth\`), or data.sources`);
    if (d.root !== undefined) throw new Error(`${where}.data.root: only used with data.sources`);
    d.world = resolve(d.world);
    if (d.regions !== undefined) d.regions = resolve(d.regions);
  } else {
    for (const k of ["world", "regions"] as const) {
      if (d[k] !== undefined) throw new Error(`${where}.data.${k}: not with data.sources (a synthetic world is the source {"format": "synth", "world": ...})`);
    }
    if (d.root !== undefined) {
      d.root = resolve(d.root);
      if (!existsSync(d.root)) throw new Error(`${where}.data.root: no such folder ${d.root}`);
    }
    d.sources = checkSources(d.sources, `${where}.data.sources`, d.root ?? process.cwd());
  }
  taskSource(r.task, d);
}

export interface FinetuneArgs {
  recipe: FinetuneRecipe;
  /** A pre-training run directory (config.json or recipe.json, and model.safetensors), or null to train from scratch. */
  from: string | null;
  /** The fine-tuning run directory (finetune.json, model.safetensors, metrics.jsonl, ckpt-*). */
  out: string;
  resume?: boolean;
  quiet?: boolean;
  /** Draws training and evaluation progress (the CLI's bars), unless `quiet`. */
  progress?: ProgressFactory;
}

export interface EvalArgs {
  /** A fine-tuning run directory, or (retrieval zero-shot) a pre-training run directory. */
  checkpoint: string;
  /** Which split of the world to evaluate (val, test, test_comp). */
  split: string;
  /** Where to write the official results dump (VQA/GQA JSON, NLVR2 CSV, retrieval rankings). */
  dump?: string;
  /** World override (default: the one the run was trained on). */
  world?: string;
  batchSize?: number;
  /** Retrieval: re-rank the top k of the dual encoder with the ITM head (0 = off). */
  rerank?: number;
  /** Cap on evaluated examples (quick looks). */
  limit?: number;
  quiet?: boolean;
  /** Draws scoring progress (the CLI's bars), unless `quiet`. */
  progress?: ProgressFactory;
  /** Where the model runs (default "cpu"). */
  device?: string;
}

export interface TaskModule {
  finetune(a: FinetuneArgs): Promise<Record<string, number>>;
  evaluate(a: EvalArgs): Promise<Record<string, number>>;
}

export async function loadTask(task: string): Promise<TaskModule> {
  if (!TASKS.includes(task as TaskName)) throw new Error(`unknown task "${task}" (expected: ${TASKS.join(", ")})`);
  return (await import(`./${task}.ts`)) as TaskModule;
}
