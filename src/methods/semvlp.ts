// SemVLP (Li et al. 2021): one shared transformer pre-trained in single- and two-stream mode
// (src/pretrain/semvlp.ts, src/models/semvlp.ts). Downstream: a task reads h_CLS (single-stream) or
// o_IMG (two-stream), "best" tries both; QA can start from the pre-trained QA head; retrieval
// fine-tunes UNITER-style (triplet loss against the hardest in-batch negatives).
import { cat, noGrad, tidy, type Tensor } from "../engine/index.ts";
import type { RetrievalBatch, RetrievalMeta } from "../data/batches.ts";
import type { StepContext } from "../train/trainer.ts";
import { SemVLPForPreTraining, SemVLPModel, semvlpConfig, SEMVLP_PRESETS, type SemVLPConfig, type SemVLPPreset } from "../models/semvlp.ts";
import type { RegionMatcher, RegionInputs, TextInputs } from "../models/region_tasks.ts";
import { buildSemVLP, SEMVLP_SECTION } from "../pretrain/semvlp.ts";
import { registerMethod, type RankOptions } from "./method.ts";
import { regionMethod, pickText, pickRegions, textOf, regionsOf, idxTensor } from "./region.ts";

const overrides = (spec: { overrides?: Record<string, unknown> }) => (spec.overrides ?? {}) as Partial<SemVLPConfig>;

export const SEMVLP = registerMethod({
  name: "semvlp",
  title: "SemVLP",
  presets: Object.keys(SEMVLP_PRESETS),
  section: SEMVLP_SECTION,
  buildStrategy: buildSemVLP,
  modelSpec: (r) => r.model,
  ...regionMethod({
    name: "semvlp",
    taskConfig: (spec) => semvlpConfig(spec.preset as SemVLPPreset, overrides(spec)),
    retrievalConfig: (spec) => semvlpConfig(spec.preset as SemVLPPreset, { ...overrides(spec), taskQa: false, taskObjPredict: false }),
    backbone: (c) => new SemVLPModel(c as SemVLPConfig),
    pretrainingModel: (config) => new SemVLPForPreTraining(config as unknown as SemVLPConfig),
    // the QA head's answers and the ITC width come from the data and the recipe's semvlp section: read them off the weights
    legacyPretrainingConfig: (spec, shapes) => ({ ...semvlpConfig(spec.preset as SemVLPPreset, {
      ...overrides(spec),
      taskQa: shapes.has("answer_head.logit_fc.3.weight"),
      ...(shapes.has("answer_head.logit_fc.3.weight") ? { numQaLabels: shapes.get("answer_head.logit_fc.3.weight")![0] } : {}),
      taskObjPredict: [...shapes.keys()].some((k) => k.startsWith("obj_predict_head.")),
      itcDim: shapes.get("itc_text_proj.weight")?.[0] ?? 0,
    }) }),
    modes: ["single", "two"],
  }),
  modes: ["single", "two"],
  pretrainedAnswerHead: true,
  retrievalStep: (rm, o) => (batch, meta, ctx) => semvlpRankStep(rm.model as RegionMatcher, o, batch, meta, ctx),
  retrievalSummary: (o) => `triplet loss with hard negatives, ${o.mode}-stream`,
});

// ---- retrieval fine-tuning ----------------------------------------------------------------------

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
export function semvlpRankStep(m: RegionMatcher, o: RankOptions, batch: RetrievalBatch, meta: RetrievalMeta, ctx: Pick<StepContext, "rng">) {
  const imgIds = meta.imgIds;
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
  // the hardest negatives are chosen on the host from the pool's scores: one host read per step, by design
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
    rank_loss: loss.detach(),
    rank_acc: pos.gt(negI.amax(1, true)).logicalAnd(pos.gt(negT.amax(1, true))).float().mean(),
    pos_score: pos.mean(),
    hard_neg_score: cat([negI, negT], 1).mean(),
  }));
  return { loss, metrics };
}

