// What the baselines share: the bag-of-words text encoder over a compact vocabulary of the BERT
// wordpiece ids seen in training captions, the caption/image sampling of a training step, held-out
// ITM pairs, and metrics from a score matrix (ITM accuracy, zero-shot retrieval with the project's
// ranking functions and their chance levels).
import { Module, Embedding, tensor, F, type Tensor } from "../engine/index.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import { Rng } from "../objectives/sampling.ts";
import { retrievalMetrics, chanceRecall } from "../tasks/ranking.ts";
import type { EvalSet } from "../tasks/retrieval_data.ts";

/** Compact word ids: index 0 = padding / special / unseen word (ignored by the mean), 1.. = BERT ids seen in training. */
export class WordVocab {
  readonly index = new Map<number, number>();
  constructor(readonly tok: BertTokenizer, trainTexts: string[]) {
    const skip = new Set([tok.padId, tok.clsId, tok.sepId]);
    for (const t of trainTexts) {
      for (const id of tok.encode(t).inputIds) if (!skip.has(id) && !this.index.has(id)) this.index.set(id, this.index.size + 1);
    }
  }
  get size(): number {
    return this.index.size + 1;
  }
  /** [n, L] int64 compact ids (0 = nothing), truncated at L wordpieces. */
  encode(texts: string[], L: number): Tensor {
    const out = new BigInt64Array(texts.length * L);
    texts.forEach((t, k) => {
      let j = 0;
      for (const id of this.tok.encode(t).inputIds) {
        const c = this.index.get(id);
        if (c === undefined) continue;
        if (j >= L) break;
        out[k * L + j++] = BigInt(c);
      }
    });
    return tensor(out, { shape: [texts.length, L] });
  }
}

/** Mean of learned word embeddings over the non-zero ids of each row. */
export class BowText extends Module {
  readonly emb: Embedding;
  constructor(vocabSize: number, readonly dim: number) {
    super();
    this.emb = this.module("emb", new Embedding(vocabSize, dim, 0));
    F.normal_(this.emb.weight, 0, 0.1);
  }
  forward(ids: Tensor): Tensor {
    const mask = ids.ne(0).float().unsqueeze(-1);
    return this.emb.forward(ids).mul(mask).sum(1).div(mask.sum(1).clampMin(1));
  }
}

/** Captions of a split flattened with their image index (the EvalSet layout). */
export function captionTexts(set: EvalSet): string[] {
  return set.captions.map((c) => c.text);
}

/**
 * One training step's sample: `b` distinct images (fewer if the split is smaller), a random caption of
 * each, and for ITM a random other image for about half of them.
 */
export interface StepSample {
  images: number[];
  captions: number[];
  /** ITM: the image each caption is paired with, and whether that is its own. */
  itmImages: number[];
  matched: number[];
}

export function sampleStep(rng: Rng, set: EvalSet, byImage: number[][], b: number, negProb = 0.5): StepSample {
  const n = set.images.length;
  const chosen = new Set<number>();
  const m = Math.min(b, n);
  while (chosen.size < m) chosen.add(rng.int(n));
  const images = [...chosen];
  const captions = images.map((i) => byImage[i][rng.int(byImage[i].length)]);
  const itmImages: number[] = [];
  const matched: number[] = [];
  for (const i of images) {
    if (n > 1 && rng.next() < negProb) {
      itmImages.push((i + 1 + rng.int(n - 1)) % n);
      matched.push(0);
    } else {
      itmImages.push(i);
      matched.push(1);
    }
  }
  return { images, captions, itmImages, matched };
}

export function captionsByImage(set: EvalSet): number[][] {
  const by: number[][] = set.images.map(() => []);
  set.captions.forEach((c, t) => by[c.image].push(t));
  return by;
}

/** Held-out ITM pairs: `caption[k]` shown with `image[k]`; `matched[k]` = 1 when that is its own image. */
export interface ItmPairs {
  caption: Int32Array;
  image: Int32Array;
  matched: Uint8Array;
}

/**
 * Held-out ITM pairs: every caption of the split twice, once with its own image and once with a random
 * other image of the split (balanced: chance is exactly 1/2; two pairs per caption halve the variance
 * of a 50%-negative draw). Seeded independently of the training seed, so every run sees the same pairs.
 */
export function itmPairs(set: EvalSet, seed = 1234): ItmPairs {
  const rng = new Rng(seed);
  const n = set.images.length;
  if (n < 2) throw new Error("ITM pairs need at least 2 images");
  const nt = set.captions.length;
  const caption = new Int32Array(2 * nt), image = new Int32Array(2 * nt), matched = new Uint8Array(2 * nt);
  set.captions.forEach((c, t) => {
    caption[2 * t] = caption[2 * t + 1] = t;
    image[2 * t] = c.image;
    matched[2 * t] = 1;
    image[2 * t + 1] = (c.image + 1 + rng.int(n - 1)) % n;
  });
  return { caption, image, matched };
}

const pairScore = (i2t: Float32Array, numCaptions: number, p: ItmPairs, k: number) => i2t[p.image[k] * numCaptions + p.caption[k]];

/** ITM accuracy of `score > threshold` on the pairs, from an [images x captions] score matrix. */
export function itmAccuracy(i2t: Float32Array, numCaptions: number, pairs: ItmPairs, threshold = 0): number {
  let right = 0;
  for (let k = 0; k < pairs.caption.length; k++) if (pairScore(i2t, numCaptions, pairs, k) > threshold === (pairs.matched[k] === 1)) right++;
  return right / pairs.caption.length;
}

/** The threshold that maximises ITM accuracy on the pairs (for models whose scores have no calibrated 0). */
export function bestThreshold(i2t: Float32Array, numCaptions: number, pairs: ItmPairs): number {
  const s = Array.from(pairs.caption, (_, k) => ({ x: pairScore(i2t, numCaptions, pairs, k), y: pairs.matched[k] })).sort((a, b) => a.x - b.x);
  // a threshold between s[k] and s[k + 1]: the first k + 1 say "no", the rest "yes"
  let pos = s.reduce((a, e) => a + e.y, 0);
  let neg = 0;
  let best = pos, bestT = s.length ? s[0].x - 1 : 0;
  for (let k = 0; k < s.length; k++) {
    if (s[k].y) pos--;
    else neg++;
    if (k + 1 < s.length && s[k + 1].x === s[k].x) continue;
    if (neg + pos > best) {
      best = neg + pos;
      bestT = k + 1 < s.length ? (s[k].x + s[k + 1].x) / 2 : s[k].x + 1;
    }
  }
  return bestT;
}

/** The share of the majority label: what always answering one way gets (0.5 up to sampling). */
export function itmChance(pairs: { matched: Uint8Array }): number {
  const p = pairs.matched.reduce((a, b) => a + b, 0) / pairs.matched.length;
  return Math.max(p, 1 - p);
}

/**
 * Zero-shot retrieval metrics (R@1/5/10 of IR and TR, "average" tie rule) of an [images x captions]
 * score matrix, keys prefixed (`zs_ir_r1`, ...), with the chance levels: `<prefix>chance_r{K}` for IR
 * (K / images) and `<prefix>chance_tr_r{K}` for TR (5 captions per image); `<prefix>r_mean` is the mean
 * of the six R@K and `<prefix>chance_r_mean` its chance level.
 */
export function zeroShotMetrics(prefix: string, i2t: Float32Array, set: EvalSet): Record<string, number> {
  const ni = set.images.length, nt = set.captions.length;
  const m = retrievalMetrics(i2t, set.captionImage, ni);
  const perImage = nt / ni;
  const out: Record<string, number> = {};
  for (const k of [1, 5, 10] as const) {
    out[`${prefix}ir_r${k}`] = m[`ir_r${k}`];
    out[`${prefix}tr_r${k}`] = m[`tr_r${k}`];
  }
  let chanceSum = 0;
  for (const k of [1, 5, 10]) {
    out[`${prefix}chance_r${k}`] = chanceRecall(ni, 1, k);
    out[`${prefix}chance_tr_r${k}`] = chanceRecall(nt, Math.round(perImage), k);
    chanceSum += out[`${prefix}chance_r${k}`] + out[`${prefix}chance_tr_r${k}`];
  }
  // the mean of the six R@K (experiments/RESULTS.md's "retrieval" columns, there in percent)
  out[`${prefix}r_mean`] = m.r_mean;
  out[`${prefix}chance_r_mean`] = chanceSum / 6;
  return out;
}

/** The first `n` images of a score matrix (and their captions): the 100-image subset. */
export function subMatrix(i2t: Float32Array, set: EvalSet, n: number): { i2t: Float32Array; set: EvalSet } {
  const images = set.images.slice(0, n);
  const keep = set.captions.map((c, t) => [c, t] as const).filter(([c]) => c.image < n);
  const nt = set.captions.length;
  const out = new Float32Array(n * keep.length);
  for (let i = 0; i < n; i++) keep.forEach(([, t], j) => (out[i * keep.length + j] = i2t[i * nt + t]));
  const captions = keep.map(([c]) => c);
  return { i2t: out, set: { images, captions, captionImage: Int32Array.from(captions, (c) => c.image) } };
}

/** A fixed-width table of metrics with their chance levels. */
export function formatTable(title: string, rows: [string, number, number | undefined][]): string {
  const lines = [title, `${"metric".padEnd(16)} ${"value".padStart(8)} ${"chance".padStart(8)}`];
  for (const [k, v, c] of rows) lines.push(`${k.padEnd(16)} ${v.toFixed(4).padStart(8)} ${(c === undefined ? "" : c.toFixed(4)).padStart(8)}`);
  return lines.join("\n");
}

/** Rows of the printed table from a metrics record (each value next to its chance level). */
export function metricRows(m: Record<string, number>): [string, number, number | undefined][] {
  const rows: [string, number, number | undefined][] = [];
  if (m.itm_acc_val !== undefined) rows.push(["itm_acc_val", m.itm_acc_val, m.itm_chance_val]);
  if (m.itm_acc !== undefined) rows.push(["itm_acc (test)", m.itm_acc, m.itm_chance]);
  for (const p of ["zs_", "zs100_"]) {
    if (m[`${p}ir_r1`] === undefined) continue;
    for (const d of ["ir", "tr"]) {
      for (const k of [1, 5, 10]) rows.push([`${p}${d}_r${k}`, m[`${p}${d}_r${k}`], d === "ir" ? m[`${p}chance_r${k}`] : m[`${p}chance_tr_r${k}`]]);
    }
    rows.push([`${p}r_mean`, m[`${p}r_mean`], m[`${p}chance_r_mean`]]);
  }
  return rows;
}
