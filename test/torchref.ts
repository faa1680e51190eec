// The PyTorch reference for the engine tests: many cases are batched into ONE run of Debian's
// PyTorch (/usr/bin/python3; start-up with torch costs ~1 s). Tensors travel both ways as raw
// little-endian buffers in a temp dir (with a JSON manifest of dtype and shape), so float32 values
// arrive bit-exact.
//
//   const ref = new TorchRef();
//   ref.put("mm/a", a); ref.put("mm/b", b);               // inputs (vlpkit tensors)
//   ref.add("mm", "O['y'] = I['a'] @ I['b']");            // Python; I = this case's inputs, O = its outputs
//   await ref.run();                                       // one Python process for every case
//   ref.out("mm", "y")                                     // -> RefTensor { dtype, shape, values }
//
// Inside a case, `I[k]` looks up "<case>/<k>" first and then the global key "k"; `torch`, `F`
// (torch.nn.functional), `nn`, `math` and `case` (run_case below) are in scope. An exception in one case
// is recorded for that case (ref.error(name)) and does not stop the others.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fromBytes, type Tensor } from "../src/engine/tensor.ts";
import type { DType } from "../src/engine/dtype.ts";

export const PYTHON = process.env.VLP_TORCH_PYTHON ?? "/usr/bin/python3";

/**
 * Python source of a safetensors reader written from the spec (json + struct + torch.frombuffer),
 * independent of vlpkit's writer: `load_st_meta(path)` -> (tensors, metadata), `load_st(path)` -> tensors.
 */
export const PY_LOAD_SAFETENSORS = `
import json, struct, torch
DT = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
def load_st_meta(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        dt = DT[v["dtype"]]
        t = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=dt) if e > s else torch.empty(0, dtype=dt)
        out[k] = t.reshape(v["shape"])
    return out, header.get("__metadata__", {})
def load_st(path):
    return load_st_meta(path)[0]
`;

export interface RefTensor {
  dtype: DType;
  shape: number[];
  /** Elements as numbers (int64 converted, float16/bfloat16 decoded, bool as 0/1). */
  values: number[];
  /** The raw bytes as written by PyTorch. */
  bytes: Uint8Array;
}

const PRELUDE = String.raw`
import json, math, os, struct, sys, traceback
import torch
import torch.nn as nn
import torch.nn.functional as F

D = sys.argv[1]
TD = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
      "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
      "bool": torch.bool}
DT = {v: k for k, v in TD.items()}
manifest = json.load(open(os.path.join(D, "inputs.json")))
cases = json.load(open(os.path.join(D, "cases.json")))
config = json.load(open(os.path.join(D, "config.json")))
torch.set_num_threads(config.get("threads", 1))
_cache = {}

def load(key):
    if key not in _cache:
        m = manifest[key]
        raw = bytearray(open(os.path.join(D, m["file"]), "rb").read())
        dt = TD[m["dtype"]]
        if len(raw) == 0:
            t = torch.empty(m["shape"], dtype=dt)
        else:
            t = torch.frombuffer(raw, dtype=dt).reshape(m["shape"]).clone()
        _cache[key] = t
    return _cache[key].clone()

class Inputs:
    def __init__(self, case):
        self.case = case
    def __getitem__(self, k):
        q = self.case + "/" + k
        return load(q if q in manifest else k)
    def __contains__(self, k):
        return (self.case + "/" + k) in manifest or k in manifest

out_manifest = {}
errors = {}
counter = [0]

def save(case, key, t):
    if t is None:
        out_manifest[case + "/" + key] = None
        return
    if isinstance(t, (bool, int, float)):
        out_manifest[case + "/" + key] = {"scalar": t}
        return
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        raw = t.view(torch.int16).numpy().tobytes()
    else:
        raw = t.numpy().tobytes()
    counter[0] += 1
    f = "out_%d.bin" % counter[0]
    with open(os.path.join(D, f), "wb") as fh:
        fh.write(raw)
    out_manifest[case + "/" + key] = {"file": f, "dtype": DT[t.dtype], "shape": list(t.shape)}

def run_case(O, I, fn, names, diff):
    """r = fn(*inputs) for a tensor or a tuple of tensors: O["0"], O["1"], ... get the outputs and, when
    diff names inputs, O["grad.<name>"] their gradients of sum_i (r[i] * I["__w<i>"]).sum() over the
    floating outputs that require grad."""
    xs = [I[n].requires_grad_(True) if n in diff else I[n] for n in names]
    r = fn(*xs)
    outs = list(r) if isinstance(r, (tuple, list)) else [r]
    for i, t in enumerate(outs):
        O[str(i)] = t
    if diff:
        loss = None
        for i, t in enumerate(outs):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad:
                term = (t * I["__w%d" % i]).sum()
                loss = term if loss is None else loss + term
        if loss is not None:
            loss.backward()
        for n, x in zip(names, xs):
            if n in diff:
                O["grad." + n] = x.grad

for c in cases:
    name = c["name"]
    O = {}
    I = Inputs(name)
    env = {"torch": torch, "F": F, "nn": nn, "math": math, "I": I, "O": O,
           "case": lambda fn, names, diff: run_case(O, I, fn, names, diff)}
    try:
        exec(c["code"], env)
        for k, v in O.items():
            save(name, k, v)
    except Exception:
        errors[name] = traceback.format_exc()

json.dump({"outputs": out_manifest, "errors": errors}, open(os.path.join(D, "outputs.json"), "w"))
`;

function decode(bytes: Uint8Array, dtype: DType): number[] {
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  switch (dtype) {
    case "float32": return Array.from(new Float32Array(buf));
    case "float64": return Array.from(new Float64Array(buf));
    case "int64": return Array.from(new BigInt64Array(buf), Number);
    case "int32": return Array.from(new Int32Array(buf));
    case "int16": return Array.from(new Int16Array(buf));
    case "int8": return Array.from(new Int8Array(buf));
    case "uint8": case "bool": return Array.from(new Uint8Array(buf));
    case "float16": return Array.from(new Uint16Array(buf), halfToFloat);
    case "bfloat16": return Array.from(new Uint16Array(buf), (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]);
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export class TorchRef {
  readonly dir: string;
  private readonly inputs: Record<string, { file: string; dtype: DType; shape: number[] }> = {};
  private readonly cases: { name: string; code: string }[] = [];
  private outputs: Record<string, { file: string; dtype: DType; shape: number[] } | { scalar: number | boolean } | null> | null = null;
  private errors: Record<string, string> = {};
  private n = 0;
  /** Seconds the Python run took (start-up included). */
  seconds = 0;

  constructor(readonly threads = 1) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "vlpkit-torchref-"));
  }

  /** Store a vlpkit tensor as an input under `key` (its exact bytes, made contiguous). */
  put(key: string, t: Tensor): void {
    if (key in this.inputs) throw new Error(`TorchRef: input ${key} given twice`);
    const file = `in_${this.n++}.bin`;
    fs.writeFileSync(path.join(this.dir, file), t.bytes());
    this.inputs[key] = { file, dtype: t.dtype, shape: t.shape };
  }

  /** Store raw float32 values (e.g. model weights) under `key`. */
  putFloat32(key: string, values: Float32Array, shape: number[]): void {
    const file = `in_${this.n++}.bin`;
    fs.writeFileSync(path.join(this.dir, file), new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    this.inputs[key] = { file, dtype: "float32", shape };
  }

  /** Add a case: Python code run with I (inputs), O (outputs to fill) and the helpers in scope. */
  add(name: string, code: string): void {
    if (this.cases.some((c) => c.name === name)) throw new Error(`TorchRef: case ${name} given twice`);
    this.cases.push({ name, code });
  }

  get size(): number {
    return this.cases.length;
  }

  /** Run every case in one Python process. Throws if Python itself failed (not for a failing case). */
  run(timeoutMs = 300_000): void {
    fs.writeFileSync(path.join(this.dir, "inputs.json"), JSON.stringify(this.inputs));
    fs.writeFileSync(path.join(this.dir, "cases.json"), JSON.stringify(this.cases));
    fs.writeFileSync(path.join(this.dir, "config.json"), JSON.stringify({ threads: this.threads }));
    fs.writeFileSync(path.join(this.dir, "driver.py"), PRELUDE);
    const t0 = performance.now();
    const r = spawnSync(PYTHON, [path.join(this.dir, "driver.py"), this.dir], { encoding: "utf8", timeout: timeoutMs, maxBuffer: 64 << 20 });
    this.seconds = (performance.now() - t0) / 1000;
    if (r.error) throw new Error(`TorchRef: could not run ${PYTHON}: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`TorchRef: ${PYTHON} exited with ${r.status}:\n${r.stderr}`);
    const res = JSON.parse(fs.readFileSync(path.join(this.dir, "outputs.json"), "utf8"));
    this.outputs = res.outputs;
    this.errors = res.errors;
  }

  /** The Python traceback of a case that raised, if it did. */
  error(name: string): string | undefined {
    return this.errors[name];
  }

  has(name: string, key: string): boolean {
    return this.outputs !== null && `${name}/${key}` in this.outputs;
  }

  private entry(name: string, key: string) {
    if (this.outputs === null) throw new Error("TorchRef: run() was not called (or failed)");
    const err = this.errors[name];
    if (err) throw new Error(`PyTorch reference case ${name} raised:\n${err}`);
    const k = `${name}/${key}`;
    if (!(k in this.outputs)) throw new Error(`PyTorch reference case ${name} produced no output ${key}`);
    return this.outputs[k];
  }

  /** An output tensor, or null when the case stored None (e.g. a grad that does not exist). */
  out(name: string, key: string): RefTensor | null {
    const e = this.entry(name, key);
    if (e === null) return null;
    if ("scalar" in e) throw new Error(`${name}/${key} is a Python scalar; use scalar()`);
    const bytes = new Uint8Array(fs.readFileSync(path.join(this.dir, e.file)));
    return { dtype: e.dtype, shape: e.shape, values: decode(bytes, e.dtype), bytes };
  }

  /** An output tensor that must exist. */
  tensor(name: string, key: string): RefTensor {
    const r = this.out(name, key);
    if (r === null) throw new Error(`PyTorch reference ${name}/${key} is None`);
    return r;
  }

  /** An output as a vlpkit tensor. */
  vlp(name: string, key: string): Tensor {
    const r = this.tensor(name, key);
    return fromBytes(r.bytes, r.dtype, r.shape);
  }

  /** A Python scalar output (bool, int or float). */
  scalar(name: string, key: string): number | boolean {
    const e = this.entry(name, key);
    if (e === null || !("scalar" in e)) throw new Error(`${name}/${key} is not a scalar`);
    return e.scalar;
  }

  /** Remove the temp dir. */
  cleanup(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---- comparisons --------------------------------------------------------------------------------

export interface Tol {
  /** Relative tolerance per element. */
  rtol: number;
  /** Absolute tolerance per element. */
  atol: number;
  /** Extra absolute tolerance as a fraction of max |expected| (for sums of many terms: matmul, reductions). */
  scale?: number;
}

/** Values of a vlpkit tensor as numbers (float16/bfloat16 decoded). */
export function valuesOf(t: Tensor): number[] {
  return t.toArray();
}

/**
 * Assert |actual - expected| <= atol + scale*max|expected| + rtol*|expected| elementwise (NaN == NaN,
 * infinities must match), with equal shapes. Throws an Error with the worst element otherwise.
 */
export function assertClose(actual: number[] | Tensor, expected: RefTensor | number[], tol: Tol, what = "value", shape?: number[]): void {
  const a = Array.isArray(actual) ? actual : valuesOf(actual);
  const aShape = Array.isArray(actual) ? shape : actual.shape;
  const e = Array.isArray(expected) ? expected : expected.values;
  if (!Array.isArray(expected) && aShape) {
    if (aShape.length !== expected.shape.length || aShape.some((d, i) => d !== expected.shape[i])) {
      throw new Error(`${what}: shape [${aShape}] != PyTorch's [${expected.shape}]`);
    }
  }
  if (a.length !== e.length) throw new Error(`${what}: ${a.length} elements != PyTorch's ${e.length}`);
  let maxAbs = 0;
  for (const v of e) if (Number.isFinite(v)) maxAbs = Math.max(maxAbs, Math.abs(v));
  const atol = tol.atol + (tol.scale ?? 0) * maxAbs;
  let worst = -1;
  let worstExcess = 0;
  let bad = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = e[i];
    if (Number.isNaN(y) || Number.isNaN(x)) {
      if (Number.isNaN(x) !== Number.isNaN(y)) { bad++; if (worst < 0) { worst = i; worstExcess = Infinity; } }
      continue;
    }
    if (!Number.isFinite(y) || !Number.isFinite(x)) {
      if (x !== y) { bad++; if (worst < 0) { worst = i; worstExcess = Infinity; } }
      continue;
    }
    const excess = Math.abs(x - y) - (atol + tol.rtol * Math.abs(y));
    if (excess > 0) {
      bad++;
      if (excess > worstExcess || worst < 0) { worst = i; worstExcess = excess; }
    }
  }
  if (bad > 0) {
    throw new Error(
      `${what}: ${bad}/${a.length} elements differ from PyTorch beyond rtol=${tol.rtol} atol=${atol.toExponential(2)}; ` +
        `worst at flat index ${worst}: vlpkit ${a[worst]} vs PyTorch ${e[worst]}`,
    );
  }
}

/** Assert an exact match of dtype, shape and values (integer, bool and index outputs). */
export function assertExact(actual: Tensor, expected: RefTensor, what = "value"): void {
  if (actual.dtype !== expected.dtype) throw new Error(`${what}: dtype ${actual.dtype} != PyTorch's ${expected.dtype}`);
  assertClose(actual, expected, { rtol: 0, atol: 0 }, what);
}
