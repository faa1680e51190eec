// Batching: a seeded (and rank-sharded) sampler whose position survives resume, host batches of
// typed arrays built by a "batch builder", and loading ahead of the trainer in worker threads.
//
// A batch builder is a module exporting `createBuilder(args) => BatchBuilder`; it runs in the main
// thread (workers: 0) or in worker threads, which build batches while the trainer computes.
import { Worker } from "node:worker_threads";
import { tensor, type Tensor, type Device } from "../engine/index.ts";
import { toDevice } from "../engine/placement.ts";
import type { DType } from "../engine/dtype.ts";
import { Rng } from "../engine/rng.ts";

export interface HostArray {
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array;
  shape: number[];
  dtype: DType;
}

/**
 * A batch as a step receives it: tensors by name. Each builder exports its own interface of this
 * (RegionTextBatch, ImageTextBatch, TaskBatch, RetrievalBatch), which its steps take: the names,
 * dtypes and shapes are written once, where the builder makes them.
 */
export type TensorBatch = object;
/** The host arrays of a batch `B`: one HostArray per tensor, by the same names (an optional tensor's array optional). */
export type HostArrays<B extends TensorBatch> = { [K in keyof B]: HostArray };
/** The metadata of a batch: plain JSON-able extras (ids, strings), each builder's own interface. */
export type BatchMeta = object;

/** A batch on the host: named arrays plus plain JSON-able extras (ids, strings); it crosses from the worker threads as is. */
export interface HostBatch<B extends TensorBatch = Record<string, Tensor>, M extends BatchMeta = Record<string, unknown>> {
  arrays: HostArrays<B>;
  meta: M;
}
export interface BatchBuilder<B extends TensorBatch = Record<string, Tensor>, M extends BatchMeta = Record<string, unknown>> {
  /** Items in the dataset; a streamed builder's: in one epoch, over all ranks. */
  readonly length: number;
  /**
   * The batch of these items: positions in the sampler's order, or for a streamed builder their
   * positions in the epoch's stream, with the items themselves (`items`, what `stream` yielded).
   */
  build(indices: number[], step: number, items?: unknown[]): HostBatch<B, M> | Promise<HostBatch<B, M>>;
  /**
   * A streamed builder (a source read in order, never indexed: WebDataset shards) gives the items of
   * one epoch in its own seeded order, this rank's share, as plain data that crosses to the worker
   * threads (e.g. where a sample's bytes lie, not the bytes). The sequence must depend on
   * (epoch, seed, shuffle, rank, world) alone: the loader resumes at batch k of an epoch by
   * opening the epoch's stream again and skipping k batches of items. Called in the main thread only.
   */
  stream?(epoch: number, o: StreamOptions): Iterator<unknown>;
}
export interface StreamOptions {
  seed: number;
  shuffle: boolean;
  rank: number;
  world: number;
}
export interface BuilderSpec<B extends TensorBatch = Record<string, Tensor>, M extends BatchMeta = Record<string, unknown>> {
  /** Absolute file URL or path of the module exporting createBuilder. */
  module: string;
  args: unknown;
  /**
   * Never set: the batch and metadata types the module's builder makes, so that a spec carries them
   * to the step that consumes its batches (trainer.ts `Source`).
   */
  readonly batchType?: { batch: B; meta: M };
}

/**
 * Host arrays -> tensors on `device` (int32 label arrays are widened to int64 where dtype says so). On
 * CUDA each array goes through pinned memory with a non-blocking copy.
 */
export function toTensors<K extends string>(b: { arrays: Record<K, HostArray>; meta?: unknown }, device?: Device): Record<K, Tensor>;
export function toTensors<B extends TensorBatch>(b: { arrays: HostArrays<B>; meta?: unknown }, device?: Device): B;
export function toTensors<B extends TensorBatch>(b: { arrays: HostArrays<B>; meta?: unknown }, device: Device = "cpu"): B {
  const out: Record<string, Tensor> = {};
  for (const [k, a] of Object.entries(b.arrays as Record<string, HostArray>)) {
    const host = a.dtype === "bool" ? tensor(a.data as Uint8Array, { shape: a.shape }).bool() : tensor(a.data, { shape: a.shape, dtype: a.dtype });
    out[k] = toDevice(host, device);
  }
  return out as B;
}

/** Deterministic permutation of [0, n) for (seed, epoch), split into rank shards like DistributedSampler. */
export class Sampler {
  constructor(
    readonly n: number,
    readonly o: { seed: number; shuffle?: boolean; rank?: number; world?: number } = { seed: 0 },
  ) {
    if (n <= 0) throw new Error("Sampler: the dataset is empty");
  }
  order(epoch: number): number[] {
    const idx = Array.from({ length: this.n }, (_, i) => i);
    if (this.o.shuffle ?? true) {
      // Fisher-Yates (Rng.shuffle) with a generator seeded by (seed, epoch)
      new Rng((this.o.seed * 1_000_003 + epoch * 7919 + 17) | 0).shuffle(idx);
    }
    const world = this.o.world ?? 1;
    if (world === 1) return idx;
    const per = Math.ceil(this.n / world);
    const padded = idx.concat(idx.slice(0, per * world - this.n));
    return padded.filter((_, i) => i % world === (this.o.rank ?? 0));
  }
}

export interface LoaderPosition {
  epoch: number;
  /** Batches already consumed in this epoch. */
  batch: number;
}

/**
 * Yields batches of `batchSize` in the sampler's order, epoch after epoch, starting at a position
 * (for exact resume). With workers > 0, up to `prefetch` batches are built ahead in worker threads.
 */
/** A worker thread and the batches it owes (by request id). */
interface WorkerSlot {
  worker: Worker;
  /** The batches it owes: what it posts is a HostBatch of the spec's builder (the same module runs there). */
  waiting: Map<number, { resolve: (b: unknown) => void; reject: (e: Error) => void }>;
  /** Set once the worker has died: every batch it owed or is asked for fails with it. */
  failure?: Error;
}

export class Loader<B extends TensorBatch = Record<string, Tensor>, M extends BatchMeta = Record<string, unknown>> {
  private workers: WorkerSlot[] = [];
  private closing = false;
  private local?: BatchBuilder<B, M>;
  private pending = new Map<number, Promise<HostBatch<B, M>>>();
  private seq = 0;
  /** A streamed builder's open epoch: its iterator and how many items were taken from it. */
  private cursor?: { epoch: number; at: number; it: Iterator<unknown> };
  position: LoaderPosition = { epoch: 0, batch: 0 };

  private constructor(
    readonly spec: BuilderSpec<B, M>,
    readonly length: number,
    readonly o: { batchSize: number; seed: number; shuffle?: boolean; dropLast?: boolean; workers: number; prefetch: number; rank?: number; world?: number },
  ) {}

  static async create<B extends TensorBatch = Record<string, Tensor>, M extends BatchMeta = Record<string, unknown>>(spec: BuilderSpec<B, M>, o: { batchSize: number; seed: number; shuffle?: boolean; dropLast?: boolean; workers?: number; prefetch?: number; rank?: number; world?: number }): Promise<Loader<B, M>> {
    const mod = (await import(spec.module)) as { createBuilder(args: unknown): BatchBuilder<B, M> | Promise<BatchBuilder<B, M>> };
    const local = await mod.createBuilder(spec.args);
    const l = new Loader<B, M>(spec, local.length, { workers: o.workers ?? 0, prefetch: o.prefetch ?? 2, ...o });
    l.local = local;
    for (let i = 0; i < l.o.workers; i++) l.workers.push(l.spawn());
    return l;
  }

  private spawn(): WorkerSlot {
    const worker = new Worker(new URL("./loader_worker.mjs", import.meta.url), { workerData: this.spec });
    worker.unref();
    const slot: WorkerSlot = { worker, waiting: new Map() };
    worker.on("message", (m: { id: number; batch?: unknown; error?: string }) => {
      const p = slot.waiting.get(m.id);
      if (!p) return;
      slot.waiting.delete(m.id);
      if (m.error) p.reject(new Error(m.error));
      else p.resolve(m.batch!);
    });
    // A worker whose builder fails to start, or that throws outside build(), emits "error": with no
    // listener Node ends the whole process with the worker's stack trace. Its message (the builder's
    // errors name file and record) becomes the error of every batch the worker owes, one line.
    const fail = (why: string) => {
      slot.failure ??= new Error(`loader worker stopped: ${why}`);
      for (const p of slot.waiting.values()) p.reject(slot.failure);
      slot.waiting.clear();
    };
    worker.on("error", (e: Error) => fail(e.message));
    worker.on("exit", (code) => {
      if (!this.closing) fail(`it exited with code ${code}`);
    });
    return slot;
  }

  get sampler(): Sampler {
    return new Sampler(this.length, { seed: this.o.seed, shuffle: this.o.shuffle, rank: this.o.rank, world: this.o.world });
  }

  /** A streamed builder's items per epoch on this rank (every rank the same count: the remainder is dropped). */
  private get streamLength(): number {
    return Math.floor(this.length / (this.o.world ?? 1));
  }

  batchesPerEpoch(): number {
    const n = this.local?.stream ? this.streamLength : this.sampler.order(0).length;
    return this.o.dropLast ?? true ? Math.floor(n / this.o.batchSize) : Math.ceil(n / this.o.batchSize);
  }

  private indicesAt(pos: LoaderPosition, order: number[]): number[] {
    return order.slice(pos.batch * this.o.batchSize, (pos.batch + 1) * this.o.batchSize);
  }

  /**
   * The items of batch `pos` from a streamed builder: the epoch's stream continued where the last
   * batch ended, or opened again and fast-forwarded (resume, a seek, a new epoch).
   */
  private streamItems(pos: LoaderPosition): { indices: number[]; items: unknown[] } {
    const start = pos.batch * this.o.batchSize;
    const end = Math.min(start + this.o.batchSize, this.streamLength);
    let c = this.cursor;
    if (!c || c.epoch !== pos.epoch || c.at > start) {
      const it = this.local!.stream!(pos.epoch, { seed: this.o.seed, shuffle: this.o.shuffle ?? true, rank: this.o.rank ?? 0, world: this.o.world ?? 1 });
      c = this.cursor = { epoch: pos.epoch, at: 0, it };
    }
    const items: unknown[] = [];
    const indices: number[] = [];
    while (c.at < end) {
      const r = c.it.next();
      if (r.done) throw new Error(`Loader: the stream of epoch ${pos.epoch} ended after ${c.at} items, expected ${this.streamLength}`);
      if (c.at >= start) {
        items.push(r.value);
        indices.push(c.at);
      }
      c.at++;
    }
    return { indices, items };
  }

  private request(indices: number[], step: number, items?: unknown[]): Promise<HostBatch<B, M>> {
    if (this.workers.length === 0) return Promise.resolve(this.local!.build(indices, step, items));
    const slot = this.workers[this.seq++ % this.workers.length];
    if (slot.failure) return Promise.reject(slot.failure);
    const id = this.seq;
    return new Promise<HostBatch<B, M>>((resolve, reject) => {
      slot.waiting.set(id, { resolve: (b) => resolve(b as HostBatch<B, M>), reject });
      slot.worker.postMessage({ id, indices, step, items });
    });
  }

  /** The next batch; keeps `prefetch` batches in flight ahead of it. */
  async next(): Promise<HostBatch<B, M>> {
    const perEpoch = this.batchesPerEpoch();
    if (perEpoch === 0) throw new Error(`Loader: dataset of ${this.length} items is smaller than one batch of ${this.o.batchSize}`);
    const key = (p: LoaderPosition) => p.epoch * perEpoch + p.batch;
    const ahead = this.workers.length ? this.o.prefetch : 0;
    let p = { ...this.position };
    for (let k = 0; k <= ahead; k++) {
      const kk = key(p);
      // the builder's step seeds its random choices: distinct per rank (and unchanged with one process)
      if (!this.pending.has(kk)) {
        const step = kk * (this.o.world ?? 1) + (this.o.rank ?? 0);
        let batch: Promise<HostBatch<B, M>>;
        if (this.local?.stream) {
          try {
            const { indices, items } = this.streamItems(p);
            batch = this.request(indices, step, items);
          } catch (e) {
            batch = Promise.reject(e as Error);
          }
        } else {
          batch = this.request(this.indicesAt(p, this.sampler.order(p.epoch)), step);
        }
        // a batch built ahead may fail and never be asked for (the run ends first, or a seek drops it):
        // its error is reported when (and only when) the batch is consumed, never as an unhandled rejection
        batch.catch(() => {});
        this.pending.set(kk, batch);
      }
      p = p.batch + 1 >= perEpoch ? { epoch: p.epoch + 1, batch: 0 } : { epoch: p.epoch, batch: p.batch + 1 };
    }
    const k0 = key(this.position);
    const batch = await this.pending.get(k0)!;
    this.pending.delete(k0);
    this.position = this.position.batch + 1 >= perEpoch ? { epoch: this.position.epoch + 1, batch: 0 } : { epoch: this.position.epoch, batch: this.position.batch + 1 };
    return batch;
  }

  /** Jump to a position (resume); drops batches built ahead. */
  seek(pos: LoaderPosition): void {
    this.position = { ...pos };
    this.pending.clear();
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
    this.workers = [];
  }
}
