// loadPretrained (src/models/pretrained.ts): Hugging Face BERT and LXMERT checkpoints written by
// PyTorch (torch.save'd `pytorch_model.bin` with tied storages and the buffers Hugging Face saves,
// and a `model.safetensors` as save_pretrained writes it: the tied decoder stored once) load into
// vlpkit's models through the name maps of namemap.ts: every weight arrives, the model's outputs
// equal the source model's, and a checkpoint that does not fit is refused with every unmatched,
// missing and mis-shaped name listed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Generator, randint, randn, rand, tensor, zeros, tidy, noGrad, manualSeed, saveStateDict, type Tensor } from "../src/engine/index.ts";
import * as F from "../src/engine/functional.ts";
import { initBertWeights } from "../src/models/bert.ts";
import { SemVLPForPreTraining, semvlpConfig, type SemVLPInputs } from "../src/models/semvlp.ts";
import { LxmertForPreTraining, LxmertModel, lxmertConfig, type LxmertInputs } from "../src/models/lxmert.ts";
import { VLMoModel, vlmoConfig } from "../src/models/vlmo/index.ts";
import { loadPretrained, detectLayout, PretrainedLoadError } from "../src/models/pretrained.ts";
import { PYTHON, PY_LOAD_SAFETENSORS } from "./torchref.ts";
import type { Module } from "../src/engine/nn.ts";

const hasTorch = fs.existsSync(PYTHON) && spawnSync(PYTHON, ["-c", "import torch"]).status === 0;
const skip = hasTorch ? false : `PyTorch not found at ${PYTHON}`;

/** The tensors a Hugging Face BertForPreTraining has (SemVLP's shared blocks and heads are named after them). */
const BERT = /^(bert\.(embeddings\.|pooler\.|encoder\.layer\.\d+\.(attention|intermediate|output)\.)|cls\.(predictions|seq_relationship)\.)/;

// Written with PyTorch from the vlpkit models' weights (read with a reader written from the spec):
//   bert/pytorch_model.bin    BertForPreTraining names, the position_ids buffer, the decoder tied to the
//                             word embeddings and its bias to cls.predictions.bias (shared storages)
//   bert-legacy/pytorch_model.bin  a TF-converted dump: LayerNorm gamma/beta, no position_ids
//   lxmert/pytorch_model.bin  LxmertForPreTraining names (lxmert.*), the decoder tied
//   lxmert/model.safetensors  the same without the tied decoder (as save_pretrained writes it)
const WRITE_HF = PY_LOAD_SAFETENSORS + String.raw`
import collections, os, re, sys, json, struct
d = sys.argv[1]

def write_st(sd, path):
    names = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, off = {}, [], 0
    for k, t in sd.items():
        b = t.contiguous().numpy().tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

BERT = re.compile(r"${BERT.source.replace(/\\\//g, "/")}")
s = load_st(os.path.join(d, "semvlp.safetensors"))
bert = collections.OrderedDict((k, v.clone()) for k, v in s.items() if BERT.match(k) and k != "cls.predictions.decoder.weight")
bert["bert.embeddings.position_ids"] = torch.arange(bert["bert.embeddings.position_embeddings.weight"].shape[0]).unsqueeze(0)
bert["cls.predictions.decoder.weight"] = bert["bert.embeddings.word_embeddings.weight"]
bert["cls.predictions.decoder.bias"] = bert["cls.predictions.bias"]
assert bert["cls.predictions.decoder.weight"].data_ptr() == bert["bert.embeddings.word_embeddings.weight"].data_ptr()
os.makedirs(os.path.join(d, "bert"))
torch.save(bert, os.path.join(d, "bert", "pytorch_model.bin"))
legacy = collections.OrderedDict((re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", k)), v)
                                 for k, v in bert.items() if k != "bert.embeddings.position_ids")
os.makedirs(os.path.join(d, "bert-legacy"))
torch.save(legacy, os.path.join(d, "bert-legacy", "pytorch_model.bin"))

s = load_st(os.path.join(d, "lxmert.safetensors"))
hf = collections.OrderedDict((("lxmert." + k[len("bert."):]) if k.startswith("bert.") else k, v.clone()) for k, v in s.items())
hf["cls.predictions.decoder.weight"] = hf["lxmert.embeddings.word_embeddings.weight"]
os.makedirs(os.path.join(d, "lxmert"))
torch.save(hf, os.path.join(d, "lxmert", "pytorch_model.bin"))
del hf["cls.predictions.decoder.weight"]
write_st(hf, os.path.join(d, "lxmert", "model.safetensors"))
print("ok")
`;

const B = 3;
const L = 7;
const N = 5;
const common = {
  vocabSize: 53, hiddenSize: 32, numAttentionHeads: 4, intermediateSize: 48, maxPositionEmbeddings: 16,
  visualFeatDim: 24, numObjectLabels: 11, numAttrLabels: 7, numQaLabels: 5, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0,
};
const semCfg = semvlpConfig("tiny", { ...common, numHiddenLayers: 4, crossLayerStart: 2 });
const lxCfg = lxmertConfig("lxmertTiny", { ...common, lLayers: 2, xLayers: 1, rLayers: 1 });

/** Every parameter away from its initial value (LayerNorms and zero biases too), so a tensor left behind shows. */
function randomise(model: Module, seed: number): void {
  const g = new Generator(seed);
  initBertWeights(model, 0.2, g);
  for (const [n, p] of model.namedParameters()) {
    if (/(LayerNorm|layer_norm|logit_fc\.2)\.weight$/.test(n)) F.normal_(p, 1, 0.1, g);
    else if (n.endsWith("bias")) F.normal_(p, 0, 0.1, g);
  }
}

function inputs(vocab: number, dim: number): SemVLPInputs & LxmertInputs {
  const g = new Generator(5);
  const mask = tensor([L, 4, 3].map((len) => Array.from({ length: L }, (_, i) => (i < len ? 1 : 0))), { dtype: "int64" });
  return {
    inputIds: randint(1, vocab, [B, L], { generator: g }).mul(mask).keep(),
    attentionMask: mask.keep(),
    visualFeats: randn([B, N, dim], { generator: g }).keep(),
    visualPos: rand([B, N, 4], { generator: g }).keep(),
    visualAttentionMask: tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], { dtype: "int64" }).keep(),
  };
}

function assertSameWeights(got: Module, want: Map<string, Tensor>, names: string[]): void {
  const own = got.stateDict();
  for (const n of names) assert.ok(own.get(n)!.equal(want.get(n)!), `${n} differs from the source model`);
}

function assertSameOutputs(a: Record<string, unknown>, b: Record<string, unknown>, what: string): void {
  let n = 0;
  for (const [k, v] of Object.entries(a)) {
    if (!(v instanceof Object) || !("equal" in v)) continue;
    assert.ok((v as Tensor).equal(b[k] as Tensor), `${what}: output ${k} differs`);
    n++;
  }
  assert.ok(n >= 3, `${what}: compared ${n} outputs`);
}

let dir = "";
let semA: SemVLPForPreTraining;
let lxA: LxmertForPreTraining;

before(() => {
  if (skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "vlp-pretrained-"));
  manualSeed(1);
  semA = new SemVLPForPreTraining(semCfg);
  randomise(semA, 11);
  semA.eval();
  lxA = new LxmertForPreTraining(lxCfg);
  randomise(lxA, 12);
  lxA.eval();
  saveStateDict(path.join(dir, "semvlp.safetensors"), semA);
  saveStateDict(path.join(dir, "lxmert.safetensors"), lxA);
  const r = spawnSync(PYTHON, ["-c", WRITE_HF, dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`writing the Hugging Face checkpoints failed:\n${r.stderr}`);
});

after(() => {
  semA?.dispose();
  lxA?.dispose();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("a Hugging Face BERT pytorch_model.bin loads into SemVLP's shared blocks and heads; outputs equal the source's", { skip }, () => {
  const own = [...semA.stateDict().keys()];
  const isNew = (n: string) => !BERT.test(n);
  for (const file of ["bert/pytorch_model.bin", "bert-legacy/pytorch_model.bin"]) {
    manualSeed(2);
    const b = new SemVLPForPreTraining(semCfg);
    const r = loadPretrained(b, path.join(dir, file), { allowMissing: isNew });
    assert.equal(r.layout, "hf-bert");
    assert.deepEqual(r.missing.sort(), own.filter(isNew).sort());
    assert.ok(r.missing.some((n) => n.includes("crossattention")) && r.missing.some((n) => n.startsWith("bert.encoder.visn_fc")));
    assert.deepEqual(r.unmatched, []);
    assertSameWeights(b, semA.stateDict(), own.filter((n) => !isNew(n)));
    // the tie survived the load
    assert.equal(b.cls.predictions.decoder.weight, b.bert.embeddings.word_embeddings.weight);
    // the rest from the source model: then every output is the source's, bit for bit
    b.loadStateDict(new Map([...semA.stateDict()].filter(([n]) => isNew(n))), { strict: false });
    b.eval();
    const x = inputs(semCfg.vocabSize, semCfg.visualFeatDim);
    noGrad(() => tidy(() => {
      for (const mode of ["single", "two"] as const) assertSameOutputs({ ...semA.forward(x, mode) }, { ...b.forward(x, mode) }, `${file} ${mode}`);
    }));
    for (const t of Object.values(x)) t.dispose();
    b.dispose();
  }
  // without allowMissing: refused, naming what the checkpoint lacks; nothing copied
  manualSeed(2);
  const c = new SemVLPForPreTraining(semCfg);
  const before = c.bert.embeddings.word_embeddings.weight.clone().keep();
  assert.throws(() => loadPretrained(c, path.join(dir, "bert/pytorch_model.bin")), (e: unknown) => {
    assert.ok(e instanceof PretrainedLoadError);
    assert.match(e.message, /Hugging Face|BERT/);
    assert.match(e.message, /tensors of the model are not in the checkpoint.*crossattention/);
    assert.deepEqual(e.missing.sort(), own.filter(isNew).sort());
    return true;
  });
  assert.ok(c.bert.embeddings.word_embeddings.weight.equal(before));
  before.dispose();
  c.dispose();
});

test("a Hugging Face LXMERT pytorch_model.bin and model.safetensors load into LxmertForPreTraining strictly; outputs equal", { skip }, () => {
  const own = [...lxA.stateDict().keys()];
  for (const file of ["lxmert/pytorch_model.bin", "lxmert/model.safetensors"]) {
    manualSeed(3);
    const b = new LxmertForPreTraining(lxCfg);
    const r = loadPretrained(b, path.join(dir, file));
    assert.equal(r.layout, "hf-lxmert");
    assert.deepEqual([r.missing, r.unmatched], [[], []]);
    assertSameWeights(b, lxA.stateDict(), own);
    assert.equal(b.cls.predictions.decoder.weight, b.bert.embeddings.word_embeddings.weight);
    b.eval();
    const x = inputs(lxCfg.vocabSize, lxCfg.visualFeatDim);
    noGrad(() => tidy(() => assertSameOutputs({ ...lxA.forward(x) }, { ...b.forward(x) }, file)));
    for (const t of Object.values(x)) t.dispose();
    b.dispose();
  }
  // a bare backbone takes lxmert.* without the prefix; the heads are unmatched unless allowed
  const bare = new LxmertModel(lxCfg);
  const heads = (n: string) => /^(cls|obj_predict_head|answer_head)\./.test(n);
  assert.throws(() => loadPretrained(bare, path.join(dir, "lxmert/model.safetensors")), /match no tensor of the model.*cls\.predictions\.bias/);
  const r = loadPretrained(bare, path.join(dir, "lxmert/model.safetensors"), { allowUnmatched: heads });
  assert.ok(r.unmatched.length > 0 && r.unmatched.every(heads));
  assertSameWeights(bare, lxA.bert.stateDict(), [...bare.stateDict().keys()]);
  bare.dispose();
});

test("a checkpoint that does not fit: every unmatched, missing and mis-shaped name in one error", { skip }, () => {
  const hf = new Map<string, Tensor>();
  for (const [k, t] of lxA.stateDict()) hf.set(k.startsWith("bert.") ? `lxmert.${k.slice(5)}` : k, t);
  hf.delete("lxmert.pooler.dense.bias");
  hf.set("lxmert.encoder.x_layers.0.extra.weight", zeros([2]));
  hf.set("answer_head.logit_fc.3.bias", zeros([99]));
  const file = path.join(dir, "broken.safetensors");
  saveStateDict(file, hf);
  hf.get("lxmert.encoder.x_layers.0.extra.weight")!.dispose();
  hf.get("answer_head.logit_fc.3.bias")!.dispose();
  assert.equal(detectLayout(hf.keys(), lxA), "hf-lxmert");
  const b = new LxmertForPreTraining(lxCfg);
  assert.throws(() => loadPretrained(b, file), (e: unknown) => {
    assert.ok(e instanceof PretrainedLoadError);
    assert.deepEqual(e.unmatched, ["lxmert.encoder.x_layers.0.extra.weight (as bert.encoder.x_layers.0.extra.weight)"]);
    assert.deepEqual(e.missing, ["bert.pooler.dense.bias"]);
    assert.deepEqual(e.mismatched, [{ name: "answer_head.logit_fc.3.bias", expected: [lxCfg.numQaLabels], got: [99] }]);
    assert.match(e.message, /broken\.safetensors \(Hugging Face LXMERT names\) into LxmertForPreTraining/);
    return true;
  });
  b.dispose();
});

test("an official VLMo checkpoint (DeepSpeed module. prefix, index buffers) goes through convertOfficialStateDict", { skip }, () => {
  const cfg = vlmoConfig("tiny", { vocabSize: 100, maxTextLen: 16 });
  manualSeed(4);
  const a = new VLMoModel(cfg);
  const sd = new Map([...a.stateDict()].map(([k, t]) => [`module.${k}`, t]));
  const idx = zeros([3, 3], { dtype: "int64" });
  sd.set("module.relative_position_index", idx);
  const file = path.join(dir, "vlmo.safetensors");
  saveStateDict(file, sd);
  idx.dispose();
  manualSeed(5);
  const b = new VLMoModel(cfg);
  const r = loadPretrained(b, file);
  assert.equal(r.layout, "vlmo-official");
  assert.deepEqual([r.missing, r.unmatched], [[], []]);
  assertSameWeights(b, a.stateDict(), [...a.stateDict().keys()]);
  a.dispose();
  b.dispose();
});
