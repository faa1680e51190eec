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
// (rerankWithItm). Ranking metrics and the tie rule: src/tasks/ranking.ts.
import { mkdirSync, writeFileSync } from "node:fs";
import { checkRanges } from "../pretrain/ranges.ts";
import { dirname, join, resolve } from "node:path";
import { tidy, noGrad, cat, manualSeed, type Tensor } from "../engine/index.ts";
import { moduleDevice, placeDevice } from "../engine/placement.ts";
import { toTensors, type BuilderSpec } from "../data/loader.ts";
import { openRegions } from "../data/regions/index.ts";
import { train, type Stage } from "../train/trainer.ts";
import type { SemVLPMode } from "../models/semvlp.ts";
import type { RegionMatcher, TextInputs, RegionInputs } from "../models/region_tasks.ts";
import type { VLMoModel } from "../models/vlmo.ts";
import { itcScores, rerankWithItm } from "../models/vlmo_heads.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import type { Progress, ProgressFactory } from "../train/progress.ts";
import type { EvalArgs, FinetuneArgs, FinetuneRecipe } from "./task.ts";
import { getMethod, loadRun, readRunInfo, writeRunInfo, writeRunConfig, type ModelSpec, type RetrievalModel } from "../methods/index.ts";
import { retrievalMetrics, topK, type RetrievalMetrics } from "./ranking.ts";
import { encodeTexts, regionArrays } from "./data.ts";
import { RETRIEVAL_DATA_MODULE, evalSet, pixelArray, readRetrievalSource, readRetrievalSplit, type EvalSet, type RetrievalBatch, type RetrievalDataArgs, type RetrievalMeta, type RetrievalSource, type RetrievalSplit } from "./retrieval_data.ts";
import { retrievalSource, taskSource } from "./sources.ts";

/** Where a split of a recipe's data is: a source's split, or a world (a synth source: its world and region file) and the split's name. */
function retrievalData(data: FinetuneRecipe["data"], split: string): { source: RetrievalSource } | { world: string; split: RetrievalSplit; regions?: string | string[] } {
  const source = retrievalSource(data, split);
  if (source) return { source };
  const synth = taskSource("retrieval", data).source;
  return { world: synth.world!, split: split as RetrievalSplit, regions: synth.regions };
}

// ---- options -------------------------------------------------------------------------------------

export interface RetrievalOptions {
  /** SemVLP: score from h_CLS in single-stream mode or from o_IMG in two-stream mode. */
  mode: SemVLPMode;
  /** SemVLP: triplet-loss margin on sigmoid scores (UNITER: 0.2). */
  margin: number;
  /** SemVLP: in-batch negatives scored without gradients per positive and side (0 = every other example of the batch). */
  negPool: number;
  /** SemVLP: hardest negatives per positive and side trained on. */
  hardNegatives: number;
  /** Text length (default: 20 for SemVLP / LXMERT-S as in their pre-training, the model's maxTextLen for VLMo). */
  maxTextLen: number | null;
  /** Boxes per image (SemVLP / LXMERT-S). */
  maxBoxes: number;
  /** Pairs per forward when a fusion model scores a split; images per forward for VLMo. */
  evalBatchSize: number;
  /** The split evaluated at the end of fine-tuning (the returned metrics). */
  evalSplit: RetrievalSplit;
  /** Only the split's first N images in that evaluation (0 = all; a fusion model scores every pair, N x 5N forwards). */
  evalLimit: number;
  /** VLMo: re-rank each query's top k with the ITM head in the end-of-training evaluation (0 = off). */
  rerank: number;
}

export const RETRIEVAL_DEFAULTS: RetrievalOptions = { mode: "single", margin: 0.2, negPool: 0, hardNegatives: 1, maxTextLen: null, maxBoxes: 36, evalBatchSize: 500, evalSplit: "val", evalLimit: 0, rerank: 0 };

/** Checks `recipe.options` of a retrieval recipe; unknown keys and bad values are rejected naming the key. */
export function retrievalOptions(raw: Record<string, unknown> | undefined, where = "recipe.options"): RetrievalOptions {
  const o = { ...RETRIEVAL_DEFAULTS } as Record<string, unknown>;
  for (const [k, v] of Object.entries(raw ?? {})) {
    if (!(k in RETRIEVAL_DEFAULTS)) throw new Error(`${where}.${k}: unknown retrieval option (allowed: ${Object.keys(RETRIEVAL_DEFAULTS).join(", ")})`);
    o[k] = v;
  }
  const r = o as unknown as RetrievalOptions;
  if (r.mode !== "single" && r.mode !== "two") throw new Error(`${where}.mode: expected "single" or "two", got ${JSON.stringify(r.mode)}`);
  checkRanges({ ...o, maxTextLen: o.maxTextLen ?? undefined }, where, {
    // scores are sigmoids in [0, 1]: a margin above 1 can never be met
    margin: { min: 0, max: 1 },
    negPool: { int: true, min: 0, max: 1 << 16 },
    hardNegatives: { int: true, min: 1, max: 1 << 16 },
    maxTextLen: { int: true, min: 3, max: 512 },
    maxBoxes: { int: true, min: 1, max: 1024 },
    evalBatchSize: { int: true, min: 1, max: 1 << 20 },
    rerank: { int: true, min: 0, max: 1 << 16 },
    evalLimit: { int: true, min: 0, max: 1 << 30 },
  });
  if (!["train", "val", "test", "test_comp"].includes(r.evalSplit)) throw new Error(`${where}.evalSplit: expected train, val, test or test_comp, got ${JSON.stringify(r.evalSplit)}`);
  if (r.negPool > 0 && r.hardNegatives > r.negPool) throw new Error(`${where}.hardNegatives (${r.hardNegatives}) exceeds negPool (${r.negPool})`);
  return r;
}

// ---- models ----------------------------------------------------------------------------------------

export type { RegionMatcher, TextInputs, RegionInputs, RetrievalModel };

/** The retrieval model of `method`: from a run directory (pre-training or retrieval fine-tuning), or freshly initialised. */
export async function buildRetrievalModel(method: string, spec: ModelSpec, from: string | null, o: RetrievalOptions): Promise<RetrievalModel> {
  const def = getMethod(method);
  if (!from) return def.retrievalModel(spec, o.mode);
  const { model, missing } = await loadRun(from, { build: (run) => def.retrievalModel(run.model, o.mode).model, allowMissing: def.retrievalOptional });
  return def.wrapRetrievalModel(model, missing);
}

// ---- training steps (each method's, in src/methods/) ----------------------------------------------

export { semvlpRankStep, negativePools, hardestOf } from "../methods/semvlp.ts";
export { mspFourWayStep } from "../methods/msp.ts";
export { vlmoItcStep } from "../methods/vlmo.ts";

// ---- evaluation -------------------------------------------------------------------------------------

export interface ScoreResult {
  /** [images x captions] */
  i2t: Float32Array;
  /** [captions x images], when it differs from i2t transposed (ITM re-ranking). */
  t2i?: Float32Array;
  seconds: number;
}

function bar(total: number, label: string, o: { quiet?: boolean; progress?: ProgressFactory }): Progress | null {
  return o.quiet ? null : (o.progress?.(total, label) ?? null);
}

/** Scores every (image, caption) pair of a set with a fusion model; blocks of images against chunks of captions. */
export async function scoreAllPairs(m: RegionMatcher, set: EvalSet, o: { regions: string | string[]; maxTextLen: number; maxBoxes: number; batchSize: number; quiet?: boolean; progress?: ProgressFactory }): Promise<ScoreResult> {
  const t0 = performance.now();
  const Ni = set.images.length;
  const Nt = set.captions.length;
  const out = new Float32Array(Ni * Nt);
  const src = await openRegions(o.regions);
  const tok = BertTokenizer.load();
  const device = moduleDevice(m);
  const text = toTensors({ arrays: { ...encodeTexts(tok, set.captions.map((c) => c.text), o.maxTextLen) }, meta: {} }, device);
  for (const x of Object.values(text)) x.keep();
  const all: TextInputs = { ids: text.input_ids, mask: text.attention_mask, wpos: text.word_position_ids };
  const perBlock = Math.max(1, Math.floor(o.batchSize / Nt));
  const chunk = Math.min(Nt, o.batchSize);
  const pb = bar(Ni * Nt, "scoring pairs", o);
  let scored = 0;
  const was = m.training;
  m.eval();
  try {
    for (let i0 = 0; i0 < Ni; i0 += perBlock) {
      const ids = set.images.slice(i0, i0 + perBlock).map((im) => im.id);
      const nb = ids.length;
      tidy(() => noGrad(() => {
        const reg = toTensors({ arrays: { ...regionArrays(src, ids, o.maxBoxes) }, meta: {} }, device);
        for (let c0 = 0; c0 < Nt; c0 += chunk) {
          tidy(() => {
            const c = Math.min(chunk, Nt - c0);
            const t: TextInputs = { ids: all.ids.narrow(0, c0, c).repeat(nb, 1), mask: all.mask.narrow(0, c0, c).repeat(nb, 1), wpos: all.wpos.narrow(0, c0, c).repeat(nb, 1) };
            const r: RegionInputs = { feats: reg.feats.repeatInterleave(c, 0), boxes: reg.boxes.repeatInterleave(c, 0), valid: reg.region_valid.repeatInterleave(c, 0) };
            const s = m.score(t, r).toFloat32Array();
            for (let b = 0; b < nb; b++) out.set(s.subarray(b * c, (b + 1) * c), (i0 + b) * Nt + c0);
          });
          pb?.update((scored += nb * Math.min(chunk, Nt - c0)));
        }
      }));
      // let the progress bar and other callbacks run between blocks
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    m.train(was);
    pb?.finish();
    src.close();
    for (const x of Object.values(text)) x.dispose();
  }
  return { i2t: out, seconds: (performance.now() - t0) / 1000 };
}

/** VLMo as a dual encoder: every image and caption embedded once, one matrix product; optional ITM re-ranking of the top k. */
export async function scoreDual(model: VLMoModel, set: EvalSet, o: { world: string; images?: string; maxTextLen: number; batchSize: number; rerank: number; quiet?: boolean; progress?: ProgressFactory }): Promise<ScoreResult> {
  const t0 = performance.now();
  const S = model.config.imageSize;
  const Ni = set.images.length;
  const Nt = set.captions.length;
  const pb = bar(Ni + Nt, "embedding", o);
  let embedded = 0;
  const device = moduleDevice(model);
  const was = model.training;
  model.eval();
  const kept: Tensor[] = [];
  try {
    const imgEmb: Tensor[] = [];
    const pixels: Tensor[] = [];
    const bs = Math.max(1, Math.min(o.batchSize, 256));
    for (let i0 = 0; i0 < Ni; i0 += bs) {
      const files = set.images.slice(i0, i0 + bs).map((im) => im.file);
      const host = await pixelArray(o.images ?? join(o.world, "images"), files, S);
      tidy(() => noGrad(() => {
        const px = toTensors({ arrays: { px: host }, meta: {} }, device).px;
        imgEmb.push(model.inferImage(px, { vlBranch: false }).itc!.keep());
        if (o.rerank > 0) pixels.push(px.keep());
      }));
      kept.push(imgEmb.at(-1)!, ...(o.rerank > 0 ? [pixels.at(-1)!] : []));
      pb?.update((embedded += files.length));
    }
    const tok = BertTokenizer.load();
    const text = toTensors({ arrays: { ...encodeTexts(tok, set.captions.map((c) => c.text), o.maxTextLen) }, meta: {} }, device);
    for (const x of Object.values(text)) kept.push(x.keep());
    const txtEmb: Tensor[] = [];
    for (let c0 = 0; c0 < Nt; c0 += bs) {
      const c = Math.min(bs, Nt - c0);
      tidy(() => noGrad(() => {
        txtEmb.push(model.inferText(text.input_ids.narrow(0, c0, c), text.attention_mask.narrow(0, c0, c), { vlBranch: false }).itc!.keep());
      }));
      kept.push(txtEmb.at(-1)!);
      pb?.update((embedded += c));
    }
    pb?.finish();
    return tidy(() => noGrad(() => {
      const scores = itcScores(cat(imgEmb), cat(txtEmb));
      if (o.rerank <= 0) return { i2t: scores.toFloat32Array(), seconds: (performance.now() - t0) / 1000 };
      const rr = rerankWithItm(model, scores, cat(pixels), text.input_ids, text.attention_mask, o.rerank);
      return { i2t: rr.i2t.toFloat32Array(), t2i: rr.t2i.toFloat32Array(), seconds: (performance.now() - t0) / 1000 };
    }));
  } finally {
    pb?.finish();
    model.train(was);
    for (const t of kept) t.dispose();
  }
}

export interface EvaluateModelOptions {
  /** A synthetic world (or `source`). */
  world?: string;
  split: string;
  /** A split of a data source (instead of the world's `split`). */
  source?: RetrievalSource;
  regions?: string | string[];
  limit?: number;
  batchSize: number;
  rerank: number;
  maxTextLen: number;
  maxBoxes: number;
  dump?: string;
  quiet?: boolean;
  progress?: ProgressFactory;
  /** Written into the dump. */
  checkpoint?: string;
}

export type RetrievalResult = RetrievalMetrics & { images: number; captions: number; score_seconds: number };

/** R@K, median and mean rank of a model on a split of a world (and the rankings dump). */
export async function evaluateRetrievalModel(rm: RetrievalModel, o: EvaluateModelOptions): Promise<RetrievalResult> {
  const set = evalSet(o.source ? readRetrievalSource(o.source) : readRetrievalSplit(o.world!, o.split), o.limit);
  if (set.images.length < 2) throw new Error(`retrieval ${o.split}: ${set.images.length} image(s); ranking needs at least 2`);
  let sc: ScoreResult;
  if (rm.kind === "fusion") {
    if (o.rerank > 0) throw new Error(`--rerank applies to dual encoders (VLMo); a ${rm.method} model already scores every pair with its ITM head`);
    const regions = o.regions ?? o.source?.regions ?? (o.source ? undefined : join(o.world!, "features", "obj36.tsv"));
    if (!regions) throw new Error(`${o.source!.json}: a ${rm.method} model needs region features (the source's regions key)`);
    sc = await scoreAllPairs(rm.model, set, { regions, maxTextLen: o.maxTextLen, maxBoxes: o.maxBoxes, batchSize: o.batchSize, quiet: o.quiet, progress: o.progress });
  } else {
    if (o.rerank > 0 && !rm.hasItm) throw new Error("--rerank: this VLMo model has no ITM head (itm_score)");
    sc = await scoreDual(rm.model, set, { world: o.world ?? "", images: o.source?.images, maxTextLen: o.maxTextLen, batchSize: o.batchSize, rerank: o.rerank, quiet: o.quiet, progress: o.progress });
  }
  const m = retrievalMetrics(sc.i2t, set.captionImage, set.images.length, { t2i: sc.t2i });
  const { irRanks, trRanks, ...metrics } = m;
  const result: RetrievalResult = { ...metrics, images: set.images.length, captions: set.captions.length, score_seconds: sc.seconds };
  if (o.dump) writeDump(o.dump, set, sc, irRanks, trRanks, result, o);
  return result;
}

/** Rankings: per caption its image's rank and the top-10 images; per image its rank and the top-10 captions. */
function writeDump(path: string, set: EvalSet, sc: ScoreResult, ir: ArrayLike<number>, tr: ArrayLike<number>, metrics: RetrievalResult, o: EvaluateModelOptions): void {
  const Ni = set.images.length;
  const Nt = set.captions.length;
  const t2i = sc.t2i ?? (() => {
    const t = new Float32Array(Ni * Nt);
    for (let i = 0; i < Ni; i++) for (let c = 0; c < Nt; c++) t[c * Ni + i] = sc.i2t[i * Nt + c];
    return t;
  })();
  const dump = {
    checkpoint: o.checkpoint ?? null,
    world: o.world ?? null,
    source: o.source?.json ?? null,
    split: o.split,
    // ranks are expected ranks: tied candidates in a uniformly random order (src/tasks/ranking.ts)
    tie_rule: "average",
    metrics,
    captions: set.captions.map((c, t) => ({ caption_id: c.id, text: c.text, image_id: set.images[c.image].id, rank: ir[t], top10: topK(t2i, Ni, t, 10).map((i) => set.images[i].id) })),
    images: set.images.map((im, i) => ({ image_id: im.id, caption_ids: im.captions.map((c) => c.id), rank: tr[i], top10: topK(sc.i2t, Nt, i, 10).map((t) => set.captions[t].id) })),
  };
  mkdirSync(dirname(resolve(path)), { recursive: true });
  writeFileSync(path, JSON.stringify(dump, null, 1));
}

// ---- the task contract ---------------------------------------------------------------------------------

/** Images of a split of a recipe's data (0 when it has none). */
function splitSize(data: FinetuneRecipe["data"], split: string): number {
  try {
    const d = retrievalData(data, split);
    return "source" in d ? readRetrievalSource(d.source).length : readRetrievalSplit(d.world, split).length;
  } catch {
    return 0;
  }
}

function textLenFor(rm: RetrievalModel, o: RetrievalOptions): number {
  return o.maxTextLen ?? (rm.kind === "dual" ? rm.model.config.maxTextLen : 20);
}

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
