// The method registry: what vlpkit knows about each pre-training method, in one place. Each file of
// src/methods/ (semvlp.ts, msp.ts, vlmo.ts) registers one `MethodDef`: its config presets, how its
// pre-training model is built (the strategy of src/pretrain/) and rebuilt from a run's config.json,
// and the task models downstream code puts on its backbone. `vlp pretrain`, the tasks and serving
// look a method up here by name; none of them switches on the method.
import type { Module, Tensor } from "../engine/index.ts";
import type { RetrievalBatch, RetrievalMeta, TaskBatch } from "../data/batches.ts";
import type { Recipe } from "../pretrain/recipe.ts";
import type { TSchema } from "../pretrain/schema.ts";
import type { Source, Stage } from "../train/trainer.ts";
import type { TaskHead, RegionMatcher } from "../models/region_tasks.ts";
import type { SemVLPMode } from "../models/semvlp.ts";
import type { VLMoModel } from "../models/vlmo/index.ts";

/** A model as a recipe names it: a preset and overrides of its config. */
export interface ModelSpec {
  preset: string;
  overrides?: Record<string, unknown>;
}

/** A task model with what its batches must hold. */
export interface TaskNet {
  method: string;
  model: Module;
  input: { kind: "regions"; featDim: number } | { kind: "pixels"; size: number };
  /** SemVLP: the mode the task reads. */
  mode?: SemVLPMode;
  logits(b: TaskBatch): Tensor;
}

/** A retrieval model: a fusion model scoring every pair, or a dual encoder (VLMo) embedding each side once. */
export type RetrievalModel = { kind: "fusion"; method: string; model: RegionMatcher } | { kind: "dual"; method: string; model: VLMoModel; hasItm: boolean };

/** Retrieval fine-tuning settings a method's ranking loss reads (tasks/retrieval/options.ts RetrievalOptions). */
export interface RankOptions {
  mode: SemVLPMode;
  margin: number;
  negPool: number;
  hardNegatives: number;
  evalBatchSize: number;
}

/** What a model is in a run's config.json: its full config and what its class needs besides. */
export interface ModelDescription {
  /** The model's resolved config (plain JSON: every field, the preset applied). */
  config: Record<string, unknown>;
  /** The model class and its heads beyond the config (VLMo's mimTarget, a task head, SemVLP's mode). */
  heads: Record<string, unknown>;
}

export interface MethodDef {
  /** The recipe's `method`. */
  name: string;
  /** The paper's name of the model ("SemVLP", "LXMERT-S", "VLMo"). */
  title: string;
  /** Its config presets (`model.preset`). */
  presets: readonly string[];
  /** What its batches hold: region features or pixels. */
  input: "regions" | "pixels";
  /** The schema of the recipe's section named after the method (`recipe.<name>`), declared with its strategy. */
  section: TSchema;
  /** Pre-training: the strategy of src/pretrain/ (the model and its stages). */
  buildStrategy(r: Recipe): { model: Module; stages: Stage[] };
  /** The model spec a recipe trains (VLMo: vlmo.standard folded into the overrides). */
  modelSpec(r: Pick<Recipe, "model"> & { vlmo?: Record<string, unknown> }): ModelSpec;
  /** The config.json description of any model this method builds (pre-training, task, retrieval). */
  describe(model: Module): ModelDescription;
  /**
   * The model a run trained, as its config.json describes it (`loadRun` without `build`). `shapes`:
   * the tensors of the run's weights, read for runs without config.json (heads found by name).
   */
  runModel(run: { model: ModelSpec; config?: Record<string, unknown>; heads?: Record<string, unknown> }, shapes: Map<string, number[]>): Module;
  /** Tensors of its weights as they are on disk -> the model's names (VLMo: official conversions). */
  adaptWeights?(sd: Map<string, Tensor>, model: Module): Map<string, Tensor>;

  // ---- classification tasks (VQA, GQA, NLVR2) -------------------------------------------------
  /** Modes a task can read (SemVLP: single- and two-stream); none: one. */
  modes?: readonly SemVLPMode[];
  /** A fresh task model: the backbone of `spec` plus `head`. */
  taskNet(spec: ModelSpec, head: TaskHead, mode?: SemVLPMode): TaskNet;
  /** The task model around a loaded model (loadRun's result). */
  wrapTaskNet(model: Module, head: TaskHead): TaskNet;
  /** The tensors of a task model that a pre-trained run provides (the others start random). */
  backbone(name: string): boolean;
  /** Text length of its task batches unless recipe.options.maxTextLen says otherwise. */
  textLen(model: Module): number;
  /** AdamW betas of its fine-tuning (default: the trainer's). */
  betas?: [number, number];
  /** A line on how a pre-trained run was loaded into a task model, besides what starts random. */
  loadNote?(head: TaskHead): string | undefined;
  /** Whether QA tasks can start their answer head from the pre-trained QA head (answers matched by string). */
  pretrainedAnswerHead?: boolean;

  // ---- retrieval ------------------------------------------------------------------------------
  /** A fresh retrieval model of `spec`. */
  retrievalModel(spec: ModelSpec, mode: SemVLPMode): RetrievalModel;
  /** The retrieval model around a loaded model; `missing`: the tensors the run did not have. */
  wrapRetrievalModel(model: Module, missing: string[]): RetrievalModel;
  /** Retrieval tensors a run may lack (VLMo: the ITM head, needed only to re-rank). */
  retrievalOptional?(name: string): boolean;
  /** The fine-tuning loss of retrieval. */
  retrievalStep(rm: RetrievalModel, o: RankOptions): Source<RetrievalBatch, RetrievalMeta>["step"];
  /** Extra arguments of the retrieval batch builder (LXMERT-S: four pairs per example). */
  retrievalData?: { fourWay?: Record<string, never> };
  /** How it fine-tunes retrieval, for the log. */
  retrievalSummary(o: RankOptions): string;
}


const REGISTRY = new Map<string, MethodDef>();

/** Adds a method (each file of src/methods/ calls this once). */
export function registerMethod(def: MethodDef): MethodDef {
  if (REGISTRY.has(def.name)) throw new Error(`method "${def.name}" registered twice`);
  REGISTRY.set(def.name, def);
  return def;
}

/** The registered method names, in registration order. */
export function methodNames(): string[] {
  return [...REGISTRY.keys()];
}

/** A method by name; `where` names the key in errors. */
export function getMethod(name: string, where = "method"): MethodDef {
  const m = REGISTRY.get(name);
  if (!m) throw new Error(`${where}: unknown method ${JSON.stringify(name)} (expected ${methodNames().map((n) => `"${n}"`).join(", ")})`);
  return m;
}
