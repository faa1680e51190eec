// Run directories, and `loadRun`: a run's model from the run alone (in the spirit of Hugging Face's
// `from_pretrained`).
//
// A pre-training run (`vlp pretrain`) holds `recipe.json`, `config.json` and `model.safetensors`
// (the pre-training model's names: `bert.*` + heads for SemVLP/LXMERT-S, VLMo's official names +
// `mim_*`); a fine-tuning run (`vlp finetune <task>`) `finetune.json`, `config.json` and
// `model.safetensors` with the task model's names. Both may also hold `ckpt-<step>/` checkpoints.
// `config.json` (RunConfig) says what the weights are: the method, the model's full config and
// heads, the vocabulary and the vlpkit version; with it, `model.safetensors` + `config.json` load
// anywhere. Runs written before config.json existed load through their recipe (`recipe.json` or
// `finetune.json`) and their tensor names.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { latestCheckpoint, loadStateDictFile } from "../engine/checkpoint.ts";
import type { Module, Tensor } from "../engine/index.ts";
import { writeJsonAtomic } from "../engine/serialize/atomic.ts";
import { loadBertBaseUncasedVocab, BERT_UNCASED_VOCAB_SIZE } from "../text/tokenizer.ts";
import type { TaskHead } from "../models/region_tasks.ts";
import { getMethod, type MethodDef, type ModelSpec } from "./method.ts";

export type TaskName = "vqa" | "gqa" | "nlvr2" | "retrieval";

/** What a run's recipe says (finetune.json, or recipe.json of a pre-training run); config.json alone gives the first fields. */
export interface RunInfo {
  kind: "pretrain" | "finetune";
  /** The downstream task (fine-tuning runs only). */
  task?: TaskName;
  method: string;
  /** Model preset and overrides, as in a recipe's `model` section (the task's heads are added by the task). */
  model: ModelSpec;
  /** The synthetic world (or dataset folder) the run read; absent for a run on data.sources (its recipe names them). */
  world?: string;
  /** Pre-training runs: the ans2label file of the run's QA head (a world's vqa/trainval_ans2label.json, an lxmert source's answers). */
  answers?: string;
  /** Pre-training runs: the recipe's Karpathy file (relative to `world`), when not the synthetic world's. */
  karpathy?: string;
  /** Answer labels by class index (VQA, GQA). */
  labels?: string[];
  /** The pre-trained run a fine-tuning run started from (null: from scratch). */
  from?: string | null;
  /** The fine-tuning recipe, as run. */
  recipe?: unknown;
}

/** A run's config.json: what its weights are, without its recipe or its data. */
export interface RunConfig {
  /** The vlpkit version that wrote it. */
  vlpkit: string;
  kind: "pretrain" | "finetune";
  method: string;
  task?: TaskName;
  /** The preset and overrides the model was made from (task models on its backbone start from these). */
  model: ModelSpec;
  /** The model's resolved config (every field). */
  config: Record<string, unknown>;
  /** The model class and its heads beyond the config (MethodDef.describe). */
  heads: Record<string, unknown>;
  /** The vocabulary the token ids index: tokenizer, size, SHA-256 of the vocabulary (vocab.txt lines in id order). */
  vocab: { tokenizer: string; size: number; sha256: string };
  /** Answer labels by class index (VQA, GQA). */
  labels?: string[];
}

const read = (p: string) => {
  try {
    return JSON.parse(readFileSync(p, "utf8"));
  } catch (e) {
    throw new Error(`${p}: invalid JSON (${(e as Error).message})`);
  }
};

/** Read what a run directory holds: `finetune.json` (fine-tuning), `recipe.json` (pre-training), else `config.json`. */
export function readRunInfo(dir: string): RunInfo {
  if (!existsSync(dir)) throw new Error(`${dir}: checkpoint directory not found`);
  const ft = join(dir, "finetune.json");
  const pre = join(dir, "recipe.json");
  if (existsSync(ft)) {
    const info = read(ft) as RunInfo;
    if (info.kind !== "finetune" || !info.task || !info.method) throw new Error(`${ft}: expected {kind: "finetune", task, method, model, world}`);
    return info;
  }
  if (existsSync(pre)) {
    const r = read(pre) as { method: string; model: ModelSpec; data: { world?: string; karpathy?: string; sources?: { format?: string; world?: string; answers?: string }[] }; vlmo?: Record<string, unknown> };
    const sources = Array.isArray(r.data?.sources) ? r.data.sources : undefined;
    if (!r.method || !r.model || (!r.data?.world && !sources)) throw new Error(`${pre}: not a vlp recipe (method, model, data.world or data.sources)`);
    const model = getMethod(r.method, `${pre}: method`).modelSpec(r);
    // the model comes from the recipe's model section; the data is only needed for the QA head's answers
    // and as the default world of a zero-shot evaluation (a run on one synth source has one)
    const synth = sources?.length === 1 && sources[0].format === "synth" ? sources[0].world : undefined;
    const world = r.data.world ?? synth;
    const answers = world ? join(world, "vqa/trainval_ans2label.json") : sources?.find((s) => s.format === "lxmert" && s.answers)?.answers;
    return { kind: "pretrain", method: r.method, model, world, karpathy: r.data.karpathy, ...(answers ? { answers } : {}) };
  }
  const cfg = join(dir, "config.json");
  if (existsSync(cfg)) {
    const c = readRunConfig(dir);
    return { kind: c.kind, method: c.method, model: c.model, ...(c.task ? { task: c.task } : {}), ...(c.labels ? { labels: c.labels } : {}) };
  }
  throw new Error(`${dir}: no config.json, finetune.json or recipe.json there (not a vlp run directory)`);
}

export function writeRunInfo(dir: string, info: RunInfo): void {
  writeJsonAtomic(join(dir, "finetune.json"), info);
}

/** The weights of a run: its final `model.safetensors`, else the newest complete checkpoint's. */
export function modelFile(dir: string): string {
  const final = join(dir, "model.safetensors");
  if (existsSync(final)) return resolve(final);
  const ck = latestCheckpoint(dir);
  if (ck) return resolve(join(ck, "model.safetensors"));
  throw new Error(`${dir}: no model.safetensors and no checkpoint (has the run finished a step?)`);
}

// ---- config.json ------------------------------------------------------------------------------

let version: string | undefined;
/** vlpkit's version (package.json, two folders above this file in src/ and in dist/). */
export function vlpkitVersion(): string {
  version ??= (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  return version;
}

let vocabHash: string | undefined;
/**
 * The identity of the vocabulary every method's tokenizer uses (BERT uncased WordPiece): its name,
 * size and the SHA-256 of its vocab.txt (one token a line, in id order). The model's own table size
 * is its config's `vocabSize`.
 */
export function vocabIdentity(): RunConfig["vocab"] {
  vocabHash ??= createHash("sha256").update(loadBertBaseUncasedVocab().join("\n") + "\n").digest("hex");
  return { tokenizer: "bert-base-uncased", size: BERT_UNCASED_VOCAB_SIZE, sha256: vocabHash };
}

/** Writes `dir/config.json` (atomically) for `model`, a model of `method` made from `spec`. */
export function writeRunConfig(dir: string, o: { kind: RunConfig["kind"]; method: string; spec: ModelSpec; model: Module; task?: TaskName; labels?: string[] }): RunConfig {
  const def = getMethod(o.method);
  const d = def.describe(o.model);
  const c: RunConfig = {
    vlpkit: vlpkitVersion(),
    kind: o.kind,
    method: o.method,
    ...(o.task ? { task: o.task } : {}),
    model: o.spec,
    config: d.config,
    heads: d.heads,
    vocab: vocabIdentity(),
    ...(o.labels ? { labels: o.labels } : {}),
  };
  writeJsonAtomic(join(dir, "config.json"), c);
  return c;
}

/** A run's RunConfig: its config.json, or (older runs) what its recipe says, with no `config`. */
export function readRunConfig(dir: string): RunConfig & { legacy?: true } {
  const p = join(dir, "config.json");
  if (existsSync(p)) {
    const c = read(p) as RunConfig;
    if (!c.method || !c.model || !c.config || !c.heads) throw new Error(`${p}: not a vlp run config (method, model, config, heads)`);
    getMethod(c.method, `${p}: method`);
    return c;
  }
  const info = readRunInfo(dir);
  const options = ((info.recipe as { options?: { mode?: string } } | undefined)?.options ?? {});
  const mode = options.mode === "two" ? "two" : "single";
  const head: TaskHead = info.task === "nlvr2" ? { kind: "nlvr2" } : { kind: "qa", answers: info.labels?.length ?? 0 };
  const heads = info.kind === "pretrain" ? { model: "pretraining" } : info.task === "retrieval" ? { model: "retrieval", mode } : { model: "task", head, mode };
  return { vlpkit: "", kind: info.kind, method: info.method, ...(info.task ? { task: info.task } : {}), model: info.model, config: undefined as unknown as Record<string, unknown>, heads, vocab: vocabIdentity(), ...(info.labels ? { labels: info.labels } : {}), legacy: true };
}

// ---- loadRun -----------------------------------------------------------------------------------

export interface LoadRunOptions<M extends Module> {
  /** The model to load into (default: the model the run trained, MethodDef.runModel). */
  build?: (run: RunConfig, def: MethodDef) => M;
  /** Which of the model's tensors come from the run (default: all); the others keep their initialisation. */
  keep?: (name: string) => boolean;
  /** Kept tensors the run may lack (they keep their initialisation and are listed in `missing`). */
  allowMissing?: (name: string) => boolean;
  /** Called with the run's weights (under the model's names) before they are freed. */
  init?: (model: M, weights: Map<string, Tensor>) => void;
}

export interface LoadedRun<M extends Module = Module> {
  model: M;
  run: RunConfig & { legacy?: true };
  def: MethodDef;
  /** The weights file read. */
  file: string;
  /** Kept tensors the run did not have (allowMissing). */
  missing: string[];
  /** Tensors not taken from the run (`keep` false): they start as the model made them. */
  fresh: string[];
}

/**
 * A run's model, from its directory alone: `config.json` rebuilds the model (older runs: their
 * recipe and tensor names), `model.safetensors` (else the newest checkpoint) fills it. `build` loads
 * the run into another model of its method (a task model on a pre-trained backbone), `keep` picks
 * the tensors taken from the run, and every kept tensor must be there unless `allowMissing` says so.
 * Tensors of the run the model does not have (pre-training heads) are left out.
 */
export async function loadRun<M extends Module = Module>(dir: string, o: LoadRunOptions<M> = {}): Promise<LoadedRun<M>> {
  const run = readRunConfig(dir);
  const def = getMethod(run.method, `${dir}: method`);
  const file = modelFile(dir);
  const sd = loadStateDictFile(file);
  const made: Tensor[] = [];
  try {
    const model = o.build ? o.build(run, def) : (def.runModel(run, new Map([...sd].map(([k, t]) => [k, t.shape]))) as M);
    const adapted = def.adaptWeights ? def.adaptWeights(sd, model) : sd;
    for (const [k, t] of adapted) if (sd.get(k) !== t) made.push(t);
    const own = model.stateDict();
    const kept = [...own.keys()].filter((k) => o.keep?.(k) ?? true);
    const absent = kept.filter((k) => !adapted.has(k));
    const bad = absent.filter((k) => !(o.allowMissing?.(k) ?? false));
    if (bad.length) throw new Error(`${file}: missing ${bad.length} tensors of the ${def.title} model (not a run of this model?), e.g. ${bad.slice(0, 5).join(", ")}`);
    model.loadStateDict(new Map(kept.filter((k) => adapted.has(k)).map((k) => [k, adapted.get(k)!])), { strict: false, where: file });
    o.init?.(model, adapted);
    return { model, run, def, file, missing: absent, fresh: [...own.keys()].filter((k) => !kept.includes(k)) };
  } finally {
    for (const t of [...sd.values(), ...made]) t.dispose();
  }
}
