import { test } from "node:test";
import assert from "node:assert/strict";
import { tensor, zeros, ones, randn, rand, randint, manualSeed, Generator, tidy, F, arange, full } from "../src/engine/index.ts";
import { BertVisualObjHead } from "../src/models/heads.ts";
import { semvlpConfig } from "../src/models/semvlp.ts";
import { maskedObjectPrediction } from "../src/pretrain/common.ts";
import { maskTokens, maskRegions, shuffleTriplets, topicWords, IGNORE } from "../src/objectives/masking.ts";
import { computeMlm, computeItc, computeItm, sampleHardNegatives, computeObjectPrediction, computeIfrs, computeTopic, computeQa, computeMim, computeImageLabels } from "../src/objectives/losses.ts";
import { Rng } from "../src/engine/rng.ts";
import { sampleMismatched, negativeImage, otherIndex, sampleAnswer } from "../src/objectives/sampling.ts";
import { hogPatches, hogDim } from "../src/objectives/hog.ts";
import { TorchRef } from "./torchref.ts";

const close = (a: number, b: number, tol = 1e-5) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} != ${b}`);

test("maskTokens: 15% of non-special tokens, split 80/10/10, labels only where chosen", () => tidy(() => {
  const b = 200, l = 50;
  const ids = full([b, l], 2000, { dtype: "int64" });
  const special = zeros([b, l], { dtype: "bool" });
  special.select(1, 0).fill_(1);
  const { inputIds, labels } = maskTokens(ids, { vocabSize: 30522, maskId: 103, special, generator: new Generator(1) });
  const chosen = labels.ne(IGNORE);
  const n = chosen.sum().item();
  const rate = n / (b * (l - 1));
  assert.ok(rate > 0.135 && rate < 0.165, `mask rate ${rate}`);
  assert.equal(labels.select(1, 0).ne(IGNORE).sum().item(), 0, "special positions are never masked");
  const masked = inputIds.eq(103).logicalAnd(chosen).sum().item() / n;
  const kept = inputIds.eq(2000).logicalAnd(chosen).sum().item() / n;
  const random = 1 - masked - kept;
  assert.ok(masked > 0.76 && masked < 0.84, `[MASK] share ${masked}`);
  assert.ok(kept > 0.075 && kept < 0.13, `kept share ${kept}`);
  assert.ok(random > 0.07 && random < 0.13, `random share ${random}`);
  assert.equal(inputIds.ne(2000).logicalAnd(chosen.logicalNot()).sum().item(), 0, "unchosen tokens are unchanged");
  assert.equal(labels.eq(2000).sum().item(), n, "labels are the original ids");
}));

test("maskTokens: whole-word masking masks every piece of a chosen word", () => tidy(() => {
  const b = 300;
  // words: [CLS] w0 w0 w1 w2 w2 w2 [SEP]
  const wordRow = [-1, 0, 0, 1, 2, 2, 2, -1];
  const wordIds = tensor(Array(b).fill(wordRow), { dtype: "int64" });
  const ids = full([b, 8], 5000, { dtype: "int64" });
  const special = wordIds.lt(0);
  const { labels } = maskTokens(ids, { vocabSize: 30522, maskId: 103, special, wordIds, generator: new Generator(2) });
  const lab = labels.toArray();
  let words = 0;
  for (let i = 0; i < b; i++) {
    const row = lab.slice(i * 8, i * 8 + 8).map((x) => x !== IGNORE);
    assert.equal(row[1], row[2], "pieces of word 0 masked together");
    assert.ok(row[4] === row[5] && row[5] === row[6], "pieces of word 2 masked together");
    assert.ok(!row[0] && !row[7]);
    words += (row[1] ? 1 : 0) + (row[3] ? 1 : 0) + (row[4] ? 1 : 0);
  }
  const rate = words / (3 * b);
  assert.ok(rate > 0.11 && rate < 0.19, `word mask rate ${rate}`);
}));

test("maskRegions: 80% zeroed, 10% another image's feature, 10% kept, invalid regions untouched", () => tidy(() => {
  const b = 64, n = 36, d = 4;
  // each image's features are its own index, so a swapped feature is recognisable
  const feats = arange(b).float().reshape(b, 1, 1).expand(b, n, d).add(1).contiguous();
  const valid = ones([b, n], { dtype: "bool" });
  valid.select(1, 0).fill_(0);
  const { feats: out, mask } = maskRegions(feats, { valid, generator: new Generator(3) });
  const m = mask.toArray();
  const o = out.select(2, 0).toArray();
  const orig = feats.select(2, 0).toArray();
  let zero = 0, other = 0, kept = 0, total = 0;
  for (let i = 0; i < b * n; i++) {
    if (i % n === 0) assert.equal(m[i], 0, "invalid region never masked");
    if (!m[i]) { assert.equal(o[i], orig[i]); continue; }
    total++;
    if (o[i] === 0) zero++;
    else if (o[i] === orig[i]) kept++;
    else other++;
  }
  assert.ok(total / (b * (n - 1)) > 0.12 && total / (b * (n - 1)) < 0.18);
  assert.ok(zero / total > 0.74 && zero / total < 0.86, `zero ${zero / total}`);
  assert.ok(other / total > 0.05 && other / total < 0.15, `other ${other / total}`);
  assert.ok(kept / total > 0.05 && kept / total < 0.15, `kept ${kept / total}`);
}));

test("shuffleTriplets: permutes inside consecutive triplets only, about 5% of triplets, never identity", () => tidy(() => {
  const b = 400, n = 37;
  const { index, shuffled } = shuffleTriplets(b, n, { offset: 1, generator: new Generator(4) });
  const idx = index.toArray();
  const sh = shuffled.toArray();
  let changedTriplets = 0;
  for (let i = 0; i < b; i++) {
    assert.equal(idx[i * n], 0, "the visual [CLS] stays");
    for (let t = 0; t < 12; t++) {
      const base = 1 + 3 * t;
      const trip = [0, 1, 2].map((k) => idx[i * n + base + k]);
      assert.deepEqual([...trip].sort((x, y) => x - y), [base, base + 1, base + 2], "a permutation of the triplet");
      const moved = trip.some((v, k) => v !== base + k);
      if (moved) changedTriplets++;
      for (let k = 0; k < 3; k++) assert.equal(sh[i * n + base + k], trip[k] !== base + k ? 1 : 0);
    }
  }
  const rate = changedTriplets / (b * 12);
  assert.ok(rate > 0.035 && rate < 0.065, `triplet shuffle rate ${rate}`);
}));

test("computeIfrs: squared L2 averaged over shuffled positions", () => tidy(() => {
  const pred = tensor([[[1, 2], [0, 0], [3, 3]]]);
  const orig = tensor([[[0, 0], [5, 5], [1, 1]]]);
  const shuffled = tensor([[true, false, true]]);
  const { loss } = computeIfrs(pred, orig, shuffled);
  close(loss.item(), (5 + 8) / 2);
}));

test("computeMlm: ignores unmasked positions and matches a hand computation", () => tidy(() => {
  const logits = tensor([[[2, 0, 0], [0, 1, 0]]]);
  const labels = tensor([[0, -1]], { dtype: "int64" });
  const { loss, metrics } = computeMlm(logits, labels);
  close(loss.item(), -Math.log(Math.exp(2) / (Math.exp(2) + 2)));
  assert.equal(metrics.mlm_acc.item(), 1);
  assert.equal(metrics.mlm_count.item(), 1);
}));

test("losses with nothing to measure: loss 0 with a zero gradient, and the metric NaN (the trainer leaves it out of the row)", () => tidy(() => {
  const logits = tensor([[[2, 0, 0], [0, 1, 0]]]).requiresGrad_();
  const mlm = computeMlm(logits, tensor([[-1, -1]], { dtype: "int64" }));
  assert.equal(mlm.loss.item(), 0);
  assert.ok(Number.isNaN(mlm.metrics.mlm_loss.item()));
  assert.equal(mlm.metrics.mlm_acc.item(), 0);
  assert.equal(mlm.metrics.mlm_count.item(), 0);
  mlm.loss.backward();
  assert.deepEqual(logits.grad!.toArray(), [0, 0, 0, 0, 0, 0]);
  const itm = computeItm(tensor([[0, 3], [3, 0]]), tensor([-1, -1], { dtype: "int64" }));
  assert.equal(itm.loss.item(), 0);
  assert.ok(Number.isNaN(itm.metrics.itm_loss.item()) && Number.isNaN(itm.metrics.itm_acc.item()));
  assert.equal(itm.metrics.itm_count.item(), 0);
  // with targets, itm_count is the one left out
  assert.ok(Number.isNaN(computeItm(tensor([[0, 3]]), tensor([1], { dtype: "int64" })).metrics.itm_count.item()));
}));

test("computeItc: symmetric cross-entropy with temperature, by hand", () => tidy(() => {
  const img = F.normalize(tensor([[1, 0], [0.6, 0.8]]), 2, -1);
  const txt = F.normalize(tensor([[0.8, 0.6], [0, 1]]), 2, -1);
  const scale = tensor([Math.log(10)]);
  const { loss } = computeItc(img, txt, scale);
  const s = [[0.8, 0], [0.96, 0.8]].map((r) => r.map((x) => 10 * x));
  const ce = (row: number[], k: number) => -row[k] + Math.log(row.reduce((a, x) => a + Math.exp(x), 0));
  const i2t = (ce(s[0], 0) + ce(s[1], 1)) / 2;
  const t2i = (ce([s[0][0], s[1][0]], 0) + ce([s[0][1], s[1][1]], 1)) / 2;
  close(loss.item(), (i2t + t2i) / 2, 1e-5);
}));

test("sampleHardNegatives never picks the positive, and prefers similar items", () => tidy(() => {
  const b = 8, total = 16, offset = 8;
  const sim = randn([b, total], { generator: new Generator(5) });
  // make column offset+i (the positive) and column 0 very similar for every row
  for (let i = 0; i < b; i++) { sim.select(0, i).select(0, offset + i).fill_(50); sim.select(0, i).select(0, i === 0 ? 1 : 0).fill_(8); }
  let zeroHits = 0;
  for (let r = 0; r < 50; r++) {
    const neg = sampleHardNegatives(sim, offset, new Generator(100 + r)).toArray();
    neg.forEach((j, i) => { assert.notEqual(j, offset + i); if (j === (i === 0 ? 1 : 0)) zeroHits++; });
  }
  assert.ok(zeroHits / (50 * b) > 0.8, "the most similar non-positive column dominates");
}));

test("computeObjectPrediction: mask vs confidence weighting and the mismatch rule", () => tidy(() => {
  const obj = tensor([[[5, 0], [0, 5]]]);
  const labels = tensor([[0, 0]], { dtype: "int64" });
  const conf = tensor([[0.5, 1]]);
  const mask = tensor([[false, true]]);
  const t = { feats: zeros([1, 2, 3]), objLabels: labels, objConf: conf, attrLabels: labels, attrConf: conf, mask };
  const ce0 = -5 + Math.log(Math.exp(5) + 1), ce1 = Math.log(Math.exp(5) + 1);
  const byMask = computeObjectPrediction({ obj }, t, { weighting: "mask", scale: 1 });
  close(byMask.loss.item(), ce1 / 2);
  const byConf = computeObjectPrediction({ obj }, t, { weighting: "confidence", scale: 1 });
  close(byConf.loss.item(), (0.5 * ce0 + 1 * ce1) / 2);
  const mismatched = computeObjectPrediction({ obj }, { ...t, matched: tensor([false]) }, { weighting: "mask" });
  close(mismatched.loss.item(), 0);
  assert.equal(byMask.metrics.obj_acc.item(), 0);
}));

test("computeItm / computeQa / computeTopic / computeMim basic values", () => tidy(() => {
  const itm = computeItm(tensor([[0, 3], [3, 0]]), tensor([1, 1], { dtype: "int64" }));
  close(itm.loss.item(), (Math.log(1 + Math.exp(-3)) + Math.log(1 + Math.exp(3))) / 2);
  assert.equal(itm.metrics.itm_acc.item(), 0.5);
  const qa = computeQa(tensor([[1, 0], [0, 1]]), tensor([1, 1], { dtype: "int64" }), tensor([true, false]));
  close(qa.loss.item(), Math.log(1 + Math.E) - 0);
  assert.equal(qa.metrics.qa_count.item(), 1);
  const topic = computeTopic(tensor([[10, -10, 10]]), tensor([[1, 0, 0]]));
  assert.equal(topic.metrics.topic_precision.item(), 0.5);
  assert.equal(topic.metrics.topic_recall.item(), 1);
  const patches = tensor([[[1, 2, 3, 4], [2, 2, 2, 2]]]);
  const mim = computeMim(zeros([1, 2, 4]), patches, tensor([[true, false]]));
  // target = (x - mean) / sqrt(unbiased var + 1e-6): mean square = biased var / unbiased var = 1.25 / (5/3) = 0.75
  close(mim.loss.item(), 0.75, 1e-4);
}));

test("computeImageLabels: binary cross-entropy averaged within each label group, then over the groups; precision at k", () => tidy(() => {
  const x = [[2, -1, 0.5, 1, -2], [-3, 1, 0, 0.5, 3]], y = [[1, 0, 1, 0, 1], [0, 1, 0, 1, 1]];
  const groups = { objects: [0, 3] as [number, number], attributes: [3, 5] as [number, number] };
  const out = computeImageLabels(tensor(x), tensor(y), groups);
  const bce = (v: number, t: number) => -(t * Math.log(1 / (1 + Math.exp(-v))) + (1 - t) * Math.log(1 - 1 / (1 + Math.exp(-v))));
  const groupLoss = ([lo, hi]: [number, number]) => x.flatMap((row, i) => row.slice(lo, hi).map((v, j) => bce(v, y[i][lo + j]))).reduce((a, b) => a + b) / (2 * (hi - lo));
  // a plain mean over all 10 labels would weigh objects 3 : 2; the groups count equally
  close(out.loss.item(), (groupLoss(groups.objects) + groupLoss(groups.attributes)) / 2);
  close(out.metrics.lbl_objects_loss.item(), groupLoss(groups.objects));
  // objects: row 0 has k = 2 (labels 0, 2; top-2 scores 2 and 0.5: both true), row 1 has k = 1 (label 1 scores highest): 3 / 3
  close(out.metrics["lbl_objects_p@k"].item(), 1);
  // attributes: row 0 k = 1 (label 4 at -2 below label 3 at 1: a miss), row 1 k = 2 (both): 2 / 3
  close(out.metrics["lbl_attributes_p@k"].item(), 2 / 3);
  // the gradient flows to the logits
  const z = tensor(x).requiresGrad_();
  computeImageLabels(z, tensor(y), groups).loss.backward();
  assert.ok(z.grad!.abs().sum().item() > 0);
}));

test("topicWords is W ∩ L without specials, once each in text order; sampling helpers respect their rules", () => {
  // [CLS] 5 6 7 6 [SEP] against labels {6, 7, 9, [CLS]}; ids below 104 (BERT's specials and [unused*]) are never topics
  assert.deepEqual(topicWords([101, 2005, 2006, 2007, 2006, 102], new Set([2006, 2007, 2009, 101]), 104), [2006, 2007]);
  assert.deepEqual(topicWords([101, 102], new Set([101, 102]), 104), []);
  const rng = new Rng(7);
  let neg = 0;
  for (let r = 0; r < 200; r++) {
    const own = [0, 1, 2, 3, 4, 5];
    const { imageIndex, matched } = sampleMismatched(own, 6, rng);
    imageIndex.forEach((j, i) => { if (!matched[i]) { assert.notEqual(j, i); neg++; } else assert.equal(j, i); });
  }
  assert.ok(neg / 1200 > 0.44 && neg / 1200 < 0.56);
  // indices into a split bigger than the batch: the negative is any other of the n images
  const far = sampleMismatched([3, 8], 10, new Rng(2), 1);
  assert.deepEqual(far.matched, [false, false]);
  far.imageIndex.forEach((j, k) => assert.ok(j !== [3, 8][k] && j >= 0 && j < 10));
  for (let s = 0; s < 50; s++) assert.notEqual(otherIndex(new Rng(s), 3, 1), 1);
  // ITM_HS: from the pool when there is one; a random other image when there is none or it is not drawn hard
  const images = ["a", "b", "c", "d"];
  assert.equal(negativeImage("a", images, new Rng(1), { pool: ["c"] }), "c");
  for (let s = 0; s < 50; s++) assert.notEqual(negativeImage("b", images, new Rng(s)), "b");
  const hardShare = Array.from({ length: 400 }, (_, s) => negativeImage("a", images, new Rng(s), { pool: ["c"], hardFraction: 0.25 }) === "c").filter(Boolean).length / 400;
  assert.ok(hardShare > 0.25 && hardShare < 0.25 + 0.75 / 3 + 0.1, `hard share ${hardShare}`);
  assert.equal(negativeImage("a", ["a"], new Rng(1)), "a");
  const a2l = new Map([["yes", 0], ["no", 1]]);
  assert.equal(sampleAnswer({ yes: 1 }, a2l, new Rng(3)), 0);
  assert.equal(sampleAnswer({ maybe: 1 }, a2l, new Rng(3)), -1);
});

test("HOG targets (MaskFeat, VLMo stage 1): equal to an atan2-based PyTorch reference, and a vertical edge votes for the 0 orientation", async () => {
  const px = randn([2, 3, 32, 32]);
  const got = hogPatches(px, 16);
  assert.deepEqual(got.shape, [2, 4, hogDim(16)]);
  assert.equal(hogDim(16), 3 * 9 * 4);
  const ref = new TorchRef();
  ref.put("hog/x", px);
  // independent formulation: the orientation from atan2, votes relu(cos 2(θ - θ_k)) |g| per bin
  ref.add("hog", `
x = I['x']; B, C, S, _ = x.shape
gx = F.conv2d(x, torch.tensor([-1., 0., 1.]).view(1, 1, 1, 3).repeat(C, 1, 1, 1), padding=(0, 1), groups=C)
gy = F.conv2d(x, torch.tensor([-1., 0., 1.]).view(1, 1, 3, 1).repeat(C, 1, 1, 1), padding=(1, 0), groups=C)
gx[..., :, [0, -1]] = 0; gy[..., [0, -1], :] = 0
mag = torch.sqrt(gx ** 2 + gy ** 2); th = torch.atan2(gy, gx)
v = torch.stack([torch.relu(torch.cos(2 * (th - k * math.pi / 9))) * mag * mag / (mag + 1e-6) for k in range(9)], 2)
h = F.avg_pool2d(v.reshape(B, C * 9, S, S), 8).reshape(B, C, 9, S // 8, S // 8)
g = S // 16
p = h.reshape(B, C, 9, g, 2, g, 2).permute(0, 3, 5, 1, 2, 4, 6).reshape(B, g * g, -1)
O['y'] = F.normalize(p, dim=-1)`);
  await ref.run();
  const want = ref.tensor("hog", "y").values;
  const have = got.toArray() as number[];
  let worst = 0;
  for (let i = 0; i < have.length; i++) worst = Math.max(worst, Math.abs(have[i] - want[i]));
  assert.ok(worst < 1e-4, `HOG differs from the reference by ${worst}`);
  // a vertical edge (left half dark, right half bright): gradients along x only, θ = 0
  const edge = zeros([1, 3, 16, 16]).add(tensor(Array.from({ length: 16 }, (_, j) => (j < 8 ? -1 : 1)), { shape: [1, 1, 1, 16] }));
  const h = hogPatches(edge, 16, { cell: 16 }).reshape(3, 9).toArray() as number[];
  for (let c = 0; c < 3; c++) {
    const row = h.slice(c * 9, c * 9 + 9);
    assert.equal(row.indexOf(Math.max(...row)), 0, `channel ${c}: votes ${row.map((x) => x.toFixed(3)).join(" ")}`);
    assert.ok(row[4] < 1e-6, "the orthogonal orientation gets no vote");
  }
});

test("maskedObjectPrediction: the visual head on the masked regions alone gives the full head's loss, metrics and gradients (weighting mask); other weightings read every region", () => tidy(() => {
  manualSeed(3);
  const b = 4, n = 6;
  const head = new BertVisualObjHead({ ...semvlpConfig("tiny"), numObjectLabels: 30, numAttrLabels: 7, visualFeatDim: 5 }, { pooledProduct: true });
  const h = semvlpConfig("tiny").hiddenSize;
  const regions0 = randn([b, n, h]), pooled0 = randn([b, h]);
  const mask = rand([b, n]).lt(0.4);
  mask.select(0, 1).select(0, 2).fill_(1); // at least one masked region
  const t = { feats: randn([b, n, 5]), objLabels: randint(-1, 30, [b, n]), objConf: rand([b, n]), attrLabels: randint(-1, 7, [b, n]), attrConf: rand([b, n]), mask, matched: tensor([true, false, true, true]) };
  const run = (masked: boolean, weighting: "mask" | "confidence") => {
    head.zeroGrad();
    const regions = regions0.clone().requiresGrad_(), pooled = pooled0.clone().requiresGrad_();
    const out = masked
      ? maskedObjectPrediction((x, p) => head.forward(x, p), regions, pooled, t, { weighting })
      : computeObjectPrediction(head.forward(regions, pooled), t, { weighting });
    out.loss.backward();
    return { loss: out.loss.item(), acc: out.metrics.obj_acc.item(), mrfr: out.metrics.mrfr_loss.item(), gr: regions.grad!.toArray() as number[], gp: pooled.grad!.toArray() as number[], gw: head.decoder_dict.get("obj").weight.grad!.toArray() as number[] };
  };
  for (const weighting of ["mask", "confidence"] as const) {
    const full = run(false, weighting), sel = run(true, weighting);
    close(sel.loss, full.loss);
    close(sel.mrfr, full.mrfr);
    assert.equal(sel.acc, full.acc);
    for (const k of ["gr", "gp", "gw"] as const) full[k].forEach((x, i) => close(sel[k][i], x, 1e-4));
    assert.ok(full.gr.some((x) => x !== 0) && full.gw.some((x) => x !== 0), "the losses reach the regions and the head");
  }
  // regions neither masked nor in a matched pair get no gradient under "mask" weighting
  const m = run(true, "mask");
  const unmasked = mask.logicalNot().reshape(-1).toArray() as number[];
  for (let r = 0; r < b * n; r++) if (unmasked[r] || Math.floor(r / n) === 1) for (let j = 0; j < h; j++) assert.equal(m.gr[r * h + j], 0);
}));
