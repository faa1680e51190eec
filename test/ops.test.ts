// Every op of the Tensor API and functional.ts against PyTorch 1.13 (Debian's, /usr/bin/python3) on
// random inputs: forward values AND gradients (backward of a random-weighted sum of the outputs).
// All cases run in ONE Python process (see torchref.ts). Besides: creation from/to typed arrays,
// dtype round trips, random streams (reproducibility, PyTorch's streams, statistics), dropout, and
// errors (libtorch messages, disposed tensors, wrong argument types).
//
// Tolerances (float32), |vlpkit - torch| <= atol + rtol*|torch| (+ scale*max|torch| where stated):
//   EW  elementwise ops and their gradients:             rtol 1e-5, atol 1e-6
//   MM  matmul-like ops, reductions, and gradients that sum over broadcast/batch dims:
//       rtol 1e-4 and an absolute 1e-4 x max|torch| of the tensor (sums of many terms cancel)
//   integer, bool and index outputs, float16/bfloat16 conversions, and seeded random streams: exact.
// The dtype and shape of every output must equal PyTorch's.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Tensor, Generator, tensor, fromBytes, zeros, ones, empty, full, zerosLike, onesLike, fullLike, arange, linspace, eye,
  rand, randn, randint, randperm, bernoulli, multinomial, manualSeed, getRngState, setRngState, cat, stack, where, einsum,
  getNumThreads, liveTensors, call, callVoid, noGrad,
} from "../src/engine/tensor.ts";
import { isFloating, type DType } from "../src/engine/dtype.ts";
import { tidy } from "../src/engine/scope.ts";
import * as F from "../src/engine/functional.ts";
import { TorchRef, assertClose, type Tol, type RefTensor } from "./torchref.ts";

const EW: Tol = { rtol: 1e-5, atol: 1e-6 };
const MM: Tol = { rtol: 1e-4, atol: 1e-6, scale: 1e-4 };

const ref = new TorchRef(getNumThreads());
let ran = false;
function ensureRun(): void {
  if (!ran) {
    ran = true;
    ref.run();
  }
}
process.on("exit", () => ref.cleanup());

const gen = new Generator(20240601);
const rn = (shape: number[], scale = 1): Tensor => (scale === 1 ? randn(shape, { generator: gen }) : randn(shape, { generator: gen }).mul(scale));
const ru = (shape: number[], lo: number, hi: number): Tensor => rand(shape, { generator: gen }).mul(hi - lo).add(lo);
const pos = (shape: number[]): Tensor => ru(shape, 0.2, 3);
const ri = (lo: number, hi: number, shape: number[], dtype: DType = "int64"): Tensor => randint(lo, hi, shape, { generator: gen, dtype });
const mask = (shape: number[], p = 0.5): Tensor => rand(shape, { generator: gen }).lt(p);
/** Rows of distinct column indices (for scatter without duplicate targets). */
const distinctCols = (rows: number, cols: number, k: number): Tensor => rand([rows, cols], { generator: gen }).argsort(1).slice(1, 0, k);

interface Out { dtype: DType; shape: number[]; values: number[] }
const snapshot = (t: Tensor): Out => ({ dtype: t.dtype, shape: t.shape, values: t.toArray() });

interface Case {
  /** Input tensors (created from the seeded generator), passed to js by name and to py as lambda parameters. */
  inputs?: () => Record<string, Tensor>;
  js: (x: Record<string, Tensor>) => Tensor | Tensor[];
  /** A Python expression over the input names giving a tensor or a tuple of tensors. */
  py: string;
  /** Inputs to differentiate (default: every floating input); [] for forward only. */
  diff?: string[];
  tol?: Tol;
  gradTol?: Tol;
}

function compareOut(actual: Out, expected: RefTensor, tol: Tol, what: string): void {
  assert.equal(actual.dtype, expected.dtype, `${what}: dtype`);
  const exact = !(actual.dtype === "float32" || actual.dtype === "float64");
  assertClose(actual.values, expected, exact ? { rtol: 0, atol: 0 } : tol, what, actual.shape);
}

let caseCount = 0;
/** Declare a test comparing vlpkit with PyTorch: outputs, then gradients of sum_i (out_i * w_i).sum(). */
function opCase(name: string, c: Case): void {
  caseCount++;
  let js: { outs: Out[]; grads: Record<string, Out | null>; diff: string[] } | undefined;
  let jsError: unknown;
  try {
    js = tidy(() => {
      const xs = c.inputs ? c.inputs() : {};
      const names = Object.keys(xs);
      const diff = c.diff ?? names.filter((n) => isFloating(xs[n].dtype));
      for (const n of names) ref.put(`${name}/${n}`, xs[n]);
      const leaves: Record<string, Tensor> = {};
      for (const n of names) leaves[n] = diff.includes(n) ? xs[n].detach().requiresGrad_(true) : xs[n];
      ref.add(name, `case(lambda ${names.join(", ")}: ${c.py}, ${JSON.stringify(names)}, ${JSON.stringify(diff)})`);
      const r = c.js(leaves);
      const outs = Array.isArray(r) ? r : [r];
      const res = { outs: outs.map(snapshot), grads: {} as Record<string, Out | null>, diff };
      if (diff.length > 0) {
        let loss: Tensor | null = null;
        for (let i = 0; i < outs.length; i++) {
          const t = outs[i];
          if (!isFloating(t.dtype) || !t.requiresGrad) continue;
          const w = randn(t.shape, { generator: gen });
          ref.put(`${name}/__w${i}`, w);
          const term = t.mul(w).sum();
          loss = loss === null ? term : loss.add(term);
        }
        if (loss !== null) loss.backward();
        for (const n of diff) {
          const g = leaves[n].grad;
          res.grads[n] = g ? snapshot(g) : null;
        }
      }
      return res;
    });
  } catch (e) {
    jsError = e;
  }
  test(name, () => {
    if (jsError !== undefined) throw jsError;
    ensureRun();
    const r = js!;
    r.outs.forEach((o, i) => compareOut(o, ref.tensor(name, String(i)), c.tol ?? EW, `${name}: output ${i}`));
    assert.ok(!ref.has(name, String(r.outs.length)), `${name}: PyTorch returned more than ${r.outs.length} outputs`);
    for (const n of r.diff) {
      const e = ref.out(name, `grad.${n}`);
      const a = r.grads[n];
      if (e === null || a === null) {
        assert.equal(a === null, e === null, `${name}: grad of ${n} is ${a === null ? "null" : "defined"} in vlpkit, ${e === null ? "None" : "defined"} in PyTorch`);
        continue;
      }
      compareOut(a, e, c.gradTol ?? c.tol ?? EW, `${name}: grad of ${n}`);
    }
  });
}

// ---- dtypes and conversions -----------------------------------------------------------------------

opCase("to float64", { inputs: () => ({ x: rn([3, 4]) }), js: ({ x }) => x.to("float64"), py: "x.double()" });
opCase("to int64 truncates", { inputs: () => ({ x: rn([3, 4], 10) }), js: ({ x }) => x.long(), py: "x.long()", diff: [] });
opCase("to int32", { inputs: () => ({ x: rn([3, 4], 10) }), js: ({ x }) => x.int(), py: "x.int()", diff: [] });
opCase("to bool", { inputs: () => ({ x: rn([20]).round() }), js: ({ x }) => x.bool(), py: "x.bool()", diff: [] });
opCase("float16 round trip", {
  inputs: () => ({ x: rn([64], 100) }),
  js: ({ x }) => [x.half(), x.half().float()],
  py: "(x.half(), x.half().float())",
});
opCase("bfloat16 round trip", {
  inputs: () => ({ x: rn([64], 100) }),
  js: ({ x }) => [x.bfloat16(), x.bfloat16().float()],
  py: "(x.bfloat16(), x.bfloat16().float())",
});
opCase("int64, int32 and bool to float32", {
  inputs: () => ({ a: ri(-50, 50, [10]), b: ri(-50, 50, [10], "int32"), m: mask([10]) }),
  js: ({ a, b, m }) => [a.float(), b.float(), m.float(), b.long(), m.long(), a.int()],
  py: "(a.float(), b.float(), m.float(), b.long(), m.long(), a.int())",
});
opCase("clone", { inputs: () => ({ x: rn([3, 4]) }), js: ({ x }) => x.clone(), py: "x.clone()" });
opCase("contiguous of a transpose", { inputs: () => ({ x: rn([3, 4]) }), js: ({ x }) => x.transpose(0, 1).contiguous(), py: "x.transpose(0, 1).contiguous()" });

// ---- shapes and views -----------------------------------------------------------------------------

const x234 = () => ({ x: rn([2, 3, 4]) });
opCase("reshape", { inputs: x234, js: ({ x }) => [x.reshape(4, 6), x.reshape([-1, 3])], py: "(x.reshape(4, 6), x.reshape(-1, 3))" });
opCase("view", { inputs: x234, js: ({ x }) => x.view(6, 4), py: "x.view(6, 4)" });
opCase("permute", { inputs: x234, js: ({ x }) => x.permute(2, 0, 1), py: "x.permute(2, 0, 1)" });
opCase("transpose", { inputs: x234, js: ({ x }) => x.transpose(0, 2), py: "x.transpose(0, 2)" });
opCase("T", { inputs: () => ({ x: rn([3, 5]) }), js: ({ x }) => x.T, py: "x.t()" });
opCase("expand", { inputs: () => ({ x: rn([3, 1]) }), js: ({ x }) => x.expand(2, 3, 4), py: "x.expand(2, 3, 4)", gradTol: MM });
opCase("expandAs", { inputs: () => ({ x: rn([1, 4]), y: rn([3, 4]) }), js: ({ x, y }) => x.expandAs(y), py: "x.expand_as(y)", diff: ["x"], gradTol: MM });
opCase("repeat", { inputs: () => ({ x: rn([2, 3]) }), js: ({ x }) => x.repeat(2, 1, 3), py: "x.repeat(2, 1, 3)", gradTol: MM });
opCase("repeatInterleave", { inputs: () => ({ x: rn([2, 3]) }), js: ({ x }) => x.repeatInterleave(2, 1), py: "x.repeat_interleave(2, dim=1)" });
opCase("squeeze and unsqueeze", {
  inputs: () => ({ x: rn([2, 1, 3, 1]) }),
  js: ({ x }) => [x.squeeze(), x.squeeze(1), x.unsqueeze(0), x.unsqueeze(-1)],
  py: "(x.squeeze(), x.squeeze(1), x.unsqueeze(0), x.unsqueeze(-1))",
});
opCase("flatten", { inputs: () => ({ x: rn([2, 3, 4, 5]) }), js: ({ x }) => [x.flatten(1, 2), x.flatten()], py: "(x.flatten(1, 2), x.flatten())" });
opCase("split by size", { inputs: () => ({ x: rn([4, 7]) }), js: ({ x }) => x.split(3, 1), py: "x.split(3, 1)" });
opCase("split by sizes", { inputs: () => ({ x: rn([4, 7]) }), js: ({ x }) => x.split([2, 5], 1), py: "x.split([2, 5], 1)" });
opCase("chunk", { inputs: () => ({ x: rn([6, 4]) }), js: ({ x }) => x.chunk(4, 0), py: "x.chunk(4, 0)" });
opCase("unbind", { inputs: x234, js: ({ x }) => x.unbind(1), py: "x.unbind(1)" });
opCase("narrow", { inputs: x234, js: ({ x }) => x.narrow(2, 1, 2), py: "x.narrow(2, 1, 2)" });
opCase("select", { inputs: x234, js: ({ x }) => [x.select(0, 1), x.select(2, -1)], py: "(x.select(0, 1), x.select(2, -1))" });
opCase("slice", {
  inputs: () => ({ x: rn([5, 8]) }),
  js: ({ x }) => [x.slice(1, 1, 7, 2), x.slice(0, -3), x.slice(1, undefined, -2)],
  py: "(x[:, 1:7:2], x[-3:], x[:, :-2])",
});
opCase("flip and roll", { inputs: x234, js: ({ x }) => [x.flip(0, 2), x.roll(2, 1)], py: "(x.flip(0, 2), x.roll(2, 1))" });
opCase("tril, triu, diagonal", {
  inputs: () => ({ x: rn([4, 5]) }),
  js: ({ x }) => [x.tril(), x.triu(1), x.diagonal(1), x.diagonal()],
  py: "(x.tril(), x.triu(1), x.diagonal(1), x.diagonal())",
});
opCase("index with a tensor per dim", {
  inputs: () => ({ x: rn([5, 6]), i: ri(0, 5, [7]), j: ri(0, 6, [7]) }),
  js: ({ x, i, j }) => [x.index([i]), x.index([null, j]), x.index([i, j])],
  py: "(x[i], x[:, j], x[i, j])",
  gradTol: MM,
});
opCase("index with a bool mask", { inputs: () => ({ x: rn([5, 6]), m: mask([5]) }), js: ({ x, m }) => x.index([m]), py: "x[m]" });

// ---- arithmetic with broadcasting ---------------------------------------------------------------------

const bxy = () => ({ x: rn([4, 1, 5]), y: rn([3, 1]) });
opCase("add broadcast with alpha", { inputs: bxy, js: ({ x, y }) => x.add(y, 2), py: "torch.add(x, y, alpha=2)", gradTol: MM });
opCase("add scalars", { inputs: () => ({ x: rn([3, 4]) }), js: ({ x }) => [x.add(2.5), x.add(3, 0.5)], py: "(x + 2.5, torch.add(x, 3, alpha=0.5))" });
opCase("sub broadcast with alpha", { inputs: bxy, js: ({ x, y }) => x.sub(y, 0.5), py: "torch.sub(x, y, alpha=0.5)", gradTol: MM });
opCase("sub scalar", { inputs: () => ({ x: rn([3, 4]) }), js: ({ x }) => x.sub(1), py: "x - 1" });
opCase("mul broadcast", { inputs: bxy, js: ({ x, y }) => x.mul(y), py: "x * y", gradTol: MM });
opCase("mul scalar", { inputs: () => ({ x: rn([3, 4]) }), js: ({ x }) => [x.mul(-1.5), x.mul(2)], py: "(x * -1.5, x * 2)" });
opCase("div broadcast", { inputs: () => ({ x: rn([4, 1, 5]), y: pos([3, 1]) }), js: ({ x, y }) => x.div(y), py: "x / y", gradTol: MM });
opCase("div scalar", { inputs: () => ({ x: rn([3, 4]) }), js: ({ x }) => [x.div(3), x.div(0.25)], py: "(x / 3, x / 0.25)" });
opCase("div with rounding modes", {
  inputs: () => ({ x: rn([4, 5], 5), y: pos([5]) }),
  js: ({ x, y }) => [x.div(y, "trunc"), x.div(y, "floor"), x.div(2, "floor")],
  py: "(torch.div(x, y, rounding_mode='trunc'), torch.div(x, y, rounding_mode='floor'), torch.div(x, 2, rounding_mode='floor'))",
  gradTol: MM,
});
opCase("remainder", {
  inputs: () => ({ x: rn([4, 5], 5), y: pos([5]) }),
  js: ({ x, y }) => [x.remainder(y), x.remainder(1.5)],
  py: "(torch.remainder(x, y), torch.remainder(x, 1.5))",
  diff: ["x"],
});
opCase("pow", {
  inputs: () => ({ x: pos([3, 4]), e: ru([3, 4], -1, 2) }),
  js: ({ x, e }) => [x.pow(2.5), x.pow(2), x.pow(e)],
  py: "(x.pow(2.5), x.pow(2), x.pow(e))",
});

const unary: [string, (x: Tensor) => Tensor, string, "any" | "pos"][] = [
  ["neg", (x) => x.neg(), "x.neg()", "any"],
  ["abs", (x) => x.abs(), "x.abs()", "any"],
  ["exp", (x) => x.exp(), "x.exp()", "any"],
  ["log", (x) => x.log(), "x.log()", "pos"],
  ["log1p", (x) => x.log1p(), "x.log1p()", "pos"],
  ["sqrt", (x) => x.sqrt(), "x.sqrt()", "pos"],
  ["rsqrt", (x) => x.rsqrt(), "x.rsqrt()", "pos"],
  ["sign", (x) => x.sign(), "x.sign()", "any"],
  ["floor", (x) => x.floor(), "x.floor()", "any"],
  ["ceil", (x) => x.ceil(), "x.ceil()", "any"],
  ["round", (x) => x.round(), "x.round()", "any"],
  ["reciprocal", (x) => x.reciprocal(), "x.reciprocal()", "pos"],
  ["square", (x) => x.square(), "x.square()", "any"],
  ["sin", (x) => x.sin(), "x.sin()", "any"],
  ["cos", (x) => x.cos(), "x.cos()", "any"],
  ["erf", (x) => x.erf(), "x.erf()", "any"],
  ["tanh", (x) => x.tanh(), "x.tanh()", "any"],
  ["sigmoid", (x) => x.sigmoid(), "x.sigmoid()", "any"],
  ["relu", (x) => x.relu(), "x.relu()", "any"],
  ["silu", (x) => x.silu(), "F.silu(x)", "any"],
  ["gelu (erf)", (x) => x.gelu(), "F.gelu(x)", "any"],
  ["gelu (tanh)", (x) => x.gelu("tanh"), "F.gelu(x, approximate='tanh')", "any"],
  ["F.relu", (x) => F.relu(x), "F.relu(x)", "any"],
  ["F.gelu (erf)", (x) => F.gelu(x), "F.gelu(x)", "any"],
  ["F.gelu (tanh)", (x) => F.gelu(x, "tanh"), "F.gelu(x, approximate='tanh')", "any"],
  ["F.tanh", (x) => F.tanh(x), "torch.tanh(x)", "any"],
  ["F.sigmoid", (x) => F.sigmoid(x), "torch.sigmoid(x)", "any"],
];
for (const [n, fn, py, dom] of unary) {
  opCase(`unary ${n}`, { inputs: () => ({ x: dom === "pos" ? pos([4, 6]) : rn([4, 6], 2) }), js: ({ x }) => fn(x), py });
}

opCase("clamp", {
  inputs: () => ({ x: rn([4, 6]) }),
  js: ({ x }) => [x.clamp(-0.5, 0.5), x.clamp(undefined, 0.3), x.clampMin(-0.2), x.clampMax(0.1)],
  py: "(x.clamp(-0.5, 0.5), x.clamp(max=0.3), x.clamp_min(-0.2), x.clamp_max(0.1))",
});
opCase("maximum and minimum", { inputs: () => ({ x: rn([4, 6]), y: rn([4, 6]) }), js: ({ x, y }) => [x.maximum(y), x.minimum(y)], py: "(torch.maximum(x, y), torch.minimum(x, y))" });
opCase("lerp", {
  inputs: () => ({ x: rn([4, 6]), y: rn([4, 6]), w: rand([4, 6], { generator: gen }) }),
  js: ({ x, y, w }) => [x.lerp(y, 0.3), x.lerp(y, w)],
  py: "(torch.lerp(x, y, 0.3), torch.lerp(x, y, w))",
});
opCase("int64 arithmetic", {
  inputs: () => ({ a: ri(-20, 20, [3, 4]), b: ri(1, 6, [3, 4]) }),
  js: ({ a, b }) => [a.add(b), a.mul(3), a.sub(b, 2), a.div(b), a.div(b, "floor"), a.remainder(3), a.neg(), a.abs(), a.pow(2)],
  py: "(a + b, a * 3, torch.sub(a, b, alpha=2), a / b, torch.div(a, b, rounding_mode='floor'), a.remainder(3), -a, a.abs(), a.pow(2))",
  diff: [],
});
opCase("int32 with float32 promotes", {
  inputs: () => ({ a: ri(-20, 20, [3, 4], "int32"), x: rn([3, 4]) }),
  js: ({ a, x }) => [a.add(x), a.mul(0.5), a.add(a)],
  py: "(a + x, a * 0.5, a + a)",
});
opCase("bool and int arithmetic", {
  inputs: () => ({ m: mask([3, 4]), a: ri(0, 9, [3, 4]) }),
  js: ({ m, a }) => [m.add(m), a.mul(m), m.long().sum()],
  py: "(m + m, a * m, m.long().sum())",
  diff: [],
});

// ---- comparison and logic --------------------------------------------------------------------------------

opCase("comparisons with tensors", {
  inputs: () => ({ x: rn([4, 5], 2).round(), y: rn([5], 2).round() }),
  js: ({ x, y }) => [x.eq(y), x.ne(y), x.lt(y), x.le(y), x.gt(y), x.ge(y)],
  py: "(x == y, x != y, x < y, x <= y, x > y, x >= y)",
  diff: [],
});
opCase("comparisons with scalars", {
  inputs: () => ({ x: rn([4, 5], 2).round(), a: ri(-3, 3, [6]) }),
  js: ({ x, a }) => [x.eq(0), x.ne(1), x.lt(0.5), x.le(-1), x.gt(1), x.ge(0), a.eq(1), a.lt(0.5)],
  py: "(x == 0, x != 1, x < 0.5, x <= -1, x > 1, x >= 0, a == 1, a < 0.5)",
  diff: [],
});
opCase("logical ops", {
  inputs: () => ({ m: mask([10]), k: mask([10]) }),
  js: ({ m, k }) => [m.logicalAnd(k), m.logicalOr(k), m.logicalNot()],
  py: "(m.logical_and(k), m.logical_or(k), m.logical_not())",
  diff: [],
});
opCase("isnan and isfinite", {
  inputs: () => ({ x: cat([rn([5]), tensor([NaN, Infinity, -Infinity, 0])]) }),
  js: ({ x }) => [x.isnan(), x.isfinite()],
  py: "(x.isnan(), x.isfinite())",
  diff: [],
});

test("allclose and equal", () => {
  tidy(() => {
    const x = rn([10]);
    assert.equal(x.allclose(x.add(1e-9)), true);
    assert.equal(x.allclose(x.add(1e-3)), false);
    assert.equal(x.allclose(x.add(1e-3), 0, 1e-2), true);
    assert.equal(x.equal(x.clone()), true);
    assert.equal(x.equal(x.add(1e-6)), false);
  });
});

// ---- linear algebra -----------------------------------------------------------------------------------------

opCase("matmul 2d", { inputs: () => ({ a: rn([7, 16]), b: rn([16, 5]) }), js: ({ a, b }) => a.matmul(b), py: "a @ b", tol: MM });
opCase("matmul batched with broadcast", { inputs: () => ({ a: rn([2, 1, 4, 8]), b: rn([3, 8, 6]) }), js: ({ a, b }) => a.matmul(b), py: "a @ b", tol: MM });
opCase("matmul 3d x 2d", { inputs: () => ({ a: rn([3, 7, 16]), b: rn([16, 5]) }), js: ({ a, b }) => a.matmul(b), py: "a @ b", tol: MM });
opCase("matmul with a vector", { inputs: () => ({ a: rn([7, 16]), v: rn([16]) }), js: ({ a, v }) => [a.matmul(v), v.matmul(v)], py: "(a @ v, v @ v)", tol: MM });
opCase("mm", { inputs: () => ({ a: rn([7, 16]), b: rn([16, 5]) }), js: ({ a, b }) => a.mm(b), py: "a.mm(b)", tol: MM });
opCase("bmm", { inputs: () => ({ a: rn([4, 5, 6]), b: rn([4, 6, 3]) }), js: ({ a, b }) => a.bmm(b), py: "a.bmm(b)", tol: MM });
opCase("baddbmm", {
  inputs: () => ({ c: rn([4, 5, 3]), a: rn([4, 5, 6]), b: rn([4, 6, 3]) }),
  js: ({ c, a, b }) => [c.baddbmm(a, b), c.baddbmm(a, b, 0.5, 2)],
  py: "(torch.baddbmm(c, a, b), torch.baddbmm(c, a, b, beta=0.5, alpha=2))",
  tol: MM,
});
opCase("addmm", { inputs: () => ({ c: rn([5, 3]), a: rn([5, 6]), b: rn([6, 3]) }), js: ({ c, a, b }) => c.addmm(a, b, 0.5, 2), py: "torch.addmm(c, a, b, beta=0.5, alpha=2)", tol: MM });
opCase("outer", { inputs: () => ({ u: rn([5]), v: rn([3]) }), js: ({ u, v }) => u.outer(v), py: "torch.outer(u, v)", tol: MM });
opCase("einsum", { inputs: () => ({ a: rn([2, 3, 4]), b: rn([2, 4, 5]) }), js: ({ a, b }) => einsum("bij,bjk->bik", a, b), py: "torch.einsum('bij,bjk->bik', a, b)", tol: MM });
opCase("F.linear with bias, 3d input", { inputs: () => ({ x: rn([4, 6, 10]), w: rn([8, 10]), b: rn([8]) }), js: ({ x, w, b }) => F.linear(x, w, b), py: "F.linear(x, w, b)", tol: MM });
opCase("F.linear without bias", { inputs: () => ({ x: rn([6, 10]), w: rn([8, 10]) }), js: ({ x, w }) => F.linear(x, w), py: "F.linear(x, w)", tol: MM });

// ---- reductions -------------------------------------------------------------------------------------------------

const x456 = () => ({ x: rn([4, 5, 6]) });
opCase("sum", {
  inputs: x456,
  js: ({ x }) => [x.sum(), x.sum([0, 2], true), x.sum(1), x.sum(1, false, "float64")],
  py: "(x.sum(), x.sum((0, 2), keepdim=True), x.sum(1), x.sum(1, dtype=torch.float64))",
  tol: MM,
});
opCase("sum of int64 and bool", { inputs: () => ({ a: ri(-9, 9, [4, 5]), m: mask([4, 5]) }), js: ({ a, m }) => [a.sum(), a.sum(0), m.sum()], py: "(a.sum(), a.sum(0), m.sum())", diff: [] });
opCase("mean", { inputs: x456, js: ({ x }) => [x.mean(), x.mean([1, 2]), x.mean(-1, true)], py: "(x.mean(), x.mean((1, 2)), x.mean(-1, keepdim=True))", tol: MM });
opCase("prod", { inputs: () => ({ x: ru([3, 4], 0.5, 1.5) }), js: ({ x }) => [x.prod(), x.prod(1, true)], py: "(x.prod(), x.prod(1, keepdim=True))", tol: MM });
opCase("var and std", {
  inputs: x456,
  js: ({ x }) => [x.var(), x.var(1, false), x.var([0, 2], true, true), x.std(), x.std(2, false, true)],
  py: "(x.var(), x.var(1, unbiased=False), x.var((0, 2), unbiased=True, keepdim=True), x.std(), x.std(2, unbiased=False, keepdim=True))",
  tol: MM,
});
opCase("max and min", { inputs: x456, js: ({ x }) => [x.max(), x.min()], py: "(x.max(), x.min())" });
opCase("max over a dim", { inputs: x456, js: ({ x }) => x.maxDim(1), py: "x.max(1)" });
opCase("min over a dim keepdim", { inputs: x456, js: ({ x }) => x.minDim(2, true), py: "x.min(2, keepdim=True)" });
opCase("amax and amin", { inputs: x456, js: ({ x }) => [x.amax([0, 2]), x.amin(1, true)], py: "(x.amax((0, 2)), x.amin(1, keepdim=True))" });
opCase("argmax and argmin", {
  inputs: x456,
  js: ({ x }) => [x.argmax(), x.argmax(1), x.argmin(2, true), x.argmin()],
  py: "(x.argmax(), x.argmax(1), x.argmin(2, keepdim=True), x.argmin())",
  diff: [],
});
opCase("logsumexp", { inputs: x456, js: ({ x }) => [x.logsumexp(1), x.logsumexp([0, 2], true)], py: "(x.logsumexp(1), x.logsumexp((0, 2), keepdim=True))", tol: MM });
opCase("norm", {
  inputs: x456,
  js: ({ x }) => [x.norm(), x.norm(1, 1), x.norm(2, [1, 2], true), x.norm(Infinity, -1), x.norm(3, 0)],
  py: "(torch.linalg.vector_norm(x), torch.linalg.vector_norm(x, 1, dim=1), torch.linalg.vector_norm(x, 2, dim=(1, 2), keepdim=True), torch.linalg.vector_norm(x, float('inf'), dim=-1), torch.linalg.vector_norm(x, 3, dim=0))",
  tol: MM,
});
opCase("topk largest", { inputs: x456, js: ({ x }) => x.topk(3, 1), py: "x.topk(3, 1)" });
opCase("topk smallest", { inputs: x456, js: ({ x }) => x.topk(2, -1, false), py: "x.topk(2, -1, largest=False)" });
opCase("sort descending", { inputs: x456, js: ({ x }) => x.sort(1, true), py: "x.sort(1, descending=True)" });
opCase("sort stable with ties", { inputs: () => ({ x: rn([4, 12], 2).round() }), js: ({ x }) => x.sort(-1, false, true), py: "torch.sort(x, dim=-1, stable=True)" });
opCase("argsort", { inputs: x456, js: ({ x }) => [x.argsort(0), x.argsort(-1, true)], py: "(x.argsort(0), x.argsort(-1, descending=True))", diff: [] });
opCase("cumsum", { inputs: x456, js: ({ x }) => x.cumsum(1), py: "x.cumsum(1)", tol: MM });
opCase("all, any, countNonzero", {
  inputs: () => ({ m: mask([4, 5], 0.8), z: mask([3], 0), a: ri(0, 3, [4, 5]) }),
  js: ({ m, z, a }) => [m.all(), m.any(), z.any(), m.logicalOr(m.logicalNot()).all(), a.countNonzero(), a.countNonzero(1)],
  py: "(m.all(), m.any(), z.any(), (m | ~m).all(), torch.count_nonzero(a), torch.count_nonzero(a, 1))",
  diff: [],
});

// ---- indexing -------------------------------------------------------------------------------------------------------

opCase("indexSelect", { inputs: () => ({ x: rn([4, 6]), i: ri(0, 6, [8]) }), js: ({ x, i }) => x.indexSelect(1, i), py: "x.index_select(1, i)", gradTol: MM });
opCase("gather", { inputs: () => ({ x: rn([4, 6]), i: ri(0, 6, [4, 3]) }), js: ({ x, i }) => x.gather(1, i), py: "x.gather(1, i)", gradTol: MM });
opCase("scatter src and value", {
  inputs: () => ({ x: rn([3, 5]), i: distinctCols(3, 5, 3), s: rn([3, 3]) }),
  js: ({ x, i, s }) => [x.scatter(1, i, s), x.scatter(1, i, 2.5)],
  py: "(x.scatter(1, i, s), x.scatter(1, i, 2.5))",
});
opCase("scatterAdd with duplicates", { inputs: () => ({ x: rn([3, 5]), i: ri(0, 5, [3, 6]), s: rn([3, 6]) }), js: ({ x, i, s }) => x.scatterAdd(1, i, s), py: "x.scatter_add(1, i, s)", tol: MM });
opCase("maskedFill", {
  inputs: () => ({ x: rn([3, 5]), m: mask([3, 5]), mb: mask([1, 5]), v: rn([]) }),
  js: ({ x, m, mb, v }) => [x.maskedFill(m, -1.5), x.maskedFill(mb, 7), x.maskedFill(m, v)],
  py: "(x.masked_fill(m, -1.5), x.masked_fill(mb, 7), x.masked_fill(m, v))",
  gradTol: MM,
});
opCase("maskedSelect", { inputs: () => ({ x: rn([3, 5]), m: mask([3, 5]) }), js: ({ x, m }) => x.maskedSelect(m), py: "x.masked_select(m)" });
opCase("nonzero", { inputs: () => ({ a: ri(0, 2, [4, 5]) }), js: ({ a }) => a.nonzero(), py: "a.nonzero()", diff: [] });
opCase("indexPut", {
  inputs: () => ({ x: rn([6, 3]), i: randperm(6, { generator: gen }).slice(0, 0, 3), d: ri(0, 6, [5]), v: rn([3, 3]), u: rn([5, 3]) }),
  js: ({ x, i, d, v, u }) => [x.indexPut([i], v), x.indexPut([d], u, true)],
  py: "(x.index_put((i,), v), x.index_put((d,), u, accumulate=True))",
  gradTol: MM,
});
opCase("where", {
  inputs: () => ({ m: mask([3, 4]), x: rn([3, 4]), y: rn([4]) }),
  js: ({ m, x, y }) => [where(m, x, y), where(m, x, 0.5), where(m, -2, y), where(m, 1, 0), where(m, 1.5, 0)],
  py: "(torch.where(m, x, y), torch.where(m, x, 0.5), torch.where(m, -2, y), torch.ops.aten.where.Scalar(m, 1, 0), torch.ops.aten.where.Scalar(m, 1.5, 0))",
  gradTol: MM,
});
opCase("cat and stack", {
  inputs: () => ({ a: rn([2, 3]), b: rn([2, 4]), c: rn([2, 3]) }),
  js: ({ a, b, c }) => [cat([a, b], 1), cat([a, c]), stack([a, c]), stack([a, c], -1)],
  py: "(torch.cat([a, b], 1), torch.cat([a, c]), torch.stack([a, c]), torch.stack([a, c], -1))",
});

// ---- activations, normalisation, layers ---------------------------------------------------------------------------------

opCase("softmax and logSoftmax", {
  inputs: () => ({ x: rn([4, 7], 3) }),
  js: ({ x }) => [F.softmax(x, 1), F.logSoftmax(x, -1), x.softmax(0), x.logSoftmax(0)],
  py: "(F.softmax(x, 1), F.log_softmax(x, -1), x.softmax(0), x.log_softmax(0))",
  gradTol: MM,
});
opCase("layerNorm affine", {
  inputs: () => ({ x: rn([4, 6, 16], 3), w: rn([16]), b: rn([16]) }),
  js: ({ x, w, b }) => F.layerNorm(x, [16], w, b, 1e-12),
  py: "F.layer_norm(x, (16,), w, b, 1e-12)",
  tol: MM,
});
opCase("layerNorm without affine over two dims", { inputs: () => ({ x: rn([4, 6, 16], 3) }), js: ({ x }) => F.layerNorm(x, [6, 16]), py: "F.layer_norm(x, (6, 16))", tol: MM });
opCase("embedding with padding", {
  inputs: () => ({ w: rn([10, 8]), ids: cat([ri(0, 10, [18]), zeros([2], { dtype: "int64" })]).reshape(4, 5) }),
  js: ({ w, ids }) => [F.embedding(w, ids, 0), F.embedding(w, ids)],
  py: "(F.embedding(ids, w, padding_idx=0), F.embedding(ids, w))",
  gradTol: MM,
});
opCase("conv2d stride and padding", {
  inputs: () => ({ x: rn([2, 3, 9, 9]), w: rn([4, 3, 3, 3]), b: rn([4]) }),
  js: ({ x, w, b }) => F.conv2d(x, w, b, 2, 1),
  py: "F.conv2d(x, w, b, stride=2, padding=1)",
  tol: MM,
});
opCase("conv2d groups and dilation", {
  inputs: () => ({ x: rn([2, 4, 8, 8]), w: rn([6, 2, 3, 3]) }),
  js: ({ x, w }) => F.conv2d(x, w, null, 1, [1, 0], 2, 2),
  py: "F.conv2d(x, w, None, 1, (1, 0), 2, 2)",
  tol: MM,
});
opCase("avgPool2d", { inputs: () => ({ x: rn([2, 3, 8, 8]) }), js: ({ x }) => [F.avgPool2d(x, 2), F.avgPool2d(x, 3, 2, 1)], py: "(F.avg_pool2d(x, 2), F.avg_pool2d(x, 3, 2, 1))", tol: MM });
opCase("maxPool2d", { inputs: () => ({ x: rn([2, 3, 8, 8]) }), js: ({ x }) => [F.maxPool2d(x, 2), F.maxPool2d(x, 3, 2, 1)], py: "(F.max_pool2d(x, 2), F.max_pool2d(x, 3, 2, 1))", gradTol: MM });
opCase("adaptiveAvgPool2d", {
  inputs: () => ({ x: rn([2, 3, 7, 7]) }),
  js: ({ x }) => [F.adaptiveAvgPool2d(x, 3), F.adaptiveAvgPool2d(x, [2, 4]), F.adaptiveAvgPool2d(x, 1)],
  py: "(F.adaptive_avg_pool2d(x, 3), F.adaptive_avg_pool2d(x, (2, 4)), F.adaptive_avg_pool2d(x, 1))",
  tol: MM,
});
opCase("adaptiveAvgPool1d", { inputs: () => ({ x: rn([2, 3, 10]) }), js: ({ x }) => F.adaptiveAvgPool1d(x, 4), py: "F.adaptive_avg_pool1d(x, 4)", tol: MM });
opCase("normalize", {
  inputs: () => ({ x: cat([rn([3, 8]), zeros([1, 8])]) }),
  js: ({ x }) => [F.normalize(x), F.normalize(x, 1, 0), F.normalize(x, 2, 1, 1e-3)],
  py: "(F.normalize(x), F.normalize(x, 1.0, 0), F.normalize(x, 2.0, 1, 1e-3))",
  tol: MM,
});
opCase("cosineSimilarity", {
  inputs: () => ({ a: rn([4, 8]), b: rn([4, 8]), c: rn([4, 1, 8]), d: rn([1, 5, 8]) }),
  js: ({ a, b, c, d }) => [F.cosineSimilarity(a, b), F.cosineSimilarity(c, d, -1)],
  py: "(F.cosine_similarity(a, b, 1), F.cosine_similarity(c, d, -1))",
  tol: MM,
});
opCase("oneHot", { inputs: () => ({ i: ri(0, 5, [3, 4]) }), js: ({ i }) => [F.oneHot(i, 7), F.oneHot(i)], py: "(F.one_hot(i, 7), F.one_hot(i))", diff: [] });

// ---- losses -------------------------------------------------------------------------------------------------------------------

const ceIn = () => ({ x: rn([8, 5], 2), t: cat([ri(0, 5, [6]), tensor([-100, 2], { dtype: "int64" })]) });
opCase("crossEntropy", { inputs: ceIn, js: ({ x, t }) => F.crossEntropy(x, t), py: "F.cross_entropy(x, t)", tol: MM });
opCase("crossEntropy ignoreIndex", {
  inputs: ceIn,
  js: ({ x, t }) => [F.crossEntropy(x, t, { reduction: "none" }), F.crossEntropy(x, t.clampMin(0), { ignoreIndex: 2 }), F.crossEntropy(x, t.clampMin(0), { ignoreIndex: 2, reduction: "sum" })],
  py: "(F.cross_entropy(x, t, reduction='none'), F.cross_entropy(x, t.clamp_min(0), ignore_index=2), F.cross_entropy(x, t.clamp_min(0), ignore_index=2, reduction='sum'))",
  tol: MM,
});
opCase("crossEntropy class weights", {
  inputs: () => ({ ...ceIn(), cw: ru([5], 0.2, 2) }),
  js: ({ x, t, cw }) => [F.crossEntropy(x, t, { weight: cw }), F.crossEntropy(x, t, { weight: cw, reduction: "sum" })],
  py: "(F.cross_entropy(x, t, weight=cw), F.cross_entropy(x, t, weight=cw, reduction='sum'))",
  diff: ["x"],
  tol: MM,
});
opCase("crossEntropy label smoothing", { inputs: ceIn, js: ({ x, t }) => F.crossEntropy(x, t, { labelSmoothing: 0.1 }), py: "F.cross_entropy(x, t, label_smoothing=0.1)", tol: MM });
opCase("crossEntropy weights + ignoreIndex + smoothing", {
  inputs: () => ({ ...ceIn(), cw: ru([5], 0.2, 2) }),
  js: ({ x, t, cw }) => [
    F.crossEntropy(x, t, { weight: cw, labelSmoothing: 0.2 }),
    F.crossEntropy(x, t.clampMin(0), { weight: cw, ignoreIndex: 1, labelSmoothing: 0.2, reduction: "none" }),
  ],
  py: "(F.cross_entropy(x, t, weight=cw, label_smoothing=0.2), F.cross_entropy(x, t.clamp_min(0), weight=cw, ignore_index=1, label_smoothing=0.2, reduction='none'))",
  diff: ["x"],
  tol: MM,
});
opCase("crossEntropy over [N, C, L]", { inputs: () => ({ x: rn([3, 5, 4]), t: ri(0, 5, [3, 4]) }), js: ({ x, t }) => F.crossEntropy(x, t), py: "F.cross_entropy(x, t)", tol: MM });
opCase("crossEntropy with probability targets", {
  inputs: () => ({ x: rn([6, 5]), p: rn([6, 5]).softmax(1) }),
  js: ({ x, p }) => F.crossEntropy(x, p, { labelSmoothing: 0.2 }),
  py: "F.cross_entropy(x, p, label_smoothing=0.2)",
  tol: MM,
});
opCase("nllLoss", {
  inputs: () => ({ x: rn([8, 5]), t: ri(0, 5, [8]), cw: ru([5], 0.2, 2) }),
  js: ({ x, t, cw }) => F.nllLoss(x.logSoftmax(1), t, { weight: cw, ignoreIndex: 1 }),
  py: "F.nll_loss(x.log_softmax(1), t, weight=cw, ignore_index=1)",
  diff: ["x"],
  tol: MM,
});
opCase("binaryCrossEntropyWithLogits weight and posWeight", {
  inputs: () => ({ x: rn([4, 6], 2), y: rand([4, 6], { generator: gen }), wt: ru([6], 0.1, 2), pw: ru([6], 0.5, 3) }),
  js: ({ x, y, wt, pw }) => [
    F.binaryCrossEntropyWithLogits(x, y),
    F.binaryCrossEntropyWithLogits(x, y, { weight: wt, posWeight: pw }),
    F.binaryCrossEntropyWithLogits(x, y, { posWeight: pw, reduction: "none" }),
    F.binaryCrossEntropyWithLogits(x, y, { weight: wt, reduction: "sum" }),
  ],
  py: "(F.binary_cross_entropy_with_logits(x, y), F.binary_cross_entropy_with_logits(x, y, weight=wt, pos_weight=pw), F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction='none'), F.binary_cross_entropy_with_logits(x, y, weight=wt, reduction='sum'))",
  diff: ["x", "y"],
  tol: MM,
});
opCase("smoothL1Loss", {
  inputs: () => ({ x: rn([4, 6], 2), y: rn([4, 6]) }),
  js: ({ x, y }) => [F.smoothL1Loss(x, y, "mean", 0.5), F.smoothL1Loss(x, y, "sum"), F.smoothL1Loss(x, y, "none", 2)],
  py: "(F.smooth_l1_loss(x, y, beta=0.5), F.smooth_l1_loss(x, y, reduction='sum'), F.smooth_l1_loss(x, y, reduction='none', beta=2.0))",
  tol: MM,
});
opCase("mseLoss and l1Loss", {
  inputs: () => ({ x: rn([4, 6]), y: rn([4, 6]) }),
  js: ({ x, y }) => [F.mseLoss(x, y), F.mseLoss(x, y, "none"), F.l1Loss(x, y), F.l1Loss(x, y, "sum")],
  py: "(F.mse_loss(x, y), F.mse_loss(x, y, reduction='none'), F.l1_loss(x, y), F.l1_loss(x, y, reduction='sum'))",
  tol: MM,
});
opCase("klDiv", {
  inputs: () => ({ lp: rn([4, 6]).logSoftmax(1), q: rn([4, 6]).softmax(1), lq: rn([4, 6]).logSoftmax(1) }),
  js: ({ lp, q, lq }) => [F.klDiv(lp, q, "batchmean"), F.klDiv(lp, q), F.klDiv(lp, lq, "sum", true), F.klDiv(lp, q, "none")],
  py: "(F.kl_div(lp, q, reduction='batchmean'), F.kl_div(lp, q, reduction='mean'), F.kl_div(lp, lq, reduction='sum', log_target=True), F.kl_div(lp, q, reduction='none'))",
  tol: MM,
});
opCase("marginRankingLoss", {
  inputs: () => ({ a: rn([8]), b: rn([8]), t: ri(0, 2, [8]).mul(2).sub(1).float() }),
  js: ({ a, b, t }) => [F.marginRankingLoss(a, b, t, 0.3), F.marginRankingLoss(a, b, t, 0, "none")],
  py: "(F.margin_ranking_loss(a, b, t, margin=0.3), F.margin_ranking_loss(a, b, t, reduction='none'))",
  diff: ["a", "b"],
  tol: MM,
});

// ---- creation -------------------------------------------------------------------------------------------------------------------

opCase("zeros, ones, full", {
  js: () => [zeros([2, 3]), ones([2, 3], { dtype: "int32" }), full([2, 2], 1.5), full([2, 2], 7, { dtype: "int64" }), full([2], 3), ones([3], { dtype: "bool" })],
  py: "(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.int32), torch.full((2, 2), 1.5), torch.full((2, 2), 7, dtype=torch.int64), torch.full((2,), 3.0), torch.ones(3, dtype=torch.bool))",
});
opCase("arange, linspace, eye", {
  js: () => [arange(5), arange(1, 2, 0.25), arange(0, 10, 3, { dtype: "float32" }), arange(-3, 3), linspace(0, 1, 5), eye(3), eye(2, { dtype: "int64" })],
  py: "(torch.arange(5), torch.arange(1, 2, 0.25), torch.arange(0, 10, 3, dtype=torch.float32), torch.arange(-3, 3), torch.linspace(0, 1, 5), torch.eye(3), torch.eye(2, dtype=torch.int64))",
});
opCase("zerosLike, onesLike, fullLike", {
  inputs: () => ({ x: rn([2, 3]), a: ri(0, 5, [4]) }),
  js: ({ x, a }) => [zerosLike(x), onesLike(x, { dtype: "int64" }), fullLike(x, 2), fullLike(a, 3), zerosLike(a)],
  py: "(torch.zeros_like(x), torch.ones_like(x, dtype=torch.int64), torch.full_like(x, 2), torch.full_like(a, 3), torch.zeros_like(a))",
  diff: [],
});

// ---- in-place ops ----------------------------------------------------------------------------------------------------------------

opCase("in-place arithmetic (on a non-leaf, with grads)", {
  inputs: () => ({ x: rn([3, 5]), y: rn([5]), a: rn([3, 5]), b: pos([3, 5]) }),
  js: ({ x, y, a, b }) => [
    x.mul(1).add_(y, 2), x.mul(1).sub_(y, 0.5), x.mul(1).mul_(y), x.mul(1).mul_(0.5), x.mul(1).div_(b), x.mul(1).div_(4),
    x.mul(1).addcmul_(a, b, 0.5), x.mul(1).addcdiv_(a, b, 2), x.mul(1).lerp_(a, 0.25), x.mul(1).clamp_(-0.3, 0.4), b.mul(1).sqrt_(),
  ],
  py: "(x.mul(1).add_(y, alpha=2), x.mul(1).sub_(y, alpha=0.5), x.mul(1).mul_(y), x.mul(1).mul_(0.5), x.mul(1).div_(b), x.mul(1).div_(4), x.mul(1).addcmul_(a, b, value=0.5), x.mul(1).addcdiv_(a, b, value=2), x.mul(1).lerp_(a, 0.25), x.mul(1).clamp_(-0.3, 0.4), b.mul(1).sqrt_())",
  gradTol: MM,
});
opCase("in-place fill, copy, masks, scatter", {
  inputs: () => ({ x: rn([3, 5]), y: rn([5]), m: mask([3, 5]), i: distinctCols(3, 5, 2), s: rn([3, 2]), r: randperm(3, { generator: gen }).slice(0, 0, 2), v: rn([2, 5]) }),
  js: ({ x, y, m, i, s, r, v }) => [
    x.clone().copy_(y), x.clone().zero_(), x.clone().fill_(2.5), x.clone().maskedFill_(m, -4), x.clone().scatter_(1, i, s), x.clone().scatter_(1, i, 9),
    x.clone().indexPut_([r], v), x.clone().indexPut_([r], v, true),
  ],
  py: "(x.clone().copy_(y), x.clone().zero_(), x.clone().fill_(2.5), x.clone().masked_fill_(m, -4), x.clone().scatter_(1, i, s), x.clone().scatter_(1, i, 9), x.clone().index_put_((r,), v), x.clone().index_put_((r,), v, accumulate=True))",
  diff: [],
});
opCase("in-place ops on integer tensors", {
  inputs: () => ({ a: ri(-9, 9, [6]), b: ri(1, 4, [6]) }),
  js: ({ a, b }) => [a.clone().add_(b), a.clone().add_(2), a.clone().mul_(3), a.clone().mul_(b), a.clone().sub_(1), a.clone().fill_(4), a.clone().clamp_(-2, 2)],
  py: "(a.clone().add_(b), a.clone().add_(2), a.clone().mul_(3), a.clone().mul_(b), a.clone().sub_(1), a.clone().fill_(4), a.clone().clamp_(-2, 2))",
  diff: [],
});

// ---- random streams: identical to PyTorch's for the same seed -----------------------------------------------------------------------

opCase("seeded generators give PyTorch's streams", {
  js: () => {
    const g = (s: number) => new Generator(s);
    return [
      rand([1000], { generator: g(42) }),
      randn([1000], { generator: g(43) }),
      randn([7], { generator: g(44) }),
      randint(-5, 17, [500], { generator: g(45) }),
      randperm(300, { generator: g(46) }),
      empty([400]).normal_(1.5, 2, g(47)),
      empty([400]).uniform_(-3, 2, g(48)),
      empty([400]).bernoulli_(0.3, g(49)),
      bernoulli(full([300], 0.7), g(50)),
      multinomial(tensor([0.1, 0.2, 0.3, 0.4]), 50, true, g(51)),
      multinomial(tensor([[0.1, 0.2, 0.3, 0.4], [1, 1, 1, 1]]), 3, false, g(52)),
    ];
  },
  py: `(lambda g: (
      torch.rand(1000, generator=g(42)), torch.randn(1000, generator=g(43)), torch.randn(7, generator=g(44)),
      torch.randint(-5, 17, (500,), generator=g(45)), torch.randperm(300, generator=g(46)),
      torch.empty(400).normal_(1.5, 2, generator=g(47)), torch.empty(400).uniform_(-3, 2, generator=g(48)),
      torch.empty(400).bernoulli_(0.3, generator=g(49)), torch.bernoulli(torch.full((300,), 0.7), generator=g(50)),
      torch.multinomial(torch.tensor([0.1, 0.2, 0.3, 0.4]), 50, True, generator=g(51)),
      torch.multinomial(torch.tensor([[0.1, 0.2, 0.3, 0.4], [1., 1., 1., 1.]]), 3, False, generator=g(52))))(lambda s: torch.Generator().manual_seed(s))`,
  tol: { rtol: 0, atol: 0 },
});
opCase("global seed gives PyTorch's stream (randn, dropout, truncNormal_)", {
  js: () => {
    manualSeed(1234);
    const a = randn([100]);
    const d = F.dropout(ones([200]), 0.25, true);
    const t = F.truncNormal_(empty([500]), 0.1, 0.5, -0.4, 0.9);
    return [a, d, t];
  },
  py: "(lambda: (torch.manual_seed(1234), torch.randn(100), F.dropout(torch.ones(200), 0.25, True), nn.init.trunc_normal_(torch.empty(500), 0.1, 0.5, -0.4, 0.9))[1:])()",
  tol: EW,
});

test("op cases declared", () => {
  assert.ok(caseCount >= 100, `only ${caseCount} op cases`);
  ensureRun();
  console.log(`# ${caseCount} op cases, ${ref.size} PyTorch reference cases in one Python run of ${ref.seconds.toFixed(1)} s`);
});

// ---- creation from and to typed arrays ------------------------------------------------------------------------------------------------

test("tensors from typed arrays keep dtype, shape and values, and copy", () => {
  tidy(() => {
    const src = Float32Array.from([1.5, -2, 3.25, 4, 5, 6]);
    const t = tensor(src, { shape: [2, 3] });
    assert.equal(t.dtype, "float32");
    assert.deepEqual(t.shape, [2, 3]);
    src[0] = 99;
    const d = t.data() as Float32Array;
    assert.deepEqual(Array.from(d), [1.5, -2, 3.25, 4, 5, 6]);
    d[1] = 77;
    assert.equal(t.toArray()[1], -2, "data() must return a copy");

    const cases: [ArrayBufferView, DType, number[]][] = [
      [Float64Array.from([0.1, 1e300]), "float64", [0.1, 1e300]],
      [Int32Array.from([-3, 2 ** 31 - 1]), "int32", [-3, 2 ** 31 - 1]],
      [BigInt64Array.from([-5n, 2n ** 40n + 1n]), "int64", [-5, 2 ** 40 + 1]],
      [Int16Array.from([-300, 7]), "int16", [-300, 7]],
      [Int8Array.from([-128, 127]), "int8", [-128, 127]],
      [Uint8Array.from([0, 255]), "uint8", [0, 255]],
    ];
    for (const [arr, dt, vals] of cases) {
      const u = tensor(arr);
      assert.equal(u.dtype, dt);
      assert.deepEqual(u.shape, [vals.length]);
      assert.deepEqual(u.toArray(), vals);
      assert.equal(u.data().constructor, arr.constructor);
      assert.deepEqual(Array.from(u.data() as ArrayLike<number | bigint>), Array.from(arr as unknown as ArrayLike<number | bigint>));
    }
    // a view into a larger buffer uses only its own bytes
    const big = new Float32Array([9, 1, 2, 3, 9]);
    assert.deepEqual(tensor(big.subarray(1, 4)).toArray(), [1, 2, 3]);
    // conversion on creation
    const h = tensor(Float32Array.from([1, 0.1, 65504]), { dtype: "float16" });
    assert.equal(h.dtype, "float16");
    assert.deepEqual(h.toArray(), [1, 0.0999755859375, 65504]);
    assert.equal(h.data().constructor, Uint16Array);
    assert.equal((h.data() as Uint16Array)[0], 0x3c00);
    const b = tensor(Float32Array.from([1, 1.00390625, -2]), { dtype: "bfloat16" });
    assert.deepEqual(Array.from(b.data() as Uint16Array), [0x3f80, 0x3f80, 0xc000]);
    assert.deepEqual(Array.from(b.toFloat32Array()), [1, 1, -2]);
    assert.deepEqual(Array.from(tensor(Int32Array.from([1, 2])).toFloat32Array()), [1, 2]);
    // bytes() and fromBytes() round trip
    const r = fromBytes(t.bytes(), "float32", [3, 2]);
    assert.deepEqual(r.toArray(), [1.5, -2, 3.25, 4, 5, 6]);
    assert.deepEqual(r.shape, [3, 2]);
  });
});

test("tensors from nested arrays infer shape and dtype", () => {
  tidy(() => {
    const t = tensor([[1, 2, 3], [4, 5, 6]]);
    assert.deepEqual(t.shape, [2, 3]);
    assert.equal(t.dtype, "float32");
    assert.deepEqual(t.toArray(), [1, 2, 3, 4, 5, 6]);
    const b = tensor([[true, false], [false, true]]);
    assert.equal(b.dtype, "bool");
    assert.deepEqual(b.toArray(), [1, 0, 0, 1]);
    const l = tensor([3, -4], { dtype: "int64" });
    assert.equal(l.dtype, "int64");
    assert.deepEqual(Array.from(l.data() as BigInt64Array), [3n, -4n]);
    assert.equal(tensor([1, 2], { dtype: "int32" }).dtype, "int32");
    const s = tensor(2.5);
    assert.deepEqual(s.shape, []);
    assert.equal(s.item(), 2.5);
    assert.equal(tensor([7], { dtype: "int64" }).item(), 7);
    assert.equal(tensor([1, 2, 3, 4], { shape: [2, 2] }).shape.join(), "2,2");
    assert.equal(tensor([[1]], { requiresGrad: true }).requiresGrad, true);
    assert.throws(() => tensor([[1, 2], [3]]), /ragged/);
    assert.throws(() => tensor(Float32Array.from([1, 2, 3]), { shape: [2, 2] }), (e: Error) => e instanceof RangeError && /12 bytes.*16/.test(e.message));
  });
});

// ---- random statistics ------------------------------------------------------------------------------------------------------------------

const maxOf = (a: number[]) => a.reduce((m, v) => Math.max(m, v), -Infinity);
const minOf = (a: number[]) => a.reduce((m, v) => Math.min(m, v), Infinity);
const meanOf = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
const stdOf = (a: number[]) => {
  const m = meanOf(a);
  return Math.sqrt(a.reduce((s, v) => s + (v - m) ** 2, 0) / (a.length - 1));
};
/** Pearson's chi-square statistic of counts against expected counts. */
const chi2 = (counts: number[], expected: number[]) => counts.reduce((s, c, i) => s + (c - expected[i]) ** 2 / expected[i], 0);
// 99.9% quantiles of chi-square: 3 dof 16.27, 5 dof 20.52
const CHI2_999 = { 3: 16.27, 5: 20.52 } as const;

test("a seeded Generator is reproducible and resumable", () => {
  tidy(() => {
    const a = randn([50], { generator: new Generator(7) }).toArray();
    const b = randn([50], { generator: new Generator(7) }).toArray();
    const c = randn([50], { generator: new Generator(8) }).toArray();
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    const g = new Generator(11);
    rand([10], { generator: g });
    const state = g.getState();
    const x = rand([20], { generator: g }).toArray();
    const y = randint(0, 100, [20], { generator: g }).toArray();
    g.setState(state);
    assert.deepEqual(rand([20], { generator: g }).toArray(), x);
    assert.deepEqual(randint(0, 100, [20], { generator: g }).toArray(), y);
    g.manualSeed(7);
    assert.deepEqual(randn([50], { generator: g }).toArray(), a);
    // the global stream
    manualSeed(5);
    const p = rand([30]).toArray();
    const st = getRngState();
    const q = randn([30]).toArray();
    manualSeed(5);
    assert.deepEqual(rand([30]).toArray(), p);
    setRngState(st);
    assert.deepEqual(randn([30]).toArray(), q);
    // a Generator is independent of the global stream
    manualSeed(5);
    const g2 = new Generator(99);
    rand([100], { generator: g2 });
    assert.deepEqual(rand([30]).toArray(), p);
  });
});

test("rand, randn, randint, randperm statistics", () => {
  tidy(() => {
    const g = new Generator(2024);
    const u = rand([200000], { generator: g }).toArray();
    assert.ok(minOf(u) >= 0 && maxOf(u) < 1);
    assert.ok(Math.abs(meanOf(u) - 0.5) < 0.004, `rand mean ${meanOf(u)}`);
    assert.ok(Math.abs(stdOf(u) ** 2 - 1 / 12) < 0.002, `rand var ${stdOf(u) ** 2}`);
    const n = randn([200000], { generator: g }).toArray();
    assert.ok(Math.abs(meanOf(n)) < 0.01, `randn mean ${meanOf(n)}`);
    assert.ok(Math.abs(stdOf(n) - 1) < 0.01, `randn std ${stdOf(n)}`);
    const within1 = n.filter((v) => Math.abs(v) < 1).length / n.length;
    assert.ok(Math.abs(within1 - 0.6827) < 0.005, `P(|z|<1) = ${within1}`);
    const r = randint(3, 9, [60000], { generator: g });
    assert.equal(r.dtype, "int64");
    const counts = [0, 0, 0, 0, 0, 0];
    for (const v of r.toArray()) {
      assert.ok(v >= 3 && v < 9, `randint value ${v}`);
      counts[v - 3]++;
    }
    assert.ok(chi2(counts, Array(6).fill(10000)) < CHI2_999[5], `randint counts ${counts}`);
    const p = randperm(1000, { generator: g }).toArray();
    assert.deepEqual(p.slice().sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i));
    assert.notDeepEqual(p.slice(0, 20), Array.from({ length: 20 }, (_, i) => i));
  });
});

test("bernoulli and multinomial statistics", () => {
  tidy(() => {
    const g = new Generator(77);
    const b = bernoulli(full([100000], 0.3), g).toArray();
    assert.ok(b.every((v) => v === 0 || v === 1));
    assert.ok(Math.abs(meanOf(b) - 0.3) < 0.005, `bernoulli rate ${meanOf(b)}`);
    const pv = bernoulli(tensor([0, 1, 0.5]).expand(30000, 3).contiguous(), g).mean(0).toArray();
    assert.equal(pv[0], 0);
    assert.equal(pv[1], 1);
    assert.ok(Math.abs(pv[2] - 0.5) < 0.015);
    const e = empty([100000]).bernoulli_(0.8, g).toArray();
    assert.ok(Math.abs(meanOf(e) - 0.8) < 0.005);
    const probs = [0.1, 0.2, 0.3, 0.4];
    const m = multinomial(tensor(probs), 40000, true, g).toArray();
    const counts = [0, 0, 0, 0];
    for (const v of m) counts[v]++;
    assert.ok(chi2(counts, probs.map((q) => q * 40000)) < CHI2_999[3], `multinomial counts ${counts}`);
    // without replacement: distinct draws; unnormalised weights are fine; zero weight never drawn
    const w = tensor([5, 0, 1, 1, 3, 2]).expand(2000, 6).contiguous();
    const d = multinomial(w, 4, false, g);
    assert.deepEqual(d.shape, [2000, 4]);
    const rows = d.toArray();
    let firstIs0 = 0;
    for (let i = 0; i < 2000; i++) {
      const row = rows.slice(4 * i, 4 * i + 4);
      assert.equal(new Set(row).size, 4);
      assert.ok(!row.includes(1));
      if (row[0] === 0) firstIs0++;
    }
    assert.ok(Math.abs(firstIs0 / 2000 - 5 / 12) < 0.05, `P(first draw = 0) = ${firstIs0 / 2000}`);
  });
});

test("normal_, uniform_ and truncNormal_ statistics and bounds", () => {
  tidy(() => {
    const g = new Generator(31);
    const n = empty([200000]).normal_(2, 3, g).toArray();
    assert.ok(Math.abs(meanOf(n) - 2) < 0.03, `normal_ mean ${meanOf(n)}`);
    assert.ok(Math.abs(stdOf(n) - 3) < 0.03, `normal_ std ${stdOf(n)}`);
    const fn = F.normal_(empty([100000]), -1, 0.5, g).toArray();
    assert.ok(Math.abs(meanOf(fn) + 1) < 0.01 && Math.abs(stdOf(fn) - 0.5) < 0.01);
    const u = F.uniform_(empty([100000]), -2, 4, g).toArray();
    assert.ok(u.every((v) => v >= -2 && v < 4));
    assert.ok(Math.abs(meanOf(u) - 1) < 0.03);
    // standard normal truncated to [-2, 2]: std = sqrt(1 - 2*2*phi(2)/(Phi(2)-Phi(-2))) = 0.87962
    const t = F.truncNormal_(empty([200000]), 0, 1, -2, 2, g).toArray();
    assert.ok(t.every((v) => v >= -2 && v <= 2));
    assert.ok(Math.abs(meanOf(t)) < 0.01);
    assert.ok(Math.abs(stdOf(t) - 0.87962) < 0.006, `trunc_normal std ${stdOf(t)}`);
    // BERT-style init: std 0.02 truncated at +-2 std; and an asymmetric window
    const b = F.truncNormal_(empty([200000]), 0, 0.02, -0.04, 0.04, g).toArray();
    assert.ok(b.every((v) => v >= -0.04 && v <= 0.04));
    assert.ok(Math.abs(stdOf(b) - 0.02 * 0.87962) < 0.0002, `trunc_normal std ${stdOf(b)}`);
    const a = F.truncNormal_(empty([100000]), 1, 1, 0.5, 3, g).toArray();
    assert.ok(a.every((v) => v >= 0.5 && v <= 3));
    assert.ok(minOf(a) < 0.51 && maxOf(a) > 2.9);
    // the initialisers do not record gradients
    const p = zeros([10], { requiresGrad: true });
    F.truncNormal_(p, 0, 1);
    F.normal_(p);
    F.xavierUniform_(zeros([4, 6], { requiresGrad: true }));
    assert.equal(p.isLeaf, true);
    assert.equal(F.zeros_(p).toArray().every((v) => v === 0), true);
    assert.equal(F.ones_(p).toArray().every((v) => v === 1), true);
    assert.equal(F.constant_(p, 3).toArray().every((v) => v === 3), true);
    const x = F.xavierUniform_(empty([300, 500]), 1, g).toArray();
    const bound = Math.sqrt(6 / 800);
    assert.ok(x.every((v) => Math.abs(v) <= bound) && maxOf(x) > 0.99 * bound);
  });
});

test("dropout: statistics in training, identity in eval", () => {
  tidy(() => {
    manualSeed(3);
    const x = ones([400, 250]);
    for (const p of [0.1, 0.5]) {
      const y = F.dropout(x, p, true).toArray();
      const zerosFrac = y.filter((v) => v === 0).length / y.length;
      assert.ok(Math.abs(zerosFrac - p) < 0.01, `dropout(${p}) zeroed ${zerosFrac}`);
      assert.ok(y.every((v) => v === 0 || Math.abs(v - 1 / (1 - p)) < 1e-6), "kept values are scaled by 1/(1-p)");
      assert.ok(Math.abs(meanOf(y) - 1) < 0.02, `dropout keeps the mean: ${meanOf(y)}`);
    }
    const e = F.dropout(x, 0.5, false);
    assert.ok(e.equal(x));
    assert.ok(F.dropout(x, 0, true).equal(x));
    // different calls draw different masks; gradients flow only through kept elements, scaled
    const w = rn([1000]).requiresGrad_(true);
    const y = F.dropout(w, 0.3, true);
    y.sum().backward();
    const g = w.grad!.toArray();
    const yv = y.toArray();
    for (let i = 0; i < g.length; i++) assert.ok(yv[i] === 0 ? g[i] === 0 : Math.abs(g[i] - 1 / 0.7) < 1e-6);
    assert.notDeepEqual(F.dropout(x, 0.5, true).toArray().slice(0, 100), F.dropout(x, 0.5, true).toArray().slice(0, 100));
  });
});

// ---- errors --------------------------------------------------------------------------------------------------------------------------------

test("a shape error becomes a JS Error with libtorch's message and the process survives", () => {
  const before = liveTensors();
  tidy(() => {
    const a = rn([3, 4]);
    const b = rn([5, 6]);
    assert.throws(() => a.matmul(b), (e: Error) => e instanceof Error && /mat1 and mat2 shapes cannot be multiplied \(3x4 and 5x6\)/.test(e.message));
    assert.throws(() => a.add(b), /The size of tensor a \(4\) must match the size of tensor b \(6\) at non-singleton dimension 1/);
    assert.throws(() => a.view(7), /shape '\[7\]' is invalid for input of size 12/);
    assert.throws(() => cat([a, b], 0), /Sizes of tensors must match/);
    assert.throws(() => F.crossEntropy(rn([4, 3]), tensor([0, 1, 7, 2], { dtype: "int64" })), /Target 7 is out of bounds/);
    assert.throws(() => a.select(0, 10), /out of range/);
    // the message does not carry a C++ backtrace
    try {
      a.matmul(b);
    } catch (e) {
      assert.ok(!/frame #\d/.test((e as Error).message), "no C++ backtrace in the message");
    }
    // and everything still works afterwards
    assert.deepEqual(a.matmul(b.narrow(0, 0, 4)).shape, [3, 6]);
  });
  assert.equal(liveTensors(), before, "failed calls leak no tensors");
});

test("an unknown operator and a bad backward raise clear errors", () => {
  assert.throws(() => call("aten::no_such_op", 1), /libtorch has no operator aten::no_such_op/);
  tidy(() => {
    const x = rn([3]);
    assert.throws(() => x.sum().backward(), /does not require grad/);
    assert.throws(() => x.requiresGrad_(true).mul(2).backward(), /grad can be implicitly created only for scalar outputs/);
  });
});

test("using a disposed tensor throws a clear error", () => {
  const a = rn([2, 2]);
  const b = rn([2, 2]);
  a.dispose();
  assert.equal(a.isDisposed, true);
  assert.throws(() => a.add(b), /tensor was already disposed/);
  assert.throws(() => b.add(a), /tensor was already disposed/);
  assert.throws(() => a.shape, /tensor was already disposed/);
  assert.throws(() => a.toArray(), /tensor was already disposed/);
  assert.throws(() => cat([b, a]), /tensor was already disposed/);
  a.dispose(); // disposing twice is harmless
  assert.equal(b.add(1).sum().isDisposed, false);
  b.dispose();
});

test("a wrong argument type throws a TypeError naming the operator and the argument", () => {
  tidy(() => {
    const a = rn([2, 2]);
    const check = (fn: () => unknown, re: RegExp) =>
      assert.throws(fn, (e: Error) => {
        assert.ok(e instanceof TypeError, `expected a TypeError, got ${e.constructor.name}: ${e.message}`);
        assert.match(e.message, re);
        return true;
      });
    check(() => call("aten::add.Tensor", a, "x"), /aten::add.*argument 'other'.*tensor/);
    check(() => call("aten::mm", a, 3), /aten::mm.*argument 'mat2'.*tensor/);
    check(() => call("aten::sum.dim_IntList", a, "0"), /aten::sum.*argument 'dim'/);
    check(() => call("aten::transpose.int", a, 0, "1"), /aten::transpose.*argument 'dim1'.*integer/);
    check(() => call("aten::softmax.int", a, {}), /aten::softmax.*argument 'dim'/);
    check(() => call("aten::add.Scalar", a, "two"), /aten::add.*argument 'other'.*number/);
    check(() => call("aten::cat", [a, 5], 0), /aten::cat.*argument 'tensors'.*tensor/);
    check(() => call("aten::dropout", a), /aten::dropout.*missing argument 'p'/);
    check(() => call("aten::rand.generator", [2], 5), /aten::rand.*argument 'generator'.*Generator/);
    check(() => callVoid("aten::zero_", a, 1, 2), /aten::zero_.*arguments given/);
  });
});

test("noGrad ops produce no graph; liveTensors is restored after the cases", () => {
  const before = liveTensors();
  tidy(() => {
    const x = rn([3]).requiresGrad_(true);
    const y = noGrad(() => x.mul(2));
    assert.equal(y.requiresGrad, false);
    assert.equal(x.mul(2).requiresGrad, true);
  });
  assert.equal(liveTensors(), before);
});
