// Gradient utilities: global-norm clipping (torch.nn.utils.clip_grad_norm_, op for op), a check
// for non-finite gradients or losses, and gradient accumulation over micro-batches.
import { call, callVoid, noGrad, stack, zeros, Tensor } from "./tensor.ts";
import { tidy } from "./scope.ts";
import { isFloating } from "./dtype.ts";

type Params = Tensor | Iterable<Tensor>;
const list = (ps: Params): Tensor[] => (ps instanceof Tensor ? [ps] : [...ps]);

/**
 * Scale all gradients together so their global `normType`-norm is at most maxNorm; returns the
 * norm before clipping. Same operators as torch 1.13: per-gradient norms, their norm, then
 * grad *= min(1, maxNorm / (total + 1e-6)). Non-finite norms are not an error (they propagate).
 */
export function clipGradNorm(params: Params, maxNorm: number, normType = 2): number {
  return tidy(() => clipGradNormTensor(params, maxNorm, normType).item());
}

/**
 * clipGradNorm without reading the norm to the host (no synchronisation on an accelerator): the
 * norm before clipping as a 0-d float32 tensor on the gradients' device (0 when no parameter has a
 * gradient), detached.
 */
export function clipGradNormTensor(params: Params, maxNorm: number, normType = 2): Tensor {
  return tidy(() =>
    noGrad(() => {
      const grads = list(params).map((p) => p.grad).filter((g): g is Tensor => g !== null);
      if (grads.length === 0) return zeros([]);
      const device = grads[0].device;
      const onDevice = (t: Tensor) => (t.device === device ? t : t.to(device));
      let total: Tensor;
      if (normType === Infinity) {
        const norms = grads.map((g) => onDevice(g.detach().abs().max()));
        total = norms.length === 1 ? norms[0] : stack(norms).max();
      } else {
        const norm = (t: Tensor) => call<Tensor>("aten::norm.ScalarOpt_dim", t, { float: normType }, [...Array(t.ndim).keys()], false);
        total = norm(stack(grads.map((g) => onDevice(norm(g.detach())))));
      }
      const coef = call<Tensor>("aten::mul.Scalar", total.add(1e-6).reciprocal(), { float: maxNorm }).clamp(undefined, 1.0);
      for (const g of grads) g.detach().mul_(g.device === device ? coef : coef.to(g.device));
      return total;
    }),
  );
}

/** True if any value is NaN or ±inf: a loss (number or tensor) or a list of tensors (nulls ignored); one sync. */
export function hasNonFinite(x: number | Tensor | Iterable<Tensor | null | undefined>): boolean {
  if (typeof x === "number") return !Number.isFinite(x);
  const ts = (x instanceof Tensor ? [x] : [...x]).filter((t): t is Tensor => t !== null && t !== undefined && isFloating(t.dtype));
  if (ts.length === 0) return false;
  return tidy(() =>
    noGrad(() => {
      // The inf-norm (max |x|) is NaN if any element is NaN and inf if any is ±inf.
      const norms = call<Tensor[]>("aten::_foreach_norm.Scalar", ts.map((t) => t.detach()), { float: Infinity });
      const dev = norms[0].device;
      return !stack(norms.map((n) => (n.device === dev ? n.float() : n.to(dev).float()))).isfinite().all().item();
    }),
  );
}

/** True if any parameter's gradient has a NaN or ±inf. */
export function hasNonFiniteGrad(params: Params): boolean {
  return tidy(() => hasNonFinite(list(params).map((p) => p.grad)));
}

export interface AccumulatedStep {
  /** False when the update was skipped because a gradient was not finite. */
  stepped: boolean;
  /** The global gradient norm before clipping (when maxGradNorm is set). */
  gradNorm?: number;
  /** Micro-batches that went into this update. */
  microBatches: number;
}

interface StepsLike {
  step(): void;
  zeroGrad(): void;
  readonly groups: { params: Tensor[] }[];
}

/**
 * Gradient accumulation: backward(loss) backpropagates loss / k; every k-th call clips (optional),
 * steps the optimizer and zeroes the gradients. With equal micro-batches and mean-reduced losses,
 * k micro-batches give the gradient of one batch k times larger.
 */
export class GradAccumulator {
  private count = 0;
  /** Optimizer updates done so far (the step to pass to applyLr before the next backward). */
  updates = 0;

  constructor(
    readonly optimizer: StepsLike,
    readonly k: number,
    readonly opts: { maxGradNorm?: number; normType?: number; skipNonFinite?: boolean } = {},
  ) {
    if (!Number.isInteger(k) || k < 1) throw new Error(`GradAccumulator: k must be a positive integer, got ${k}`);
  }

  /** Micro-batches accumulated since the last update. */
  get pending(): number {
    return this.count;
  }

  /** Backpropagate loss / k; returns the update's result after every k-th micro-batch, else null. */
  backward(loss: Tensor): AccumulatedStep | null {
    tidy(() => (this.k === 1 ? loss : loss.div(this.k)).backward());
    this.count += 1;
    return this.count >= this.k ? this.update() : null;
  }

  /** Update with a short last group of micro-batches (gradients rescaled from 1/k to 1/pending). */
  flush(): AccumulatedStep | null {
    if (this.count === 0) return null;
    if (this.count < this.k) {
      const scale = this.k / this.count;
      noGrad(() =>
        tidy(() => {
          const grads = this.params().map((p) => p.grad).filter((g): g is Tensor => g !== null);
          if (grads.length) callVoid("aten::_foreach_mul_.Scalar", grads, { float: scale });
        }),
      );
    }
    return this.update();
  }

  private params(): Tensor[] {
    return this.optimizer.groups.flatMap((g) => g.params);
  }

  private update(): AccumulatedStep {
    const microBatches = this.count;
    this.count = 0;
    const params = this.params();
    if (this.opts.skipNonFinite && hasNonFiniteGrad(params)) {
      this.optimizer.zeroGrad();
      return { stepped: false, microBatches };
    }
    const gradNorm = this.opts.maxGradNorm === undefined ? undefined : clipGradNorm(params, this.opts.maxGradNorm, this.opts.normType ?? 2);
    this.optimizer.step();
    this.optimizer.zeroGrad();
    this.updates += 1;
    return { stepped: true, gradNorm, microBatches };
  }
}
