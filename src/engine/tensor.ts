// The Tensor API. Every operation is a boxed call of a libtorch (ATen) operator through the
// dispatcher, so semantics, broadcasting, autograd and devices are libtorch's own.
import { native, type NativeTensor, type NativeGenerator } from "./native.ts";
import { DTYPE_CODE, dtypeFromCode, dtypeOfArray, typedView, ELEMENT_SIZE, type DType, type TypedArray } from "./dtype.ts";
import { track, untrack, type Trackable } from "./scope.ts";

export type Device = string; // "cpu", "cuda", "cuda:1"
export type Shape = number[];
export type Scalar = number | boolean;

const handles = new Map<string, number>();

/** The dispatcher handle of an ATen operator, e.g. "aten::add.Tensor" (cached). */
export function opHandle(qualified: string): number {
  let h = handles.get(qualified);
  if (h === undefined) {
    const dot = qualified.indexOf(".", qualified.indexOf("::") + 2);
    const name = dot < 0 ? qualified : qualified.slice(0, dot);
    const overload = dot < 0 ? "" : qualified.slice(dot + 1);
    h = native.opHandle(name, overload);
    handles.set(qualified, h);
  }
  return h;
}

function toNativeArg(a: unknown): unknown {
  if (a instanceof Tensor) return a.native;
  if (a instanceof Generator) return a.native;
  if (Array.isArray(a)) return a.map(toNativeArg);
  return a;
}

function fromNative(v: unknown): unknown {
  if (v instanceof (native.NativeTensor as any)) return new Tensor(v as NativeTensor);
  if (Array.isArray(v)) return v.map(fromNative);
  return v;
}

// The spread forms of the boxed call (arguments after the handle) when the addon has them.
const invoke: (handle: number, ...args: unknown[]) => unknown = native.invoke ?? ((h, ...a) => native.call(h, a));
const invokeVoid: (handle: number, ...args: unknown[]) => void = native.invokeVoid ?? ((h, ...a) => native.callVoid(h, a));

/** Call an ATen operator by qualified name with positional arguments (undefined = schema default). */
export function call<T = Tensor>(qualified: string, ...args: unknown[]): T {
  return fromNative(invoke(opHandle(qualified), ...args.map(toNativeArg))) as T;
}

/** Call an in-place ATen operator for its side effect only. */
export function callVoid(qualified: string, ...args: unknown[]): void {
  invokeVoid(opHandle(qualified), ...args.map(toNativeArg));
}

/** A seeded random stream (a libtorch CPU generator). */
export class Generator {
  readonly native: NativeGenerator;
  constructor(seed = 0) {
    this.native = new native.NativeGenerator(seed);
  }
  manualSeed(seed: number): this {
    native.manualSeed(seed, this.native);
    return this;
  }
  getState(): Tensor {
    return new Tensor(native.getRngState(this.native));
  }
  setState(state: Tensor): void {
    native.setRngState(state.native, this.native);
  }
}

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

const REDUCTION = { none: 0, mean: 1, sum: 2 } as const;
export type Reduction = keyof typeof REDUCTION;
export const reductionCode = (r: Reduction = "mean"): number => REDUCTION[r];

const code = (d: DType | undefined): number | undefined => (d === undefined ? undefined : DTYPE_CODE[d]);

let reads = 0;
/**
 * How many times tensor data has been read to the host so far: `item()`, `data()` (and `toArray()`,
 * `toFloat32Array()`, `bytes()` through it), and copies from a GPU to the CPU (`to("cpu")`). Each is
 * a synchronisation point on an accelerator; the training step path makes none between logged rows
 * (test/host_reads.test.ts counts them here).
 */
export function hostReads(): number {
  return reads;
}

export class Tensor implements Trackable {
  private _native: NativeTensor | null;
  private _dtype?: DType;
  private _shape?: Shape;
  private _kept = false;

  constructor(n: NativeTensor) {
    this._native = n;
    track(this);
  }

  get native(): NativeTensor {
    // (the addon checks that the handle is live when it is used; asking it here too cost a native call per argument)
    if (this._native === null) throw new Error("tensor was already disposed");
    return this._native;
  }

  // ---- lifetime ----------------------------------------------------------------------------
  dispose(): void {
    if (this._native) this._native.dispose();
    this._native = null;
  }
  get isDisposed(): boolean {
    return this._native === null || this._native.disposed;
  }
  /** Exempt from every tidy() scope (parameters, optimizer state); free with dispose(). */
  keep(): this {
    this._kept = true;
    untrack(this);
    return this;
  }
  get isKept(): boolean {
    return this._kept;
  }

  // ---- metadata ----------------------------------------------------------------------------
  private loadMeta(): void {
    const [c, s] = native.meta(this.native);
    this._dtype = dtypeFromCode(c);
    this._shape = s;
  }
  get dtype(): DType {
    if (this._dtype === undefined) this.loadMeta();
    return this._dtype!;
  }
  get shape(): Shape {
    if (this._shape === undefined) this.loadMeta();
    return this._shape!.slice();
  }
  get ndim(): number {
    if (this._shape === undefined) this.loadMeta();
    return this._shape!.length;
  }
  size(dim: number): number {
    const s = this.shape;
    const d = dim < 0 ? dim + s.length : dim;
    if (d < 0 || d >= s.length) throw new RangeError(`size(${dim}): tensor has ${s.length} dims`);
    return s[d];
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get device(): Device {
    return native.meta(this.native)[2];
  }
  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(", ")}], ${this.device})`;
  }

  // ---- data out -----------------------------------------------------------------------------
  /** A copy of the elements as a typed array (float16/bfloat16 as raw uint16 bits). */
  data(): TypedArray {
    reads++;
    return typedView(native.toBuffer(this.native), this.dtype);
  }
  /** The elements as numbers (int64 converted, float16/bfloat16 decoded via float32). */
  toArray(): number[] {
    if (this.dtype === "float16" || this.dtype === "bfloat16") return this.float().tidyData();
    const d = this.data();
    return d instanceof BigInt64Array ? Array.from(d, Number) : Array.from(d as ArrayLike<number>);
  }
  private tidyData(): number[] {
    const a = Array.from(this.data() as Float32Array);
    this.dispose();
    return a;
  }
  toFloat32Array(): Float32Array {
    if (this.dtype === "float32") return this.data() as Float32Array;
    const f = this.to("float32");
    const d = f.data() as Float32Array;
    f.dispose();
    return d;
  }
  bytes(): Uint8Array {
    reads++;
    return new Uint8Array(native.toBuffer(this.native));
  }
  item(): number {
    reads++;
    return Number(native.item(this.native));
  }

  // ---- autograd ----------------------------------------------------------------------------
  get requiresGrad(): boolean {
    return native.meta(this.native)[3];
  }
  requiresGrad_(on = true): this {
    // as in PyTorch (libtorch's C++ setter silently ignores this case)
    if (!on && !native.isLeaf(this.native)) {
      throw new Error("requiresGrad_(false): you can only change requires_grad flags of leaf variables; use detach() for a non-leaf");
    }
    native.setRequiresGrad(this.native, on);
    return this;
  }
  get grad(): Tensor | null {
    const g = native.grad(this.native);
    return g === null ? null : new Tensor(g);
  }
  set grad(g: Tensor | null) {
    if (g !== null) {
      // like PyTorch's .grad setter: a gradient must match the tensor (libtorch's C++ setter does not check)
      const [gs, s] = [g.shape, this.shape];
      if (gs.length !== s.length || gs.some((d, i) => d !== s[i])) throw new Error(`assigned grad has shape [${gs}], the tensor has [${s}]`);
      if (g.dtype !== this.dtype || g.device !== this.device) throw new Error(`assigned grad is ${g.dtype} on ${g.device}, the tensor is ${this.dtype} on ${this.device}`);
    }
    native.setGrad(this.native, g === null ? null : g.native);
  }
  get isLeaf(): boolean {
    return native.isLeaf(this.native);
  }
  backward(gradient?: Tensor, opts: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    native.backward([this.native], gradient ? [gradient.native] : null, !!opts.retainGraph, !!opts.createGraph);
  }
  detach(): Tensor { return call("aten::detach", this); }
  /** Replace this tensor's data (shape, dtype and device may change) keeping its identity, like `p.data = src`. */
  setData(src: Tensor): this {
    native.setData(this.native, src.native);
    this._shape = undefined;
    this._dtype = undefined;
    return this;
  }

  // ---- conversion ----------------------------------------------------------------------------
  /** A dtype or device conversion; nonBlocking: a host-device copy that does not wait (from pinned memory, like PyTorch's). */
  to(target: DType | Device, opts: { copy?: boolean; nonBlocking?: boolean } = {}): Tensor {
    if (target in DTYPE_CODE) return call("aten::to.dtype", this, DTYPE_CODE[target as DType], !!opts.nonBlocking, !!opts.copy);
    if (target === "cpu" && this.device !== "cpu") reads++;
    return call("aten::to.device", this, target, DTYPE_CODE[this.dtype], !!opts.nonBlocking, !!opts.copy);
  }
  /** A copy in page-locked host memory (needs CUDA), the source of non-blocking copies to a GPU. */
  pinMemory(): Tensor { return call("aten::pin_memory", this); }
  get isPinned(): boolean { return call<boolean>("aten::is_pinned", this); }
  float(): Tensor { return this.to("float32"); }
  long(): Tensor { return this.to("int64"); }
  int(): Tensor { return this.to("int32"); }
  bool(): Tensor { return this.to("bool"); }
  half(): Tensor { return this.to("float16"); }
  bfloat16(): Tensor { return this.to("bfloat16"); }
  cpu(): Tensor { return this.to("cpu"); }
  clone(): Tensor { return call("aten::clone", this); }
  contiguous(): Tensor { return call("aten::contiguous", this); }

  // ---- shape ----------------------------------------------------------------------------------
  reshape(...shape: number[] | [number[]]): Tensor { return call("aten::reshape", this, flatArgs(shape)); }
  view(...shape: number[] | [number[]]): Tensor { return call("aten::view", this, flatArgs(shape)); }
  permute(...dims: number[] | [number[]]): Tensor { return call("aten::permute", this, flatArgs(dims)); }
  transpose(d0: number, d1: number): Tensor { return call("aten::transpose.int", this, d0, d1); }
  get T(): Tensor { return call("aten::t", this); }
  expand(...shape: number[] | [number[]]): Tensor { return call("aten::expand", this, flatArgs(shape)); }
  expandAs(o: Tensor): Tensor { return this.expand(o.shape); }
  repeat(...times: number[] | [number[]]): Tensor { return call("aten::repeat", this, flatArgs(times)); }
  repeatInterleave(repeats: number, dim?: number): Tensor { return call("aten::repeat_interleave.self_int", this, repeats, dim); }
  squeeze(dim?: number): Tensor { return dim === undefined ? call("aten::squeeze", this) : call("aten::squeeze.dim", this, dim); }
  unsqueeze(dim: number): Tensor { return call("aten::unsqueeze", this, dim); }
  flatten(start = 0, end = -1): Tensor { return call("aten::flatten.using_ints", this, start, end); }
  split(size: number | number[], dim = 0): Tensor[] {
    return Array.isArray(size) ? call("aten::split_with_sizes", this, size, dim) : call("aten::split.Tensor", this, size, dim);
  }
  chunk(chunks: number, dim = 0): Tensor[] { return call("aten::chunk", this, chunks, dim); }
  unbind(dim = 0): Tensor[] { return call("aten::unbind.int", this, dim); }
  narrow(dim: number, start: number, length: number): Tensor { return call("aten::narrow", this, dim, start, length); }
  select(dim: number, index: number): Tensor { return call("aten::select.int", this, dim, index); }
  /** Python-style slice along one dim: t.slice(1, 0, 5) == t[:, 0:5]. */
  slice(dim: number, start?: number, end?: number, step = 1): Tensor { return call("aten::slice.Tensor", this, dim, start, end, step); }
  flip(...dims: number[]): Tensor { return call("aten::flip", this, dims); }
  roll(shifts: number, dim: number): Tensor { return call("aten::roll", this, [shifts], [dim]); }
  tril(k = 0): Tensor { return call("aten::tril", this, k); }
  triu(k = 0): Tensor { return call("aten::triu", this, k); }
  diagonal(offset = 0, d1 = 0, d2 = 1): Tensor { return call("aten::diagonal", this, offset, d1, d2); }

  // ---- arithmetic (broadcasting) ---------------------------------------------------------------
  add(o: Tensor | number, alpha = 1): Tensor {
    return o instanceof Tensor ? call("aten::add.Tensor", this, o, alpha) : call("aten::add.Scalar", this, o, alpha);
  }
  sub(o: Tensor | number, alpha = 1): Tensor {
    return o instanceof Tensor ? call("aten::sub.Tensor", this, o, alpha) : call("aten::sub.Scalar", this, o, alpha);
  }
  mul(o: Tensor | number): Tensor {
    return o instanceof Tensor ? call("aten::mul.Tensor", this, o) : call("aten::mul.Scalar", this, o);
  }
  div(o: Tensor | number, roundingMode?: "trunc" | "floor"): Tensor {
    if (roundingMode) return o instanceof Tensor ? call("aten::div.Tensor_mode", this, o, roundingMode) : call("aten::div.Scalar_mode", this, o, roundingMode);
    return o instanceof Tensor ? call("aten::div.Tensor", this, o) : call("aten::div.Scalar", this, { float: o });
  }
  remainder(o: Tensor | number): Tensor {
    return o instanceof Tensor ? call("aten::remainder.Tensor", this, o) : call("aten::remainder.Scalar", this, o);
  }
  pow(e: Tensor | number): Tensor {
    return e instanceof Tensor ? call("aten::pow.Tensor_Tensor", this, e) : call("aten::pow.Tensor_Scalar", this, e);
  }
  neg(): Tensor { return call("aten::neg", this); }
  abs(): Tensor { return call("aten::abs", this); }
  exp(): Tensor { return call("aten::exp", this); }
  log(): Tensor { return call("aten::log", this); }
  log1p(): Tensor { return call("aten::log1p", this); }
  sqrt(): Tensor { return call("aten::sqrt", this); }
  rsqrt(): Tensor { return call("aten::rsqrt", this); }
  sign(): Tensor { return call("aten::sign", this); }
  floor(): Tensor { return call("aten::floor", this); }
  ceil(): Tensor { return call("aten::ceil", this); }
  round(): Tensor { return call("aten::round", this); }
  reciprocal(): Tensor { return call("aten::reciprocal", this); }
  square(): Tensor { return call("aten::square", this); }
  sin(): Tensor { return call("aten::sin", this); }
  cos(): Tensor { return call("aten::cos", this); }
  erf(): Tensor { return call("aten::erf", this); }
  clamp(min?: number, max?: number): Tensor { return call("aten::clamp", this, min, max); }
  clampMin(min: number): Tensor { return call("aten::clamp_min", this, min); }
  clampMax(max: number): Tensor { return call("aten::clamp_max", this, max); }
  maximum(o: Tensor): Tensor { return call("aten::maximum", this, o); }
  minimum(o: Tensor): Tensor { return call("aten::minimum", this, o); }
  lerp(end: Tensor, weight: number | Tensor): Tensor {
    return weight instanceof Tensor ? call("aten::lerp.Tensor", this, end, weight) : call("aten::lerp.Scalar", this, end, { float: weight });
  }

  // ---- comparison and logic -------------------------------------------------------------------
  private cmp(op: string, o: Tensor | number): Tensor {
    return o instanceof Tensor ? call(`aten::${op}.Tensor`, this, o) : call(`aten::${op}.Scalar`, this, o);
  }
  eq(o: Tensor | number): Tensor { return this.cmp("eq", o); }
  ne(o: Tensor | number): Tensor { return this.cmp("ne", o); }
  lt(o: Tensor | number): Tensor { return this.cmp("lt", o); }
  le(o: Tensor | number): Tensor { return this.cmp("le", o); }
  gt(o: Tensor | number): Tensor { return this.cmp("gt", o); }
  ge(o: Tensor | number): Tensor { return this.cmp("ge", o); }
  logicalAnd(o: Tensor): Tensor { return call("aten::logical_and", this, o); }
  logicalOr(o: Tensor): Tensor { return call("aten::logical_or", this, o); }
  logicalNot(): Tensor { return call("aten::logical_not", this); }
  isnan(): Tensor { return call("aten::isnan", this); }
  isfinite(): Tensor { return call("aten::isfinite", this); }
  allclose(o: Tensor, rtol = 1e-5, atol = 1e-8): boolean { return call<boolean>("aten::allclose", this, o, rtol, atol); }
  equal(o: Tensor): boolean { return call<boolean>("aten::equal", this, o); }

  // ---- linear algebra -------------------------------------------------------------------------
  matmul(o: Tensor): Tensor { return call("aten::matmul", this, o); }
  mm(o: Tensor): Tensor { return call("aten::mm", this, o); }
  bmm(o: Tensor): Tensor { return call("aten::bmm", this, o); }
  baddbmm(b1: Tensor, b2: Tensor, beta = 1, alpha = 1): Tensor { return call("aten::baddbmm", this, b1, b2, beta, alpha); }
  addmm(m1: Tensor, m2: Tensor, beta = 1, alpha = 1): Tensor { return call("aten::addmm", this, m1, m2, beta, alpha); }
  outer(o: Tensor): Tensor { return call("aten::outer", this, o); }

  // ---- reductions -------------------------------------------------------------------------------
  sum(dim?: number | number[], keepdim = false, dtype?: DType): Tensor {
    return dim === undefined ? call("aten::sum", this, code(dtype)) : call("aten::sum.dim_IntList", this, dimList(dim), keepdim, code(dtype));
  }
  mean(dim?: number | number[], keepdim = false): Tensor {
    return dim === undefined ? call("aten::mean", this) : call("aten::mean.dim", this, dimList(dim), keepdim);
  }
  prod(dim?: number, keepdim = false): Tensor {
    return dim === undefined ? call("aten::prod", this) : call("aten::prod.dim_int", this, dim, keepdim);
  }
  /** Variance (unbiased by default, like torch.var). */
  var(dim?: number | number[], unbiased = true, keepdim = false): Tensor {
    return call("aten::var.correction", this, dim === undefined ? undefined : dimList(dim), unbiased ? 1 : 0, keepdim);
  }
  std(dim?: number | number[], unbiased = true, keepdim = false): Tensor {
    return call("aten::std.correction", this, dim === undefined ? undefined : dimList(dim), unbiased ? 1 : 0, keepdim);
  }
  max(): Tensor { return call("aten::max", this); }
  min(): Tensor { return call("aten::min", this); }
  /** [values, indices] along dim. */
  maxDim(dim: number, keepdim = false): [Tensor, Tensor] { return call("aten::max.dim", this, dim, keepdim); }
  minDim(dim: number, keepdim = false): [Tensor, Tensor] { return call("aten::min.dim", this, dim, keepdim); }
  amax(dim: number | number[], keepdim = false): Tensor { return call("aten::amax", this, dimList(dim), keepdim); }
  amin(dim: number | number[], keepdim = false): Tensor { return call("aten::amin", this, dimList(dim), keepdim); }
  argmax(dim?: number, keepdim = false): Tensor { return call("aten::argmax", this, dim, keepdim); }
  argmin(dim?: number, keepdim = false): Tensor { return call("aten::argmin", this, dim, keepdim); }
  logsumexp(dim: number | number[], keepdim = false): Tensor { return call("aten::logsumexp", this, dimList(dim), keepdim); }
  /** Vector p-norm over dims (all dims when omitted). */
  norm(p = 2, dim?: number | number[], keepdim = false): Tensor {
    return call("aten::linalg_vector_norm", this, { float: p }, dim === undefined ? undefined : dimList(dim), keepdim);
  }
  /** [values, indices] of the k largest (or smallest) along dim. */
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] { return call("aten::topk", this, k, dim, largest, sorted); }
  /** [values, indices] sorted along dim. */
  sort(dim = -1, descending = false, stable = false): [Tensor, Tensor] {
    return call("aten::sort.stable", this, stable, dim, descending);
  }
  argsort(dim = -1, descending = false): Tensor { return call("aten::argsort", this, dim, descending); }
  cumsum(dim: number): Tensor { return call("aten::cumsum", this, dim); }
  all(): Tensor { return call("aten::all", this); }
  any(): Tensor { return call("aten::any", this); }
  countNonzero(dim?: number): Tensor { return call("aten::count_nonzero", this, dim); }

  // ---- indexing ---------------------------------------------------------------------------------
  indexSelect(dim: number, index: Tensor): Tensor { return call("aten::index_select", this, dim, index); }
  gather(dim: number, index: Tensor): Tensor { return call("aten::gather", this, dim, index, false); }
  scatter(dim: number, index: Tensor, src: Tensor | number): Tensor {
    return src instanceof Tensor ? call("aten::scatter.src", this, dim, index, src) : call("aten::scatter.value", this, dim, index, src);
  }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor { return call("aten::scatter_add", this, dim, index, src); }
  maskedFill(mask: Tensor, value: number | Tensor): Tensor {
    return value instanceof Tensor ? call("aten::masked_fill.Tensor", this, mask, value) : call("aten::masked_fill.Scalar", this, mask, value);
  }
  maskedSelect(mask: Tensor): Tensor { return call("aten::masked_select", this, mask); }
  nonzero(): Tensor { return call("aten::nonzero", this); }
  /** Advanced indexing t[i0, i1, ...] with index tensors (null = full slice of that dim). */
  index(indices: (Tensor | null)[]): Tensor { return call("aten::index.Tensor", this, indices); }
  indexPut(indices: (Tensor | null)[], values: Tensor, accumulate = false): Tensor {
    return call("aten::index_put", this, indices, values, accumulate);
  }

  // ---- activations and functional ops -------------------------------------------------------------
  softmax(dim: number): Tensor { return call("aten::softmax.int", this, dim); }
  logSoftmax(dim: number): Tensor { return call("aten::log_softmax.int", this, dim); }
  relu(): Tensor { return call("aten::relu", this); }
  gelu(approximate: "none" | "tanh" = "none"): Tensor { return call("aten::gelu", this, approximate); }
  tanh(): Tensor { return call("aten::tanh", this); }
  sigmoid(): Tensor { return call("aten::sigmoid", this); }
  silu(): Tensor { return call("aten::silu", this); }

  // ---- in-place (return this; autograd rules of libtorch apply) ---------------------------------------
  add_(o: Tensor | number, alpha = 1): this {
    if (o instanceof Tensor) callVoid("aten::add_.Tensor", this, o, alpha);
    else callVoid("aten::add_.Scalar", this, o, alpha);
    return this;
  }
  sub_(o: Tensor | number, alpha = 1): this {
    if (o instanceof Tensor) callVoid("aten::sub_.Tensor", this, o, alpha);
    else callVoid("aten::sub_.Scalar", this, o, alpha);
    return this;
  }
  mul_(o: Tensor | number): this {
    if (o instanceof Tensor) callVoid("aten::mul_.Tensor", this, o);
    else callVoid("aten::mul_.Scalar", this, o);
    return this;
  }
  div_(o: Tensor | number): this {
    if (o instanceof Tensor) callVoid("aten::div_.Tensor", this, o);
    else callVoid("aten::div_.Scalar", this, { float: o });
    return this;
  }
  addcmul_(t1: Tensor, t2: Tensor, value = 1): this { callVoid("aten::addcmul_", this, t1, t2, { float: value }); return this; }
  addcdiv_(t1: Tensor, t2: Tensor, value = 1): this { callVoid("aten::addcdiv_", this, t1, t2, { float: value }); return this; }
  lerp_(end: Tensor, weight: number): this { callVoid("aten::lerp_.Scalar", this, end, { float: weight }); return this; }
  clamp_(min?: number, max?: number): this { callVoid("aten::clamp_", this, min, max); return this; }
  sqrt_(): this { callVoid("aten::sqrt_", this); return this; }
  copy_(src: Tensor): this { callVoid("aten::copy_", this, src, false); return this; }
  zero_(): this { callVoid("aten::zero_", this); return this; }
  fill_(v: number): this { callVoid("aten::fill_.Scalar", this, v); return this; }
  maskedFill_(mask: Tensor, v: number): this { callVoid("aten::masked_fill_.Scalar", this, mask, v); return this; }
  normal_(mean = 0, std = 1, generator?: Generator): this { callVoid("aten::normal_", this, mean, std, generator); return this; }
  uniform_(from = 0, to = 1, generator?: Generator): this { callVoid("aten::uniform_", this, from, to, generator); return this; }
  bernoulli_(p: number, generator?: Generator): this { callVoid("aten::bernoulli_.float", this, p, generator); return this; }
  erfinv_(): this { callVoid("aten::erfinv_", this); return this; }
  scatter_(dim: number, index: Tensor, src: Tensor | number): this {
    if (src instanceof Tensor) callVoid("aten::scatter_.src", this, dim, index, src);
    else callVoid("aten::scatter_.value", this, dim, index, src);
    return this;
  }
  indexPut_(indices: (Tensor | null)[], values: Tensor, accumulate = false): this {
    callVoid("aten::index_put_", this, indices, values, accumulate);
    return this;
  }
}

function flatArgs(a: number[] | [number[]]): number[] {
  return Array.isArray(a[0]) ? (a[0] as number[]) : (a as number[]);
}
function dimList(d: number | number[]): number[] {
  return Array.isArray(d) ? d : [d];
}

// ---- creation ---------------------------------------------------------------------------------------

type Nested = number | boolean | Nested[];

function flattenNested(data: Nested, shape: number[], out: number[], depth = 0): void {
  if (Array.isArray(data)) {
    if (shape.length === depth) shape.push(data.length);
    else if (shape[depth] !== data.length) throw new Error(`tensor(): ragged nested array at depth ${depth}`);
    for (const d of data) flattenNested(d, shape, out, depth + 1);
  } else {
    if (shape.length !== depth) throw new Error(`tensor(): ragged nested array at depth ${depth}`);
    out.push(Number(data));
  }
}

function fill(dtype: DType, values: ArrayLike<number>): ArrayBufferView {
  switch (dtype) {
    case "float32": return Float32Array.from(values);
    case "float64": return Float64Array.from(values);
    case "int64": return BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v))));
    case "int32": return Int32Array.from(values);
    case "int16": return Int16Array.from(values);
    case "int8": return Int8Array.from(values);
    case "uint8": return Uint8Array.from(values);
    case "bool": return Uint8Array.from(values, (v) => (v ? 1 : 0));
    default: return Float32Array.from(values);
  }
}

/** A new tensor from a typed array (with its shape) or nested JS arrays; the data is copied. */
export function tensor(data: Nested | ArrayBufferView, opts: CreateOptions & { shape?: Shape } = {}): Tensor {
  let t: Tensor;
  if (ArrayBuffer.isView(data)) {
    const src = dtypeOfArray(data);
    const n = data.byteLength / ELEMENT_SIZE[src];
    const shape = opts.shape ?? [n];
    t = new Tensor(native.fromBuffer(data, shape, DTYPE_CODE[src], "cpu"));
  } else {
    const shape: number[] = [];
    const flat: number[] = [];
    flattenNested(data, shape, flat);
    const isBool = typeof (Array.isArray(data) ? data.flat(16)[0] : data) === "boolean";
    const dt: DType = opts.dtype === undefined || opts.dtype === "float16" || opts.dtype === "bfloat16" ? (isBool ? "bool" : "float32") : opts.dtype;
    t = new Tensor(native.fromBuffer(fill(dt, flat), opts.shape ?? shape, DTYPE_CODE[dt], "cpu"));
  }
  if ((opts.dtype && t.dtype !== opts.dtype) || (opts.device && opts.device !== "cpu")) {
    const old = t;
    t = old.to(opts.dtype ?? old.dtype);
    if (opts.device && opts.device !== "cpu") t = t.to(opts.device);
    if (t !== old) old.dispose();
  }
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

/** A tensor from raw little-endian bytes (used by checkpoint loading). */
export function fromBytes(bytes: Uint8Array, dtype: DType, shape: Shape, device: Device = "cpu"): Tensor {
  return new Tensor(native.fromBuffer(bytes, shape, DTYPE_CODE[dtype], device));
}

const createArgs = (o: CreateOptions) => [code(o.dtype ?? "float32"), undefined, o.device, undefined] as const;

function finish(t: Tensor, o: CreateOptions): Tensor {
  return o.requiresGrad ? t.requiresGrad_(true) : t;
}

export function zeros(shape: Shape, o: CreateOptions = {}): Tensor { return finish(call("aten::zeros", shape, ...createArgs(o)), o); }
export function ones(shape: Shape, o: CreateOptions = {}): Tensor { return finish(call("aten::ones", shape, ...createArgs(o)), o); }
export function empty(shape: Shape, o: CreateOptions = {}): Tensor { return finish(call("aten::empty.memory_format", shape, ...createArgs(o)), o); }
export function full(shape: Shape, value: number, o: CreateOptions = {}): Tensor {
  return finish(call("aten::full", shape, o.dtype === undefined || o.dtype.startsWith("float") ? { float: value } : value, ...createArgs(o)), o);
}
export function zerosLike(t: Tensor, o: CreateOptions = {}): Tensor { return call("aten::zeros_like", t, code(o.dtype)); }
export function onesLike(t: Tensor, o: CreateOptions = {}): Tensor { return call("aten::ones_like", t, code(o.dtype)); }
export function fullLike(t: Tensor, value: number): Tensor { return call("aten::full_like", t, value); }
/** Values start, start+step, ... < end (int64 unless dtype is given or an argument is fractional). */
export function arange(start: number, end?: number, step = 1, o: CreateOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  const dt = o.dtype ?? ([start, end, step].every(Number.isInteger) ? "int64" : "float32");
  return call("aten::arange.start_step", start, end, step, DTYPE_CODE[dt], undefined, o.device);
}
export function linspace(start: number, end: number, steps: number, o: CreateOptions = {}): Tensor {
  return call("aten::linspace", { float: start }, { float: end }, steps, ...createArgs(o));
}
export function eye(n: number, o: CreateOptions = {}): Tensor { return call("aten::eye", n, ...createArgs(o)); }

// ---- random -------------------------------------------------------------------------------------------

export function rand(shape: Shape, o: CreateOptions & { generator?: Generator } = {}): Tensor {
  return finish(call("aten::rand.generator", shape, o.generator, ...createArgs(o)), o);
}
export function randn(shape: Shape, o: CreateOptions & { generator?: Generator } = {}): Tensor {
  return finish(call("aten::randn.generator", shape, o.generator, ...createArgs(o)), o);
}
/** Integers uniformly in [low, high). */
export function randint(low: number, high: number, shape: Shape, o: CreateOptions & { generator?: Generator } = {}): Tensor {
  return call("aten::randint.low_generator", low, high, shape, o.generator, code(o.dtype ?? "int64"), undefined, o.device);
}
export function randperm(n: number, o: CreateOptions & { generator?: Generator } = {}): Tensor {
  return call("aten::randperm.generator", n, o.generator, code(o.dtype ?? "int64"), undefined, o.device);
}
/** Draws 0/1 with the probabilities in p (or a constant probability over a shape). */
export function bernoulli(p: Tensor, generator?: Generator): Tensor { return call("aten::bernoulli", p, generator); }
export function multinomial(probs: Tensor, numSamples: number, replacement = false, generator?: Generator): Tensor {
  return call("aten::multinomial", probs, numSamples, replacement, generator);
}
export function manualSeed(seed: number): void { native.manualSeed(seed); }
/** The state of libtorch's default generator of a device ("cpu", or "cuda:N": the one dropout uses there). */
export function getRngState(device?: Device): Tensor { return new Tensor(native.getRngState(device)); }
export function setRngState(state: Tensor, device?: Device): void { native.setRngState(state.native, device); }

// ---- combining ------------------------------------------------------------------------------------------

export function cat(ts: Tensor[], dim = 0): Tensor { return call("aten::cat", ts, dim); }
export function stack(ts: Tensor[], dim = 0): Tensor { return call("aten::stack", ts, dim); }
export function where(cond: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  if (a instanceof Tensor && b instanceof Tensor) return call("aten::where.self", cond, a, b);
  if (a instanceof Tensor) return call("aten::where.ScalarOther", cond, a, b);
  if (b instanceof Tensor) return call("aten::where.ScalarSelf", cond, a, b);
  return call("aten::where.Scalar", cond, a, b);
}
export function einsum(equation: string, ...ts: Tensor[]): Tensor { return call("aten::einsum", equation, ts); }

// ---- autograd, threads, memory ---------------------------------------------------------------------------

/** Run fn with gradient recording off (like torch.no_grad()). */
export function noGrad<T>(fn: () => T): T {
  const prev = native.isGradEnabled();
  native.setGradEnabled(false);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}
export function isGradEnabled(): boolean { return native.isGradEnabled(); }
export function backward(roots: Tensor[], grads?: Tensor[], retainGraph = false): void {
  native.backward(roots.map((t) => t.native), grads ? grads.map((t) => t.native) : null, retainGraph, false);
}
export function setNumThreads(n: number): void { native.setNumThreads(n); }
export function getNumThreads(): number { return native.getNumThreads(); }
/** Native tensor handles alive right now (for leak checks). */
export function liveTensors(): number { return native.liveTensors(); }
/** V8's count of external memory in bytes; tensors are reported to it in 256 MiB steps (native/src/tensor.cc). */
export function externalMemory(): number { return native.externalMemory(); }
export function buildInfo() { return native.buildInfo(); }
