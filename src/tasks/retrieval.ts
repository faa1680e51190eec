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
import { Module, tidy, noGrad, cat, tensor, ones, zeros, manualSeed, F, type Tensor, type Device } from "../engine/index.ts";
import { moduleDevice, placeDevice, toDevice } from "../engine/placement.ts";
import { loadStateDictFile } from "../engine/checkpoint.ts";
import { toTensors, type BuilderSpec, type HostBatch } from "../data/loader.ts";
import { openRegions } from "../data/regionstore.ts";
import { train, type Source, type Stage, type StepContext } from "../train/trainer.ts";
import { computeItc } from "../objectives/losses.ts";
import { SemVLPModel, semvlpConfig, type SemVLPMode, type SemVLPPreset } from "../models/semvlp.ts";
import { LxmertModel, lxmertConfig, type LxmertConfig, type LxmertPreset } from "../models/lxmert.ts";
import { ItmHead } from "../models/heads.ts";
import { initBertWeights } from "../models/bert.ts";
import { VLMoModel, vlmoConfig, type VLMoConfig, type VLMoHeadsConfig, type VLMoPreset } from "../models/vlmo.ts";
import { itcScores, rerankWithItm } from "../models/vlmo_heads.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import type { Progress, ProgressFactory } from "../train/progress.ts";
import type { EvalArgs, FinetuneArgs, FinetuneRecipe } from "./task.ts";
import { readRunInfo, writeRunInfo, modelFile, loadVLMoRun, type Method, type RunInfo } from "./checkpoint.ts";
import { retrievalMetrics, topK, type RetrievalMetrics } from "./ranking.ts";
import { encodeTexts, regionArrays } from "./data.ts";
import { RETRIEVAL_DATA_MODULE, evalSet, pixelArray, readRetrievalSource, readRetrievalSplit, type EvalSet, type RetrievalDataArgs, type RetrievalSource, type RetrievalSplit } from "./retrieval_data.ts";
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

export interface TextInputs {
  ids: Tensor;
  mask: Tensor;
  /** LXMERT-S word-level position ids. */
  wpos: Tensor;
}
export interface RegionInputs {
  feats: Tensor;
  boxes: Tensor;
  valid: Tensor;
}

/**
 * A region-based fusion model for retrieval: the SemVLP or LXMERT-S backbone (`bert`) and the
 * pre-trained ITM classifier (`cls.seq_relationship`). Its score for a pair is the ITM log-odds.
 */
export class RegionMatcher extends Module {
  readonly bert: SemVLPModel | LxmertModel;
  readonly cls: ItmHead;
  constructor(readonly method: "semvlp" | "msp", spec: RunInfo["model"], readonly mode: SemVLPMode = "single") {
    super();
    const overrides = (spec.overrides ?? {}) as Record<string, unknown>;
    if (method === "semvlp") {
      const c = semvlpConfig(spec.preset as SemVLPPreset, { ...overrides, taskQa: false, taskObjPredict: false });
      this.bert = this.module("bert", new SemVLPModel(c));
      this.cls = this.module("cls", new ItmHead(c.hiddenSize));
      initBertWeights(this, c.initializerRange);
    } else {
      const c = lxmertConfig(spec.preset as LxmertPreset, { taskQa: false, topicHead: true, ...overrides } as Partial<LxmertConfig>);
      this.bert = this.module("bert", new LxmertModel(c));
      this.cls = this.module("cls", new ItmHead(c.hiddenSize));
      initBertWeights(this, c.initializerRange);
    }
  }

  /** ITM logits [P, 2] of P (text, regions) pairs. */
  logits(t: TextInputs, r: RegionInputs): Tensor {
    const base = { inputIds: t.ids, attentionMask: t.mask, visualFeats: r.feats, visualPos: r.boxes, visualAttentionMask: r.valid };
    const out = this.bert instanceof SemVLPModel ? this.bert.forward(base, this.mode) : this.bert.forward({ ...base, positionIds: t.wpos });
    return this.cls.forward(out.itmInput);
  }

  /** Match score [P]: logit[1] - logit[0] (ranks like P(match)). */
  score(t: TextInputs, r: RegionInputs): Tensor {
    const l = this.logits(t, r);
    return l.select(1, 1).sub(l.select(1, 0));
  }
}

const RETRIEVAL_HEADS: VLMoHeadsConfig = { mlm: false, itm: true, itc: true, itcVl: false, vqaLabels: 0, nlvr2: false };

export type RetrievalModel = { kind: "fusion"; method: "semvlp" | "msp"; model: RegionMatcher } | { kind: "dual"; method: "vlmo"; model: VLMoModel; hasItm: boolean };

/** The retrieval model of `method`: from a run directory (pre-training or retrieval fine-tuning), or freshly initialised. */
export async function buildRetrievalModel(method: Method, spec: RunInfo["model"], from: string | null, o: RetrievalOptions): Promise<RetrievalModel> {
  if (method === "vlmo") {
    if (!from) {
      const overrides = (spec.overrides ?? {}) as Partial<VLMoConfig>;
      return { kind: "dual", method, model: new VLMoModel(vlmoConfig(spec.preset as VLMoPreset, { ...overrides, heads: RETRIEVAL_HEADS })), hasItm: false };
    }
    // an ITM head is only needed for re-ranking: a run without one (an ITC-only ablation) still fine-tunes
    const { model, missing } = await loadVLMoRun(from, { heads: RETRIEVAL_HEADS, allowMissing: (n) => n.startsWith("itm_score.") });
    return { kind: "dual", method, model, hasItm: !missing.some((n) => n.startsWith("itm_score.")) };
  }
  const model = new RegionMatcher(method, spec, o.mode);
  if (from) {
    const file = modelFile(from);
    const sd = loadStateDictFile(file);
    try {
      const own = model.stateDict();
      const missing = [...own.keys()].filter((k) => !sd.has(k));
      if (missing.length) throw new Error(`${file}: missing ${missing.length} tensors of the ${method} retrieval model, e.g. ${missing.slice(0, 5).join(", ")}`);
      model.loadStateDict(new Map([...sd].filter(([k]) => own.has(k))), { strict: true, where: file });
    } finally {
      for (const t of sd.values()) t.dispose();
    }
  }
  return { kind: "fusion", method, model };
}

// ---- training steps ----------------------------------------------------------------------------------

const textOf = (b: Record<string, Tensor>, p = ""): TextInputs => ({ ids: b[`${p}input_ids`], mask: b[`${p}attention_mask`], wpos: b[`${p}word_position_ids`] });
const regionsOf = (b: Record<string, Tensor>, p = ""): RegionInputs => ({ feats: b[`${p}feats`], boxes: b[`${p}boxes`], valid: b[`${p}region_valid`] });
const pickText = (t: TextInputs, idx: Tensor): TextInputs => ({ ids: t.ids.indexSelect(0, idx), mask: t.mask.indexSelect(0, idx), wpos: t.wpos.indexSelect(0, idx) });
const pickRegions = (r: RegionInputs, idx: Tensor): RegionInputs => ({ feats: r.feats.indexSelect(0, idx), boxes: r.boxes.indexSelect(0, idx), valid: r.valid.indexSelect(0, idx) });
const catText = (ts: TextInputs[]): TextInputs => ({ ids: cat(ts.map((t) => t.ids)), mask: cat(ts.map((t) => t.mask)), wpos: cat(ts.map((t) => t.wpos)) });
const catRegions = (rs: RegionInputs[]): RegionInputs => ({ feats: cat(rs.map((r) => r.feats)), boxes: cat(rs.map((r) => r.boxes)), valid: cat(rs.map((r) => r.valid)) });
/** Row indices as an int64 tensor on `device` (that of the tensors they index). */
const idxTensor = (xs: number[], device: Device) => toDevice(tensor(BigInt64Array.from(xs, BigInt), { shape: [xs.length], dtype: "int64" }), device);

/**
 * For each example k of a batch, up to `pool` other examples showing another image (a random
 * subset, drawn with `rng`); `pool` 0 = all of them.
 */
export function negativePools(imgIds: string[], pool: number, rng: { int(n: number): number }): number[][] {
  return imgIds.map((id, k) => {
    const c = imgIds.map((_, j) => j).filter((j) => j !== k && imgIds[j] !== id);
    if (pool <= 0 || c.length <= pool) return c;
    for (let i = 0; i < pool; i++) {
      const j = i + rng.int(c.length - i);
      [c[i], c[j]] = [c[j], c[i]];
    }
    return c.slice(0, pool);
  });
}

/** The `h` highest-scoring candidates of each pool (scores laid out pool after pool, in `pools` order). */
export function hardestOf(pools: number[][], scores: ArrayLike<number>, h: number): number[][] {
  let off = 0;
  return pools.map((p) => {
    const s = p.map((j, i) => [scores[off + i], j] as const);
    off += p.length;
    return s.sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, h).map(([, j]) => j);
  });
}

function scoreNoGrad(m: RegionMatcher, t: TextInputs, r: RegionInputs, textIdx: number[], regIdx: number[], chunk: number): Float32Array {
  const out = new Float32Array(textIdx.length);
  const was = m.training;
  m.eval();
  try {
    for (let s = 0; s < textIdx.length; s += chunk) {
      tidy(() => noGrad(() => {
        const ti = idxTensor(textIdx.slice(s, s + chunk), t.ids.device);
        const ri = idxTensor(regIdx.slice(s, s + chunk), r.feats.device);
        out.set(m.score(pickText(t, ti), pickRegions(r, ri)).toFloat32Array(), s);
      }));
    }
  } finally {
    m.train(was);
  }
  return out;
}

/** SemVLP (UNITER-style): triplet loss on sigmoid match scores, against the hardest in-batch negatives of each side. */
export function semvlpRankStep(m: RegionMatcher, o: RetrievalOptions, batch: Record<string, Tensor>, meta: HostBatch["meta"], ctx: Pick<StepContext, "rng">) {
  const imgIds = meta.imgIds as string[];
  const B = imgIds.length;
  const t = textOf(batch);
  const r = regionsOf(batch);
  // pools: negative images for each caption (image side), negative captions for each image (text side)
  const poolI = negativePools(imgIds, o.negPool, ctx.rng);
  const poolT = negativePools(imgIds, o.negPool, ctx.rng);
  const rows = [...Array(B).keys()].filter((k) => poolI[k].length >= 1);
  if (rows.length === 0) throw new Error("SemVLP retrieval: every example of the batch shows the same image; no negatives");
  const h = Math.min(o.hardNegatives, ...rows.map((k) => poolI[k].length));
  const textIdx: number[] = [], regIdx: number[] = [];
  for (const k of rows) {
    for (const j of poolI[k]) {
      textIdx.push(k);
      regIdx.push(j);
    }
  }
  for (const k of rows) {
    for (const j of poolT[k]) {
      textIdx.push(j);
      regIdx.push(k);
    }
  }
  const pool = scoreNoGrad(m, t, r, textIdx, regIdx, o.evalBatchSize);
  const nI = rows.reduce((a, k) => a + poolI[k].length, 0);
  const hardI = hardestOf(rows.map((k) => poolI[k]), pool.subarray(0, nI), h);
  const hardT = hardestOf(rows.map((k) => poolT[k]), pool.subarray(nI), h);
  // one pass with gradients: positives, (caption, hard image), (hard caption, image)
  const n = rows.length;
  const ti = [...rows, ...rows.flatMap((k) => Array(h).fill(k)), ...hardT.flat()];
  const ri = [...rows, ...hardI.flat(), ...rows.flatMap((k) => Array(h).fill(k))];
  const s = m.score(pickText(t, idxTensor(ti, t.ids.device)), pickRegions(r, idxTensor(ri, r.feats.device))).sigmoid();
  const pos = s.narrow(0, 0, n).unsqueeze(1);
  const negI = s.narrow(0, n, n * h).reshape(n, h);
  const negT = s.narrow(0, n + n * h, n * h).reshape(n, h);
  const hinge = (neg: Tensor) => neg.sub(pos).add(o.margin).clampMin(0);
  const loss = cat([hinge(negI), hinge(negT)], 1).mean();
  const metrics = noGrad(() => ({
    rank_loss: loss.item(),
    rank_acc: pos.gt(negI.amax(1, true)).logicalAnd(pos.gt(negT.amax(1, true))).float().mean().item(),
    pos_score: pos.mean().item(),
    hard_neg_score: cat([negI, negT], 1).mean().item(),
  }));
  return { loss, metrics };
}

/** LXMERT-S (ViLBERT-style): 4 pairs per example, BCE on the ITM log-odds with labels 1, 0, 0, 0. */
export function mspFourWayStep(m: RegionMatcher, batch: Record<string, Tensor>) {
  const t = textOf(batch);
  const r = regionsOf(batch);
  const B = t.ids.size(0);
  const s = m.score(catText([t, t, textOf(batch, "hard_"), textOf(batch, "rand_")]), catRegions([r, regionsOf(batch, "neg_"), r, r]));
  const labels = cat([ones([B], { device: s.device }), zeros([3 * B], { device: s.device })]);
  const loss = F.binaryCrossEntropyWithLogits(s, labels);
  const metrics = noGrad(() => {
    const correct = s.gt(0).float().eq(labels).float();
    return { itm_loss: loss.item(), itm_acc: correct.mean().item(), pos_acc: correct.narrow(0, 0, B).mean().item() };
  });
  return { loss, metrics };
}

/** VLMo: ITC between image-only and text-only embeddings; repeated images in a batch keep their first caption only. */
export function vlmoItcStep(model: VLMoModel, batch: Record<string, Tensor>, meta: HostBatch["meta"]) {
  const imgIds = meta.imgIds as string[];
  const first = imgIds.map((id, k) => (imgIds.indexOf(id) === k ? k : -1)).filter((k) => k >= 0);
  let ids = batch.input_ids, mask = batch.attention_mask, pixels = batch.pixels;
  if (first.length < imgIds.length) {
    const idx = idxTensor(first, ids.device);
    ids = ids.indexSelect(0, idx);
    mask = mask.indexSelect(0, idx);
    pixels = pixels.indexSelect(0, idx);
  }
  const txt = model.inferText(ids, mask, { vlBranch: false });
  const img = model.inferImage(pixels, { vlBranch: false });
  const itc = computeItc(img.itc!, txt.itc!, model.logit_scale!);
  return { loss: itc.loss, metrics: { ...itc.metrics, itc_batch: first.length } };
}

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
  let method: Method;
  let spec: RunInfo["model"];
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
  const rm = await buildRetrievalModel(method, spec, a.from, o);
  const model = rm.model;
  mkdirSync(a.out, { recursive: true });
  writeRunInfo(a.out, { kind: "finetune", task: "retrieval", method, model: spec, world: r.data.world, from: a.from ? resolve(a.from) : null, recipe: r });
  const L = textLenFor(rm, o);
  const dataArgs = (split: RetrievalSplit): BuilderSpec => ({
    module: RETRIEVAL_DATA_MODULE,
    args: {
      ...retrievalData(r.data, split),
      kind: rm.kind === "dual" ? "pixels" : "regions",
      maxTextLen: L,
      seed: r.train.seed,
      maxBoxes: o.maxBoxes,
      imageSize: rm.kind === "dual" ? rm.model.config.imageSize : undefined,
      fourWay: method === "msp" ? {} : undefined,
    } satisfies RetrievalDataArgs,
  });
  const step: Source["step"] = (batch, meta, ctx) => {
    if (rm.kind === "dual") return vlmoItcStep(rm.model, batch, meta);
    return rm.method === "semvlp" ? semvlpRankStep(rm.model, o, batch, meta, ctx) : mspFourWayStep(rm.model, batch);
  };
  const stage: Stage = {
    name: "retrieval",
    // the held-out loss needs a val split with at least two images (a negative image for each positive)
    sources: [{ name: "retrieval", batchSize: r.train.batchSize, data: dataArgs("train"), evalData: splitSize(r.data, "val") >= 2 ? dataArgs("val") : undefined, step }],
    lr: r.train.lr,
    warmup: r.train.warmup,
    epochs: r.train.epochs,
    steps: r.train.steps,
    weightDecay: r.train.weightDecay,
    betas: method === "vlmo" ? [0.9, 0.98] : undefined,
  };
  log(a.quiet, `vlp finetune retrieval: ${method} (${model.numParameters().toLocaleString()} parameters) ${a.from ? `from ${a.from}` : "from scratch"}, ${method === "semvlp" ? `triplet loss with hard negatives, ${o.mode}-stream` : method === "msp" ? "4 pairs per example, BCE on the ITM head" : "ITC dual encoder"} -> ${a.out}`);
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
