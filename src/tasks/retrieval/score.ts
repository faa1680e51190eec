// Scoring every (image, caption) pair of an evaluation set: a fusion model (SemVLP, LXMERT-S) runs
// its ITM head on every pair, in blocks of images against chunks of captions; VLMo as a dual
// encoder embeds every image and caption once and takes one matrix product of the ITC embeddings,
// optionally re-ranking each query's top k with the ITM head.
import { tidy, noGrad, cat, type Tensor } from "../../engine/index.ts";
import { moduleDevice } from "../../engine/placement.ts";
import { join } from "node:path";
import { toTensors } from "../../data/loader.ts";
import { openRegions } from "../../data/regions/index.ts";
import type { RegionMatcher, TextInputs, RegionInputs } from "../../models/region_tasks.ts";
import type { VLMoModel } from "../../models/vlmo/index.ts";
import { itcScores, rerankWithItm } from "../../models/vlmo/heads.ts";
import { BertTokenizer } from "../../text/tokenizer.ts";
import type { Progress, ProgressFactory } from "../../train/progress.ts";
import { encodeTexts, regionArrays } from "../data.ts";
import { pixelArray, type EvalSet } from "./data.ts";

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
