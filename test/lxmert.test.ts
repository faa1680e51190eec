// LXMERT / LXMERT-S against an independent PyTorch implementation (test/models-ref.ts) that loads the
// very same weights: forward outputs, attention maps, hidden states and the gradient of every
// parameter; strict loading of an official-format checkpoint written by torch.save; the MSP paper's
// parameter counts; name maps.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Generator, fromBytes, randn, randint, rand, tensor, type Tensor } from "../src/engine/tensor.ts";
import { tidy } from "../src/engine/scope.ts";
import { setNumThreads, liveTensors } from "../src/engine/tensor.ts";
import * as F from "../src/engine/functional.ts";
import { loadPthStateDict } from "../src/engine/serialize/pth.ts";
import { LxmertForPreTraining, lxmertConfig, transformerParameterCount, LXMERT_PRESETS, type LxmertConfig, type LxmertInputs, type LxmertPreTrainingOutput } from "../src/models/lxmert.ts";
import { initBertWeights, BertLMPredictionHead } from "../src/models/bert.ts";
import { NLVR2Head, IFRSHead } from "../src/models/heads.ts";
import { renameStateDict, hfLxmertToOfficial, officialToHfLxmert, stripModulePrefix, lxmertFinetuneToBackbone, composeMaps } from "../src/models/namemap.ts";
import { TorchRef, assertClose, type Tol, type RefTensor } from "./torchref.ts";
import { PY_MODELS, PY_INPUT_ARGS, putAll, putWeights, pyJson } from "./models-ref.ts";

// Same libtorch kernels on both sides and the same op sequence: outputs agree to ~1e-7 relative.
// Gradients pass through softmax/LayerNorm backward sums whose reduction order can differ with
// thread count, so each tensor gets atol = 1e-5 * max|expected| on top of rtol 1e-5.
// Tiny models are dominated by per-op overhead: one thread avoids OpenMP wake-ups for tiny ops
// (milliseconds each on these 2-vCPU machines when libgomp spin-waits).
setNumThreads(1);

const FWD: Tol = { rtol: 1e-5, atol: 1e-6, scale: 1e-5 };
const GRAD: Tol = { rtol: 1e-5, atol: 0, scale: 1e-5 };

const B = 3;
const L = 7;
const N = 5;

function tinyOverrides(extra: Partial<LxmertConfig> = {}): Partial<LxmertConfig> {
  return {
    vocabSize: 61,
    hiddenSize: 32,
    numAttentionHeads: 4,
    intermediateSize: 48,
    maxPositionEmbeddings: 24,
    visualFeatDim: 24,
    numObjectLabels: 11,
    numAttrLabels: 7,
    numQaLabels: 5,
    hiddenDropoutProb: 0,
    attentionProbsDropoutProb: 0,
    ...extra,
  };
}

/** Perturb LayerNorm weights/biases and zero-initialised biases so that every parameter matters. */
function randomise(model: LxmertForPreTraining, g: Generator): void {
  initBertWeights(model, 0.2, g);
  for (const [n, p] of model.namedParameters()) {
    if (n.endsWith("LayerNorm.weight") || n.endsWith("layer_norm.weight") || /logit_fc\.2\.weight$/.test(n)) F.normal_(p, 1, 0.1, g);
    else if (n.endsWith("bias")) F.normal_(p, 0, 0.1, g);
  }
}

function makeInputs(c: LxmertConfig, g: Generator, o: { wordPositions?: boolean; visualMask?: boolean } = {}): LxmertInputs {
  const ids = randint(1, c.vocabSize, [B, L], { generator: g });
  const lengths = [L, L - 2, 4];
  const mask = tensor(lengths.map((len) => Array.from({ length: L }, (_, i) => (i < len ? 1 : 0))), { dtype: "int64" });
  // padding gets id 0, as from the tokenizer
  const idsPadded = ids.mul(mask);
  const x: LxmertInputs = {
    inputIds: idsPadded,
    attentionMask: mask,
    tokenTypeIds: null,
    visualFeats: randn([B, N, c.visualFeatDim], { generator: g }),
    visualPos: rand([B, N, 4], { generator: g }),
  };
  if (o.wordPositions) {
    // [CLS]/[SEP] 1, words from 2 with some sub-word pieces sharing an id, padding 0
    const pos = lengths.map((len) => {
      const row: number[] = [];
      let w = 2;
      for (let i = 0; i < L; i++) {
        if (i >= len) row.push(0);
        else if (i === 0 || i === len - 1) row.push(1);
        else {
          row.push(w);
          if (i % 3 !== 1) w++;
        }
      }
      return row;
    });
    x.positionIds = tensor(pos, { dtype: "int64" });
  }
  if (o.visualMask) x.visualAttentionMask = tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], { dtype: "int64" });
  return x;
}

/** The outputs compared with PyTorch, by the reference's key. */
function outputsOf(c: LxmertConfig, out: LxmertPreTrainingOutput): Record<string, Tensor> {
  const r: Record<string, Tensor> = {
    lmLogits: out.lmLogits,
    matchLogits: out.matchLogits,
    pooled: out.pooledOutput,
    lang: out.languageOutput,
    visn: out.visionOutput,
  };
  if (out.topicLogits) r.topic = out.topicLogits;
  if (out.answerLogits) r.answerLogits = out.answerLogits;
  for (const k of c.visualLosses) if (out.visualLogits?.[k]) r[k] = out.visualLogits[k]!;
  out.languageHiddenStates?.forEach((t, i) => (r[`lh.${i}`] = t));
  out.visionHiddenStates?.forEach((t, i) => (r[`vh.${i}`] = t));
  out.languageAttentions?.forEach((t, i) => (r[`la.${i}`] = t));
  out.visionAttentions?.forEach((t, i) => (r[`va.${i}`] = t));
  out.crossLangToVisnAttentions?.forEach((t, i) => (r[`l2v.${i}`] = t));
  out.crossVisnToLangAttentions?.forEach((t, i) => (r[`v2l.${i}`] = t));
  return r;
}

const LOSS_KEYS = ["lmLogits", "matchLogits", "pooled", "lang", "visn", "topic", "answerLogits", "obj", "attr", "feat"];

interface GradCase {
  name: string;
  config: LxmertConfig;
  model: LxmertForPreTraining;
  outputs: Record<string, Tensor>;
  grads: Map<string, Tensor | null>;
  lossKeys: string[];
  x: LxmertInputs;
}

/** Build, run forward + backward in TypeScript and register the same computation as a PyTorch case. */
function gradCase(ref: TorchRef, name: string, config: LxmertConfig, seed: number, inputOpts: { wordPositions?: boolean; visualMask?: boolean } = {}): GradCase {
  const g = new Generator(seed);
  const model = new LxmertForPreTraining(config);
  randomise(model, g);
  model.train();
  const x = makeInputs(config, g, inputOpts);
  const out = model.forward(x, { outputAttentions: true, outputHiddenStates: true });
  const outputs = outputsOf(config, out);
  const lossKeys = LOSS_KEYS.filter((k) => k in outputs);
  const weights: Record<string, Tensor> = {};
  let loss: Tensor | null = null;
  for (const k of lossKeys) {
    weights[`lw.${k}`] = randn(outputs[k].shape, { generator: g });
    const term = outputs[k].mul(weights[`lw.${k}`]).sum();
    loss = loss ? loss.add(term) : term;
  }
  loss!.backward();
  const grads = new Map<string, Tensor | null>();
  for (const [n, p] of model.namedParameters()) grads.set(n, p.grad);

  const names = putWeights(ref, name, model);
  putAll(ref, name, { ids: x.inputIds, mask: x.attentionMask, pos: x.positionIds, feats: x.visualFeats, boxes: x.visualPos, vmask: x.visualAttentionMask, ...weights });
  ref.add(
    name,
    `${PY_MODELS}
c = ${pyJson(config)}
m = load_weights(LxmertPre(c), I, ${JSON.stringify(names)})
m.train()
out = m(${PY_INPUT_ARGS})
for k, v in out.items():
    O[k] = v
weighted_loss(out, I, ${JSON.stringify(lossKeys)}).backward()
emit_grads(O, m)
`,
  );
  return { name, config, model, outputs, grads, lossKeys, x };
}

/** max |a - e| / max |e| over a tensor (for the log). */
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

function checkCase(ref: TorchRef, gc: GradCase): { outputs: number; grads: number; nullGrads: string[] } {
  let nOut = 0;
  let worstOut = 0;
  let worstGrad = 0;
  for (const [k, t] of Object.entries(gc.outputs)) {
    const e = ref.tensor(gc.name, k);
    assertClose(t, e, FWD, `${gc.name}: ${k}`);
    worstOut = Math.max(worstOut, scaledError(t, e));
    nOut++;
  }
  let nGrad = 0;
  const nullGrads: string[] = [];
  for (const [n, gTs] of gc.grads) {
    const gPy = ref.out(gc.name, `grad.${n}`);
    if (gPy === null || gTs === null) {
      assert.equal(gTs === null, gPy === null, `${gc.name}: grad of ${n} is ${gTs === null ? "null" : "set"} in vlpkit but ${gPy === null ? "None" : "set"} in PyTorch`);
      nullGrads.push(n);
      continue;
    }
    assertClose(gTs, gPy, GRAD, `${gc.name}: grad ${n}`);
    worstGrad = Math.max(worstGrad, scaledError(gTs, gPy));
    nGrad++;
  }
  console.log(`# ${gc.name}: ${nOut} outputs, worst max|diff|/max|ref| ${worstOut.toExponential(2)}; ${nGrad} parameter gradients, worst ${worstGrad.toExponential(2)}`);
  return { outputs: nOut, grads: nGrad, nullGrads };
}

describe("LXMERT and LXMERT-S vs PyTorch", () => {
  const ref = new TorchRef();
  const cases: GradCase[] = [];
  const tmp = fs.mkdtempSync(path.join(ref.dir, "ckpt-"));
  const official: { name: string; config: LxmertConfig; file: string; x: LxmertInputs }[] = [];

  before(() => {
    cases.push(gradCase(ref, "lxmert", lxmertConfig("lxmertTiny", tinyOverrides({ lLayers: 2, xLayers: 2, rLayers: 2 })), 1));
    cases.push(gradCase(ref, "lxmertS", lxmertConfig("lxmertSTiny", tinyOverrides({ xLayers: 2 })), 2, { wordPositions: true, visualMask: true }));
    cases.push(gradCase(ref, "untied", lxmertConfig("lxmertTiny", tinyOverrides({ lLayers: 1, xLayers: 1, rLayers: 1, tieWordEmbeddings: false, embeddingPaddingIdx: "word", taskQa: false, visualLosses: ["feat"] })), 3));

    // official-format checkpoints written by torch.save from the Python reference model
    for (const [name, preset, seed] of [["official_lxmert", "lxmertTiny", 4], ["official_lxmertS", "lxmertSTiny", 5]] as const) {
      const config = lxmertConfig(preset, tinyOverrides(preset === "lxmertTiny" ? { lLayers: 2, xLayers: 2, rLayers: 1 } : { xLayers: 2 }));
      const g = new Generator(seed);
      const x = makeInputs(config, g, { wordPositions: config.wordPositions });
      const file = path.join(tmp, `${name}_LXRT.pth`);
      putAll(ref, name, { ids: x.inputIds, mask: x.attentionMask, pos: x.positionIds, feats: x.visualFeats, boxes: x.visualPos });
      ref.add(
        name,
        `${PY_MODELS}
torch.manual_seed(${seed})
c = ${pyJson(config)}
m = LxmertPre(c)
with torch.no_grad():
    for n, p in m.named_parameters():
        p.normal_(0, 0.2)
        if n.endswith("LayerNorm.weight") or n.endswith("layer_norm.weight") or n.endswith("logit_fc.2.weight"):
            p.add_(1.0)
m.eval()
torch.save(m.state_dict(), ${JSON.stringify(file)})
O["keys"] = torch.tensor([len(m.state_dict())])
out = m(${PY_INPUT_ARGS})
for k in ["lmLogits", "matchLogits", "pooled", "lang", "visn", "answerLogits", "obj", "attr", "feat", "topic"]:
    if k in out:
        O[k] = out[k]
`,
      );
      official.push({ name, config, file, x });
    }
    ref.run();
  });
  after(() => ref.cleanup());

  test("tiny LXMERT (9/5/5 structure at 2/2/2): outputs, attention maps, hidden states and every gradient", () => {
    const r = checkCase(ref, cases[0]);
    assert.ok(r.outputs >= 20, `compared ${r.outputs} outputs`);
    assert.equal(r.grads, cases[0].model.parameters().length);
    assert.deepEqual(r.nullGrads, []);
  });

  test("tiny LXMERT-S: word positions, visual [CLS], product pooler, topic head, pooled-product object head", () => {
    const gc = cases[1];
    const r = checkCase(ref, gc);
    assert.equal(r.grads, gc.model.parameters().length);
    // the visual [CLS] is prepended: 1 + N visual tokens, and the object heads skip it
    assert.deepEqual(gc.outputs.visn.shape, [B, N + 1, 32]);
    assert.deepEqual(gc.outputs.obj.shape, [B, N, 11]);
    // padding position id 0, [CLS]/[SEP] id 1: their embedding rows get no gradient (padding_idx 0)
    const posGrad = gc.grads.get("bert.embeddings.position_embeddings.weight")!;
    assert.equal(posGrad.select(0, 0).abs().sum().item(), 0);
    assert.ok(posGrad.select(0, 1).abs().sum().item() > 0);
    // the visual [CLS] embedding is trained through the rows of the first token ids only
    const clsGrad = gc.grads.get("bert.word_embeddings.weight")!;
    const rows = clsGrad.abs().sum(1).gt(0).nonzero().flatten().toArray();
    const firstIds = [...new Set(gc.x.inputIds.select(1, 0).toArray())].sort((a, b) => a - b);
    assert.deepEqual(rows, firstIds);
  });

  test("untied MLM decoder with its own weight", () => {
    const gc = cases[2];
    checkCase(ref, gc);
    const head = gc.model.cls.predictions;
    assert.equal(head.tied, false);
    assert.notEqual(head.decoder.weight, gc.model.bert.embeddings.word_embeddings.weight);
    assert.ok(gc.model.stateDict().has("cls.predictions.decoder.weight"));
    // tied: one tensor under two names
    const tied = cases[0].model;
    assert.equal(tied.cls.predictions.decoder.weight, tied.bert.embeddings.word_embeddings.weight);
    assert.equal(tied.stateDict().get("cls.predictions.decoder.weight"), tied.stateDict().get("bert.embeddings.word_embeddings.weight"));
    assert.equal(tied.namedParameters().filter(([n]) => n === "cls.predictions.decoder.weight").length, 0, "a tied weight is listed once");
  });

  test("attention maps are probability distributions and honour the masks", () => {
    const out = cases[1].outputs;
    const l2v = out["l2v.0"];
    // rows sum to 1
    assertClose(l2v.sum(-1), Array(l2v.numel / l2v.size(-1)).fill(1), { rtol: 0, atol: 1e-5 }, "row sums");
    // example 1 has a visual mask 1,1,1,0,0 on the regions (+ visual [CLS] always visible)
    const masked = l2v.select(0, 1).narrow(-1, 4, 2).abs().max().item();
    assert.ok(masked < 1e-3, `masked boxes receive attention ${masked}`);
    // example 2 has 4 real tokens: the vision->language attention ignores the 3 pads
    const v2l = out["v2l.0"].select(0, 2).narrow(-1, 4, 3).abs().max().item();
    assert.ok(v2l < 1e-3);
  });

  test("an official-format checkpoint (torch.save of the reference LXRTPretraining) loads strictly and reproduces the outputs", () => {
    for (const o of official) {
      const raw = loadPthStateDict(o.file);
      assert.equal(raw.size, ref.tensor(o.name, "keys").values[0]);
      const model = new LxmertForPreTraining(o.config, { init: false });
      const sd = new Map([...raw].map(([k, t]) => [k, fromBytes(t.data, t.dtype, t.shape)] as const));
      assert.deepEqual([...sd.keys()].sort(), [...model.stateDict().keys()].sort());
      const res = model.loadStateDict(sd); // strict by default
      assert.deepEqual(res, { missing: [], unexpected: [] });
      model.eval();
      const out = tidy(() => outputsOf(o.config, model.forward(o.x)));
      let n = 0;
      for (const k of ["lmLogits", "matchLogits", "pooled", "lang", "visn", "answerLogits", "obj", "attr", "feat", "topic"]) {
        if (!(k in out)) continue;
        assertClose(out[k], ref.tensor(o.name, k), FWD, `${o.name}: ${k}`);
        n++;
      }
      assert.equal(n, o.config.topicHead ? 10 : 9);
      // tied weights stay tied after loading
      assert.equal(model.cls.predictions.decoder.weight, model.bert.embeddings.word_embeddings.weight);
    }
  });
});

describe("LXMERT configuration, inputs and inspection", () => {
  test("configs are JSON round-trippable and validated", () => {
    const c = lxmertConfig("lxmertS");
    assert.deepEqual(lxmertConfig(JSON.parse(JSON.stringify(c))), c);
    assert.deepEqual([c.lLayers, c.xLayers, c.rLayers], [0, 5, 0]);
    assert.ok(c.wordPositions && c.visualCls && c.productPooler && c.topicHead);
    const l = lxmertConfig("lxmert");
    assert.deepEqual([l.lLayers, l.xLayers, l.rLayers, l.hiddenSize, l.vocabSize, l.visualFeatDim, l.numObjectLabels, l.numAttrLabels], [9, 5, 5, 768, 30522, 2048, 1600, 400]);
    assert.throws(() => lxmertConfig("lxmert", { bogus: 1 } as never), /unknown LxmertConfig key bogus/);
    assert.throws(() => lxmertConfig("lxmert", { numAttentionHeads: 5 }), /not divisible/);
    assert.equal(lxmertConfig("lxmertTiny").visualFeatDim, 64);
  });

  test("LXMERT-S refuses to run without word-level position ids", () => {
    const c = lxmertConfig("lxmertSTiny", tinyOverrides({ xLayers: 1 }));
    const m = new LxmertForPreTraining(c);
    const x = makeInputs(c, new Generator(9));
    assert.throws(() => tidy(() => m.forward(x)), /positionIds/);
    m.dispose();
  });

  test("a training step inside tidy() leaves no native tensors behind", () => {
    const c = lxmertConfig("lxmertSTiny", tinyOverrides({ xLayers: 2 }));
    const m = new LxmertForPreTraining(c);
    const x = makeInputs(c, new Generator(12), { wordPositions: true });
    const step = () => {
      tidy(() => {
        const o = m.forward(x, { outputAttentions: true, outputHiddenStates: true });
        o.lmLogits.mean().add(o.topicLogits!.mean()).add(o.visualLogits!.feat!.mean()).backward();
      });
      m.zeroGrad();
    };
    step();
    const before = liveTensors();
    step();
    step();
    assert.equal(liveTensors(), before);
    m.dispose();
  });

  test("outputAttentions / outputHiddenStates: counts and shapes", () => {
    const c = lxmertConfig("lxmertTiny", tinyOverrides({ lLayers: 2, xLayers: 3, rLayers: 1 }));
    const m = new LxmertForPreTraining(c).eval();
    const x = makeInputs(c, new Generator(10));
    tidy(() => {
      const plain = m.forward(x);
      assert.equal(plain.languageAttentions, undefined);
      assert.equal(plain.languageHiddenStates, undefined);
      const o = m.forward(x, { outputAttentions: true, outputHiddenStates: true });
      assert.equal(o.languageHiddenStates!.length, 1 + 2 + 3);
      assert.equal(o.visionHiddenStates!.length, 1 + 1 + 3);
      assert.equal(o.languageAttentions!.length, 2 + 3);
      assert.equal(o.visionAttentions!.length, 1 + 3);
      assert.equal(o.crossLangToVisnAttentions!.length, 3);
      assert.deepEqual(o.crossLangToVisnAttentions![0].shape, [B, 4, L, N]);
      assert.deepEqual(o.crossVisnToLangAttentions![0].shape, [B, 4, N, L]);
      assert.ok(o.languageHiddenStates!.at(-1)!.equal(o.languageOutput));
      assert.ok(plain.pooledOutput.equal(o.pooledOutput));
    });
    m.dispose();
  });
});

describe("parameter counts (MSP paper, Table 1)", () => {
  test("LXMERT 183.5M vs LXMERT-S 84.3M transformer parameters (embeddings, poolers and heads excluded)", () => {
    const counts: Record<string, number> = {};
    for (const p of ["lxmert", "lxmertS"] as const) {
      const m = new LxmertForPreTraining(LXMERT_PRESETS[p], { init: false });
      counts[p] = transformerParameterCount(m);
      console.log(`# ${p}: ${(counts[p] / 1e6).toFixed(3)}M transformer parameters (encoder incl. object encoder), ${(m.numParameters() / 1e6).toFixed(3)}M in total with embeddings and pre-training heads`);
      m.dispose();
    }
    // exact values: 14 BERT layers + 5 cross layers + object encoder; 5 cross layers + object encoder
    assert.equal(counts.lxmert, 14 * 7_087_872 + 5 * 16_539_648 + 1_580_544);
    assert.equal(counts.lxmertS, 5 * 16_539_648 + 1_580_544);
    assert.ok(Math.abs(counts.lxmert / 183.5e6 - 1) < 0.01);
    assert.ok(Math.abs(counts.lxmertS / 84.3e6 - 1) < 0.01);
    // "LXMERT-S has only 45.9% parameters of the original LXMERT"
    assert.equal((100 * counts.lxmertS / counts.lxmert).toFixed(1), "45.9");
  });
});

describe("name maps and other heads", () => {
  test("Hugging Face LXMERT names <-> official names; DataParallel and fine-tuning prefixes", () => {
    const c = lxmertConfig("lxmertTiny", tinyOverrides({ lLayers: 1, xLayers: 1, rLayers: 1 }));
    const a = new LxmertForPreTraining(c);
    const b = new LxmertForPreTraining(c);
    const hf = renameStateDict(a.stateDict(), officialToHfLxmert);
    assert.ok(hf.has("lxmert.encoder.x_layers.0.visual_attention.att.query.weight"));
    assert.ok(hf.has("cls.predictions.decoder.weight") && hf.has("answer_head.logit_fc.3.bias"));
    hf.set("lxmert.embeddings.position_ids", a.bert.embeddings.position_embeddings.weight); // a buffer some versions save
    b.loadStateDict(renameStateDict(hf, hfLxmertToOfficial));
    for (const [n, t] of a.stateDict()) assert.ok(t.equal(b.stateDict().get(n)!), n);
    const dp = renameStateDict(a.stateDict(), (n) => `module.${n}`);
    assert.deepEqual([...renameStateDict(dp, stripModulePrefix).keys()], [...a.stateDict().keys()]);
    const ft = renameStateDict(a.bert.stateDict("lxrt_encoder.model.bert"), (n) => `module.${n}`);
    const back = renameStateDict(ft, lxmertFinetuneToBackbone);
    assert.deepEqual([...back.keys()], [...a.bert.stateDict("bert").keys()]);
    assert.throws(() => renameStateDict(a.stateDict(), () => "same"), /both map to same/);
    assert.equal(composeMaps(stripModulePrefix, () => null)("module.x"), null);
    a.dispose();
    b.dispose();
  });

  test("NLVR2 and IFRS heads: shapes, names and wiring", () => {
    const c = lxmertConfig("lxmertTiny", tinyOverrides());
    const g = new Generator(11);
    const nlvr = new NLVR2Head(32);
    initBertWeights(nlvr, 0.5, g);
    assert.deepEqual([...nlvr.stateDict().keys()], ["logit_fc.0.weight", "logit_fc.0.bias", "logit_fc.2.weight", "logit_fc.2.bias", "logit_fc.3.weight", "logit_fc.3.bias"]);
    assert.deepEqual(nlvr.stateDict().get("logit_fc.0.weight")!.shape, [64, 64]);
    const p0 = randn([4, 32], { generator: g });
    const p1 = randn([4, 32], { generator: g });
    tidy(() => {
      const y = nlvr.forward(p0, p1);
      assert.deepEqual(y.shape, [4, 2]);
      const inter = nlvr.forwardInterleaved(tensor(Array.from({ length: 8 }, (_, i) => (i % 2 ? p1 : p0).select(0, i >> 1).toArray())));
      assert.ok(y.allclose(inter, 1e-6, 1e-6));
      const ifrs = new IFRSHead(c);
      assert.deepEqual(ifrs.forward(randn([2, 5, 32])).shape, [2, 5, 24]);
      const lm = new BertLMPredictionHead(c);
      assert.deepEqual(lm.forward(randn([2, 3, 32])).shape, [2, 3, 61]);
    });
  });
});
