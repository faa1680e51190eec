// What a pre-training run learned about image-text alignment, measured on a held-out split of the
// world with no fine-tuning: ITM accuracy on balanced pairs of held-out captions (each caption with
// its own image and with a random other image: chance 0.5), and zero-shot retrieval (SemVLP / LXMERT-S:
// the ITM head on every pair; VLMo: the dual encoder's ITC similarities, its ITM head for the ITM
// pairs). These are the numbers of `vlp demo`'s summary and of experiments/RESULTS.md.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { SemVLPMode } from "../models/semvlp.ts";
import { readRecipeJson } from "../pretrain/recipe.ts";
import { tidy, noGrad, tensor, type Tensor } from "../engine/index.ts";
import { toTensors } from "../data/loader.ts";
import { moduleDevice, toDevice } from "../engine/placement.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import type { VLMoModel } from "../models/vlmo/index.ts";
import { readRunInfo } from "../methods/index.ts";
import { buildRetrievalModel, retrievalOptions, scoreAllPairs, scoreDual } from "./retrieval.ts";
import { encodeTexts } from "./data.ts";
import { evalSet, pixelArray, readRetrievalSplit, type EvalSet } from "./retrieval/data.ts";
import { itmPairs, itmAccuracy, itmChance, zeroShotMetrics, worldHardPairs, type ItmPairs } from "./heldout.ts";
import type { ProgressFactory } from "../train/progress.ts";

export interface PretrainEvalOptions {
  /** Held-out split of the world (default "test"). */
  split?: string;
  /** Keep the first N images of the split (e.g. the 100-image subset for fusion models). */
  limit?: number;
  /** Another world than the run's. */
  world?: string;
  /** The Karpathy file (relative to the world); default: the run's recipe `data.karpathy`, else the synthetic world's. */
  karpathy?: string;
  quiet?: boolean;
  /** Draws scoring progress (the CLI's bars), unless `quiet`. */
  progress?: ProgressFactory;
  /** SemVLP: the mode that scores the pairs; default the one the run pre-trained in (`pretrainedMode`). */
  mode?: SemVLPMode;
}

/**
 * The SemVLP mode a run was pre-trained in: "two" when every mini-batch was two-stream
 * (`semvlp.singleRatio` 0), else "single" (single-stream only, or both: its single-stream h_CLS).
 * Scoring a two-stream-only model in single-stream mode would test a mode it never trained.
 */
export function pretrainedMode(run: string): SemVLPMode {
  const file = join(run, "recipe.json");
  if (!existsSync(file)) return "single";
  const r = readRecipeJson(file) as { semvlp?: { singleRatio?: number } };
  return r.semvlp?.singleRatio === 0 ? "two" : "single";
}

/**
 * `itm_acc` / `itm_chance` on the split's balanced caption pairs, and `zs_ir_r{1,5,10}`,
 * `zs_tr_r{1,5,10}`, `zs_chance_r{1,5,10}` (IR chance K / images), `zs_chance_tr_r{K}`, `zs_r_mean`;
 * on a synthetic world also `itm_hs_acc` (and its pool size `itm_hs_k`): ITM with hard negatives
 * (`itmHardPairs`), the held-out counterpart of MSP's ITM_HS.
 */
export async function evaluatePretraining(run: string, o: PretrainEvalOptions = {}): Promise<Record<string, number>> {
  const info = readRunInfo(run);
  const given = o.world ?? info.world;
  if (!given) throw new Error(`${run}: pre-trained on data.sources that are not one synthetic world; give the world to evaluate on (--world)`);
  const world = resolve(given);
  const split = o.split ?? "test";
  const karpathy = o.karpathy ?? info.karpathy;
  const set = evalSet(readRetrievalSplit(world, split, karpathy), o.limit);
  const pairs = itmPairs(set);
  const hard = worldHardPairs(world, set);
  const mode = o.mode ?? pretrainedMode(run);
  const rm = await buildRetrievalModel(info.method, info.model, run, retrievalOptions(info.method === "semvlp" ? { mode } : undefined));
  try {
    if (rm.kind === "fusion") {
      const sc = await scoreAllPairs(rm.model, set, { regions: join(world, "features", "obj36.tsv"), maxTextLen: 20, maxBoxes: 36, batchSize: 500, quiet: o.quiet, progress: o.progress });
      // the ITM head's logit difference: > 0 means "matched"
      const nt = set.captions.length;
      const hs: Record<string, number> = hard ? { itm_hs_acc: itmAccuracy(sc.i2t, nt, hard.pairs), itm_hs_k: hard.k } : {};
      return { ...(info.method === "semvlp" ? { two_stream: mode === "two" ? 1 : 0 } : {}), itm_acc: itmAccuracy(sc.i2t, nt, pairs), itm_chance: itmChance(pairs), ...hs, ...zeroShotMetrics("zs_", sc.i2t, set), images: set.images.length, captions: nt };
    }
    const m = rm.model;
    const sc = await scoreDual(m, set, { world, maxTextLen: m.config.maxTextLen, batchSize: 256, rerank: 0, quiet: o.quiet, progress: o.progress });
    const out: Record<string, number> = { ...zeroShotMetrics("zs_", sc.i2t, set), images: set.images.length, captions: set.captions.length };
    if (rm.hasItm) {
      // scores laid out as an [images x captions] matrix that holds only the pairs' cells
      const nt = set.captions.length;
      const accuracy = async (p: ItmPairs): Promise<number> => {
        const itm = await vlmoPairScores(m, set, p, world);
        const mat = new Float32Array(set.images.length * nt);
        for (let k = 0; k < p.caption.length; k++) mat[p.image[k] * nt + p.caption[k]] = itm[k];
        return itmAccuracy(mat, nt, p);
      };
      out.itm_acc = await accuracy(pairs);
      out.itm_chance = itmChance(pairs);
      if (hard) {
        out.itm_hs_acc = await accuracy(hard.pairs);
        out.itm_hs_k = hard.k;
      }
    }
    return out;
  } finally {
    rm.model.dispose();
  }
}

/** VLMo's fusion ITM score (logit[1] - logit[0]) of each held-out pair. */
async function vlmoPairScores(model: VLMoModel, set: EvalSet, pairs: ItmPairs, world: string): Promise<Float32Array> {
  const S = model.config.imageSize;
  const host = await pixelArray(join(world, "images"), set.images.map((im) => im.file), S);
  const tok = BertTokenizer.load();
  const out = new Float32Array(pairs.caption.length);
  const was = model.training;
  model.eval();
  try {
    const device = moduleDevice(model);
    tidy(() => noGrad(() => {
      const px = toTensors({ arrays: { px: host }, meta: {} }, device).px;
      const text = toTensors({ arrays: { ...encodeTexts(tok, set.captions.map((c) => c.text), model.config.maxTextLen) }, meta: {} }, device);
      const chunk = 128;
      for (let s = 0; s < pairs.caption.length; s += chunk) {
        tidy(() => {
          const n = Math.min(chunk, pairs.caption.length - s);
          const ci = toDevice(tensor(Array.from(pairs.caption.subarray(s, s + n)), { dtype: "int64" }), device);
          const ii = toDevice(tensor(Array.from(pairs.image.subarray(s, s + n)), { dtype: "int64" }), device);
          const f = model.inferFusion(text.input_ids.indexSelect(0, ci), text.attention_mask.indexSelect(0, ci), px.indexSelect(0, ii));
          const l: Tensor = model.itmLogits(f);
          out.set(l.select(1, 1).sub(l.select(1, 0)).toFloat32Array(), s);
        });
      }
    }));
  } finally {
    model.train(was);
  }
  return out;
}
