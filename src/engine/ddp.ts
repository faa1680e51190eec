// Data-parallel training over a Dist group (src/engine/dist.ts), as PyTorch's DDP does it:
//   - parameters and buffers are broadcast from rank 0 when training starts (and after a resume,
//     which only rank 0 reads from disk, the optimizer state too), so every replica starts equal;
//   - gradients are averaged over the ranks in buckets of ~25 MB (the first ~1 MB), filled in
//     reverse parameter order, which is roughly the order in which backward produces them.
// Two ways to average (DDPOptions.gradSync):
//   "overlap" (default): c10d::Reducer, PyTorch's own DDP engine, registers autograd hooks; each
//     bucket is all-reduced as soon as its last gradient is ready, while backward continues.
//     Parameters that a step does not use are found from the graph of the loss; a parameter unused
//     on every rank keeps no gradient, exactly as in one process.
//   "after": backward runs locally, then every bucket is flattened, all-reduced, divided by the
//     world size and copied back, all buckets in flight at once (same result, no overlap).
import { noGrad, zerosLike, cat, tensor, type Tensor, type Device } from "./tensor.ts";
import { toDevice } from "./placement.ts";
import { tidy } from "./scope.ts";
import { native, type NativeTensor } from "./native.ts";
import type { Module } from "./nn.ts";
import type { OptimizerStateDict, ParamState } from "./optim.ts";
import type { Dist } from "./dist.ts";
import { ELEMENT_SIZE, type DType } from "./dtype.ts";
import { empty } from "./tensor.ts";

interface NativeReducer {
  prepareForBackward(outputs: NativeTensor[]): void;
  dispose(): void;
}
type ReducerCtor = new (group: unknown, params: NativeTensor[], buckets: number[][], limits: number[], names: string[], findUnused: boolean) => NativeReducer;

export interface DDPOptions {
  /** "overlap": c10d::Reducer during backward (default); "after": bucketed all-reduce after backward. */
  gradSync?: "overlap" | "after";
  /** Bucket size in MB (default 25, PyTorch's). */
  bucketCapMB?: number;
  /** Size of the first bucket, reduced first (default 1 MB, PyTorch's). */
  firstBucketMB?: number;
}

const MB = 1024 * 1024;
const bytesOf = (t: Tensor) => t.numel * ELEMENT_SIZE[t.dtype];

/**
 * Bucket assignment: tensor indices grouped by dtype and device, taken in reverse order (the last
 * layers' gradients are ready first), a bucket closing once it holds `capBytes` (`firstCapBytes`
 * for the first bucket). Buckets are returned in the order they will be reduced.
 */
export function assignBuckets(tensors: Tensor[], capBytes = 25 * MB, firstCapBytes = MB): { buckets: number[][]; limits: number[] } {
  const open = new Map<string, { idx: number[]; bytes: number; limit: number }>();
  const buckets: number[][] = [];
  const limits: number[] = [];
  let first = true;
  for (let i = tensors.length - 1; i >= 0; i--) {
    const t = tensors[i];
    const key = `${t.dtype}@${t.device}`;
    let b = open.get(key);
    if (!b) open.set(key, (b = { idx: [], bytes: 0, limit: first ? firstCapBytes : capBytes }));
    b.idx.push(i);
    b.bytes += bytesOf(t);
    if (b.bytes >= b.limit) {
      buckets.push(b.idx);
      limits.push(b.limit);
      open.delete(key);
      first = false;
    }
  }
  for (const b of open.values()) {
    buckets.push(b.idx);
    limits.push(b.limit);
  }
  return { buckets, limits };
}

/** Flatten `ts` in groups (one dtype each, at most `capBytes`), run `fn` on all flats at once, copy back. */
function coalesced(ts: Tensor[], capBytes: number, fn: (flats: Tensor[]) => void): void {
  if (ts.length === 0) return;
  tidy(() =>
    noGrad(() => {
      const { buckets } = assignBuckets(ts, capBytes, capBytes);
      const flats = buckets.map((b) => cat(b.map((i) => ts[i].detach().reshape(-1)), 0));
      fn(flats);
      buckets.forEach((b, k) => {
        let off = 0;
        for (const i of b) {
          const n = ts[i].numel;
          ts[i].detach().copy_(flats[k].narrow(0, off, n).view(ts[i].shape));
          off += n;
        }
      });
    }),
  );
}

/** Overwrite `ts` with root's values, coalesced into ~25 MB broadcasts. */
export function broadcastTensors(dist: Dist, ts: Tensor[], root = 0, capBytes = 25 * MB): void {
  coalesced(ts, capBytes, (flats) => dist.broadcast(flats, root));
}

/** Every parameter and buffer of `model` from rank 0 (tied weights once). */
export function broadcastModule(dist: Dist, model: Module, root = 0): void {
  const seen = new Set<Tensor>();
  const ts: Tensor[] = [];
  for (const [, t] of [...model.namedParameters(), ...model.namedBuffers()]) {
    if (!seen.has(t)) {
      seen.add(t);
      ts.push(t);
    }
  }
  broadcastTensors(dist, ts, root);
}

interface StateLike {
  stateDict(): OptimizerStateDict;
  loadStateDict(sd: OptimizerStateDict): void;
}

/** The optimizer state of rank `root` (hyperparameters, steps, moment buffers) on every rank; `device`: the parameters'. */
export function broadcastOptimizer(dist: Dist, opt: StateLike, root = 0, device: Device = dist.device): void {
  type Meta = { kind: string; groups: OptimizerStateDict["groups"]; state: [number, number, [string, number[], DType][]][] };
  const mine = dist.rank === root ? opt.stateDict() : null;
  const meta = dist.broadcastObject<Meta>(
    mine ? { kind: mine.kind, groups: mine.groups, state: [...mine.state].map(([i, s]) => [i, s.step, [...s.buffers].map(([n, b]) => [n, b.shape, b.dtype])]) } : undefined,
    root,
  );
  if (mine) {
    broadcastTensors(dist, [...mine.state.values()].flatMap((s) => [...s.buffers.values()]), root);
    return;
  }
  const state = new Map<number, ParamState>();
  for (const [i, step, bufs] of meta.state) state.set(i, { step, buffers: new Map(bufs.map(([n, shape, dtype]) => [n, empty(shape, { dtype, device }).keep()])) });
  try {
    broadcastTensors(dist, [...state.values()].flatMap((s) => [...s.buffers.values()]), root);
    opt.loadStateDict({ kind: meta.kind, groups: meta.groups, state });
  } finally {
    for (const s of state.values()) for (const b of s.buffers.values()) b.dispose();
  }
}

/**
 * Average the gradients of `params` over the ranks (the "after" mode, also usable on its own).
 * A parameter with a gradient on some rank but not on another gets zeros there first; one without a
 * gradient on every rank keeps none.
 */
export function allReduceGradients(dist: Dist, params: Tensor[], capBytes = 25 * MB): void {
  if (params.length === 0) return;
  tidy(() =>
    noGrad(() => {
      const u = toDevice(tensor(params.map((p) => (p.grad === null ? 0 : 1)), { dtype: "int32" }), dist.device);
      dist.allReduce(u, "sum");
      const used = u.toArray();
      const grads: Tensor[] = [];
      params.forEach((p, i) => {
        if (used[i] === 0) return;
        if (p.grad === null) p.grad = zerosLike(p); // the parameter holds its own reference
        grads.push(p.grad!);
      });
      coalesced(grads, capBytes, (flats) => {
        dist.allReduce(flats, "sum");
        for (const f of flats) f.div_(dist.world);
      });
    }),
  );
}

/**
 * Gradient averaging for one set of trainable parameters (a training stage). Use
 * `backward(loss)` instead of `loss.backward()` for every micro-batch, then `finish()` before the
 * optimizer step; all ranks must do the same number of backward passes.
 */
export class DataParallel {
  readonly mode: "overlap" | "after";
  private reducer: NativeReducer | null = null;
  private readonly capBytes: number;

  constructor(
    readonly dist: Dist,
    readonly params: [string, Tensor][],
    o: DDPOptions = {},
  ) {
    this.mode = o.gradSync ?? "overlap";
    this.capBytes = (o.bucketCapMB ?? 25) * MB;
    const Reducer = (native as unknown as { NativeReducer?: ReducerCtor }).NativeReducer;
    if (this.mode === "overlap" && params.length > 0) {
      if (!Reducer) throw new Error("this vlpkit addon has no c10d Reducer: rebuild it (`make setup`) or use gradSync \"after\"");
      const ts = params.map(([, p]) => p);
      const { buckets, limits } = assignBuckets(ts, this.capBytes, (o.firstBucketMB ?? 1) * MB);
      const group = dist.nativeGroup;
      try {
        this.reducer = new Reducer(group, ts.map((p) => p.native), buckets, limits, params.map(([n]) => n), true);
      } catch (e) {
        throw dist.failure("creating the DDP reducer", e);
      }
    }
  }

  /** Backpropagate `loss`; in "overlap" mode the gradients arrive averaged over the ranks. */
  backward(loss: Tensor): void {
    if (this.reducer) {
      try {
        this.reducer.prepareForBackward([loss.native]);
        loss.backward();
      } catch (e) {
        throw this.dist.failure("backward with gradient all-reduce", e);
      }
    } else {
      loss.backward();
    }
  }

  /** After the last micro-batch of a step: in "after" mode, average the accumulated gradients. */
  finish(): void {
    if (this.mode === "after") allReduceGradients(this.dist, this.params.map(([, p]) => p), this.capBytes);
  }

  dispose(): void {
    this.reducer?.dispose();
    this.reducer = null;
  }
}

/**
 * Metrics of every rank averaged (a key missing on some ranks is averaged over those that have it);
 * every rank gets the same result.
 */
export function reduceMetrics(dist: Dist, m: Record<string, number>): Record<string, number> {
  const all = dist.allGatherObject(m);
  const sum: Record<string, number> = {};
  const count: Record<string, number> = {};
  for (const r of all) {
    for (const [k, v] of Object.entries(r)) {
      sum[k] = (sum[k] ?? 0) + (v ?? NaN); // JSON turns NaN/Infinity into null: keep them non-finite
      count[k] = (count[k] ?? 0) + 1;
    }
  }
  return Object.fromEntries(Object.keys(sum).map((k) => [k, sum[k] / count[k]]));
}
