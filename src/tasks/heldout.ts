// Held-out evaluation shared by the pre-trained models and the baselines: balanced ITM pairs of a
// split (every caption with its own image and with a random other one), ITM accuracy from a score
// matrix, and zero-shot retrieval metrics with their chance levels.
import { Rng } from "../engine/rng.ts";
import { otherIndex } from "../objectives/sampling.ts";
import { retrievalMetrics, chanceRecall } from "./retrieval/ranking.ts";
import type { EvalSet } from "./retrieval/data.ts";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { hardNegativePools, objectSetsFromVg, type ObjectSet } from "../data/synth/hardneg.ts";
import { readVgAttributes } from "../data/formats/vg.ts";
import { readJson } from "../data/formats/util.ts";
import { readHardNegatives } from "../data/formats/hardneg.ts";

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
  return balancedPairs(set, seed, (rng, image) => otherIndex(rng, set.images.length, image));
}

/** Every caption twice: with its own image (matched) and with `negative(rng, its image)`. */
function balancedPairs(set: EvalSet, seed: number, negative: (rng: Rng, image: number) => number): ItmPairs {
  if (set.images.length < 2) throw new Error("ITM pairs need at least 2 images");
  const rng = new Rng(seed);
  const nt = set.captions.length;
  const caption = new Int32Array(2 * nt), image = new Int32Array(2 * nt), matched = new Uint8Array(2 * nt);
  set.captions.forEach((c, t) => {
    caption[2 * t] = caption[2 * t + 1] = t;
    image[2 * t] = c.image;
    matched[2 * t] = 1;
    image[2 * t + 1] = negative(rng, c.image);
  });
  return { caption, image, matched };
}

/**
 * Held-out hard ITM pairs (MSP's ITM_HS, measured where no pool file reaches): every caption with its
 * own image and with one drawn from its image's hard pool, the pool built over the evaluated images
 * by the same rule as the training pool (`hardNegativePools`: most shared colour-category
 * combinations). `k` sets how hard: the training pool holds the 20 most similar of ~3,500 train
 * images, so a 100-image set matches that hardness with k = 1 (see `heldoutPoolSize`).
 */
export function itmHardPairs(set: EvalSet, objects: Map<string, ObjectSet>, k: number, seed = 1234): ItmPairs {
  const sets = set.images.map((im) => {
    const o = objects.get(im.id);
    if (!o) throw new Error(`hard ITM pairs: no objects for image ${im.id}`);
    return o;
  });
  const pools = hardNegativePools(sets, k);
  return balancedPairs(set, seed, (rng, image) => {
    const pool = pools[image].slice(1);
    return pool.length ? pool[rng.int(pool.length)] : otherIndex(rng, set.images.length, image);
  });
}

/** The held-out pool size that keeps the training pool's share: round(trainPool x images / trainImages), at least 1. */
export function heldoutPoolSize(trainPool: number, trainImages: number, images: number): number {
  return Math.max(1, Math.round((trainPool * images) / Math.max(1, trainImages)));
}

/**
 * Hard held-out ITM pairs of a synthetic world (`vlp data synth`: its ground-truth objects in vg/,
 * its training pool in hardneg/ setting how hard), or undefined for other data (the emoji, real
 * Visual Genome folders, whose objects are not the world's).
 */
export function worldHardPairs(world: string, set: EvalSet): { pairs: ItmPairs; k: number } | undefined {
  const vg = join(world, "vg"), poolFile = join(world, "hardneg", "hard_negative.json"), meta = join(world, "meta.json");
  if (![join(vg, "attributes.json"), join(vg, "image_data.json"), poolFile, meta].every((f) => existsSync(f))) return undefined;
  const m = readJson(meta) as { objectVocab?: unknown; heldOut?: unknown };
  if (m.objectVocab === undefined || m.heldOut === undefined) return undefined; // not written by vlp data synth
  const train = readHardNegatives(poolFile);
  const trainPool = train.train_hard_pool.reduce((a, r) => Math.max(a, r.length - 1), 0);
  const k = heldoutPoolSize(trainPool, train.train_image_list.length, set.images.length);
  const objects = objectSetsFromVg(readJson(join(vg, "image_data.json")) as { image_id: number; url?: string }[], readVgAttributes(join(vg, "attributes.json")).records, join(vg, "attributes.json"));
  return { pairs: itmHardPairs(set, objects, k), k };
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

