// Optimizers with torch.optim's update rules, op for op (AdamW, Adam, SGD), parameter groups and
// resumable state. Updates use libtorch's multi-tensor `_foreach_*` operators; their Scalar[]
// overloads cannot be passed through the boxed call, so parameters are bucketed by step count
// (normally one bucket per group) and each bucket uses the single-Scalar overloads, which is the
// same arithmetic as torch's per-parameter loop. `_foreach_lerp_` does not exist in libtorch 1.13,
// and torch 1.13 itself updates exp_avg with mul_ + add_, so that is what is used here too.
import { call, callVoid, noGrad, zerosLike, type Tensor } from "./tensor.ts";
import { tidy } from "./scope.ts";

/** Hyperparameters every group has. The update uses lr * lrScale. */
export interface GroupBase {
  lr: number;
  weightDecay: number;
  /** Per-group multiplier of lr (layer-wise decay, heads with a higher lr). */
  lrScale: number;
}

export type ParamGroup<H> = GroupBase & H & {
  params: Tensor[];
  /** The lr the group started with; schedules scale it (see setLrFactor). */
  initialLr: number;
  name?: string;
};

export type ParamGroupSpec<H = object> = Partial<GroupBase & H> & { params: Tensor[]; name?: string };

export interface ParamState {
  /** Updates applied to this parameter so far (torch's state["step"]). */
  step: number;
  /** exp_avg, exp_avg_sq (Adam) or momentum_buffer (SGD); kept tensors owned by the optimizer. */
  buffers: Map<string, Tensor>;
}

type HyperValue = number | boolean | number[] | string | undefined;

/** Optimizer state by parameter index (the order of the groups' params), like torch's state_dict(). */
export interface OptimizerStateDict {
  kind: string;
  groups: (Record<string, HyperValue> & { params: number[] })[];
  state: Map<number, ParamState>;
}

const f = (x: number) => ({ float: x });

export abstract class Optimizer<H extends object = object> {
  readonly groups: ParamGroup<H>[];
  protected readonly state = new Map<Tensor, ParamState>();
  /** Use the multi-tensor `_foreach_*` operators (default) or one in-place op per tensor. */
  foreach: boolean;

  constructor(
    readonly kind: string,
    params: Tensor[] | ParamGroupSpec<H>[],
    defaults: GroupBase & H,
    foreach = true,
  ) {
    this.foreach = foreach;
    const specs: ParamGroupSpec<H>[] = params.length > 0 && !isGroup(params[0]) ? [{ params: params as Tensor[] } as ParamGroupSpec<H>] : (params as ParamGroupSpec<H>[]);
    const seen = new Set<Tensor>();
    this.groups = specs.map((spec) => {
      for (const p of spec.params) {
        if (seen.has(p)) throw new Error(`${kind}: a parameter appears in more than one group`);
        seen.add(p);
      }
      const g = { ...defaults, ...stripUndefined(spec), params: [...spec.params] } as ParamGroup<H>;
      g.initialLr = g.lr;
      return g;
    });
  }

  /** The per-group update on parameters that have a gradient; states are created by `initState`. */
  protected abstract update(group: ParamGroup<H>, params: Tensor[], grads: Tensor[], states: ParamState[], step: number): void;
  /** Buffers a parameter needs before its first update (may depend on the gradient). */
  protected abstract initState(p: Tensor, grad: Tensor): Map<string, Tensor>;

  /** Apply one update to every parameter that requires grad and has a gradient. */
  step(): void {
    tidy(() =>
      noGrad(() => {
        for (const group of this.groups) {
          const buckets = new Map<number, { ps: Tensor[]; gs: Tensor[]; ss: ParamState[] }>();
          for (const p of group.params) {
            if (!p.requiresGrad) continue;
            const g = p.grad;
            if (g === null) continue;
            let s = this.state.get(p);
            if (!s) {
              s = { step: 0, buffers: this.initState(p, g) };
              for (const b of s.buffers.values()) b.keep();
              this.state.set(p, s);
            }
            s.step += 1;
            let b = buckets.get(s.step);
            if (!b) buckets.set(s.step, (b = { ps: [], gs: [], ss: [] }));
            b.ps.push(p);
            b.gs.push(g);
            b.ss.push(s);
          }
          for (const [step, b] of buckets) this.update(group, b.ps, b.gs, b.ss, step);
        }
      }),
    );
  }

  /** Drop every gradient (set to null, like zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const group of this.groups) {
      for (const p of group.params) {
        const g = p.grad;
        if (g) {
          p.grad = null;
          g.dispose();
        }
      }
    }
  }

  /** Set every group's lr (the per-group lrScale still applies). */
  setLr(lr: number): void {
    for (const g of this.groups) g.lr = lr;
  }
  /** Set every group's lr to its initial lr times `factor` (what schedules do). */
  setLrFactor(factor: number): void {
    for (const g of this.groups) g.lr = g.initialLr * factor;
  }
  /** The lr each group's next update will use (lr * lrScale). */
  effectiveLrs(): number[] {
    return this.groups.map((g) => g.lr * g.lrScale);
  }

  /** State by parameter index plus group hyperparameters; tensors are the live state (do not dispose). */
  stateDict(): OptimizerStateDict {
    const state = new Map<number, ParamState>();
    let i = 0;
    const groups = this.groups.map((g) => {
      const { params, ...hyper } = g;
      const idx = params.map(() => i++);
      params.forEach((p, k) => {
        const s = this.state.get(p);
        if (s) state.set(idx[k], s);
      });
      return { ...(hyper as Record<string, HyperValue>), params: idx };
    });
    return { kind: this.kind, groups, state };
  }

  /** Restore hyperparameters and state (copied, so the caller may free `sd`'s tensors). */
  loadStateDict(sd: OptimizerStateDict): void {
    if (sd.kind !== this.kind) throw new Error(`${this.kind}.loadStateDict: state is for ${sd.kind}`);
    if (sd.groups.length !== this.groups.length) {
      throw new Error(`${this.kind}.loadStateDict: ${sd.groups.length} groups in the state, ${this.groups.length} here`);
    }
    const byIndex: Tensor[] = [];
    sd.groups.forEach((sg, gi) => {
      const g = this.groups[gi];
      if (sg.params.length !== g.params.length) {
        throw new Error(`${this.kind}.loadStateDict: group ${gi} has ${sg.params.length} params in the state, ${g.params.length} here`);
      }
      sg.params.forEach((idx, k) => (byIndex[idx] = g.params[k]));
    });
    for (const [idx, s] of sd.state) {
      const p = byIndex[idx];
      if (!p) throw new Error(`${this.kind}.loadStateDict: state for unknown parameter index ${idx}`);
      for (const [name, b] of s.buffers) {
        if (!sameShape(b.shape, p.shape)) throw new Error(`${this.kind}.loadStateDict: ${name} of param ${idx} has shape [${b.shape}], param has [${p.shape}]`);
      }
    }
    this.disposeState();
    sd.groups.forEach((sg, gi) => {
      const { params: _params, ...hyper } = sg;
      Object.assign(this.groups[gi], structuredClone(hyper));
    });
    noGrad(() => {
      for (const [idx, s] of sd.state) {
        const p = byIndex[idx];
        const buffers = new Map<string, Tensor>();
        for (const [name, b] of s.buffers) {
          const t = zerosLike(p);
          t.copy_(b);
          buffers.set(name, t.keep());
        }
        this.state.set(p, { step: s.step, buffers });
      }
    });
  }

  private disposeState(): void {
    for (const s of this.state.values()) for (const b of s.buffers.values()) b.dispose();
    this.state.clear();
  }

  /** Free the optimizer state. */
  dispose(): void {
    this.disposeState();
  }
}

function isGroup(x: unknown): x is ParamGroupSpec {
  return typeof x === "object" && x !== null && Array.isArray((x as ParamGroupSpec).params);
}
function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

// ---- Adam / AdamW ------------------------------------------------------------------------------------

export interface AdamHyper {
  betas: [number, number];
  eps: number;
}
export type AdamOptions = Partial<GroupBase & AdamHyper> & { foreach?: boolean };

/** torch.optim.Adam: L2 weight decay added to the gradient (grad + wd * p), bias-corrected moments. */
export class Adam extends Optimizer<AdamHyper> {
  protected decoupled = false;

  constructor(params: Tensor[] | ParamGroupSpec<AdamHyper>[], opts: AdamOptions = {}, kind = "Adam") {
    super(kind, params, {
      lr: opts.lr ?? 1e-3,
      weightDecay: opts.weightDecay ?? (kind === "AdamW" ? 1e-2 : 0),
      lrScale: opts.lrScale ?? 1,
      betas: opts.betas ?? [0.9, 0.999],
      eps: opts.eps ?? 1e-8,
    }, opts.foreach ?? true);
  }

  protected initState(p: Tensor): Map<string, Tensor> {
    return new Map([["exp_avg", zerosLike(p)], ["exp_avg_sq", zerosLike(p)]]);
  }

  protected update(g: ParamGroup<AdamHyper>, ps: Tensor[], grads: Tensor[], ss: ParamState[], step: number): void {
    const lr = g.lr * g.lrScale;
    const wd = g.weightDecay;
    const [beta1, beta2] = g.betas;
    const ms = ss.map((s) => s.buffers.get("exp_avg")!);
    const vs = ss.map((s) => s.buffers.get("exp_avg_sq")!);
    const stepSize = lr / (1 - beta1 ** step);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
    if (this.foreach) {
      let gs = grads;
      if (wd !== 0) {
        if (this.decoupled) callVoid("aten::_foreach_mul_.Scalar", ps, f(1 - lr * wd));
        else gs = call<Tensor[]>("aten::_foreach_add.List", grads, ps, f(wd));
      }
      callVoid("aten::_foreach_mul_.Scalar", ms, f(beta1));
      callVoid("aten::_foreach_add_.List", ms, gs, f(1 - beta1));
      callVoid("aten::_foreach_mul_.Scalar", vs, f(beta2));
      callVoid("aten::_foreach_addcmul_.Scalar", vs, gs, gs, f(1 - beta2));
      const denom = call<Tensor[]>("aten::_foreach_sqrt", vs);
      callVoid("aten::_foreach_div_.Scalar", denom, f(bc2Sqrt));
      callVoid("aten::_foreach_add_.Scalar", denom, f(g.eps));
      callVoid("aten::_foreach_addcdiv_.Scalar", ps, ms, denom, f(-stepSize));
      return;
    }
    ps.forEach((p, i) => {
      let grad = grads[i];
      if (wd !== 0) {
        if (this.decoupled) p.mul_(1 - lr * wd);
        else grad = grad.add(p, wd);
      }
      ms[i].mul_(beta1).add_(grad, 1 - beta1);
      vs[i].mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      const denom = vs[i].sqrt().div_(bc2Sqrt).add_(g.eps);
      p.addcdiv_(ms[i], denom, -stepSize);
    });
  }
}
/** torch.optim.AdamW: decoupled weight decay p <- p - lr * wd * p, then the Adam update. */
export class AdamW extends Adam {
  protected override decoupled = true;
  constructor(params: Tensor[] | ParamGroupSpec<AdamHyper>[], opts: AdamOptions = {}) {
    super(params, opts, "AdamW");
  }
}

// ---- SGD -----------------------------------------------------------------------------------------------

export interface SGDHyper {
  momentum: number;
  dampening: number;
  nesterov: boolean;
}
export type SGDOptions = Partial<GroupBase & SGDHyper> & { lr: number; foreach?: boolean };

/** torch.optim.SGD: L2 weight decay, momentum (buffer starts as the first gradient), optional Nesterov. */
export class SGD extends Optimizer<SGDHyper> {
  constructor(params: Tensor[] | ParamGroupSpec<SGDHyper>[], opts: SGDOptions) {
    const d = { lr: opts.lr, weightDecay: opts.weightDecay ?? 0, lrScale: opts.lrScale ?? 1, momentum: opts.momentum ?? 0, dampening: opts.dampening ?? 0, nesterov: opts.nesterov ?? false };
    if (d.nesterov && (d.momentum <= 0 || d.dampening !== 0)) throw new Error("SGD: Nesterov momentum requires a momentum and zero dampening");
    super("SGD", params, d, opts.foreach ?? true);
  }

  protected initState(): Map<string, Tensor> {
    return new Map();
  }

  protected update(g: ParamGroup<SGDHyper>, ps: Tensor[], grads: Tensor[], ss: ParamState[]): void {
    const lr = g.lr * g.lrScale;
    const { momentum, dampening, nesterov, weightDecay: wd } = g;
    const fe = this.foreach;
    let ds = grads;
    if (wd !== 0) ds = fe ? call<Tensor[]>("aten::_foreach_add.List", grads, ps, f(wd)) : grads.map((d, i) => d.add(ps[i], wd));
    if (momentum !== 0) {
      const old = ss.map((s, i) => [s.buffers.get("momentum_buffer"), i] as const).filter((e): e is readonly [Tensor, number] => e[0] !== undefined);
      if (fe && old.length) {
        callVoid("aten::_foreach_mul_.Scalar", old.map(([b]) => b), f(momentum));
        callVoid("aten::_foreach_add_.List", old.map(([b]) => b), old.map(([, i]) => ds[i]), f(1 - dampening));
      } else for (const [b, i] of old) b.mul_(momentum).add_(ds[i], 1 - dampening);
      ss.forEach((s, i) => {
        if (!s.buffers.has("momentum_buffer")) s.buffers.set("momentum_buffer", ds[i].clone().detach().keep());
      });
      const bufs = ss.map((s) => s.buffers.get("momentum_buffer")!);
      if (nesterov) ds = fe ? call<Tensor[]>("aten::_foreach_add.List", ds, bufs, f(momentum)) : ds.map((d, i) => d.add(bufs[i], momentum));
      else ds = bufs;
    }
    if (fe) callVoid("aten::_foreach_add_.List", ps, ds, f(-lr));
    else ps.forEach((p, i) => p.add_(ds[i], -lr));
  }
}

// ---- parameter groups -------------------------------------------------------------------------------------

/** BERT's rule: biases and LayerNorm/norm weights (and every 1-d parameter) get no weight decay. */
export function defaultNoDecay(name: string, p: Tensor): boolean {
  return p.ndim <= 1 || name.includes("bias") || /norm/i.test(name);
}

export interface NoDecayOptions {
  /** Which parameters get no weight decay (replaces defaultNoDecay). */
  noDecay?: (name: string, p: Tensor) => boolean;
  /** A per-parameter lr multiplier (e.g. layer-wise decay); groups are split by distinct values. */
  lrScale?: (name: string, p: Tensor) => number;
  /** Leave out parameters with requiresGrad false (default: include them; step skips them anyway). */
  trainableOnly?: boolean;
}

/** Parameter groups "decay" (weightDecay = wd) and "no_decay" (0), further split by lr multiplier. */
export function paramGroupsNoDecay(
  model: { namedParameters(): [string, Tensor][] },
  wd: number,
  opts: NoDecayOptions = {},
): ParamGroupSpec[] {
  const noDecay = opts.noDecay ?? defaultNoDecay;
  const groups = new Map<string, ParamGroupSpec>();
  for (const [name, p] of model.namedParameters()) {
    if (opts.trainableOnly && !p.requiresGrad) continue;
    const skip = noDecay(name, p);
    const scale = opts.lrScale ? opts.lrScale(name, p) : 1;
    const key = `${skip ? "no_decay" : "decay"}${scale === 1 ? "" : `@${scale}`}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { name: key, params: [], weightDecay: skip ? 0 : wd, ...(scale === 1 ? {} : { lrScale: scale }) }));
    g.params.push(p);
  }
  return [...groups.values()];
}
