// The contract between `vlp finetune` / `vlp eval` and the downstream tasks: each task module
// (src/tasks/<task>.ts) exports `finetune(args)` and `evaluate(args)`, and reads a fine-tuning recipe.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { checkSources, sourceSchema } from "../pretrain/sources.ts";
import { taskSource, type TaskRecipeData } from "./sources.ts";
import { readRecipeJson, checkTrainDevice, checkWorkers, commonTrainFields, trainField, TRAIN_OPTIONS, MODEL } from "../pretrain/recipe.ts";
import { Type, check, choice, type Filled, type Static, type TSchema } from "../pretrain/schema.ts";
import { methodNames, type TaskName } from "../methods/index.ts";
import type { ProgressFactory } from "../train/progress.ts";

export const TASKS: TaskName[] = ["vqa", "gqa", "nlvr2", "retrieval"];

export const FINETUNE_TRAIN = Type.Object({ ...commonTrainFields({ lr: 5e-5, warmup: 0.1 }), headLrMult: trainField("headLrMult", 1), probeSteps: trainField("probeSteps", 0) }, TRAIN_OPTIONS);

/**
 * `world` (a synthetic world, optionally with another `regions` file) or `sources`: the task's
 * dataset by format and path (vqa, gqa, nlvr2, karpathy, coco-captions, synth; src/pretrain/sources.ts),
 * relative paths starting from `root` (default: the current folder).
 */
export const FINETUNE_DATA = Type.Object({
  world: Type.Optional(Type.String({ description: "a synthetic world written by `vlp data synth`" })),
  regions: Type.Optional(Type.String({ description: "another region features file of the world" })),
  root: Type.Optional(Type.String({ description: "the folder relative source paths start from (default: the current folder)" })),
  sources: Type.Optional(Type.Array(sourceSchema(), { minItems: 1, description: "the task's dataset by format and path (one source)" })),
}, { additionalProperties: false, description: "world (the synthetic world) or sources, not both" });

/**
 * The fine-tuning recipe's schema. `options`: each task's options schema (`TaskModule.options`),
 * applied by task (the published schema, recipes/finetune.schema.json); without them options is
 * any object, checked by the task when it runs.
 */
export function finetuneSchema(options?: Partial<Record<TaskName, TSchema>>) {
  const recipe = Type.Object({
    $schema: Type.Optional(Type.String({ description: "the JSON schema of this file (for editors)" })),
    task: choice(TASKS, { description: "the downstream task" }),
    description: Type.Optional(Type.String()),
    method: Type.Optional(choice(methodNames(), { description: "for runs from scratch (no --from): the method; with --from it is the pre-trained run's" })),
    model: Type.Optional(MODEL),
    data: FINETUNE_DATA,
    train: Type.Optional(FINETUNE_TRAIN),
    options: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: "task-specific settings (answer sets, two-stage GQA, negatives...)" })),
  }, { additionalProperties: false, title: "vlpkit fine-tuning recipe" });
  if (!options) return recipe;
  // per task, its options (JSON Schema's if/then: editors complete the options of the recipe's task)
  const byTask = Object.entries(options).map(([task, o]) => ({ if: { properties: { task: { const: task } }, required: ["task"] }, then: { properties: { options: o } } }));
  return Type.Unsafe<Static<typeof recipe>>({ ...recipe, allOf: byTask });
}

const FINETUNE_SCHEMA = finetuneSchema();

export type FinetuneRecipe = Omit<Static<typeof FINETUNE_SCHEMA>, "task" | "data" | "train" | "method"> & {
  task: TaskName;
  /** For runs from scratch (no --from): the method and model; with --from they come from the pre-trained run. */
  method?: string;
  data: TaskRecipeData;
  train: Filled<Static<typeof FINETUNE_TRAIN>, Exclude<keyof Static<typeof FINETUNE_TRAIN>, "epochs" | "steps" | "keepCheckpoints">>;
};

/** Read and check a fine-tuning recipe (`--set k=v` overrides applied first); errors name the key. */
export function loadFinetuneRecipe(path: string, sets: string[] = []): FinetuneRecipe {
  return validateFinetuneRecipe(readRecipeJson(path, sets), path);
}

/** Checks a fine-tuning recipe (the train defaults filled in, data paths resolved); the task checks its options when it runs. */
export function validateFinetuneRecipe(raw: Record<string, unknown>, where = "recipe"): FinetuneRecipe {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error(`${where}: expected a JSON object`);
  // the data first: the sources' own checks name the format's keys and files, and resolve the paths
  if (typeof raw.data === "object" && raw.data !== null && !Array.isArray(raw.data)) checkTaskData(raw.data as TaskRecipeData, where);
  const r = check(FINETUNE_SCHEMA, raw, where) as FinetuneRecipe;
  taskSource(r.task, r.data);
  checkWorkers(r.train.workers, `${where}.train.workers`);
  checkTrainDevice(r.train, where);
  return r;
}

/** `data.world` (+ `regions`) or `data.sources` (checked, paths resolved against `data.root`), not both. */
function checkTaskData(d: TaskRecipeData, where: string): void {
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
  /** The schema of `recipe.options` for this task (defaults included). */
  options: TSchema;
  finetune(a: FinetuneArgs): Promise<Record<string, number>>;
  evaluate(a: EvalArgs): Promise<Record<string, number>>;
}

export async function loadTask(task: string): Promise<TaskModule> {
  if (!TASKS.includes(task as TaskName)) throw new Error(`unknown task "${task}" (expected: ${TASKS.join(", ")})`);
  return (await import(`./${task}.ts`)) as TaskModule;
}

/** The published fine-tuning schema: every task's options applied by task. */
export async function finetuneFileSchema(): Promise<TSchema> {
  const options = Object.fromEntries(await Promise.all(TASKS.map(async (t) => [t, (await loadTask(t)).options] as const)));
  return finetuneSchema(options);
}
