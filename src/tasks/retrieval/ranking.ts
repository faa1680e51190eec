// Ranking metrics of image-text retrieval, as pure functions over score matrices (no engine).
//
// Scores are row-major typed arrays: `i2t` is [images x captions] (row i = image i's score for
// every caption), `t2i` is [captions x images]. Higher = better match. A caption belongs to exactly
// one image (`captionImage[t]`); an image may have several captions (5 in Flickr30K/COCO/the
// synthetic world).
//
// Ranks are 1-based positions in the list sorted by score, best first.
//   image retrieval (IR), per caption t: the position of its image among all images;
//   text retrieval (TR), per image i: the position of the FIRST of its captions among all captions,
//     so "R@K" counts an image as a hit when any of its captions is in its top K.
// Ties (equal scores; common when two images share an identical caption, as the synthetic world's
// "An image with three objects." does), three rules:
//   "average" (default): the expected value under a uniformly random order of the tied items. With
//     h wrong candidates strictly above the best true one, and n wrong and p true candidates tied at
//     its score, the expected rank is h + (n + p + 1) / (p + 1) and the hit probability at K is
//     1 - C(n, K - h) / C(n + p, K - h) (0 when K <= h). A scorer that cannot tell pairs apart (all
//     scores equal) gets exactly the chance level, never more.
//   "pessimistic": tied wrong candidates count above the true one (rank h + n + 1).
//   "optimistic": only strictly higher ones count (rank h + 1).
// A NaN score is treated as -Infinity. Median rank follows VSE++/UNITER: the floor of the median of
// the 1-based ranks (numpy's median: the mean of the two middle values for an even count); mean rank
// is the plain mean. R@K values are fractions in [0, 1] (like the other tasks' accuracies; the
// papers' tables print them as percentages); rsum is their sum (0-6), r_mean their mean.

export type TieRule = "average" | "pessimistic" | "optimistic";
type Scores = ArrayLike<number>;

export interface RetrievalMetrics {
  ir_r1: number;
  ir_r5: number;
  ir_r10: number;
  tr_r1: number;
  tr_r5: number;
  tr_r10: number;
  ir_medr: number;
  ir_meanr: number;
  tr_medr: number;
  tr_meanr: number;
  /** Sum of the six R@K (the usual "RSUM", here on fractions: 0-6). */
  rsum: number;
  /** Mean of the six R@K (MSP Table 4's "average value of R@1, R@5, R@10"). */
  r_mean: number;
}

const val = (x: number) => (Number.isNaN(x) ? -Infinity : x);

function check(scores: Scores, rows: number, cols: number, what: string): void {
  if (scores.length !== rows * cols) throw new Error(`${what}: ${scores.length} scores for a ${rows} x ${cols} matrix`);
}

function checkCaptions(captionImage: ArrayLike<number>, numImages: number): void {
  for (let t = 0; t < captionImage.length; t++) {
    const i = captionImage[t];
    if (!Number.isInteger(i) || i < 0 || i >= numImages) throw new Error(`caption ${t}: image index ${i} is not in [0, ${numImages})`);
  }
}

/** [rows x cols] -> [cols x rows]. */
export function transpose(scores: Scores, rows: number, cols: number): Float32Array {
  check(scores, rows, cols, "transpose");
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = scores[r * cols + c];
  return out;
}

/**
 * Where the true candidates of each query stand: `higher` wrong candidates score strictly above the
 * best true one, `tiedNeg` wrong and `tiedPos` true candidates (itself included) tie with it.
 */
export interface QueryRanks {
  higher: Int32Array;
  tiedNeg: Int32Array;
  tiedPos: Int32Array;
}

function queryRanks(n: number): QueryRanks {
  return { higher: new Int32Array(n), tiedNeg: new Int32Array(n), tiedPos: new Int32Array(n) };
}

/** IR positions: per caption, its image among the `numImages` images, from t2i [captions x images]. */
export function imageRankInfo(t2i: Scores, captionImage: ArrayLike<number>, numImages: number): QueryRanks {
  const nt = captionImage.length;
  check(t2i, nt, numImages, "imageRanks");
  checkCaptions(captionImage, numImages);
  const q = queryRanks(nt);
  for (let t = 0; t < nt; t++) {
    const row = t * numImages;
    const gt = captionImage[t];
    const s = val(t2i[row + gt]);
    let above = 0, tied = 0;
    for (let j = 0; j < numImages; j++) {
      if (j === gt) continue;
      const x = val(t2i[row + j]);
      if (x > s) above++;
      else if (x === s) tied++;
    }
    q.higher[t] = above;
    q.tiedNeg[t] = tied;
    q.tiedPos[t] = 1;
  }
  return q;
}

/** TR positions: per image, the best of its captions among all captions, from i2t [images x captions]. */
export function textRankInfo(i2t: Scores, captionImage: ArrayLike<number>, numImages: number): QueryRanks {
  const nt = captionImage.length;
  check(i2t, numImages, nt, "textRanks");
  checkCaptions(captionImage, numImages);
  const q = queryRanks(numImages);
  for (let i = 0; i < numImages; i++) {
    const row = i * nt;
    let best = NaN;
    for (let t = 0; t < nt; t++) {
      if (captionImage[t] !== i) continue;
      const x = val(i2t[row + t]);
      if (Number.isNaN(best) || x > best) best = x;
    }
    if (Number.isNaN(best)) throw new Error(`image ${i} has no caption: text retrieval is undefined for it`);
    let above = 0, tiedNeg = 0, tiedPos = 0;
    for (let t = 0; t < nt; t++) {
      const x = val(i2t[row + t]);
      if (captionImage[t] === i) {
        if (x === best) tiedPos++;
      } else if (x > best) above++;
      else if (x === best) tiedNeg++;
    }
    q.higher[i] = above;
    q.tiedNeg[i] = tiedNeg;
    q.tiedPos[i] = tiedPos;
  }
  return q;
}

/** The rank of each query under a tie rule (fractional under "average": the expected rank). */
export function ranksOf(q: QueryRanks, tie: TieRule = "average"): Float64Array {
  return Float64Array.from(q.higher, (h, i) => {
    const n = q.tiedNeg[i], p = q.tiedPos[i];
    return tie === "optimistic" ? h + 1 : tie === "pessimistic" ? h + n + 1 : h + (n + p + 1) / (p + 1);
  });
}

/** P(a true candidate within the first m of a random order of n wrong and p true ones) = 1 - C(n, m) / C(n + p, m). */
function hitProbability(n: number, p: number, m: number): number {
  if (m <= 0) return 0;
  if (m > n) return 1;
  let miss = 1;
  for (let i = 0; i < m; i++) miss *= (n - i) / (n + p - i);
  return 1 - miss;
}

/** R@k (a fraction) of queries under a tie rule ("average": the expected recall). */
export function recallOf(q: QueryRanks, k: number, tie: TieRule = "average"): number {
  const nq = q.higher.length;
  if (nq === 0) throw new Error("recall: no queries");
  let hit = 0;
  for (let i = 0; i < nq; i++) {
    const h = q.higher[i], n = q.tiedNeg[i], p = q.tiedPos[i];
    if (tie === "optimistic") hit += h + 1 <= k ? 1 : 0;
    else if (tie === "pessimistic") hit += h + n + 1 <= k ? 1 : 0;
    else hit += hitProbability(n, p, k - h);
  }
  return hit / nq;
}

/** IR ranks per caption (see ranksOf for the tie rules). */
export function imageRanks(t2i: Scores, captionImage: ArrayLike<number>, numImages: number, tie: TieRule = "average"): Float64Array {
  return ranksOf(imageRankInfo(t2i, captionImage, numImages), tie);
}

/** TR ranks per image (see ranksOf for the tie rules). */
export function textRanks(i2t: Scores, captionImage: ArrayLike<number>, numImages: number, tie: TieRule = "average"): Float64Array {
  return ranksOf(textRankInfo(i2t, captionImage, numImages), tie);
}

/** Fraction of ranks <= k (integer ranks; for the "average" rule's expected recall use recallOf). */
export function recallAt(ranks: ArrayLike<number>, k: number): number {
  if (ranks.length === 0) throw new Error("recallAt: no ranks");
  let hit = 0;
  for (let i = 0; i < ranks.length; i++) if (ranks[i] <= k) hit++;
  return hit / ranks.length;
}

/** floor(median) of the 1-based ranks (VSE++ / UNITER convention). */
export function medianRank(ranks: ArrayLike<number>): number {
  if (ranks.length === 0) throw new Error("medianRank: no ranks");
  const s = Float64Array.from(ranks).sort();
  const n = s.length;
  const m = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  return Math.floor(m);
}

export function meanRank(ranks: ArrayLike<number>): number {
  if (ranks.length === 0) throw new Error("meanRank: no ranks");
  let sum = 0;
  for (let i = 0; i < ranks.length; i++) sum += ranks[i];
  return sum / ranks.length;
}

/** Metrics from the IR (per caption) and TR (per image) positions under a tie rule. */
export function metricsFromRanks(ir: QueryRanks, tr: QueryRanks, tie: TieRule = "average"): RetrievalMetrics {
  const irRanks = ranksOf(ir, tie);
  const trRanks = ranksOf(tr, tie);
  const m = {
    ir_r1: recallOf(ir, 1, tie), ir_r5: recallOf(ir, 5, tie), ir_r10: recallOf(ir, 10, tie),
    tr_r1: recallOf(tr, 1, tie), tr_r5: recallOf(tr, 5, tie), tr_r10: recallOf(tr, 10, tie),
    ir_medr: medianRank(irRanks), ir_meanr: meanRank(irRanks), tr_medr: medianRank(trRanks), tr_meanr: meanRank(trRanks),
  };
  const rsum = m.ir_r1 + m.ir_r5 + m.ir_r10 + m.tr_r1 + m.tr_r5 + m.tr_r10;
  return { ...m, rsum, r_mean: rsum / 6 };
}

/**
 * IR and TR metrics. `i2t` [images x captions] ranks captions for TR; IR uses `t2i`
 * [captions x images] when given (ITM re-ranking scores each direction separately), else i2t transposed.
 */
export function retrievalMetrics(
  i2t: Scores,
  captionImage: ArrayLike<number>,
  numImages: number,
  o: { t2i?: Scores; tie?: TieRule } = {},
): RetrievalMetrics & { irRanks: Float64Array; trRanks: Float64Array } {
  const t2i = o.t2i ?? transpose(i2t, numImages, captionImage.length);
  const ir = imageRankInfo(t2i, captionImage, numImages);
  const tr = textRankInfo(i2t, captionImage, numImages);
  return { ...metricsFromRanks(ir, tr, o.tie), irRanks: ranksOf(ir, o.tie), trRanks: ranksOf(tr, o.tie) };
}

/** log C(n, k). */
function logChoose(n: number, k: number): number {
  let s = 0;
  for (let i = 0; i < k; i++) s += Math.log(n - i) - Math.log(i + 1);
  return s;
}

/**
 * Expected R@K (a fraction) of a uniformly random ranking of `n` candidates of which `positives` are
 * correct: P(at least one positive in the top k) = 1 - C(n - p, k) / C(n, k).
 * IR chance: chanceRecall(images, 1, k); TR chance: chanceRecall(captions, captionsPerImage, k).
 */
export function chanceRecall(n: number, positives: number, k: number): number {
  if (positives < 1 || positives > n) throw new Error(`chanceRecall: ${positives} positives among ${n}`);
  if (k >= n - positives + 1) return 1;
  return 1 - Math.exp(logChoose(n - positives, k) - logChoose(n, k));
}

/** Indices of the k highest scores of row `r` of a [rows x cols] matrix, best first; ties by lower index first. */
export function topK(scores: Scores, cols: number, r: number, k: number): number[] {
  const idx = Array.from({ length: cols }, (_, j) => j);
  const at = (j: number) => val(scores[r * cols + j]);
  idx.sort((a, b) => {
    const x = at(a);
    const y = at(b);
    return x > y ? -1 : x < y ? 1 : a - b;
  });
  return idx.slice(0, Math.min(k, cols));
}
