// SemVLP against an independent PyTorch implementation (test/models-ref.ts) that loads the same
// weights: both modes, forward outputs, attention maps, hidden states and every gradient; the one
// shared parameter set; L_s; which stream queries which; loading a BERT checkpoint.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Generator, randn, randint, rand, tensor, zeros, type Tensor } from "../src/engine/tensor.ts";
import { tidy } from "../src/engine/scope.ts";
import { setNumThreads } from "../src/engine/tensor.ts";
import * as F from "../src/engine/functional.ts";
import { SemVLPForPreTraining, semvlpConfig, semvlpParameterGroups, SEMVLP_PRESETS, type SemVLPConfig, type SemVLPInputs, type SemVLPMode, type SemVLPPreTrainingOutput } from "../src/models/semvlp.ts";
import { BertCrossAttention, initBertWeights } from "../src/models/bert.ts";
import { renameStateDict, hfBertToVlpkit } from "../src/models/namemap.ts";
import { scratchTaskNet } from "../src/tasks/models.ts";
import type { RegionTaskModel } from "../src/models/region_tasks.ts";
import type { TaskBatch } from "../src/data/batches.ts";
import { TorchRef, assertClose, type Tol, type RefTensor } from "./torchref.ts";
import { PY_MODELS, PY_INPUT_ARGS, putAll, putWeights, pyJson } from "./models-ref.ts";

// Same kernels, same op order: see test/lxmert.test.ts for the reasoning behind the tolerances.
// Tiny models are dominated by per-op overhead: one thread avoids OpenMP wake-ups for tiny ops
// (milliseconds each on these 2-vCPU machines when libgomp spin-waits).
setNumThreads(1);

const FWD: Tol = { rtol: 1e-5, atol: 1e-6, scale: 1e-5 };
const GRAD: Tol = { rtol: 1e-5, atol: 0, scale: 1e-5 };

const B = 3;
const L = 6;
const N = 5;
const CROSS = /(^|\.)crossattention\./;

function tiny(extra: Partial<SemVLPConfig> = {}): SemVLPConfig {
  return semvlpConfig("tiny", {
    vocabSize: 53,
    hiddenSize: 32,
    numAttentionHeads: 4,
    intermediateSize: 48,
    maxPositionEmbeddings: 16,
    visualFeatDim: 24,
    numObjectLabels: 11,
    numAttrLabels: 7,
    numQaLabels: 5,
    numHiddenLayers: 4,
    crossLayerStart: 2,
    hiddenDropoutProb: 0,
    attentionProbsDropoutProb: 0,
    ...extra,
  });
}

function randomise(model: SemVLPForPreTraining, g: Generator): void {
  initBertWeights(model, 0.2, g);
  for (const [n, p] of model.namedParameters()) {
    if (/(LayerNorm|layer_norm|logit_fc\.2)\.weight$/.test(n)) F.normal_(p, 1, 0.1, g);
    else if (n.endsWith("bias")) F.normal_(p, 0, 0.1, g);
  }
}

function makeInputs(c: SemVLPConfig, g: Generator): SemVLPInputs {
  const lengths = [L, 4, 3];
  const mask = tensor(lengths.map((len) => Array.from({ length: L }, (_, i) => (i < len ? 1 : 0))), { dtype: "int64" });
  return {
    inputIds: randint(1, c.vocabSize, [B, L], { generator: g }).mul(mask),
    attentionMask: mask,
    visualFeats: randn([B, N, c.visualFeatDim], { generator: g }),
    visualPos: rand([B, N, 4], { generator: g }),
    visualAttentionMask: tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], { dtype: "int64" }),
  };
}

function outputsOf(c: SemVLPConfig, o: SemVLPPreTrainingOutput): Record<string, Tensor> {
  const r: Record<string, Tensor> = { text: o.textOutput, image: o.imageOutput, pooled: o.pooledOutput, lmLogits: o.lmLogits, matchLogits: o.matchLogits };
  if (o.answerLogits) r.answerLogits = o.answerLogits;
  for (const k of c.visualLosses) if (o.visualLogits?.[k]) r[k] = o.visualLogits[k]!;
  o.hiddenStates?.forEach((t, i) => (r[`h.${i}`] = t));
  o.attentions?.forEach((t, i) => (r[`a.${i}`] = t));
  o.textHiddenStates?.forEach((t, i) => i > 0 && (r[`th.${i}`] = t));
  o.imageHiddenStates?.forEach((t, i) => i > 0 && (r[`ih.${i}`] = t));
  o.textAttentions?.forEach((t, i) => (r[`ta.${i}`] = t));
  o.imageAttentions?.forEach((t, i) => (r[`ia.${i}`] = t));
  o.crossAttentions?.forEach((t, j) => (r[`ca.${c.crossLayerStart + j}`] = t));
  return r;
}

const LOSS_KEYS = ["lmLogits", "matchLogits", "pooled", "text", "image", "answerLogits", "obj", "attr", "feat"];

interface Case {
  name: string;
  mode: SemVLPMode;
  config: SemVLPConfig;
  model: SemVLPForPreTraining;
  outputs: Record<string, Tensor>;
  grads: Map<string, Tensor | null>;
}

function runCase(ref: TorchRef, name: string, model: SemVLPForPreTraining, mode: SemVLPMode, x: SemVLPInputs, g: Generator): Case {
  const config = model.config;
  model.zeroGrad();
  const out = model.forward(x, mode, { outputAttentions: true, outputHiddenStates: true });
  const outputs = outputsOf(config, out);
  const weights: Record<string, Tensor> = {};
  let loss: Tensor | null = null;
  for (const k of LOSS_KEYS.filter((k) => k in outputs)) {
    weights[`lw.${k}`] = randn(outputs[k].shape, { generator: g });
    const term = outputs[k].mul(weights[`lw.${k}`]).sum();
    loss = loss ? loss.add(term) : term;
  }
  loss!.backward();
  const grads = new Map<string, Tensor | null>();
  for (const [n, p] of model.namedParameters()) {
    const gr = p.grad;
    grads.set(n, gr ? gr.clone() : null);
  }
  const names = putWeights(ref, name, model);
  putAll(ref, name, { ids: x.inputIds, mask: x.attentionMask, feats: x.visualFeats, boxes: x.visualPos, vmask: x.visualAttentionMask, ...weights });
  ref.add(
    name,
    `${PY_MODELS}
c = ${pyJson(config)}
m = load_weights(SemVLPPre(c), I, ${JSON.stringify(names)})
m.train()
out = m(${JSON.stringify(mode)}, ${PY_INPUT_ARGS})
for k, v in out.items():
    O[k] = v
weighted_loss(out, I, ${JSON.stringify(Object.keys(weights).map((k) => k.slice(3)))}).backward()
emit_grads(O, m)
`,
  );
  return { name, mode, config, model, outputs, grads };
}

function scaledError(a: Tensor, e: RefTensor): number {
  const av = a.toArray();
  let num = 0;
  let den = 0;
  e.values.forEach((v, i) => {
    num = Math.max(num, Math.abs(av[i] - v));
    den = Math.max(den, Math.abs(v));
  });
  return den === 0 ? num : num / den;
}

/** Compare everything; returns the names whose gradient is null on both sides. */
function check(ref: TorchRef, c: Case): string[] {
  let worstOut = 0;
  let worstGrad = 0;
  for (const [k, t] of Object.entries(c.outputs)) {
    const e = ref.tensor(c.name, k);
    assertClose(t, e, FWD, `${c.name}: ${k}`);
    worstOut = Math.max(worstOut, scaledError(t, e));
  }
  const nulls: string[] = [];
  for (const [n, gTs] of c.grads) {
    const gPy = ref.out(c.name, `grad.${n}`);
    if (gTs === null || gPy === null) {
      assert.equal(gTs === null, gPy === null, `${c.name}: grad of ${n}: vlpkit ${gTs === null ? "null" : "set"}, PyTorch ${gPy === null ? "None" : "set"}`);
      nulls.push(n);
      continue;
    }
    assertClose(gTs, gPy, GRAD, `${c.name}: grad ${n}`);
    worstGrad = Math.max(worstGrad, scaledError(gTs, gPy));
  }
  console.log(`# ${c.name}: ${Object.keys(c.outputs).length} outputs, worst max|diff|/max|ref| ${worstOut.toExponential(2)}; ${c.grads.size - nulls.length} gradients, worst ${worstGrad.toExponential(2)}`);
  return nulls;
}

describe("SemVLP vs PyTorch", () => {
  const ref = new TorchRef();
  const cases: Record<string, Case> = {};
  let model: SemVLPForPreTraining;

  before(() => {
    const g = new Generator(7);
    model = new SemVLPForPreTraining(tiny());
    randomise(model, g);
    const x = makeInputs(model.config, g);
    cases.single = runCase(ref, "single", model, "single", x, g);
    cases.two = runCase(ref, "two", model, "two", x, g);
    for (const [name, ls] of [["two_Ls_L", 4], ["two_Ls_0", 0]] as const) {
      const m = new SemVLPForPreTraining(tiny({ crossLayerStart: ls }));
      randomise(m, g);
      cases[name] = runCase(ref, name, m, "two", makeInputs(m.config, g), g);
    }
    ref.run();
  });
  after(() => ref.cleanup());

  test("single-stream mode: outputs, attention maps, hidden states, gradients; cross-attention untouched", () => {
    const nulls = check(ref, cases.single);
    const cross = model.namedParameters().map(([n]) => n).filter((n) => CROSS.test(n));
    assert.equal(cross.length, 2 * 10, "cross-attention in blocks 3 and 4 (L_s = 2 of 4)");
    // the single-stream mode never touches phi_C: its grads stay null, every other grad is set
    assert.deepEqual(nulls.sort(), cross.sort());
  });

  test("two-stream mode: outputs, attention maps, hidden states, every gradient (including phi_C)", () => {
    const nulls = check(ref, cases.two);
    assert.deepEqual(nulls, []);
    assert.equal(cases.two.outputs["ca.2"].size(2), N + 1, "image tokens ([IMG] + regions) query");
    assert.equal(cases.two.outputs["ca.2"].size(3), L, "text tokens are keys/values");
  });

  test("L_s = L: no cross-attention at all; L_s = 0: cross-attention in every block", () => {
    assert.deepEqual(check(ref, cases.two_Ls_L), []);
    assert.equal(cases.two_Ls_L.model.namedParameters().filter(([n]) => CROSS.test(n)).length, 0);
    assert.equal(Object.keys(cases.two_Ls_L.outputs).filter((k) => k.startsWith("ca.")).length, 0);
    assert.deepEqual(check(ref, cases.two_Ls_0), []);
    assert.equal(cases.two_Ls_0.model.namedParameters().filter(([n]) => CROSS.test(n)).length, 4 * 10);
    assert.equal(Object.keys(cases.two_Ls_0.outputs).filter((k) => k.startsWith("ca.")).length, 4);
  });

  test("the two modes share exactly one parameter set apart from the cross-attention", () => {
    const named = model.namedParameters();
    // no copies: one tensor per name, and one block per layer (not one per stream)
    assert.equal(new Set(named.map(([, p]) => p)).size, named.length);
    const blocks = named.filter(([n]) => /^bert\.encoder\.layer\.\d+\.(attention|intermediate|output)\./.test(n));
    assert.equal(blocks.length, 4 * 16);
    const usedSingle = new Set([...cases.single.grads].filter(([, g]) => g).map(([n]) => n));
    const usedTwo = new Set([...cases.two.grads].filter(([, g]) => g).map(([n]) => n));
    assert.equal(usedTwo.size, named.length, "the two-stream mode uses every parameter");
    for (const [n] of named) assert.equal(usedSingle.has(n), !CROSS.test(n), n);
    // the same tensors, not equal copies: the text and the image stream both go through layer.k
    const layer0 = model.bert.encoder.layer.at(0);
    assert.equal(named.find(([n]) => n === "bert.encoder.layer.0.attention.self.query.weight")![1], layer0.attention.self.query.weight);
  });
});

describe("SemVLP semantics and loading", () => {
  test("direction of the cross-modal attention: text informs the image stream, never the reverse", () => {
    const g = new Generator(21);
    const m = new SemVLPForPreTraining(tiny()).eval();
    randomise(m, g);
    const x = makeInputs(m.config, g);
    const otherImage = { ...x, visualFeats: randn(x.visualFeats.shape, { generator: g }) };
    const otherText = { ...x, inputIds: randint(1, m.config.vocabSize, [B, L], { generator: g }).mul(x.attentionMask!) };
    tidy(() => {
      const a = m.bert.forward(x, "two", { outputHiddenStates: true });
      const bImg = m.bert.forward(otherImage, "two");
      const bTxt = m.bert.forward(otherText, "two", { outputHiddenStates: true });
      assert.ok(a.textOutput.equal(bImg.textOutput), "two-stream text output does not depend on the image");
      assert.ok(!a.imageOutput.allclose(bTxt.imageOutput), "the image stream does depend on the text");
      // ... but only above L_s: image states up to block L_s are text-independent
      assert.ok(a.imageHiddenStates![2].equal(bTxt.imageHiddenStates![2]));
      assert.ok(!a.imageHiddenStates![3].allclose(bTxt.imageHiddenStates![3]));
      // single-stream: everything interacts
      const s1 = m.bert.forward(x, "single");
      const s2 = m.bert.forward(otherImage, "single");
      assert.ok(!s1.textOutput.allclose(s2.textOutput));
      // pooled: h_CLS (text position 0) in single mode, o_IMG (image position 0) in two mode
      assert.ok(s1.pooledOutput.equal(m.bert.pooler.forward(s1.textOutput)));
      assert.ok(a.pooledOutput.equal(m.bert.pooler.forward(a.imageOutput)));
    });
    m.dispose();
  });

  test("the pair vector (itmInput) that the ITM, QA and task heads read: pooled output, or with itmRead prod the product read-out", () => {
    const g = new Generator(23);
    for (const itmRead of ["pooled", "prod"] as const) {
      const net = scratchTaskNet("semvlp", { preset: "tiny", overrides: { ...tiny(), itmRead, pool: "mean" } }, { kind: "qa", answers: 5 }, "single");
      const m = net.model as RegionTaskModel;
      m.eval();
      const x = makeInputs(m.config as SemVLPConfig, g);
      const batch = { input_ids: x.inputIds, attention_mask: x.attentionMask!, word_position_ids: zeros([B, L], { dtype: "int64" }), feats: x.visualFeats, boxes: x.visualPos, region_valid: x.visualAttentionMask! } as unknown as TaskBatch;
      tidy(() => {
        const out = m.bert.forward({ ...x, positionIds: batch.word_position_ids }, "single") as ReturnType<SemVLPForPreTraining["bert"]["forward"]>;
        const logits = net.logits(batch);
        assert.ok(logits.allclose(m.answer_head!.forward(out.itmInput)), `${itmRead}: the task head reads itmInput`);
        // the product read-out is another vector than the pooled output; "pooled" keeps the official one
        assert.equal(out.itmInput.allclose(out.pooledOutput), itmRead === "pooled", itmRead);
      });
      m.dispose();
    }
  });

  test("single-stream sequence layout: [IMG], regions, then [CLS] ... [SEP]", () => {
    const g = new Generator(22);
    const m = new SemVLPForPreTraining(tiny()).eval();
    const x = makeInputs(m.config, g);
    tidy(() => {
      const o = m.bert.forward(x, "single", { outputHiddenStates: true, outputAttentions: true });
      const h0 = o.hiddenStates![0];
      assert.deepEqual(h0.shape, [B, 1 + N + L, 32]);
      assert.ok(h0.narrow(1, 1 + N, L).equal(m.bert.embeddings.forward(x.inputIds)));
      assert.ok(h0.narrow(1, 0, 1 + N).equal(m.bert.encoder.imageEmbeddings(x.visualFeats, x.visualPos)));
      assert.ok(h0.select(1, 0).equal(m.bert.encoder.img_embedding.weight.expand(B, 32)));
      // masked regions and pads receive (almost) no attention
      const att = o.attentions![0];
      assert.ok(att.select(0, 1).narrow(-1, 3, 3).max().item() < 1e-3, "example 1 masks regions 2..4 (positions 3..5)");
      assert.ok(att.select(0, 2).narrow(-1, 1 + N + 3, L - 3).max().item() < 1e-3, "example 2 has 3 tokens");
      assert.deepEqual(o.regionOutput.shape, [B, N, 32]);
    });
    m.dispose();
  });

  test("a BERT checkpoint (bert-base names, tiny shapes) loads non-strictly: only visual, cross-attention and head keys missing", () => {
    const c = tiny({ vocabSize: 30, numHiddenLayers: 3, crossLayerStart: 1 });
    const h = c.hiddenSize;
    const ff = c.intermediateSize;
    const bert = new Map<string, Tensor>();
    const put = (n: string, shape: number[]) => bert.set(n, randn(shape));
    put("bert.embeddings.word_embeddings.weight", [c.vocabSize, h]);
    put("bert.embeddings.position_embeddings.weight", [c.maxPositionEmbeddings, h]);
    put("bert.embeddings.token_type_embeddings.weight", [c.typeVocabSize, h]);
    // an old TF-converted dump: LayerNorm as gamma/beta
    put("bert.embeddings.LayerNorm.gamma", [h]);
    put("bert.embeddings.LayerNorm.beta", [h]);
    bert.set("bert.embeddings.position_ids", zeros([1, c.maxPositionEmbeddings], { dtype: "int64" }));
    for (let i = 0; i < c.numHiddenLayers; i++) {
      const p = `bert.encoder.layer.${i}.`;
      for (const q of ["query", "key", "value"]) {
        put(`${p}attention.self.${q}.weight`, [h, h]);
        put(`${p}attention.self.${q}.bias`, [h]);
      }
      put(`${p}attention.output.dense.weight`, [h, h]);
      put(`${p}attention.output.dense.bias`, [h]);
      put(`${p}attention.output.LayerNorm.weight`, [h]);
      put(`${p}attention.output.LayerNorm.bias`, [h]);
      put(`${p}intermediate.dense.weight`, [ff, h]);
      put(`${p}intermediate.dense.bias`, [ff]);
      put(`${p}output.dense.weight`, [h, ff]);
      put(`${p}output.dense.bias`, [h]);
      put(`${p}output.LayerNorm.weight`, [h]);
      put(`${p}output.LayerNorm.bias`, [h]);
    }
    put("bert.pooler.dense.weight", [h, h]);
    put("bert.pooler.dense.bias", [h]);
    put("cls.predictions.bias", [c.vocabSize]);
    put("cls.predictions.transform.dense.weight", [h, h]);
    put("cls.predictions.transform.dense.bias", [h]);
    put("cls.predictions.transform.LayerNorm.weight", [h]);
    put("cls.predictions.transform.LayerNorm.bias", [h]);
    bert.set("cls.predictions.decoder.weight", bert.get("bert.embeddings.word_embeddings.weight")!);
    bert.set("cls.predictions.decoder.bias", bert.get("cls.predictions.bias")!);
    put("cls.seq_relationship.weight", [2, h]);
    put("cls.seq_relationship.bias", [2]);

    const m = new SemVLPForPreTraining(c);
    const mapped = renameStateDict(bert, hfBertToVlpkit);
    const { missing, unexpected } = m.loadStateDict(mapped, { strict: false });
    assert.deepEqual(unexpected, []);
    const isNew = (n: string) => /^bert\.encoder\.(visn_fc|img_embedding)\.|\.crossattention\.|^obj_predict_head\.|^answer_head\./.test(n);
    assert.deepEqual(missing.sort(), [...m.stateDict().keys()].filter(isNew).sort());
    assert.ok(missing.some((n) => n.includes("crossattention")) && missing.some((n) => n.startsWith("bert.encoder.visn_fc")));
    // values arrived, the tie survived
    assert.ok(m.bert.encoder.layer.at(2).output.LayerNorm.weight.equal(bert.get("bert.encoder.layer.2.output.LayerNorm.weight")!));
    assert.ok(m.bert.embeddings.LayerNorm.weight.equal(bert.get("bert.embeddings.LayerNorm.gamma")!));
    assert.equal(m.cls.predictions.decoder.weight, m.bert.embeddings.word_embeddings.weight);
    assert.ok(m.cls.predictions.decoder.weight.equal(bert.get("bert.embeddings.word_embeddings.weight")!));
    m.dispose();
  });

  test("pluggable cross-attention: a custom phi_C factory", () => {
    const made: number[] = [];
    const c = tiny();
    const m = new SemVLPForPreTraining(c, {
      crossAttention: (cfg, i) => {
        made.push(i);
        return new BertCrossAttention(cfg, "att");
      },
    });
    assert.deepEqual(made, [2, 3]);
    const names = [...m.stateDict().keys()];
    assert.ok(names.includes("bert.encoder.layer.3.crossattention.att.query.weight"));
    assert.ok(!names.some((n) => n.includes("crossattention.self.")));
    tidy(() => assert.deepEqual(m.forward(makeInputs(c, new Generator(3)), "two").pooledOutput.shape, [B, 32]));
    m.dispose();
  });

  test("configs and the base preset's parameter groups", () => {
    const base = SEMVLP_PRESETS.base;
    assert.deepEqual([base.numHiddenLayers, base.hiddenSize, base.numAttentionHeads, base.crossLayerStart], [12, 768, 12, 6]);
    assert.deepEqual(semvlpConfig(JSON.parse(JSON.stringify(base))), base);
    assert.throws(() => semvlpConfig("base", { crossLayerStart: 13 }), /L_s/);
    assert.throws(() => semvlpConfig("base", { nope: 1 } as never), /unknown SemVLPConfig key/);
    const m = new SemVLPForPreTraining(base, { init: false });
    const gr = semvlpParameterGroups(m);
    console.log(`# SemVLP-base: shared blocks ${(gr.shared / 1e6).toFixed(3)}M, cross-attention ${(gr.cross / 1e6).toFixed(3)}M, visual embedding ${(gr.visual / 1e6).toFixed(3)}M, word/pos/type embeddings ${(gr.embeddings / 1e6).toFixed(3)}M, total with heads ${(m.numParameters() / 1e6).toFixed(3)}M`);
    assert.equal(gr.shared, 12 * 7_087_872, "12 BERT-base blocks");
    assert.equal(gr.cross, 6 * 2_363_904, "cross-attention sub-layers in blocks 7..12");
    // visn_fc + its LN, box_fc + its LN, [IMG]
    assert.equal(gr.visual, 2048 * 768 + 768 + 2 * 768 + (4 * 768 + 768) + 2 * 768 + 768);
    m.dispose();
  });
});
