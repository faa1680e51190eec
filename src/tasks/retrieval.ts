// Image-text retrieval (Flickr30K-style: IR = caption -> image, TR = image -> captions): fine-tuning
// by each paper's recipe, evaluation with R@1/5/10, median and mean rank, and zero-shot retrieval
// straight from a pre-training run.
//
// Fine-tuning (one trainer stage, src/train/trainer.ts, over the world's Karpathy train split,
// one example per caption):
//   SemVLP   UNITER-style ranking: the fused score of a pair is the ITM head's log-odds
//            (logit[1] - logit[0] of `cls.seq_relationship` on the pooled h_CLS in single-stream
//            mode or o_IMG in two-stream mode, options.mode). Hard negatives: for each positive,
//            a pool of in-batch negatives (other images for its caption, other captions for its
//            image; options.negPool, default the whole batch) is scored WITHOUT gradients with
//            dropout off, and the options.hardNegatives highest-scoring of each side are trained on
//            with the triplet (hinge) loss max(0, margin + sigma(s_neg) - sigma(s_pos)), margin 0.2.
//   LXMERT-S (MSP) ViLBERT-style: each example gives 4 pairs (caption, image), (caption, random
//            image), (caption of a hard-negative image from hardneg/hard_negative.json, image),
//            (random caption, image); BCE on the ITM log-odds with labels 1, 0, 0, 0 (equal to
//            the 2-class cross-entropy of the ITM head).
//   VLMo     dual encoder: ITC (computeItc) between the image-only and text-only [CLS] projections;
//            a batch holding two captions of one image keeps only the first (no false negatives).
// Models: SemVLP / LXMERT-S keep only what retrieval needs from the pre-training model, under its
// names (`bert.*` and `cls.seq_relationship.*`), so a pre-training run loads into it and the
// fine-tuned `model.safetensors` has the same layout. VLMo keeps its ITC projections and ITM head.
//
// Evaluation: fusion models score EVERY (image, caption) pair of the split in batches (an image
// block's regions repeated against caption chunks); VLMo embeds all images and all captions once
// and takes one matrix product, optionally re-ranking each query's top k with the ITM head
// (rerankWithItm). Ranking metrics and the tie rule: src/tasks/retrieval/ranking.ts.
//
// The parts, in src/tasks/retrieval/: options.ts (recipe.options), splits.ts (where a split's data
// is), data.ts (the fine-tuning batch builder and the evaluation sets), model.ts (the method's
// retrieval model), score.ts (scoring every pair), ranking.ts (R@K and ranks), evaluate.ts,
// dump.ts. Each method's loss is its `retrievalStep` in src/methods/ (re-exported below).
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { manualSeed } from "../engine/index.ts";
import { placeDevice } from "../engine/placement.ts";
import type { BuilderSpec } from "../data/loader.ts";
import { train, type Stage } from "../train/trainer.ts";
import type { EvalArgs, FinetuneArgs, FinetuneRecipe } from "./task.ts";
import { getMethod, readRunInfo, writeRunInfo, writeRunConfig, type ModelSpec } from "../methods/index.ts";
import { RETRIEVAL_DATA_MODULE, type RetrievalBatch, type RetrievalDataArgs, type RetrievalMeta, type RetrievalSplit } from "./retrieval/data.ts";
import { retrievalOptions, textLenFor } from "./retrieval/options.ts";
import { retrievalData, splitSize } from "./retrieval/splits.ts";
import { buildRetrievalModel } from "./retrieval/model.ts";
import { evaluateRetrievalModel } from "./retrieval/evaluate.ts";

export { type RetrievalOptions, RETRIEVAL_DEFAULTS, RETRIEVAL_OPTIONS, RETRIEVAL_OPTIONS as options, retrievalOptions } from "./retrieval/options.ts";
export { buildRetrievalModel } from "./retrieval/model.ts";
export type { RegionMatcher, TextInputs, RegionInputs } from "../models/region_tasks.ts";
export type { RetrievalModel } from "../methods/index.ts";
export { type ScoreResult, scoreAllPairs, scoreDual } from "./retrieval/score.ts";
export { type EvaluateModelOptions, type RetrievalResult, evaluateRetrievalModel } from "./retrieval/evaluate.ts";

// ---- training steps (each method's loss, in src/methods/) ------------------------------------------

export { semvlpRankStep, negativePools, hardestOf } from "../methods/semvlp.ts";
export { mspFourWayStep } from "../methods/msp.ts";
export { vlmoItcStep } from "../methods/vlmo.ts";

// ---- the task contract ---------------------------------------------------------------------------------

const log = (quiet: boolean | undefined, s: string) => {
  if (!quiet) console.log(s);
};

/** Fine-tunes for retrieval by the method's recipe; returns the metrics on options.evalSplit (default val) plus the final losses. */
export async function finetune(a: FinetuneArgs): Promise<Record<string, number>> {
  const r: FinetuneRecipe = a.recipe;
  if (r.task !== "retrieval") throw new Error(`retrieval.finetune: a ${r.task} recipe`);
  const o = retrievalOptions(r.options);
  let method: string;
  let spec: ModelSpec;
  if (a.from) {
    const info = readRunInfo(a.from);
    if (info.kind === "finetune" && info.task !== "retrieval") throw new Error(`${a.from}: a ${info.task} fine-tuning run; fine-tune retrieval from a pre-training run (or a retrieval run)`);
    method = info.method;
    spec = info.model;
  } else {
    if (!r.method || !r.model) throw new Error("retrieval from scratch: the recipe needs `method` and `model`");
    method = r.method;
    spec = r.model;
  }
  manualSeed(r.train.seed);
  const def = getMethod(method, "recipe.method");
  const rm = await buildRetrievalModel(method, spec, a.from, o);
  const model = rm.model;
  mkdirSync(a.out, { recursive: true });
  writeRunInfo(a.out, { kind: "finetune", task: "retrieval", method, model: spec, world: r.data.world, from: a.from ? resolve(a.from) : null, recipe: r });
  writeRunConfig(a.out, { kind: "finetune", task: "retrieval", method, spec, model });
  const L = textLenFor(rm, o);
  const dataArgs = (split: RetrievalSplit): BuilderSpec<RetrievalBatch, RetrievalMeta> => ({
    module: RETRIEVAL_DATA_MODULE,
    args: {
      ...retrievalData(r.data, split),
      kind: rm.kind === "dual" ? "pixels" : "regions",
      maxTextLen: L,
      seed: r.train.seed,
      maxBoxes: o.maxBoxes,
      imageSize: rm.kind === "dual" ? rm.model.config.imageSize : undefined,
      fourWay: def.retrievalData?.fourWay,
    } satisfies RetrievalDataArgs,
  });
  const step = def.retrievalStep(rm, o);
  const stage: Stage = {
    name: "retrieval",
    // the held-out loss needs a val split with at least two images (a negative image for each positive)
    sources: [{ name: "retrieval", batchSize: r.train.batchSize, data: dataArgs("train"), evalData: splitSize(r.data, "val") >= 2 ? dataArgs("val") : undefined, step }],
    lr: r.train.lr,
    warmup: r.train.warmup,
    epochs: r.train.epochs,
    steps: r.train.steps,
    weightDecay: r.train.weightDecay,
    betas: def.betas,
  };
  log(a.quiet, `vlp finetune retrieval: ${method} (${model.numParameters().toLocaleString()} parameters) ${a.from ? `from ${a.from}` : "from scratch"}, ${def.retrievalSummary(o)} -> ${a.out}`);
  const summary = await train(model, [stage], {
    runDir: a.out,
    seed: r.train.seed,
    clip: r.train.clip,
    checkpointEvery: r.train.checkpointEvery,
    keepCheckpoints: r.train.keepCheckpoints,
    evalEvery: r.train.evalEvery,
    workers: r.train.workers,
    precision: r.train.precision,
    device: r.train.device,
    resume: a.resume,
    quiet: a.quiet, progress: a.progress,
  });
  const metrics = await evaluateRetrievalModel(rm, {
    ...retrievalData(r.data, o.evalSplit), split: o.evalSplit, batchSize: o.evalBatchSize, rerank: rm.kind === "dual" ? o.rerank : 0,
    maxTextLen: L, maxBoxes: o.maxBoxes, quiet: a.quiet, progress: a.progress, limit: o.evalLimit || undefined,
  });
  model.dispose();
  const last = summary.retrieval ?? {};
  const extra: Record<string, number> = {};
  if (last.loss !== undefined) extra.train_loss = last.loss;
  if (last.val_loss !== undefined) extra.val_loss = last.val_loss;
  return { ...metrics, ...extra };
}

/**
 * Evaluates a retrieval fine-tuning run, or a pre-training run zero-shot (VLMo: ITC similarities;
 * SemVLP / LXMERT-S: the pre-trained ITM head on every pair).
 */
export async function evaluate(a: EvalArgs): Promise<Record<string, number>> {
  const info = readRunInfo(a.checkpoint);
  if (info.kind === "finetune" && info.task !== "retrieval") throw new Error(`${a.checkpoint}: a ${info.task} fine-tuning run, not a retrieval one`);
  const recipe = info.kind === "finetune" ? (info.recipe as FinetuneRecipe | undefined) : undefined;
  const o = retrievalOptions(recipe?.options, `${a.checkpoint}/finetune.json recipe.options`);
  // a run's recipe names its data (a world or sources); --world evaluates on another world
  const data = a.world ? { world: resolve(a.world) } : recipe?.data ?? (info.world ? { world: info.world } : undefined);
  if (!data) throw new Error(`${a.checkpoint}: a run pre-trained on data.sources; give --world, or evaluate a retrieval fine-tuning run`);
  const where = retrievalData(data, a.split);
  const world = "source" in where ? where.source.json : where.world;
  const rm = await buildRetrievalModel(info.method, info.model, a.checkpoint, o);
  rm.model.to(placeDevice(a.device ?? "cpu"));
  try {
    // on stderr: `vlp eval` prints the metrics as JSON on stdout
    if (!a.quiet) console.error(`vlp eval retrieval: ${info.method} ${info.kind === "pretrain" ? "pre-training run (zero-shot)" : "fine-tuned run"} ${a.checkpoint}, ${a.split} split of ${world}${a.rerank ? `, ITM re-ranking of the top ${a.rerank}` : ""}`);
    const res = await evaluateRetrievalModel(rm, {
      ...where, split: a.split, limit: a.limit, batchSize: a.batchSize ?? o.evalBatchSize, rerank: a.rerank ?? 0,
      maxTextLen: textLenFor(rm, o), maxBoxes: o.maxBoxes, dump: a.dump, quiet: a.quiet, progress: a.progress, checkpoint: resolve(a.checkpoint),
    });
    return { ...res, zero_shot: info.kind === "pretrain" ? 1 : 0 };
  } finally {
    rm.model.dispose();
  }
}
