// Model weights in safetensors (and PyTorch .pth/.bin in), and crash-safe training checkpoints.
//
// saveStateDict writes every name of the state dict. Tied weights (one tensor under several names)
// are written once per name, like the entries of torch's state_dict() (the safetensors library's
// save_file refuses shared tensors and save_model keeps one name; we keep all of them, so a reader
// never needs to know about the ties, and loading copies the same values into the tied tensor).
//
// A checkpoint is a directory:
//   model.safetensors      the model's state dict
//   optimizer.safetensors  optimizer buffers as "state.<param index>.<buffer>"; groups and steps in metadata
//   rng.safetensors        RNG states (uint8): "default" (libtorch's CPU generator), "generator.<name>",
//                          and "cuda" (the training GPU's default generator: dropout) when training on CUDA
//   trainer.json           step, epoch, schedule, sampler position, recipe, ... and a manifest of the
//                          files: the size and the sha256 of each (checked on load: a checkpoint whose
//                          bytes changed after it was written is corrupt, and latestCheckpoint skips it)
// It is written into "<dir>.tmp-<pid>" (each file fsynced, trainer.json last), then swapped in by
// rename: an existing <dir> becomes <dir>.old, the new one takes its name, then <dir>.old is
// deleted. Whenever the process dies, <dir> or <dir>.old is complete; loadCheckpoint and
// latestCheckpoint fall back to <dir>.old. One process (rank 0) should write a given directory.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { createHash } from "node:crypto";
import { fromBytes, getRngState, noGrad, setRngState, type Device, type Generator, type Tensor } from "./tensor.ts";
import { isCuda } from "./device.ts";
import { Module } from "./nn.ts";
import type { OptimizerStateDict, ParamState } from "./optim.ts";
import { readSafetensors, writeSafetensors } from "./serialize/safetensors.ts";
import { loadPthStateDict, type LoadStateDictOptions } from "./serialize/pth.ts";
import { writeJsonAtomic } from "./serialize/atomic.ts";
import type { RawTensor } from "./serialize/raw.ts";

export function toRaw(t: Tensor): RawTensor {
  return { dtype: t.dtype, shape: t.shape, data: t.bytes() };
}
export function fromRaw(r: RawTensor): Tensor {
  return fromBytes(r.data, r.dtype, r.shape);
}

type TensorSource = Module | Map<string, Tensor>;
const entries = (src: TensorSource): Map<string, Tensor> => (src instanceof Module ? src.stateDict() : src);

/** Write a state dict (a module's, or name -> tensor) as safetensors, atomically; metadata gets format "pt". */
export function saveStateDict(path: string, src: TensorSource, metadata: Record<string, string> = {}): void {
  const raw = new Map<string, RawTensor>();
  for (const [name, t] of entries(src)) raw.set(name, toRaw(t));
  writeSafetensors(path, raw, { format: "pt", ...metadata });
}

function isSafetensors(path: string): boolean {
  if (path.endsWith(".safetensors")) return true;
  const fd = openSync(path, "r");
  try {
    const head = new Uint8Array(9);
    if (readSync(fd, head, 0, 9, 0) < 9) return false;
    // torch.save writes a zip ("PK\x03\x04") or a pickle stream (0x80 0x02 then a 10-byte magic
    // number); safetensors starts with a little-endian u64 header length (< 4 GB) and then "{".
    const zip = head[0] === 0x50 && head[1] === 0x4b && head[2] === 3 && head[3] === 4;
    return !zip && head[8] === 0x7b && head[4] === 0 && head[5] === 0 && head[6] === 0 && head[7] === 0;
  } finally {
    closeSync(fd);
  }
}

/** Read weights from .safetensors or a PyTorch checkpoint (.pth/.bin/.pt); the caller owns the tensors. */
export function loadStateDictFile(path: string, opts: LoadStateDictOptions = {}): Map<string, Tensor> {
  const raw = isSafetensors(path) ? readSafetensors(path).tensors : loadPthStateDict(path, opts);
  const out = new Map<string, Tensor>();
  for (const [name, r] of raw) out.set(name, fromRaw(r));
  return out;
}

/** Copy loaded tensors into a module (strict by default) or into a name -> tensor map of the same keys. */
function loadInto(target: TensorSource, loaded: Map<string, Tensor>, strict: boolean): void {
  if (target instanceof Module) {
    target.loadStateDict(loaded, { strict, where: "loadCheckpoint" });
    return;
  }
  const missing = [...target.keys()].filter((k) => !loaded.has(k));
  if (strict && missing.length) throw new Error(`loadCheckpoint: missing tensors ${missing.slice(0, 20).join(", ")}`);
  noGrad(() => {
    for (const [k, t] of target) {
      const s = loaded.get(k);
      if (s) t.copy_(s);
    }
  });
}

// ---- optimizer state in safetensors -----------------------------------------------------------------

const OPT_KEY = "vlpkit.optimizer";

function optimizerToRaw(sd: OptimizerStateDict): { tensors: Map<string, RawTensor>; metadata: Record<string, string> } {
  const tensors = new Map<string, RawTensor>();
  const steps: Record<string, number> = {};
  for (const [i, s] of sd.state) {
    steps[i] = s.step;
    for (const [name, b] of s.buffers) tensors.set(`state.${i}.${name}`, toRaw(b));
  }
  return { tensors, metadata: { [OPT_KEY]: JSON.stringify({ kind: sd.kind, groups: sd.groups, steps }) } };
}

/** Read an optimizer.safetensors back into a state dict (the caller frees its tensors after loading it). */
export function readOptimizerState(path: string): OptimizerStateDict {
  const { tensors, metadata } = readSafetensors(path);
  if (!metadata[OPT_KEY]) throw new Error(`${path}: no "${OPT_KEY}" metadata (not an optimizer state file)`);
  const meta = JSON.parse(metadata[OPT_KEY]) as { kind: string; groups: OptimizerStateDict["groups"]; steps: Record<string, number> };
  const state = new Map<number, ParamState>();
  for (const [i, step] of Object.entries(meta.steps)) state.set(Number(i), { step, buffers: new Map() });
  for (const [name, r] of tensors) {
    const m = /^state\.(\d+)\.(.+)$/.exec(name);
    const s = m && state.get(Number(m[1]));
    if (!m || !s) throw new Error(`${path}: unexpected tensor ${JSON.stringify(name)}`);
    s.buffers.set(m[2], fromRaw(r));
  }
  return { kind: meta.kind, groups: meta.groups, state };
}

// ---- checkpoint directories ------------------------------------------------------------------------

export interface TrainerState {
  /** Optimizer updates done. */
  step: number;
  epoch?: number;
  /** The schedule's config (schedules are pure functions of step). */
  schedule?: unknown;
  /** Data-sampler position (epoch seed, index in the permutation, ...). */
  sampler?: unknown;
  recipe?: unknown;
  [key: string]: unknown;
}

export interface CheckpointParts {
  model: TensorSource;
  optimizer?: { stateDict(): OptimizerStateDict; loadStateDict(sd: OptimizerStateDict): void };
  /** Named generators whose states are saved and restored (besides libtorch's default one). */
  generators?: Record<string, Generator>;
  /** The device trained on: on CUDA its default generator's state is saved and restored too (the CPU's always is). */
  device?: Device;
}

interface Manifest {
  format: "vlpkit-checkpoint";
  version: 1;
  files: Record<string, number>;
  /** sha256 (hex) of each file; absent in checkpoints written before it was added (sizes only are checked). */
  sha256?: Record<string, string>;
  trainer: TrainerState;
}

function sha256File(path: string): string {
  const h = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

const MANIFEST = "trainer.json";

function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } catch (e) {
    if (!["EINVAL", "ENOTSUP", "EPERM"].includes((e as NodeJS.ErrnoException).code ?? "")) throw e;
  } finally {
    closeSync(fd);
  }
}

/** Whether a process with this pid lives (a lock or temp file of a dead writer can go). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Remove "<dir>.tmp-<pid>" folders left by dead writers (and our own). */
function removeStaleTemps(dir: string): void {
  const parent = dirname(dir);
  const prefix = `${basename(dir)}.tmp-`;
  if (!existsSync(parent)) return;
  for (const name of readdirSync(parent)) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (pid === process.pid || !Number.isInteger(pid) || !pidAlive(pid)) rmSync(join(parent, name), { recursive: true, force: true });
  }
}

/**
 * Write model, optimizer, RNG states and trainer state as one checkpoint directory, atomically.
 * `onStage` is called after each file and each rename ("model.safetensors", ..., "trainer.json",
 * "synced", "moved-old", "installed", "done").
 */
export function saveCheckpoint(dir: string, trainer: TrainerState, parts: CheckpointParts, opts: { onStage?: (stage: string) => void } = {}): void {
  const stage = opts.onStage ?? (() => {});
  mkdirSync(dirname(dir), { recursive: true });
  removeStaleTemps(dir);
  const tmp = `${dir}.tmp-${process.pid}`;
  mkdirSync(tmp);
  const files: Record<string, number> = {};
  const sha256: Record<string, string> = {};
  const put = (name: string, tensors: Map<string, RawTensor>, metadata?: Record<string, string>) => {
    writeSafetensors(join(tmp, name), tensors, metadata);
    files[name] = statSync(join(tmp, name)).size;
    sha256[name] = sha256File(join(tmp, name));
    stage(name);
  };

  const model = new Map<string, RawTensor>();
  for (const [name, t] of entries(parts.model)) model.set(name, toRaw(t));
  put("model.safetensors", model, { format: "pt" });
  if (parts.optimizer) {
    const { tensors, metadata } = optimizerToRaw(parts.optimizer.stateDict());
    put("optimizer.safetensors", tensors, metadata);
  }
  const rng = new Map<string, RawTensor>();
  const saveRng = (key: string, device?: Device) => {
    const state = getRngState(device);
    rng.set(key, toRaw(state));
    state.dispose();
  };
  saveRng("default");
  if (parts.device && isCuda(parts.device)) saveRng("cuda", parts.device);
  for (const [name, g] of Object.entries(parts.generators ?? {})) {
    const s = g.getState();
    rng.set(`generator.${name}`, toRaw(s));
    s.dispose();
  }
  put("rng.safetensors", rng);
  const manifest: Manifest = { format: "vlpkit-checkpoint", version: 1, files, sha256, trainer };
  writeJsonAtomic(join(tmp, MANIFEST), manifest);
  stage(MANIFEST);
  fsyncDir(tmp);
  stage("synced");

  const old = `${dir}.old`;
  if (existsSync(dir)) {
    rmSync(old, { recursive: true, force: true });
    renameSync(dir, old);
    stage("moved-old");
  }
  renameSync(tmp, dir);
  fsyncDir(dirname(dir));
  stage("installed");
  rmSync(old, { recursive: true, force: true });
  fsyncDir(dirname(dir));
  stage("done");
}

function readManifest(dir: string): Manifest | null {
  try {
    const m = JSON.parse(readFileSync(join(dir, MANIFEST), "utf8")) as Manifest;
    if (m.format !== "vlpkit-checkpoint" || typeof m.files !== "object" || typeof m.trainer?.step !== "number") return null;
    for (const [name, size] of Object.entries(m.files)) if (statSync(join(dir, name)).size !== size) return null;
    return m;
  } catch {
    return null;
  }
}

/** Why the files of a complete checkpoint do not match their recorded sha256, or null when they do. */
export function checkpointCorruption(dir: string): string | null {
  const m = readManifest(dir);
  if (!m) return `${dir}: not a complete checkpoint`;
  for (const [name, want] of Object.entries(m.sha256 ?? {})) {
    const got = sha256File(join(dir, name));
    if (got !== want) return `${join(dir, name)}: sha256 ${got.slice(0, 12)}... does not match the manifest's ${want.slice(0, 12)}... (the file changed after it was written)`;
  }
  return null;
}

/** True if `dir` holds a complete checkpoint (its manifest parses and every file has its recorded size). */
export function isCompleteCheckpoint(dir: string): boolean {
  return readManifest(dir) !== null;
}

export interface ResolveOptions {
  /** Check each file's sha256 too (default true). */
  verify?: boolean;
  /** Told about a complete checkpoint skipped because its content is corrupt (default: a warning on stderr). */
  onCorrupt?: (dir: string, why: string) => void;
}

const warnCorrupt = (_dir: string, why: string) => console.warn(`warning: corrupt checkpoint skipped: ${why}`);

/** `dir` if complete (and intact), else `<dir>.old` if so (a save died mid-swap), else null. */
export function resolveCheckpoint(dir: string, o: ResolveOptions = {}): string | null {
  for (const at of [dir, `${dir}.old`]) {
    if (!isCompleteCheckpoint(at)) continue;
    const why = (o.verify ?? true) ? checkpointCorruption(at) : null;
    if (why === null) return at;
    (o.onCorrupt ?? warnCorrupt)(at, why);
  }
  return null;
}

/** Restore the model, the optimizer and (unless restoreRng is false) the RNG states; returns the trainer state. */
export function loadCheckpoint(dir: string, parts: CheckpointParts, opts: { restoreRng?: boolean; strict?: boolean } = {}): TrainerState {
  let corrupt = "";
  const at = resolveCheckpoint(dir, { onCorrupt: (_d, why) => (corrupt = `; ${why}`) });
  if (at === null) throw new Error(`loadCheckpoint: no complete checkpoint at ${dir}${corrupt}`);
  const manifest = readManifest(at)!;
  const weights = loadStateDictFile(join(at, "model.safetensors"));
  try {
    loadInto(parts.model, weights, opts.strict ?? true);
  } finally {
    for (const t of weights.values()) t.dispose();
  }
  if (parts.optimizer) {
    if (!manifest.files["optimizer.safetensors"]) throw new Error(`loadCheckpoint: ${at} has no optimizer state`);
    const sd = readOptimizerState(join(at, "optimizer.safetensors"));
    try {
      parts.optimizer.loadStateDict(sd);
    } finally {
      for (const s of sd.state.values()) for (const b of s.buffers.values()) b.dispose();
    }
  }
  if (opts.restoreRng ?? true) {
    const { tensors } = readSafetensors(join(at, "rng.safetensors"));
    for (const [name, g] of Object.entries(parts.generators ?? {})) {
      const r = tensors.get(`generator.${name}`);
      if (!r) throw new Error(`loadCheckpoint: ${at} has no state for generator ${JSON.stringify(name)}`);
      const s = fromRaw(r);
      g.setState(s);
      s.dispose();
    }
    const restore = (r: RawTensor, device?: Device) => {
      const s = fromRaw(r);
      setRngState(s, device);
      s.dispose();
    };
    restore(tensors.get("default")!);
    // a checkpoint written on the CPU has no CUDA state: the GPU's generator is left as it is
    const cuda = tensors.get("cuda");
    if (cuda && parts.device && isCuda(parts.device)) restore(cuda, parts.device);
  }
  return manifest.trainer;
}

/** The trainer state of a checkpoint without loading anything else. */
export function readTrainerState(dir: string): TrainerState {
  const at = resolveCheckpoint(dir, { verify: false });
  if (at === null) throw new Error(`readTrainerState: no complete checkpoint at ${dir}`);
  return readManifest(at)!.trainer;
}

export const checkpointDir = (runDir: string, step: number): string => join(runDir, `ckpt-${step}`);

function checkpointSteps(runDir: string): number[] {
  if (!existsSync(runDir)) return [];
  const steps = new Set<number>();
  for (const name of readdirSync(runDir)) {
    const m = /^ckpt-(\d+)(\.old)?$/.exec(name);
    if (m) steps.add(Number(m[1]));
  }
  return [...steps].sort((a, b) => b - a);
}

/**
 * The complete, intact `ckpt-<step>` (or, after a crash mid-swap, `ckpt-<step>.old`) with the highest
 * step, or null. A newer checkpoint whose files fail their sha256 is skipped with a warning.
 */
export function latestCheckpoint(runDir: string, o: ResolveOptions = {}): string | null {
  for (const step of checkpointSteps(runDir)) {
    const found = resolveCheckpoint(checkpointDir(runDir, step), o);
    if (found) return found;
  }
  return null;
}

/**
 * Tidy a run directory: remove checkpoint temp folders and atomic-write temp files of writers that
 * are gone, and `.old` copies
 * whose checkpoint is intact; with `keep` > 0, remove all but the `keep` newest checkpoints.
 * Returns the paths removed.
 */
export function pruneCheckpoints(runDir: string, keep = 0): string[] {
  if (!existsSync(runDir)) return [];
  const removed: string[] = [];
  const rm = (p: string) => {
    rmSync(p, { recursive: true, force: true });
    removed.push(p);
  };
  for (const name of readdirSync(runDir)) {
    // checkpoint temp folders, and the temp files of atomic writes (src/engine/serialize/atomic.ts)
    const m = /^ckpt-\d+\.tmp-(\d+)$/.exec(name) ?? /^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$/.exec(name);
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) rm(join(runDir, name));
  }
  const steps = checkpointSteps(runDir);
  steps.forEach((step, i) => {
    const dir = checkpointDir(runDir, step);
    if (keep > 0 && i >= keep) {
      for (const p of [dir, `${dir}.old`]) if (existsSync(p)) rm(p);
    } else if (existsSync(`${dir}.old`) && resolveCheckpoint(dir, { onCorrupt: () => {} }) === dir) {
      rm(`${dir}.old`);
    }
  });
  return removed;
}
