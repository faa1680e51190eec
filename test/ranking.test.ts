// Retrieval ranking metrics (src/tasks/retrieval/ranking.ts; R@K as fractions) on hand-computed cases: several captions per
// image, ties under both rules, median/mean rank, chance levels, and a brute-force cross-check.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  imageRanks, textRanks, recallAt, medianRank, meanRank, retrievalMetrics, chanceRecall, topK, transpose, imageRankInfo, textRankInfo, recallOf, type TieRule,
} from "../src/tasks/retrieval/ranking.ts";

const close = (a: number, b: number, msg?: string) => assert.ok(Math.abs(a - b) < 1e-9, `${msg ?? ""} ${a} != ${b}`);

// 3 images, 2 captions each (captions 0,1 -> image 0; 2,3 -> image 1; 4,5 -> image 2)
const CAP = [0, 0, 1, 1, 2, 2];
// prettier-ignore
const I2T = [
  0.9, 0.1, 0.8, 0.2, 0.3, 0.4, // image 0
  0.5, 0.6, 0.7, 0.1, 0.2, 0.9, // image 1
  0.1, 0.2, 0.3, 0.4, 0.5, 0.6, // image 2
];

test("image retrieval: per caption, the rank of its image (worked by hand)", () => {
  // caption 0: column [0.9, 0.5, 0.1], its image 0 first -> 1
  // caption 1: [0.1, 0.6, 0.2], image 0 below both -> 3
  // caption 2: [0.8, 0.7, 0.3], image 1 below image 0 -> 2
  // caption 3: [0.2, 0.1, 0.4] -> 3; caption 4: [0.3, 0.2, 0.5] -> 1; caption 5: [0.4, 0.9, 0.6] -> 2
  assert.deepEqual([...imageRanks(transpose(I2T, 3, 6), CAP, 3)], [1, 3, 2, 3, 1, 2]);
});

test("text retrieval: an image is found at the position of the best of its captions", () => {
  // image 0: own captions 0.9 / 0.1, nothing else >= 0.9 -> 1
  // image 1: own 0.7 / 0.1, caption 5 (another image's) scores 0.9 -> 2
  // image 2: own 0.5 / 0.6, best 0.6, every other caption lower -> 1 (its weaker caption does not matter)
  assert.deepEqual([...textRanks(I2T, CAP, 3)], [1, 2, 1]);
});

test("R@K, median and mean rank, rsum and r_mean from one score matrix", () => {
  const m = retrievalMetrics(I2T, CAP, 3);
  close(m.ir_r1, 2 / 6, "ir_r1");
  close(m.ir_r5, 1, "ir_r5");
  close(m.ir_r10, 1);
  close(m.tr_r1, 2 / 3, "tr_r1");
  close(m.tr_r5, 1);
  // IR ranks sorted [1,1,2,2,3,3]: median 2, mean 12/6; TR ranks [1,2,1]: median 1, mean 4/3
  assert.equal(m.ir_medr, 2);
  close(m.ir_meanr, 2);
  assert.equal(m.tr_medr, 1);
  close(m.tr_meanr, 4 / 3);
  close(m.rsum, 1 / 3 + 1 + 1 + 2 / 3 + 1 + 1);
  close(m.r_mean, m.rsum / 6);
});

test("R@K boundaries and the median convention (floor of numpy's median)", () => {
  const ranks = [1, 5, 6, 10, 11];
  close(recallAt(ranks, 1), 0.2);
  close(recallAt(ranks, 5), 0.4);
  close(recallAt(ranks, 10), 0.8);
  assert.equal(medianRank([5, 1, 3]), 3);
  assert.equal(medianRank([1, 2, 3, 10]), 2); // median 2.5 -> 2 (VSE++: floor(median(rank0)) + 1)
  assert.equal(medianRank([1, 2, 4, 10]), 3);
  close(meanRank([1, 2, 4, 10]), 4.25);
  assert.throws(() => recallAt([], 1), /no ranks/);
});

test("ties: average = expected rank under a random order of the tied items; pessimistic / optimistic count them against / for", () => {
  // caption 0 of image 0 among 4 images: true 0.5, others 0.5 (tie), 0.7 (above), 0.2 (below)
  const t2i = [0.5, 0.5, 0.7, 0.2];
  assert.deepEqual([...imageRanks(t2i, [0], 4, "pessimistic")], [3]);
  assert.deepEqual([...imageRanks(t2i, [0], 4, "optimistic")], [2]);
  assert.deepEqual([...imageRanks(t2i, [0], 4)], [2.5]); // position 2 or 3, equally likely
  const info = imageRankInfo(t2i, [0], 4);
  assert.equal(recallOf(info, 1), 0);
  assert.equal(recallOf(info, 2), 0.5);
  assert.equal(recallOf(info, 3), 1);
  // a constant scorer: exactly chance under the default rule, the worst rank when pessimistic, perfect when optimistic
  const flat = new Float32Array(3 * 6).fill(0.25);
  const avg = retrievalMetrics(flat, CAP, 3);
  close(avg.ir_r1, chanceRecall(3, 1, 1), "constant IR R@1 = chance");
  close(avg.tr_r1, chanceRecall(6, 2, 1), "constant TR R@1 = chance");
  assert.deepEqual([...avg.irRanks], [2, 2, 2, 2, 2, 2]);
  // TR: 2 true among 6 tied captions, expected first position (4 + 2 + 1) / 3
  assert.deepEqual([...avg.trRanks].map((r) => r.toFixed(6)), Array(3).fill((7 / 3).toFixed(6)));
  const pess = retrievalMetrics(flat, CAP, 3, { tie: "pessimistic" });
  assert.equal(pess.ir_r1, 0);
  assert.equal(pess.tr_r1, 0);
  assert.deepEqual([...pess.trRanks], [5, 5, 5]);
  const opt = retrievalMetrics(flat, CAP, 3, { tie: "optimistic" });
  assert.equal(opt.ir_r1, 1);
  assert.equal(opt.tr_r1, 1);
});

test("ties in text retrieval: own captions tied with each other share the tied block with the other images' captions", () => {
  // image 0 has captions 0 and 1 (both 0.8); caption 2 (image 1's) also 0.8, caption 3 0.9
  const i2t = [0.8, 0.8, 0.8, 0.9, 0.1, 0.1, 0.1, 0.1];
  const cap = [0, 0, 1, 1];
  assert.equal(textRanks(i2t, cap, 2, "pessimistic")[0], 3); // 0.9 and the tied 0.8 above
  assert.equal(textRanks(i2t, cap, 2, "optimistic")[0], 2); // only 0.9 above
  close(textRanks(i2t, cap, 2)[0], 1 + 4 / 3); // 0.9, then the first of 2 true among 3 tied: (1 + 2 + 1) / 3
  const tr = textRankInfo(i2t, cap, 2);
  // R@2: image 0 has 0.9 above and m = 1 slot for 1 wrong + 2 true tied: 1 - C(1,1)/C(3,1) = 2/3;
  // image 1: all 4 tie (2 true), m = 2: 1 - C(2,2)/C(4,2) = 5/6
  close(recallOf(tr, 2), (2 / 3 + 5 / 6) / 2);
});

test("NaN scores rank as -Infinity", () => {
  assert.deepEqual([...imageRanks([NaN, 0.1, 0.2], [0], 3)], [3]);
  assert.deepEqual([...imageRanks([0.1, NaN, NaN], [0], 3)], [1]);
});

test("re-ranked scores: IR reads t2i when given, TR reads i2t", () => {
  const i2t = [1, 0, 0, 1]; // image 0 <- caption 0, image 1 <- caption 1: perfect TR
  const t2i = [0, 1, 1, 0]; // IR inverted: each caption prefers the other image
  const m = retrievalMetrics(i2t, [0, 1], 2, { t2i });
  assert.equal(m.tr_r1, 1);
  assert.equal(m.ir_r1, 0);
  assert.equal(retrievalMetrics(i2t, [0, 1], 2).ir_r1, 1);
});

/** Reference from the sorted-list definition: the distribution of the first true item's position. */
function reference(scores: number[], isTrue: boolean[]): { pess: number; opt: number; avg: number; hit: (k: number) => number } {
  const best = Math.max(...scores.filter((_, j) => isTrue[j]));
  const higher = scores.filter((x, j) => !isTrue[j] && x > best).length;
  const n = scores.filter((x, j) => !isTrue[j] && x === best).length;
  const p = scores.filter((x, j) => isTrue[j] && x === best).length;
  // P(first true at position j of the tied block) = C(n + p - j, p - 1) / C(n + p, p), by counting orders
  const choose = (a: number, b: number): number => (b < 0 || b > a ? 0 : b === 0 ? 1 : (choose(a - 1, b - 1) * a) / b);
  const dist = Array.from({ length: n + 1 }, (_, j) => choose(n + p - (j + 1), p - 1) / choose(n + p, p));
  return {
    pess: higher + n + 1,
    opt: higher + 1,
    avg: higher + dist.reduce((a, q, j) => a + q * (j + 1), 0),
    hit: (k: number) => dist.reduce((a, q, j) => a + (higher + j + 1 <= k ? q : 0), 0),
  };
}

test("brute force: ranks and R@K equal the sorted-list definition under each tie rule", () => {
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let trial = 0; trial < 30; trial++) {
    const ni = 2 + Math.floor(rnd() * 6);
    const cap: number[] = [];
    for (let i = 0; i < ni; i++) for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) cap.push(i);
    const nt = cap.length;
    const i2t = Array.from({ length: ni * nt }, () => Math.floor(rnd() * 4)); // many ties
    const t2i = transpose(i2t, ni, nt);
    const irRef = cap.map((g, t) => reference(Array.from({ length: ni }, (_, i) => i2t[i * nt + t]), Array.from({ length: ni }, (_, i) => i === g)));
    const trRef = Array.from({ length: ni }, (_, i) => reference(Array.from({ length: nt }, (_, t) => i2t[i * nt + t]), cap.map((g) => g === i)));
    for (const [tie, key] of [["pessimistic", "pess"], ["optimistic", "opt"], ["average", "avg"]] as [TieRule, "pess" | "opt" | "avg"][]) {
      imageRanks(t2i, cap, ni, tie).forEach((r, t) => close(r, irRef[t][key], `IR trial ${trial} caption ${t} ${tie}`));
      textRanks(i2t, cap, ni, tie).forEach((r, i) => close(r, trRef[i][key], `TR trial ${trial} image ${i} ${tie}`));
    }
    const m = retrievalMetrics(i2t, cap, ni);
    for (const k of [1, 5, 10]) {
      close(m[`ir_r${k}` as "ir_r1"], irRef.reduce((a, r) => a + r.hit(k), 0) / nt, `IR R@${k} trial ${trial}`);
      close(m[`tr_r${k}` as "tr_r1"], trRef.reduce((a, r) => a + r.hit(k), 0) / ni, `TR R@${k} trial ${trial}`);
    }
  }
});

test("chance levels: 1 - C(n-p, k) / C(n, k)", () => {
  close(chanceRecall(50, 1, 1), 0.02);
  close(chanceRecall(50, 1, 10), 0.2);
  let miss = 1;
  for (let i = 0; i < 10; i++) miss *= (245 - i) / (250 - i);
  close(chanceRecall(250, 5, 10), 1 - miss);
  assert.equal(chanceRecall(12, 5, 8), 1);
});

test("topK: best first, ties by lower index; validation errors", () => {
  assert.deepEqual(topK([0.1, 0.9, 0.5, 0.9, NaN], 5, 0, 3), [1, 3, 2]);
  assert.deepEqual(topK([0, 0, 3, 1, 2, 5], 3, 1, 10), [2, 1, 0]);
  assert.throws(() => imageRanks([1, 2, 3], [0], 2), /3 scores for a 1 x 2 matrix/);
  assert.throws(() => imageRanks([1, 2], [2], 2), /caption 0: image index 2 is not in \[0, 2\)/);
  assert.throws(() => textRanks([1, 2, 3, 4], [0, 0], 2), /image 1 has no caption/);
});
