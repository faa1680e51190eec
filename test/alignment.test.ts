// The pieces that make pre-training learn image-text alignment (README "Pre-training that learns"):
// the detector code in the synthetic region features, caption-only and paired ITM batches, keyed ITC
// (several captions of one image in a batch), SemVLP's unimodal passes and mean pooling, VLMo's
// mean-pooled ITC read-out, and the held-out evaluation of a pre-training run.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateWorld } from "../src/data/synth/world.ts";
import { readObj36Tsv, type Obj36Record } from "../src/data/formats/obj36.ts";
import { createBuilder } from "../src/pretrain/builder.ts";
import { tensor, tidy, noGrad, F, randn, manualSeed } from "../src/engine/index.ts";
import { computeItcKeyed, computeItc, computeItm } from "../src/objectives/losses.ts";
import { SemVLPForPreTraining, semvlpConfig, maskedMean } from "../src/models/semvlp.ts";
import { VLMoModel, vlmoConfig } from "../src/models/vlmo/index.ts";
import { LxmertModel, LxmertForPreTraining, lxmertConfig } from "../src/models/lxmert.ts";
import { evaluatePretraining, pretrainedMode } from "../src/tasks/pretrain_eval.ts";
import { scratchTaskNet } from "../src/tasks/models.ts";
import type { RegionTaskModel } from "../src/models/region_tasks.ts";
import type { TaskBatch } from "../src/data/batches.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-align-"));
let plain = "", coded = "";
before(async () => {
  plain = join(root, "plain");
  coded = join(root, "coded");
  await generateWorld({ images: 40, seed: 9, out: plain, size: 64, boxes: 10 });
  await generateWorld({ images: 40, seed: 9, out: coded, size: 64, boxes: 10, codeDim: 16 });
});

const readAll = async (p: string) => {
  const out: Obj36Record[] = [];
  for await (const r of readObj36Tsv(p)) out.push(r);
  return out;
};

test("detector code: pixel features unchanged, the code decodes to the detector's own label", async () => {
  const a = await readAll(join(plain, "features/obj36.tsv"));
  const b = await readAll(join(coded, "features/obj36.tsv"));
  assert.equal(a.length, b.length);
  let right = 0, total = 0;
  // the code book is fixed: recover it as the mean code of each detected label, then decode by nearest mean
  const sums = new Map<number, Float64Array>(), counts = new Map<number, number>();
  for (let r = 0; r < a.length; r++) {
    assert.equal(a[r].img_id, b[r].img_id);
    assert.deepEqual([...a[r].objects_id], [...b[r].objects_id], "the code does not change the detections");
    const n = a[r].num_boxes;
    assert.equal(b[r].features.length, n * 80, "64 pixel values + 16 code values per box");
    for (let i = 0; i < n; i++) {
      assert.deepEqual([...b[r].features.subarray(i * 80, i * 80 + 64)], [...a[r].features.subarray(i * 64, i * 64 + 64)], "pixel part identical");
      const l = b[r].objects_id[i];
      const s = sums.get(l) ?? new Float64Array(16);
      for (let j = 0; j < 16; j++) s[j] += b[r].features[i * 80 + 64 + j];
      sums.set(l, s);
      counts.set(l, (counts.get(l) ?? 0) + 1);
    }
  }
  for (const r of b) {
    for (let i = 0; i < r.num_boxes; i++) {
      const x = r.features.subarray(i * 80 + 64, i * 80 + 80);
      let best = -1, bestD = Infinity;
      for (const [l, s] of sums) {
        const c = counts.get(l)!;
        let d = 0;
        for (let j = 0; j < 16; j++) d += (x[j] - s[j] / c) ** 2;
        if (d < bestD) [best, bestD] = [l, d];
      }
      right += best === r.objects_id[i] ? 1 : 0;
      total++;
    }
  }
  assert.ok(right / total > 0.6, `nearest-mean decoding of the label from the code: ${right}/${total}`);
});

const examples = (w: string) => [{ path: join(w, "lxmert/mscoco_train.json"), sources: ["mscoco", "vqa", "gqa"] }];

test("ITM on captions only: question rows keep their image and get no ITM target", async () => {
  const bld = await createBuilder({ examples: examples(plain), regions: join(plain, "features/obj36.tsv"), maxTextLen: 20, maxBoxes: 10, seed: 1, itm: { prob: 0.5, sources: ["mscoco"] } });
  let questions = 0, negatives = 0;
  for (let step = 0; step < 8; step++) {
    const h = await bld.build(Array.from({ length: 16 }, (_, k) => (step * 16 + k) % bld.length), step);
    const sources = h.meta.sources as string[];
    const target = h.arrays.itm_target.data as BigInt64Array, matched = h.arrays.matched.data as Uint8Array;
    sources.forEach((s, k) => {
      if (s === "mscoco") {
        assert.equal(Number(target[k]), matched[k], "caption rows: target = matched");
        negatives += 1 - matched[k];
      } else {
        questions++;
        assert.equal(Number(target[k]), -1);
        assert.equal(matched[k], 1, "a question stays with its own image");
      }
    });
  }
  assert.ok(questions > 0 && negatives > 0);
});

test("paired ITM: every caption appears with its own image and with another one", async () => {
  const bld = await createBuilder({ examples: [{ path: join(plain, "lxmert/mscoco_train.json"), sources: ["mscoco"] }], regions: join(plain, "features/obj36.tsv"), maxTextLen: 20, maxBoxes: 10, seed: 1, itm: { prob: 0.5, paired: true } });
  const h = await bld.build([0, 1, 2, 3, 4, 5], 0);
  const ids = h.arrays.input_ids.data as BigInt64Array;
  const matched = h.arrays.matched.data as Uint8Array;
  const imgs = h.meta.imgIds as string[];
  assert.equal(matched.length, 12);
  assert.deepEqual([...matched], [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
  for (let k = 0; k < 6; k++) {
    assert.deepEqual([...ids.subarray(k * 20, k * 20 + 20)], [...ids.subarray((k + 6) * 20, (k + 6) * 20 + 20)], "the twin has the same text");
    assert.notEqual(imgs[k], imgs[k + 6], "and another image");
  }
  const keys = h.arrays.img_key.data as BigInt64Array;
  for (let i = 0; i < 12; i++) for (let j = 0; j < 12; j++) assert.equal(keys[i] === keys[j], imgs[i] === imgs[j], "img_key names the image");
});

test("computeItcKeyed: soft targets over rows that share an image; equals computeItc when keys are distinct", () => tidy(() => {
  manualSeed(3);
  const img = F.normalize(randn([6, 8]), 2, -1), txt = F.normalize(randn([6, 8]), 2, -1);
  const scale = tensor(Math.log(10));
  const distinct = computeItcKeyed(img, txt, scale, tensor([0, 1, 2, 3, 4, 5], { dtype: "int64" }));
  const plainItc = computeItc(img, txt, scale);
  assert.ok(Math.abs(distinct.loss.item() - plainItc.loss.item()) < 1e-5);
  // rows 0 and 1 show the same image: by hand, -1/2 [ mean_i sum_j q_ij log p_ij + the same for columns ]
  const keys = [0, 0, 1, 2, 3, 4];
  const s = img.matmul(txt.T).mul(10).data() as Float32Array;
  const n = 6;
  let li = 0, lt = 0;
  for (let i = 0; i < n; i++) {
    const pos = keys.map((k, j) => (k === keys[i] ? j : -1)).filter((j) => j >= 0);
    const rowMax = Math.max(...Array.from({ length: n }, (_, j) => s[i * n + j]));
    const lseR = rowMax + Math.log(Array.from({ length: n }, (_, j) => Math.exp(s[i * n + j] - rowMax)).reduce((a, b) => a + b));
    const colMax = Math.max(...Array.from({ length: n }, (_, j) => s[j * n + i]));
    const lseC = colMax + Math.log(Array.from({ length: n }, (_, j) => Math.exp(s[j * n + i] - colMax)).reduce((a, b) => a + b));
    for (const j of pos) {
      li -= (s[i * n + j] - lseR) / pos.length;
      lt -= (s[j * n + i] - lseC) / pos.length;
    }
  }
  const keyed = computeItcKeyed(img, txt, scale, tensor(keys, { dtype: "int64" }));
  assert.ok(Math.abs(keyed.loss.item() - (li + lt) / (2 * n)) < 1e-4, `${keyed.loss.item()} vs ${(li + lt) / (2 * n)}`);
}));

test("computeItm: rows with target -1 take no part", () => tidy(() => {
  const logits = tensor([[2, -2], [-3, 3], [5, -5]]);
  const a = computeItm(logits, tensor([0, 1, -1], { dtype: "int64" }));
  const b = computeItm(logits.narrow(0, 0, 2), tensor([0, 1], { dtype: "int64" }));
  assert.ok(Math.abs(a.loss.item() - b.loss.item()) < 1e-6);
  assert.equal(a.metrics.itm_acc.item(), 1);
}));

test("SemVLP: unimodal passes are the two-stream text stream; mean pooling; ITC reaches both embeddings", () => tidy(() => {
  manualSeed(0);
  const c = semvlpConfig("tiny", { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 2, crossLayerStart: 1, visualFeatDim: 8, itcDim: 16, itcPool: "mean", pool: "mean", numQaLabels: 4, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 });
  const m = new SemVLPForPreTraining(c);
  m.eval();
  const x = {
    inputIds: tensor([[101, 2000, 2003, 102, 0], [101, 3000, 102, 0, 0]], { dtype: "int64" }),
    attentionMask: tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], { dtype: "int64" }),
    visualFeats: randn([2, 3, 8]), visualPos: tensor([[[0, 0, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9], [0, 0, 1, 1]], [[0, 0, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9], [0, 0, 1, 1]]]),
    visualAttentionMask: tensor([[1, 1, 1], [1, 1, 0]], { dtype: "int64" }),
  };
  const two = m.bert.forward(x, "two");
  const text = m.bert.encodeText(x);
  assert.ok(two.textOutput.sub(text).abs().max().item() < 1e-5, "encodeText = two-stream text stream");
  const hv = m.bert.encodeImage(x);
  assert.deepEqual(hv.shape, [2, 4, 32]);
  // mean pooling ignores padding: changing a padded region's features changes nothing
  const x2 = { ...x, visualFeats: x.visualFeats.clone() };
  noGrad(() => x2.visualFeats.select(0, 1).select(0, 2).fill_(7));
  assert.ok(maskedMean(m.bert.encodeImage(x2), null).sub(maskedMean(hv, null)).abs().max().item() > 0, "unmasked mean sees padding");
  const pooledA = m.bert.forward(x, "single").pooledOutput, pooledB = m.bert.forward(x2, "single").pooledOutput;
  assert.ok(pooledA.sub(pooledB).abs().max().item() < 1e-5, "the pooled mean ignores padded regions");
  m.train();
  const f = m.itcFeatures(x);
  computeItcKeyed(f.image, f.text, m.logit_scale!, tensor([0, 1], { dtype: "int64" })).loss.backward();
  assert.ok(m.bert.embeddings.word_embeddings.weight.grad!.abs().sum().item() > 0);
  assert.ok(m.bert.encoder.visn_fc.visn_fc.weight.grad!.abs().sum().item() > 0);
  assert.ok(m.logit_scale!.grad!.abs().item() > 0);
}));

test("VLMo: itcPool 'mean' reads the masked mean; 'cls' (official) the [CLS]", () => tidy(() => {
  manualSeed(1);
  const over = { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1, imageSize: 16, patchSize: 8, dropPathRate: 0, textDropout: 0 };
  const mean = new VLMoModel(vlmoConfig("tiny", { ...over, itcPool: "mean" }));
  const cls = new VLMoModel(vlmoConfig("tiny", over));
  cls.loadStateDict(mean.stateDict());
  mean.eval();
  cls.eval();
  const ids = tensor([[101, 2000, 102, 0], [101, 2001, 2002, 102]], { dtype: "int64" });
  const mask = tensor([[1, 1, 1, 0], [1, 1, 1, 1]], { dtype: "int64" });
  const a = mean.inferText(ids, mask, { vlBranch: false }), b = cls.inferText(ids, mask, { vlBranch: false });
  const expectMean = F.normalize(mean.itc_text_proj!.forward(maskedMean(a.hidden, mask)), 2, -1);
  assert.ok(a.itc!.sub(expectMean).abs().max().item() < 1e-5);
  const expectCls = F.normalize(cls.itc_text_proj!.forward(b.hidden.select(1, 0)), 2, -1);
  assert.ok(b.itc!.sub(expectCls).abs().max().item() < 1e-5);
}));

test("ITM read-outs: SemVLP itmRead 'prod' is pooler.dense(mean text * mean image); the paper's read-out is unchanged", () => tidy(() => {
  manualSeed(2);
  const base = { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 2, crossLayerStart: 1, visualFeatDim: 8, numQaLabels: 4, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 };
  const prod = new SemVLPForPreTraining(semvlpConfig("tiny", { ...base, itmRead: "prod" }));
  const paper = new SemVLPForPreTraining(semvlpConfig("tiny", base));
  paper.loadStateDict(prod.stateDict());
  prod.eval();
  paper.eval();
  const x = {
    inputIds: tensor([[101, 2000, 102, 0]], { dtype: "int64" }), attentionMask: tensor([[1, 1, 1, 0]], { dtype: "int64" }),
    visualFeats: randn([1, 3, 8]), visualPos: tensor([[[0, 0, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9], [0, 0, 1, 1]]]), visualAttentionMask: tensor([[1, 1, 0]], { dtype: "int64" }),
  };
  for (const mode of ["single", "two"] as const) {
    const a = prod.forward(x, mode), b = paper.forward(x, mode);
    assert.ok(a.pooledOutput.sub(b.pooledOutput).abs().max().item() < 1e-6, "pooled output (QA, fine-tuning) unchanged");
    assert.ok(b.itmInput.sub(b.pooledOutput).abs().max().item() === 0, "paper: ITM reads the pooled output");
    const im = tensor([[1, 1, 1, 0]], { dtype: "int64" });
    const expect = prod.bert.pooler.dense.forward(maskedMean(a.textOutput, x.attentionMask).mul(maskedMean(a.imageOutput, im))).tanh();
    assert.ok(a.itmInput.sub(expect).abs().max().item() < 1e-6, `${mode}: product read-out`);
    assert.ok(a.matchLogits.sub(prod.cls.seq_relationship.forward(expect)).abs().max().item() < 1e-6);
  }
}));

test("ITM read-outs: LXMERT-S pool 'mean' feeds the paper's product pooler with sequence means; VLMo itmRead 'prod' (ITM and the pooled vector the task heads read)", () => tidy(() => {
  manualSeed(4);
  const over = { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 8, xLayers: 1, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 };
  const m = new LxmertModel(lxmertConfig("lxmertSTiny", { ...over, pool: "mean" }));
  m.eval();
  const x = {
    inputIds: tensor([[101, 2000, 2001, 102, 0]], { dtype: "int64" }), attentionMask: tensor([[1, 1, 1, 1, 0]], { dtype: "int64" }),
    positionIds: tensor([[0, 1, 2, 3, 0]], { dtype: "int64" }),
    visualFeats: randn([1, 3, 8]), visualPos: tensor([[[0, 0, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9], [0, 0, 1, 1]]]), visualAttentionMask: tensor([[1, 1, 0]], { dtype: "int64" }),
  };
  const out = m.forward(x);
  const vm = tensor([[1, 1, 1, 0]], { dtype: "int64" });
  const expect = m.pooler.dense.forward(maskedMean(out.languageOutput, x.attentionMask)).tanh().mul(m.pooler_f!.dense.forward(maskedMean(out.visionOutput, vm)).tanh());
  assert.ok(out.pooledOutput.sub(expect).abs().max().item() < 1e-6);

  const v = new VLMoModel(vlmoConfig("tiny", { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1, imageSize: 16, patchSize: 8, dropPathRate: 0, textDropout: 0, itmRead: "prod" }));
  v.eval();
  const ids = tensor([[101, 2000, 102, 0]], { dtype: "int64" }), mask = tensor([[1, 1, 1, 0]], { dtype: "int64" });
  const f = v.inferFusion(ids, mask, randn([1, 3, 16, 16]));
  const e = v.pooler.dense.forward(maskedMean(f.textFeats, mask).mul(f.imageFeats.mean(1))).tanh();
  assert.ok(v.itmLogits(f).sub(v.itm_score!.forward(e)).abs().max().item() < 1e-6);
  // the VQA / NLVR2 heads read the same pair vector (`pooled`), not the pooler on the fusion [CLS]
  assert.ok(f.pooled.sub(e).abs().max().item() < 1e-6);
  assert.ok(f.pooled.sub(v.pooler.forward(f.hidden)).abs().max().item() > 1e-3);
}));

test("LXMERT-S itmRead 'prod': the ITM head reads pooler(mean(lang) * mean(vision incl. the visual [CLS])); official read-out unchanged", () => tidy(() => {
  manualSeed(5);
  const over = { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 8, xLayers: 2, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0, taskQa: false };
  const prod = new LxmertForPreTraining(lxmertConfig("lxmertSTiny", { ...over, itmRead: "prod" }));
  const paper = new LxmertForPreTraining(lxmertConfig("lxmertSTiny", over));
  paper.loadStateDict(prod.stateDict());
  prod.eval();
  paper.eval();
  const x = lxmertInputs();
  const a = prod.forward(x), b = paper.forward(x);
  assert.ok(a.pooledOutput.sub(b.pooledOutput).abs().max().item() < 1e-6, "pooled output (topic and object heads) unchanged");
  assert.ok(b.matchLogits.sub(paper.cls.seq_relationship.forward(b.pooledOutput)).abs().max().item() < 1e-6, "official: ITM on the pooled output");
  const vm = tensor([[1, 1, 1, 0]], { dtype: "int64" });
  const expect = prod.bert.pooler.dense.forward(maskedMean(a.languageOutput, x.attentionMask).mul(maskedMean(a.visionOutput, vm))).tanh();
  assert.ok(a.itmInput.sub(expect).abs().max().item() < 1e-6);
  assert.ok(a.matchLogits.sub(prod.cls.seq_relationship.forward(expect)).abs().max().item() < 1e-6);
  assert.ok(a.matchLogits.sub(b.matchLogits).abs().max().item() > 1e-4, "the read-outs differ");
}));

test("LXMERT-S unimodal passes (MSP's align-before-fuse ITC): the cross layers with their cross-attention skipped", () => tidy(() => {
  manualSeed(6);
  const m = new LxmertModel(lxmertConfig("lxmertSTiny", { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 8, xLayers: 2, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 }));
  m.eval();
  const x = lxmertInputs();
  const t = m.encodeText(x);
  const t2 = m.encodeText({ ...x, visualFeats: randn([1, 3, 8]) });
  assert.ok(t.sub(t2).abs().max().item() === 0, "the text pass does not see the image");
  const v = m.encodeImage(x);
  assert.deepEqual(v.hidden.shape, [1, 4, 32], "visual [CLS] + 3 regions");
  assert.deepEqual(v.mask!.toArray(), [1, 1, 1, 0]);
  const full = m.forward(x);
  assert.ok(t.sub(full.languageOutput).abs().max().item() > 1e-3, "with cross-attention the outputs differ");
  // With the cross-attention's output projection zeroed, a cross sub-layer is LayerNorm(x) of an
  // already layer-normalised x (fresh LayerNorms: weight 1, bias 0), so the fused and unimodal passes agree.
  noGrad(() => {
    for (const l of m.encoder.x_layers) {
      l.visual_attention.output.dense.weight.zero_();
      l.visual_attention.output.dense.bias!.zero_();
    }
  });
  const z = m.forward(x);
  assert.ok(m.encodeText(x).sub(z.languageOutput).abs().max().item() < 1e-4, "text pass = fused pass without cross-attention");
  // the image pass sees no words (LXMERT-S's visual [CLS] is the embedding of the first id, [CLS] in both)
  const other = m.encodeImage({ ...x, inputIds: tensor([[101, 3000, 102, 0, 0]], { dtype: "int64" }) }).hidden;
  assert.ok(m.encodeImage(x).hidden.sub(other).abs().max().item() === 0, "the image pass does not see the text");
}));

test("LXMERT-S task models (VQA, GQA, NLVR2) read the vector its ITM head reads: the product read-out with itmRead 'prod', the product pooler otherwise", () => {
  manualSeed(6);
  for (const itmRead of ["pooled", "prod"] as const) {
    const over = { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 8, xLayers: 2, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0, pool: "mean", itmRead };
    const net = scratchTaskNet("msp", { preset: "lxmertSTiny", overrides: over }, { kind: "qa", answers: 5 }, "single");
    const m = net.model as RegionTaskModel;
    m.eval();
    tidy(() => {
      const x = lxmertInputs();
      const batch = { input_ids: x.inputIds, attention_mask: x.attentionMask, word_position_ids: x.positionIds, feats: x.visualFeats, boxes: x.visualPos, region_valid: x.visualAttentionMask } as unknown as TaskBatch;
      const out = (m.bert as LxmertModel).forward(x);
      assert.ok(net.logits(batch).sub(m.answer_head!.forward(out.itmInput)).abs().max().item() < 1e-6, `${itmRead}: the answer head reads itmInput`);
      assert.equal(out.itmInput.sub(out.pooledOutput).abs().max().item() === 0, itmRead === "pooled", `${itmRead}: itmInput is the product pooler only for the official read`);
    });
    m.dispose();
  }
});

function lxmertInputs() {
  return {
    inputIds: tensor([[101, 2000, 2001, 102, 0]], { dtype: "int64" }), attentionMask: tensor([[1, 1, 1, 1, 0]], { dtype: "int64" }),
    positionIds: tensor([[0, 1, 2, 3, 0]], { dtype: "int64" }),
    visualFeats: randn([1, 3, 8]), visualPos: tensor([[[0, 0, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9], [0, 0, 1, 1]]]), visualAttentionMask: tensor([[1, 1, 0]], { dtype: "int64" }),
  };
}

/** `vlp pretrain` as a child process (it writes recipe.json, which the evaluation reads). */
function pretrain(args: string[]): Promise<void> {
  return new Promise((resolveP, reject) => {
    const p = spawn(process.execPath, ["--import", "tsx", "src/cli/vlp.ts", "pretrain", "--quiet", ...args], { cwd: new URL("..", import.meta.url).pathname, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, VLP_NUM_THREADS: "1" } });
    let err = "";
    p.stderr!.on("data", (d) => (err += d));
    p.on("exit", (c) => (c === 0 ? resolveP() : reject(new Error(`vlp pretrain exited ${c}: ${err.slice(-2000)}`))));
  });
}

test("held-out evaluation of pre-training runs: ITM on balanced caption pairs and zero-shot retrieval, with chance levels", async () => {
  const sem = join(root, "run-semvlp"), vl = join(root, "run-vlmo");
  const common = ["--set", `data.world=${coded}`, "--set", "train.workers=0", "--set", "train.checkpointEvery=0", "--set", "train.batchSize=8"];
  await pretrain(["--recipe", "recipes/semvlp-tiny.json", "--out", sem, ...common, "--set", "train.steps=4", "--set", "train.evalEvery=0",
    "--set", 'model.overrides={"hiddenSize":32,"numAttentionHeads":2,"intermediateSize":64,"numHiddenLayers":2,"crossLayerStart":1,"visualFeatDim":80,"itcPool":"mean","pool":"mean","itmRead":"prod"}']);
  await pretrain(["--recipe", "recipes/vlmo-tiny.json", "--out", vl, ...common, "--set", 'vlmo.order=["image-text"]', "--set", "vlmo.stages.image-text.steps=3",
    "--set", 'model.overrides={"hiddenSize":32,"numLayers":2,"numHeads":2,"vlffnStartLayer":1,"imageSize":32,"patchSize":16,"itcPool":"mean","itmRead":"prod"}']);
  for (const [run, limit] of [[sem, 2], [vl, undefined]] as const) {
    const m = await evaluatePretraining(run, { split: "test", limit, quiet: true });
    for (const k of ["itm_acc", "itm_chance", "zs_ir_r1", "zs_ir_r10", "zs_tr_r1", "zs_chance_r1", "zs_chance_r10"]) {
      assert.ok(typeof m[k] === "number" && m[k] >= 0 && m[k] <= 1, `${run}: ${k} = ${m[k]}`);
    }
    assert.equal(m.itm_chance, 0.5);
    assert.ok(Math.abs(m.zs_chance_r1 - 1 / m.images) < 1e-9);
    if (limit) assert.ok(m.images <= limit && m.images >= 2);
    // the synthetic world's ground truth gives the hard held-out pairs too
    assert.ok(typeof m.itm_hs_acc === "number" && m.itm_hs_acc >= 0 && m.itm_hs_acc <= 1 && m.itm_hs_k >= 1, `${run}: itm_hs_acc ${m.itm_hs_acc}`);
  }
  // SemVLP scores in the mode it pre-trained in (both modes here: single-stream), or the one asked for
  assert.equal((await evaluatePretraining(sem, { split: "test", limit: 2, quiet: true })).two_stream, 0);
  assert.equal((await evaluatePretraining(sem, { split: "test", limit: 2, quiet: true, mode: "two" })).two_stream, 1);
});

test("pretrainedMode: a SemVLP run pre-trained two-stream only is scored two-stream, any other single-stream", () => {
  const run = (semvlp: unknown) => {
    const dir = mkdtempSync(join(root, "mode-"));
    writeFileSync(join(dir, "recipe.json"), JSON.stringify({ method: "semvlp", ...(semvlp === undefined ? {} : { semvlp }) }));
    return dir;
  };
  assert.equal(pretrainedMode(run({ singleRatio: 0 })), "two");
  assert.equal(pretrainedMode(run({ singleRatio: 1 })), "single");
  assert.equal(pretrainedMode(run({ singleRatio: 0.5 })), "single");
  assert.equal(pretrainedMode(run(undefined)), "single");
});
