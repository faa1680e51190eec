// Processes that train together, on PyTorch's c10d (native/src/dist.cc): rendezvous through a
// TCPStore hosted by rank 0, a ProcessGroupGloo for CPU tensors (ProcessGroupNCCL for CUDA tensors,
// with a CUDA libtorch that has it), and the collectives all_reduce, broadcast, all_gather (plain and
// differentiable) and barrier, plus JSON-able objects over them (sent as tensors on the group's device).
//
// Configuration follows torchrun: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT; VLP_DIST_TIMEOUT (seconds, default 300) bounds every collective and, unless
// VLP_DIST_JOIN_TIMEOUT is set, the rendezvous;
// VLP_DIST_BACKEND picks gloo or nccl, GLOO_SOCKET_IFNAME the network interface gloo binds.
// Every collective blocks the calling thread; a peer that died fails it at once, a hung peer after
// the timeout, and either way the Error names the operation, this rank and the rendezvous address.
import { hostname } from "node:os";
import { createSocket } from "node:dgram";
import { isIP } from "node:net";
import { native, type NativeTensor } from "./native.ts";
import { Tensor, cat, tensor, noGrad, type Device } from "./tensor.ts";
import { tidy } from "./scope.ts";
import { toDevice } from "./placement.ts";
import { backendForDevice } from "./device.ts";

// ---- the addon's c10d objects -----------------------------------------------------------------

interface NativeStore {
  set(key: string, value: string | Uint8Array): void;
  get(key: string): Uint8Array;
  add(key: string, delta: number): number;
  check(keys: string[]): boolean;
  wait(keys: string[], timeoutMs: number): void;
  readonly port: number;
  dispose(): void;
}
interface NativeProcessGroup {
  allReduce(ts: NativeTensor[], op: ReduceOp): void;
  broadcast(ts: NativeTensor[], root: number): void;
  allGather(t: NativeTensor): NativeTensor;
  allGatherWithGrad(t: NativeTensor): NativeTensor;
  barrier(): void;
  readonly rank: number;
  readonly size: number;
  readonly backend: string;
  dispose(): void;
}
type StoreCtor = new (host: string, port: number, isServer: boolean, world: number, timeoutMs: number, waitWorkers: boolean) => NativeStore;
type GroupCtor = new (store: NativeStore, prefix: string, rank: number, world: number, backend: string, timeoutMs: number, device: { iface?: string; hostname?: string }) => NativeProcessGroup;

const addon = native as unknown as { NativeStore?: StoreCtor; NativeProcessGroup?: GroupCtor; hasGloo: boolean; hasNccl?: boolean };

export type ReduceOp = "sum" | "max" | "min" | "product";
export type Backend = "gloo" | "nccl";

/** Whether this addon was built with gloo (CPU collectives) and NCCL (CUDA collectives). */
export const distBackends = (): { gloo: boolean; nccl: boolean } => ({ gloo: !!addon.hasGloo && !!addon.NativeProcessGroup, nccl: !!addon.hasNccl });

// ---- configuration --------------------------------------------------------------------------------

export interface DistConfig {
  rank: number;
  world: number;
  /** Rank among the processes of this machine (LOCAL_RANK), for picking a GPU. */
  localRank?: number;
  localWorld?: number;
  masterAddr: string;
  masterPort: number;
  /** Bound on every collective: a peer silent for this long fails it (default 300 s). */
  timeoutMs?: number;
  /** Bound on the rendezvous (all ranks joining; default: timeoutMs). */
  joinTimeoutMs?: number;
  /** gloo or nccl; default: the one for `device`. */
  backend?: Backend;
  /** What the ranks train on: "cpu" (default) picks gloo, "cuda"/"cuda:N" NCCL (as torch.distributed does). */
  device?: string;
}

export const DEFAULT_TIMEOUT_MS = 300_000;

function intEnv(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}=${JSON.stringify(v)}: expected a non-negative integer`);
  return n;
}

/** The torchrun environment (RANK, WORLD_SIZE, ...) as a DistConfig, or null when WORLD_SIZE is unset or 1. */
export function distConfigFromEnv(env: NodeJS.ProcessEnv = process.env): DistConfig | null {
  const world = intEnv(env, "WORLD_SIZE");
  if (world === undefined || world <= 1) return null;
  const rank = intEnv(env, "RANK");
  if (rank === undefined) throw new Error(`WORLD_SIZE=${world} but RANK is not set`);
  if (rank >= world) throw new Error(`RANK=${rank} is not below WORLD_SIZE=${world}`);
  const port = intEnv(env, "MASTER_PORT");
  if (port === undefined || port < 1 || port > 65535) throw new Error(`WORLD_SIZE=${world}: MASTER_PORT must be set to rank 0's port (1-65535)`);
  const seconds = (name: string) => {
    const t = env[name] ? Number(env[name]) : undefined;
    if (t !== undefined && !(t > 0)) throw new Error(`${name}=${env[name]}: expected seconds > 0`);
    return t === undefined ? undefined : Math.round(t * 1000);
  };
  const backend = env.VLP_DIST_BACKEND;
  if (backend !== undefined && backend !== "gloo" && backend !== "nccl") throw new Error(`VLP_DIST_BACKEND=${backend}: expected gloo or nccl`);
  return {
    rank,
    world,
    localRank: intEnv(env, "LOCAL_RANK"),
    localWorld: intEnv(env, "LOCAL_WORLD_SIZE"),
    masterAddr: env.MASTER_ADDR || "127.0.0.1",
    masterPort: port,
    timeoutMs: seconds("VLP_DIST_TIMEOUT"),
    joinTimeoutMs: seconds("VLP_DIST_JOIN_TIMEOUT"),
    backend: backend as Backend | undefined,
  };
}

const isLoopback = (host: string) => host === "localhost" || host.startsWith("127.") || host === "::1";

/** This machine's address on the route to `host` (no packet is sent): what peers can reach us at. */
async function localAddressTowards(host: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = createSocket(isIP(host) === 6 ? "udp6" : "udp4");
    const done = (a?: string) => {
      try {
        s.close();
      } catch {
        /* already closed */
      }
      resolve(a);
    };
    s.on("error", () => done(undefined));
    s.connect(9, host, () => done(s.address().address));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0].replace(/^\[[^\]]*\]\s*/, "");

/** A failed collective or rendezvous; `peerLost` when a peer's connection closed. */
export class DistError extends Error {
  constructor(msg: string, readonly peerLost = false) {
    super(msg);
  }
}

// ---- the process group --------------------------------------------------------------------------

/**
 * This process's membership of a group of `world` processes. Create it with `initDistributed()`;
 * every rank must call the same collectives in the same order. Dispose at the end of the run.
 */
export class Dist {
  readonly rank: number;
  readonly world: number;
  readonly localRank: number;
  readonly localWorld: number;
  readonly backend: Backend;
  /** Where this group's own tensors go (objects, flags): the CPU for gloo, this rank's GPU (cuda:LOCAL_RANK) for NCCL. */
  readonly device: Device;
  readonly timeoutMs: number;
  /** tcp://host:port of the rendezvous, for messages. */
  readonly where: string;
  private disposed = false;

  /** @internal use initDistributed() */
  constructor(
    cfg: DistConfig,
    private readonly store: NativeStore,
    private readonly group: NativeProcessGroup,
    /** A second group for the backward all_reduce of allGatherWithGrad: it runs inside backward passes, beside the DDP buckets. */
    private readonly gradGroup: NativeProcessGroup,
  ) {
    this.rank = cfg.rank;
    this.world = cfg.world;
    this.localRank = cfg.localRank ?? cfg.rank;
    this.localWorld = cfg.localWorld ?? cfg.world;
    this.backend = cfg.backend ?? "gloo";
    this.device = this.backend === "nccl" ? `cuda:${this.localRank}` : "cpu";
    this.timeoutMs = cfg.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.where = `tcp://${cfg.masterAddr}:${cfg.masterPort}`;
  }

  /** @internal the main c10d group, for the DDP reducer (src/engine/ddp.ts) */
  get nativeGroup(): unknown {
    return this.group;
  }

  get isMain(): boolean {
    return this.rank === 0;
  }

  /** The Error for a failed operation: what, where, and the likely cause. */
  failure(op: string, e: unknown): DistError {
    const m = message(e);
    const lost = /closed by peer|reset by peer|connection reset|broken pipe|EOF|read error|connection refused|ECONNRESET|EPIPE/i.test(m);
    const hung = !lost && /time(d)? ?out/i.test(m);
    const cause = lost
      ? "a peer process exited or was killed"
      : hung
        ? `a peer did not answer within the ${this.timeoutMs / 1000} s timeout (hung, or far slower than this rank)`
        : "see the other ranks' output";
    return new DistError(`${op} failed on rank ${this.rank} of ${this.world} (group ${this.where}): ${m} -- ${cause}`, lost);
  }

  private run<T>(op: string, fn: () => T): T {
    if (this.disposed) throw new Error(`${op}: the process group was disposed`);
    try {
      return fn();
    } catch (e) {
      throw this.failure(op, e);
    }
  }

  /** Reduce each tensor in place over all ranks (contiguous tensors; "mean" = sum / world). */
  allReduce(ts: Tensor | Tensor[], op: ReduceOp | "mean" = "sum"): void {
    const list = Array.isArray(ts) ? ts : [ts];
    if (list.length === 0) return;
    this.run(`all_reduce(${op})`, () => this.group.allReduce(list.map((t) => t.native), op === "mean" ? "sum" : op));
    if (op === "mean") noGrad(() => list.forEach((t) => t.div_(this.world)));
  }

  /** Overwrite each tensor with root's values (contiguous tensors). */
  broadcast(ts: Tensor | Tensor[], root = 0): void {
    const list = Array.isArray(ts) ? ts : [ts];
    if (list.length === 0) return;
    this.run(`broadcast(from rank ${root})`, () => this.group.broadcast(list.map((t) => t.native), root));
  }

  /** Every rank's x (same shape everywhere) concatenated along dim 0 in rank order; no gradient. */
  allGather(x: Tensor): Tensor {
    return new Tensor(this.run("all_gather", () => this.group.allGather(x.native)));
  }

  /**
   * all_gather with a gradient: the backward pass sums the gradient over ranks and keeps this rank's
   * rows, so each rank's input gets d(Σ_ranks loss_r)/dx. With DDP averaging the parameter
   * gradients over ranks, the result equals one process computing the mean of the ranks' losses
   * (e.g. ITC over the global batch). Every rank must run the backward pass.
   */
  allGatherWithGrad(x: Tensor): Tensor {
    return new Tensor(this.run("all_gather (with grad)", () => this.gradGroup.allGatherWithGrad(x.native)));
  }

  /**
   * The global batch with this rank's rows first, then the other ranks' in rank order (the layout of
   * VLMo's and open_clip's gathered features: local example i is row i of the result).
   * grad: whether gradients flow back to every rank's x (allGatherWithGrad).
   */
  gatherLocalFirst(x: Tensor, o: { grad?: boolean } = {}): Tensor {
    if (this.world === 1) return x;
    return tidy(() => {
      const all = o.grad ? this.allGatherWithGrad(x) : this.allGather(x);
      const n = x.size(0);
      const parts = [all.narrow(0, this.rank * n, n)];
      if (this.rank > 0) parts.push(all.narrow(0, 0, this.rank * n));
      if (this.rank < this.world - 1) parts.push(all.narrow(0, (this.rank + 1) * n, (this.world - this.rank - 1) * n));
      return cat(parts, 0);
    });
  }

  barrier(): void {
    this.run("barrier", () => this.group.barrier());
  }

  /** root's value (any JSON-able value) on every rank; other ranks pass anything (ignored). */
  broadcastObject<T>(value: T | undefined, root = 0): T {
    return tidy(() => {
      const bytes = this.rank === root ? new TextEncoder().encode(JSON.stringify(value ?? null)) : new Uint8Array(0);
      const len = toDevice(tensor([bytes.length], { dtype: "int64" }), this.device);
      this.broadcast(len, root);
      const n = len.item();
      const buf = toDevice(this.rank === root ? tensor(bytes, { shape: [n] }) : tensor(new Uint8Array(n), { shape: [n] }), this.device);
      if (n > 0) this.broadcast(buf, root);
      return JSON.parse(new TextDecoder().decode(buf.data() as Uint8Array)) as T;
    });
  }

  /** Every rank's value (JSON-able), in rank order. */
  allGatherObject<T>(value: T): T[] {
    return tidy(() => {
      const bytes = new TextEncoder().encode(JSON.stringify(value ?? null));
      const lens = this.allGather(toDevice(tensor([bytes.length], { dtype: "int64" }), this.device)).toArray();
      const max = Math.max(...lens);
      const padded = new Uint8Array(max);
      padded.set(bytes);
      const all = this.allGather(toDevice(tensor(padded, { shape: [max] }), this.device)).data() as Uint8Array;
      return lens.map((n, r) => JSON.parse(new TextDecoder().decode(all.subarray(r * max, r * max + n))) as T);
    });
  }

  /** Throw naming the ranks that disagree when `value` (JSON-able) is not the same on every rank. */
  checkSame(what: string, value: unknown): void {
    const all = this.allGatherObject(value).map((v) => JSON.stringify(v));
    const bad = all.map((v, r) => [v, r] as const).filter(([v]) => v !== all[0]);
    if (bad.length) {
      const show = (s: string) => (s.length > 200 ? s.slice(0, 200) + "..." : s);
      throw new DistError(`${what} differs between ranks: rank 0 has ${show(all[0])}, ${bad.map(([v, r]) => `rank ${r} has ${show(v)}`).join(", ")}`);
    }
  }

  /** Leave the group (after a final barrier when `sync`). Safe to call twice. */
  dispose(o: { sync?: boolean } = {}): void {
    if (this.disposed) return;
    if (o.sync) this.barrier();
    this.disposed = true;
    this.gradGroup.dispose();
    this.group.dispose();
    this.store.dispose();
  }
}

/**
 * Join the group: rank 0 hosts the TCPStore at masterAddr:masterPort and waits (up to the timeout)
 * for the other ranks, naming any that did not join; then every rank connects to every other
 * (gloo: over the interface in GLOO_SOCKET_IFNAME, else the address on the route to MASTER_ADDR).
 */
export async function initDistributed(cfg: DistConfig): Promise<Dist> {
  const { rank, world, masterAddr, masterPort } = cfg;
  const timeoutMs = cfg.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const joinMs = cfg.joinTimeoutMs ?? timeoutMs;
  const backend = cfg.backend ?? backendForDevice(cfg.device ?? "cpu");
  const where = `tcp://${masterAddr}:${masterPort}`;
  const secs = `${joinMs / 1000} s`;
  const Store = addon.NativeStore;
  const Group = addon.NativeProcessGroup;
  if (!Store || !Group) throw new Error("this vlpkit addon has no c10d bindings: rebuild it (`make setup`)");
  if (backend === "gloo" && !addon.hasGloo) throw new Error("this vlpkit addon was built without gloo: install libgloo-dev and rebuild (`make setup`)");
  if (backend === "nccl" && !addon.hasNccl) throw new Error("this vlpkit addon was built without NCCL: build it against a CUDA libtorch with NCCL (LIBTORCH=auto make setup with a CUDA PyTorch on PATH, or LIBTORCH=/path; `node scripts/libtorch.mjs describe` says what it finds)");
  if (!(rank >= 0 && rank < world)) throw new Error(`rank ${rank} is not in [0, ${world})`);

  let store: NativeStore;
  try {
    store = new Store(masterAddr, masterPort, rank === 0, world, joinMs, false);
  } catch (e) {
    const m = message(e);
    if (rank === 0) throw new DistError(`rank 0 could not host the rendezvous at ${where}: ${m}${/in use|bind/i.test(m) ? " (is another run using this port? pick another MASTER_PORT)" : ""}`);
    throw new DistError(`rank ${rank} could not reach rank 0's rendezvous at ${where} within ${secs}: ${m} (is rank 0 running, and are MASTER_ADDR/MASTER_PORT right?)`);
  }
  const me = { host: hostname(), pid: process.pid, world };
  try {
    if (store.add(`vlp/claims/${rank}`, 1) > 1) throw new DistError(`rank ${rank} joined the rendezvous at ${where} twice: two processes were given RANK=${rank}`);
    store.set(`vlp/rank/${rank}`, JSON.stringify(me));
    if (rank === 0) {
      const keys = Array.from({ length: world }, (_, r) => `vlp/rank/${r}`);
      const deadline = Date.now() + joinMs;
      while (!store.check(keys)) {
        if (Date.now() > deadline) {
          const missing = keys.map((k, r) => (store.check([k]) ? -1 : r)).filter((r) => r >= 0);
          throw new DistError(`rank${missing.length > 1 ? "s" : ""} ${missing.join(", ")} did not join within ${secs} at ${where}`);
        }
        await sleep(20);
      }
      const worlds = keys.map((k) => (JSON.parse(new TextDecoder().decode(store.get(k))) as typeof me).world);
      if (worlds.some((w) => w !== world)) throw new DistError(`the ranks disagree on WORLD_SIZE: ${worlds.map((w, r) => `rank ${r}: ${w}`).join(", ")}`);
      store.set("vlp/ready", "1");
    } else {
      try {
        store.wait(["vlp/ready"], joinMs);
      } catch (e) {
        throw new DistError(`rank ${rank}: the group at ${where} did not form within ${secs} (another rank did not join): ${message(e)}`);
      }
    }
  } catch (e) {
    store.dispose();
    throw e;
  }

  const ifname = process.env.GLOO_SOCKET_IFNAME;
  const device = backend !== "gloo" ? {} : ifname ? { iface: ifname } : isLoopback(masterAddr) ? { hostname: "127.0.0.1" } : { hostname: (await localAddressTowards(masterAddr)) ?? hostname() };
  const groups: NativeProcessGroup[] = [];
  try {
    for (const prefix of ["vlp/pg/main/", "vlp/pg/grad/"]) groups.push(new Group(store, prefix, rank, world, backend, timeoutMs, device));
  } catch (e) {
    for (const g of groups) g.dispose();
    store.dispose();
    const hint = backend === "gloo" ? ` (gloo bound ${JSON.stringify(device)}; set GLOO_SOCKET_IFNAME to the interface that connects the machines)` : "";
    throw new DistError(`rank ${rank}: could not connect the ${backend} process group within ${timeoutMs / 1000} s at ${where}: ${message(e)}${hint}`);
  }
  return new Dist({ ...cfg, timeoutMs, backend }, store, groups[0], groups[1]);
}
