// nn modules: PyTorch's naming (nested modules, ModuleList indices, tied weights), buffers,
// train/eval propagation, state dict loading (strict errors, non-strict), DropPath statistics, and
// Conv2d/Linear/LayerNorm/Embedding against torch.nn with the same weights (forward and gradients).
//
// Tolerances vs PyTorch: rtol 1e-4 plus 1e-4 x max|torch| of each tensor (matmul/conv sums in float32).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Tensor, Generator, tensor, zeros, ones, randn, randint, noGrad, getNumThreads, liveTensors } from "../src/engine/tensor.ts";
import { tidy } from "../src/engine/scope.ts";
import {
  Module, Linear, LayerNorm, GroupNorm, Embedding, Dropout, DropPath, Conv2d, ModuleList, Sequential, GELU, StateDictError,
} from "../src/engine/nn.ts";
import { TorchRef, assertClose, type Tol } from "./torchref.ts";

const TOL: Tol = { rtol: 1e-4, atol: 1e-7, scale: 1e-4 };
const gen = new Generator(5);
const rn = (shape: number[]) => randn(shape, { generator: gen });

class Attention extends Module {
  readonly query: Linear;
  readonly key: Linear;
  constructor(d: number) {
    super();
    this.query = this.module("query", new Linear(d, d));
    this.key = this.module("key", new Linear(d, d, false));
    this.buffer("scale", tensor([1 / Math.sqrt(d)]));
    this.buffer("cache", zeros([2]), false);
  }
}
class Layer extends Module {
  readonly attention: Attention;
  readonly norm: LayerNorm;
  readonly drop: Dropout;
  constructor(d: number) {
    super();
    this.attention = this.module("attention", new Attention(d));
    this.norm = this.module("norm", new LayerNorm(d));
    this.drop = this.module("drop", new Dropout(0.5));
  }
}
/** A Linear whose weight can be tied to another module's parameter. */
class Head extends Linear {
  tie(w: Tensor): void {
    this.weight.dispose();
    this.param("weight", w);
    (this as { weight: Tensor }).weight = w;
  }
}
const buffer = (m: Module, name: string): Tensor => m.namedBuffers().find(([n]) => n === name)![1];

class Model extends Module {
  readonly emb: Embedding;
  readonly layer: ModuleList<Layer>;
  readonly head: Head;
  readonly missing: Linear | null;
  constructor(vocab = 10, d = 4, n = 2) {
    super();
    this.emb = this.module("emb", new Embedding(vocab, d));
    this.layer = this.module("layer", new ModuleList(Array.from({ length: n }, () => new Layer(d))));
    this.head = this.module("head", new Head(d, vocab));
    this.missing = this.module("missing", null);
  }
  /** Tie the output projection to the embedding (like BERT's decoder weight). */
  tie(): void {
    this.head.tie(this.emb.weight);
  }
}

test("nested modules and ModuleList indices are named like PyTorch", () => {
  const m = new Model();
  try {
    const names = m.namedParameters().map(([n]) => n);
    assert.deepEqual(names, [
      "emb.weight",
      "layer.0.attention.query.weight", "layer.0.attention.query.bias", "layer.0.attention.key.weight",
      "layer.0.norm.weight", "layer.0.norm.bias",
      "layer.1.attention.query.weight", "layer.1.attention.query.bias", "layer.1.attention.key.weight",
      "layer.1.norm.weight", "layer.1.norm.bias",
      "head.weight", "head.bias",
    ]);
    assert.deepEqual(m.namedModules().map(([n]) => n), [
      "", "emb", "layer", "layer.0", "layer.0.attention", "layer.0.attention.query", "layer.0.attention.key", "layer.0.norm", "layer.0.drop",
      "layer.1", "layer.1.attention", "layer.1.attention.query", "layer.1.attention.key", "layer.1.norm", "layer.1.drop", "head",
    ]);
    assert.deepEqual(m.namedParameters("bert").slice(0, 2).map(([n]) => n), ["bert.emb.weight", "bert.layer.0.attention.query.weight"]);
    assert.deepEqual(m.namedBuffers().map(([n]) => n), ["layer.0.attention.scale", "layer.0.attention.cache", "layer.1.attention.scale", "layer.1.attention.cache"]);
    assert.deepEqual(m.namedBuffers("", true).map(([n]) => n), ["layer.0.attention.scale", "layer.1.attention.scale"]);
    // the state dict has parameters and persistent buffers, not the non-persistent cache
    const sd = [...m.stateDict().keys()];
    assert.ok(sd.includes("layer.1.attention.scale"));
    assert.ok(!sd.some((k) => k.includes("cache")));
    assert.equal(sd.length, 13 + 2);
    assert.equal(m.layer.length, 2);
    assert.equal(m.layer.at(-1), m.layer.items[1]);
    assert.deepEqual([...m.layer].length, 2);
    assert.equal(m.numParameters(), 10 * 4 + 2 * (16 + 4 + 16 + 8) + 40 + 10);
    assert.equal(m.numParameters((n) => n.startsWith("head")), 50);
    for (const p of m.parameters()) {
      assert.equal(p.requiresGrad, true);
      assert.equal(p.isLeaf, true);
      assert.equal(p.isKept, true);
    }
  } finally {
    m.dispose();
  }
});

test("tied weights are listed once in namedParameters but under both names in stateDict", () => {
  const m = new Model();
  try {
    m.tie();
    const names = m.namedParameters().map(([n]) => n);
    assert.ok(names.includes("emb.weight"));
    assert.ok(!names.includes("head.weight"), "the tied weight is listed once, under its first name");
    assert.equal(m.parameters().length, 12);
    const sd = m.stateDict();
    assert.ok(sd.has("emb.weight") && sd.has("head.weight"));
    assert.equal(sd.get("emb.weight"), sd.get("head.weight"));
    // loading writes the shared tensor (the later key wins, as in PyTorch)
    const src = new Map([...sd].map(([k, v]) => [k, v.clone().keep()] as [string, Tensor]));
    noGrad(() => src.get("head.weight")!.fill_(3));
    m.loadStateDict(src);
    assert.ok(m.emb.weight.toArray().every((v) => v === 3));
    for (const t of src.values()) t.dispose();
  } finally {
    m.dispose();
  }
});

test("train/eval propagate to every submodule and switch dropout", () => {
  const m = new Model();
  try {
    assert.ok(m.namedModules().every(([, s]) => s.training));
    m.eval();
    assert.ok(m.namedModules().every(([, s]) => !s.training));
    tidy(() => {
      const x = ones([200, 4]);
      const drop = m.layer.at(0).drop;
      assert.ok(drop.forward(x).equal(x), "eval: dropout is the identity");
      m.train();
      assert.ok(m.namedModules().every(([, s]) => s.training));
      const y = drop.forward(x).toArray();
      const zeroFrac = y.filter((v) => v === 0).length / y.length;
      assert.ok(Math.abs(zeroFrac - 0.5) < 0.06, `train: dropout(0.5) zeroed ${zeroFrac}`);
      assert.ok(y.every((v) => v === 0 || v === 2));
      // a submodule can be switched alone
      m.layer.at(1).eval();
      assert.equal(m.layer.at(1).drop.training, false);
      assert.equal(m.layer.at(0).drop.training, true);
      assert.ok(m.layer.at(1).drop.forward(x).equal(x));
    });
  } finally {
    m.dispose();
  }
});

test("loadStateDict: strict errors list missing, unexpected and wrongly shaped keys; nothing is written", () => {
  const m = new Model();
  const other = new Model();
  try {
    const before = m.head.bias!.bytes();
    const sd = new Map(other.stateDict());
    sd.delete("layer.1.norm.bias");
    sd.delete("head.bias");
    sd.set("pooler.dense.weight", other.head.bias!);
    sd.set("layer.0.attention.query.weight", other.head.weight); // [10, 4] instead of [4, 4]
    let err: unknown;
    try {
      m.loadStateDict(sd);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof StateDictError, "throws a StateDictError");
    assert.deepEqual(err.missing, ["layer.1.norm.bias", "head.bias"]);
    assert.deepEqual(err.unexpected, ["pooler.dense.weight"]);
    assert.deepEqual(err.mismatched, [{ key: "layer.0.attention.query.weight", expected: [4, 4], got: [10, 4] }]);
    assert.match(err.message, /missing keys \(2\): layer\.1\.norm\.bias, head\.bias/);
    assert.match(err.message, /unexpected keys \(1\): pooler\.dense\.weight/);
    assert.match(err.message, /wrong shapes \(1\): layer\.0\.attention\.query\.weight expected \[4,4\] got \[10,4\]/);
    assert.deepEqual(m.head.bias!.bytes(), before, "a failed load writes nothing");
    assert.throws(() => m.loadStateDict(sd, { where: "checkpoint.pt" }), /checkpoint\.pt: missing keys \(2\)/);
    // a wrong shape fails even when not strict
    assert.throws(() => m.loadStateDict(sd, { strict: false }), (e: Error) => e instanceof StateDictError && e.mismatched.length === 1 && e.missing.length === 0);
  } finally {
    m.dispose();
    other.dispose();
  }
});

test("loadStateDict: non-strict loads what matches and reports the rest; dtypes are converted", () => {
  const m = new Model();
  const other = new Model();
  try {
    const keep = m.head.bias!.toArray();
    const sd = new Map(other.stateDict());
    sd.delete("head.bias");
    sd.set("extra.thing", other.emb.weight);
    const q64 = other.layer.at(0).attention.query.weight.to("float64").keep();
    sd.set("layer.0.attention.query.weight", q64);
    const r = m.loadStateDict(sd, { strict: false });
    assert.deepEqual(r.missing, ["head.bias"]);
    assert.deepEqual(r.unexpected, ["extra.thing"]);
    assert.deepEqual(m.head.bias!.toArray(), keep, "missing keys keep their values");
    assert.deepEqual(m.emb.weight.toArray(), other.emb.weight.toArray());
    assert.deepEqual(m.layer.at(1).norm.weight.toArray(), other.layer.at(1).norm.weight.toArray());
    assert.deepEqual(buffer(m, "layer.0.attention.scale").toArray(), buffer(other, "layer.0.attention.scale").toArray());
    assert.equal(m.layer.at(0).attention.query.weight.dtype, "float32", "the parameter keeps its dtype");
    assert.deepEqual(m.layer.at(0).attention.query.weight.toArray(), other.layer.at(0).attention.query.weight.toArray());
    // identity is kept: parameters are written in place, and still require grad
    assert.equal(m.parameters()[0], m.emb.weight);
    assert.ok(m.parameters().every((p) => p.requiresGrad && p.isLeaf));
    // a full strict load from a plain object works too
    m.loadStateDict(Object.fromEntries(other.stateDict()));
    assert.deepEqual(m.head.bias!.toArray(), other.head.bias!.toArray());
    q64.dispose();
  } finally {
    m.dispose();
    other.dispose();
  }
});

test("DropPath: whole samples dropped with probability p, survivors scaled, identity in eval", () => {
  tidy(() => {
    const dp = new DropPath(0.3);
    const x = ones([20000, 3, 2]);
    const y = dp.forward(x);
    const v = y.toArray();
    let dropped = 0;
    for (let i = 0; i < 20000; i++) {
      const s = v.slice(6 * i, 6 * i + 6);
      assert.ok(s.every((e) => e === s[0]), "a sample is kept or dropped as a whole");
      assert.ok(s[0] === 0 || Math.abs(s[0] - 1 / 0.7) < 1e-6);
      if (s[0] === 0) dropped++;
    }
    assert.ok(Math.abs(dropped / 20000 - 0.3) < 0.015, `dropped ${dropped / 20000}`);
    assert.ok(Math.abs(y.mean().item() - 1) < 0.03, "the expectation is preserved");
    dp.eval();
    assert.ok(dp.forward(x).equal(x));
    assert.ok(new DropPath(0).forward(x).equal(x));
    // gradients flow through kept samples only
    dp.train();
    const w = rn([1000, 4]).requiresGrad_(true);
    const o = dp.forward(w);
    o.sum().backward();
    const g = w.grad!.toArray();
    const ov = o.toArray();
    const wv = w.toArray();
    for (let i = 0; i < g.length; i++) assert.ok(ov[i] === 0 ? g[i] === 0 : Math.abs(g[i] - 1 / 0.7) < 1e-6 && Math.abs(ov[i] - wv[i] / 0.7) < 1e-5);
  });
});

test("Sequential, GELU, zeroGrad, to and dispose", () => {
  const before = liveTensors();
  const s = new Sequential(new Linear(4, 8), new GELU(), new Linear(8, 2), new GELU("tanh"));
  assert.deepEqual(s.namedParameters().map(([n]) => n), ["0.weight", "0.bias", "2.weight", "2.bias"]);
  tidy(() => {
    const x = rn([3, 4]);
    const l0 = s.layers[0] as Linear;
    const l2 = s.layers[2] as Linear;
    const manual = x.matmul(l0.weight.T).add(l0.bias!).gelu().matmul(l2.weight.T).add(l2.bias!).gelu("tanh");
    const y = s.forward(x);
    assertClose(y, manual.toArray(), { rtol: 1e-6, atol: 1e-7 });
    y.sum().backward();
    assert.ok(s.parameters().every((p) => p.grad !== null));
    s.zeroGrad();
    assert.ok(s.parameters().every((p) => p.grad === null));
  });
  const w = s.parameters()[0];
  s.to("cpu");
  assert.equal(s.parameters()[0], w);
  s.dispose();
  assert.ok(s.parameters().every((p) => p.isDisposed));
  assert.equal(liveTensors(), before, "dispose frees every parameter");
});

test("default initialisation: Linear/Conv2d uniform bounds, LayerNorm ones/zeros, Embedding N(0,1) with a zero padding row", () => {
  const lin = new Linear(64, 300);
  const conv = new Conv2d(3, 8, 5);
  const ln = new LayerNorm(7);
  const emb = new Embedding(500, 64, 3);
  try {
    const w = lin.weight.toArray();
    const b = 1 / 8;
    assert.ok(w.every((v) => Math.abs(v) <= b) && w.some((v) => Math.abs(v) > 0.95 * b));
    assert.ok(lin.bias!.toArray().every((v) => Math.abs(v) <= b));
    const cb = 1 / Math.sqrt(75);
    assert.ok(conv.weight.toArray().every((v) => Math.abs(v) <= cb));
    assert.deepEqual(conv.weight.shape, [8, 3, 5, 5]);
    assert.ok(ln.weight.toArray().every((v) => v === 1) && ln.bias.toArray().every((v) => v === 0));
    const e = emb.weight.toArray();
    assert.ok(e.slice(3 * 64, 4 * 64).every((v) => v === 0), "padding row is zero");
    const rest = e.filter((_, i) => Math.floor(i / 64) !== 3);
    const mean = rest.reduce((a, v) => a + v, 0) / rest.length;
    const std = Math.sqrt(rest.reduce((a, v) => a + (v - mean) ** 2, 0) / rest.length);
    assert.ok(Math.abs(mean) < 0.02 && Math.abs(std - 1) < 0.02, `embedding init mean ${mean} std ${std}`);
    assert.equal(new Linear(3, 4, false).bias, null);
  } finally {
    for (const m of [lin, conv, ln, emb]) m.dispose();
  }
});

// ---- layers vs torch.nn ---------------------------------------------------------------------------------------------

const ref = new TorchRef(getNumThreads());
let ran = false;
const ensureRun = () => {
  if (!ran) {
    ran = true;
    ref.run();
  }
};
process.on("exit", () => ref.cleanup());

type Result = { y: { values: number[]; shape: number[] }; grads: Record<string, { values: number[]; shape: number[] }> };

/** Run module m on x (+ a random-weighted sum backward) and queue the same for `pyModule` in PyTorch. */
function layerCase(name: string, m: Module & { forward(x: Tensor): Tensor }, x: Tensor, pyModule: string): Result {
  return tidy(() => {
    for (const [n, p] of m.namedParameters()) ref.put(`${name}/p.${n}`, p);
    const xi = x.dtype === "float32" ? x.detach().requiresGrad_(true) : x;
    const y = m.forward(xi);
    const w = rn(y.shape);
    ref.put(`${name}/x`, x);
    ref.put(`${name}/w`, w);
    y.mul(w).sum().backward();
    const grads: Result["grads"] = {};
    for (const [n, p] of m.namedParameters()) grads[n] = { values: p.grad!.toArray(), shape: p.grad!.shape };
    if (x.dtype === "float32") grads.x = { values: xi.grad!.toArray(), shape: xi.grad!.shape };
    const names = m.namedParameters().map(([n]) => n);
    ref.add(name, `
m = ${pyModule}
with torch.no_grad():
    for n in ${JSON.stringify(names)}:
        m.get_parameter(n).copy_(I["p." + n])
x = I["x"]
if x.is_floating_point():
    x.requires_grad_(True)
y = m(x)
(y * I["w"]).sum().backward()
O["y"] = y
for n in ${JSON.stringify(names)}:
    O[n] = m.get_parameter(n).grad
if x.is_floating_point():
    O["x"] = x.grad
`);
    const out = { y: { values: y.toArray(), shape: y.shape }, grads };
    m.dispose();
    return out;
  });
}

function checkLayer(name: string, r: Result): void {
  ensureRun();
  assertClose(r.y.values, ref.tensor(name, "y"), TOL, `${name} output`, r.y.shape);
  assert.ok(Object.keys(r.grads).length >= 1);
  for (const [n, g] of Object.entries(r.grads)) assertClose(g.values, ref.tensor(name, n), TOL, `${name} grad ${n}`, g.shape);
}

const layerResults = {
  linear: layerCase("linear", new Linear(12, 7), rn([3, 5, 12]), "nn.Linear(12, 7)"),
  linearNoBias: layerCase("linearNoBias", new Linear(12, 7, false), rn([5, 12]), "nn.Linear(12, 7, bias=False)"),
  conv: layerCase("conv", new Conv2d(3, 5, 3, 2, 1), rn([2, 3, 11, 11]), "nn.Conv2d(3, 5, 3, stride=2, padding=1)"),
  convNoBias: layerCase("convNoBias", new Conv2d(4, 6, 2, 2, 0, false), rn([2, 4, 8, 8]), "nn.Conv2d(4, 6, 2, stride=2, bias=False)"),
  layerNorm: (() => {
    const ln = new LayerNorm(16, 1e-12);
    noGrad(() => {
      ln.weight.copy_(rn([16]));
      ln.bias.copy_(rn([16]));
    });
    return layerCase("layerNorm", ln, rn([4, 3, 16]).mul(5), "nn.LayerNorm(16, eps=1e-12)");
  })(),
  groupNorm: (() => {
    const gn = new GroupNorm(2, 6);
    noGrad(() => {
      gn.weight.copy_(rn([6]));
      gn.bias.copy_(rn([6]));
    });
    return layerCase("groupNorm", gn, rn([3, 6, 5, 4]).mul(3).add(1), "nn.GroupNorm(2, 6)");
  })(),
  embedding: layerCase("embedding", new Embedding(20, 6, 0), randint(0, 20, [4, 9], { generator: gen }).maskedFill(randn([4, 9], { generator: gen }).gt(1), 0), "nn.Embedding(20, 6, padding_idx=0)"),
};

test("Linear matches nn.Linear (forward, input and parameter gradients)", () => {
  checkLayer("linear", layerResults.linear);
  checkLayer("linearNoBias", layerResults.linearNoBias);
  assert.deepEqual(Object.keys(layerResults.linear.grads), ["weight", "bias", "x"]);
});
test("Conv2d matches nn.Conv2d", () => {
  checkLayer("conv", layerResults.conv);
  checkLayer("convNoBias", layerResults.convNoBias);
  assert.deepEqual(layerResults.conv.y.shape, [2, 5, 6, 6]);
});
test("LayerNorm matches nn.LayerNorm", () => checkLayer("layerNorm", layerResults.layerNorm));
test("GroupNorm matches nn.GroupNorm (forward, input and affine gradients)", () => {
  checkLayer("groupNorm", layerResults.groupNorm);
  assert.deepEqual(Object.keys(layerResults.groupNorm.grads), ["weight", "bias", "x"]);
  assert.throws(() => new GroupNorm(4, 6), /6 channels do not split into 4 groups/);
});
test("Embedding matches nn.Embedding (padding row gets no gradient)", () => {
  checkLayer("embedding", layerResults.embedding);
  const g = layerResults.embedding.grads.weight.values;
  assert.ok(g.slice(0, 6).every((v) => v === 0), "the padding row's gradient is zero");
  assert.ok(g.slice(6).some((v) => v !== 0));
});
