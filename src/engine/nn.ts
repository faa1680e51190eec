// Modules: named parameters, buffers and submodules with PyTorch's naming ("encoder.layer.0.attention.self.query.weight"),
// train/eval, state dicts, freezing, and the basic layers.
import { Tensor, empty, zeros, ones, noGrad, type Device } from "./tensor.ts";
import * as F from "./functional.ts";

export class StateDictError extends Error {
  constructor(
    readonly missing: string[],
    readonly unexpected: string[],
    readonly mismatched: { key: string; expected: number[]; got: number[] }[],
    where = "loadStateDict",
  ) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing keys (${missing.length}): ${list(missing)}`);
    if (unexpected.length) parts.push(`unexpected keys (${unexpected.length}): ${list(unexpected)}`);
    if (mismatched.length) parts.push(`wrong shapes (${mismatched.length}): ${mismatched.slice(0, 20).map((m) => `${m.key} expected [${m.expected}] got [${m.got}]`).join(", ")}`);
    super(`${where}: ${parts.join("; ")}`);
  }
}
const list = (xs: string[]) => xs.slice(0, 30).join(", ") + (xs.length > 30 ? `, ... (${xs.length - 30} more)` : "");

export type StateDict = Map<string, Tensor>;

export abstract class Module {
  training = true;
  private readonly _parameters = new Map<string, Tensor | null>();
  private readonly _buffers = new Map<string, Tensor | null>();
  private readonly _modules = new Map<string, Module | null>();
  /** Buffers that are not part of the state dict (like PyTorch's persistent=False). */
  private readonly _transient = new Set<string>();

  /** Register (and return) a parameter: a leaf tensor that requires grad, kept out of tidy scopes. */
  protected param(name: string, t: Tensor | null): Tensor {
    if (t) t.requiresGrad_(true).keep();
    this._parameters.set(name, t);
    return t as Tensor;
  }
  protected buffer(name: string, t: Tensor | null, persistent = true): Tensor {
    if (t) t.keep();
    this._buffers.set(name, t);
    if (!persistent) this._transient.add(name);
    return t as Tensor;
  }
  protected module<M extends Module | null>(name: string, m: M): M {
    this._modules.set(name, m);
    return m;
  }

  children(): [string, Module][] {
    return [...this._modules].filter((e): e is [string, Module] => e[1] !== null);
  }
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, m] of this.children()) out.push(...m.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }
  /** Parameters with their dotted names; a tensor shared by two modules (tied weights) is listed once. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const seen = new Set<Tensor>();
    const out: [string, Tensor][] = [];
    for (const [mp, m] of this.namedModules(prefix)) {
      for (const [n, p] of m._parameters) {
        if (p && !seen.has(p)) {
          seen.add(p);
          out.push([mp ? `${mp}.${n}` : n, p]);
        }
      }
    }
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }
  namedBuffers(prefix = "", persistentOnly = false): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [mp, m] of this.namedModules(prefix)) {
      for (const [n, b] of m._buffers) {
        if (b && !(persistentOnly && m._transient.has(n))) out.push([mp ? `${mp}.${n}` : n, b]);
      }
    }
    return out;
  }
  numParameters(filter?: (name: string) => boolean): number {
    return this.namedParameters().filter(([n]) => !filter || filter(n)).reduce((a, [, p]) => a + p.numel, 0);
  }

  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  /** Freeze (false) or unfreeze (true) every parameter of this module. */
  requiresGrad_(on: boolean): this {
    for (const p of this.parameters()) p.requiresGrad_(on);
    return this;
  }
  zeroGrad(): void {
    for (const p of this.parameters()) {
      const g = p.grad;
      if (g) {
        p.grad = null;
        g.dispose();
      }
    }
  }

  /** Every parameter and persistent buffer by name, tied weights under each of their names (like PyTorch). */
  stateDict(prefix = ""): StateDict {
    const sd: StateDict = new Map();
    for (const [mp, m] of this.namedModules(prefix)) {
      for (const [n, p] of m._parameters) if (p) sd.set(mp ? `${mp}.${n}` : n, p);
      for (const [n, b] of m._buffers) if (b && !m._transient.has(n)) sd.set(mp ? `${mp}.${n}` : n, b);
    }
    return sd;
  }

  /** Copy values in by name. Strict by default: a mismatch throws a StateDictError listing every problem. */
  loadStateDict(sd: Map<string, Tensor> | Record<string, Tensor>, opts: { strict?: boolean; where?: string } = {}): { missing: string[]; unexpected: string[] } {
    const src = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !src.has(k));
    const unexpected = [...src.keys()].filter((k) => !own.has(k));
    const mismatched: { key: string; expected: number[]; got: number[] }[] = [];
    for (const [k, t] of own) {
      const s = src.get(k);
      if (s && (s.shape.length !== t.shape.length || s.shape.some((d, i) => d !== t.shape[i]))) mismatched.push({ key: k, expected: t.shape, got: s.shape });
    }
    if (mismatched.length || ((opts.strict ?? true) && (missing.length || unexpected.length))) {
      throw new StateDictError(opts.strict ?? true ? missing : [], opts.strict ?? true ? unexpected : [], mismatched, opts.where);
    }
    noGrad(() => {
      for (const [k, t] of own) {
        const s = src.get(k);
        if (!s) continue;
        if (s.dtype === t.dtype && s.device === t.device) t.copy_(s);
        else {
          const c = s.to(t.dtype);
          t.copy_(c);
          c.dispose();
        }
      }
    });
    return { missing, unexpected };
  }

  /** Move every parameter and buffer to a device in place (tensors keep their identities, like `p.data = p.data.to(d)`). */
  to(device: Device): this {
    noGrad(() => {
      for (const t of new Set([...this.stateDict().values(), ...this.namedBuffers().map(([, b]) => b)])) {
        if (t.device === device) continue;
        const moved = t.to(device);
        t.setData(moved);
        moved.dispose();
      }
    });
    return this;
  }

  /** Free every parameter and buffer. */
  dispose(): void {
    for (const [, t] of this.stateDict()) t.dispose();
    for (const [, b] of this.namedBuffers()) b.dispose();
  }
}

// ---- layers -------------------------------------------------------------------------------------------

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true) {
    super();
    // PyTorch's default init: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(in), 1/sqrt(in)); models re-init explicitly.
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.param("weight", F.uniform_(empty([outFeatures, inFeatures]), -bound, bound));
    this.bias = this.param("bias", bias ? F.uniform_(empty([outFeatures]), -bound, bound) : null);
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly dim: number, readonly eps = 1e-5) {
    super();
    this.weight = this.param("weight", ones([dim]));
    this.bias = this.param("bias", zeros([dim]));
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, [this.dim], this.weight, this.bias, this.eps);
  }
}

/** PyTorch's nn.GroupNorm: a per-channel affine after normalising each group of channels over its positions. */
export class GroupNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly numGroups: number, readonly channels: number, readonly eps = 1e-5) {
    super();
    if (channels % numGroups !== 0) throw new Error(`GroupNorm: ${channels} channels do not split into ${numGroups} groups`);
    this.weight = this.param("weight", ones([channels]));
    this.bias = this.param("bias", zeros([channels]));
  }
  forward(x: Tensor): Tensor {
    return F.groupNorm(x, this.numGroups, this.weight, this.bias, this.eps);
  }
}

export class Embedding extends Module {
  readonly weight: Tensor;
  constructor(readonly num: number, readonly dim: number, readonly paddingIdx = -1) {
    super();
    const w = F.normal_(empty([num, dim]));
    if (paddingIdx >= 0) noGrad(() => w.select(0, paddingIdx).zero_());
    this.weight = this.param("weight", w);
  }
  forward(ids: Tensor): Tensor {
    return F.embedding(this.weight, ids, this.paddingIdx);
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0.1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.dropout(x, this.p, this.training);
  }
}

/** Stochastic depth per sample (timm's DropPath): zero a whole residual branch with probability p. */
export class DropPath extends Module {
  constructor(readonly p = 0) {
    super();
  }
  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return F.dropout(x, 0, false);
    const keep = 1 - this.p;
    const mask = empty([x.size(0), ...Array(x.ndim - 1).fill(1)], { dtype: x.dtype, device: x.device }).bernoulli_(keep);
    return x.mul(mask.div_(keep));
  }
}

export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernel: number, readonly stride = 1, readonly padding = 0, bias = true) {
    super();
    const bound = 1 / Math.sqrt(inChannels * kernel * kernel);
    this.weight = this.param("weight", F.uniform_(empty([outChannels, inChannels, kernel, kernel]), -bound, bound));
    this.bias = this.param("bias", bias ? F.uniform_(empty([outChannels]), -bound, bound) : null);
  }
  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias, this.stride, this.padding);
  }
}

/** A list of submodules named "0", "1", ... (PyTorch's nn.ModuleList). */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[] = [];
  constructor(items: M[] = []) {
    super();
    for (const m of items) this.push(m);
  }
  push(m: M): void {
    this.module(String(this.items.length), m);
    this.items.push(m);
  }
  get length(): number {
    return this.items.length;
  }
  at(i: number): M {
    return this.items[i < 0 ? this.items.length + i : i];
  }
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}

/** The GELU of BERT/LXMERT (erf form) as a module, for heads written as sequences. */
export class GELU extends Module {
  constructor(readonly approximate: "none" | "tanh" = "none") {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.gelu(this.approximate);
  }
}

/** Runs modules with a single-tensor forward one after the other (names "0", "1", ... like nn.Sequential). */
export class Sequential extends Module {
  readonly layers: { forward(x: Tensor): Tensor }[];
  constructor(...layers: (Module & { forward(x: Tensor): Tensor })[]) {
    super();
    layers.forEach((l, i) => this.module(String(i), l));
    this.layers = layers;
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (const l of this.layers) {
      const next = l.forward(h);
      h = next;
    }
    return h;
  }
}
