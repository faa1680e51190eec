// Loads vlpkit's native addon (native/build/Release/vlpkit.node) and types what it exports.
// The addon is a thin layer over libtorch: tensor handles, a boxed call into the operator
// dispatcher, autograd, RNG/thread control and c10d. See native/src/*.cc.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { availableParallelism } from "node:os";
import { isMainThread } from "node:worker_threads";
import { configureBlas, type BlasConfig } from "./cpu.ts";

export interface NativeTensor {
  dispose(): void;
  readonly disposed: boolean;
}
export interface NativeGenerator { readonly __generator: never }

export interface Addon {
  NativeTensor: abstract new () => NativeTensor;
  NativeGenerator: new (seed: number) => NativeGenerator;
  fromBuffer(view: ArrayBufferView, shape: number[], dtype: number, device: string): NativeTensor;
  toBuffer(t: NativeTensor): ArrayBuffer;
  meta(t: NativeTensor): [number, number[], string, boolean];
  item(t: NativeTensor): number | boolean;
  liveTensors(): number;
  externalMemory(): number;
  sameStorage(a: NativeTensor, b: NativeTensor): boolean;
  opHandle(name: string, overload: string): number;
  opSchema(handle: number): string;
  call(handle: number, args: unknown[]): unknown;
  callVoid(handle: number, args: unknown[]): void;
  /** call/callVoid with the arguments spread after the handle (faster; absent from addons built before it). */
  invoke?: (handle: number, ...args: unknown[]) => unknown;
  invokeVoid?: (handle: number, ...args: unknown[]) => void;
  backward(roots: NativeTensor[], grads: NativeTensor[] | null, retainGraph: boolean, createGraph: boolean): void;
  grad(t: NativeTensor): NativeTensor | null;
  setGrad(t: NativeTensor, g: NativeTensor | null): void;
  setRequiresGrad(t: NativeTensor, on: boolean): void;
  isLeaf(t: NativeTensor): boolean;
  setData(t: NativeTensor, src: NativeTensor): void;
  setGradEnabled(on: boolean): void;
  isGradEnabled(): boolean;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  /** gen: a generator, or a device string for that device's default generator (CPU's when absent). */
  manualSeed(seed: number, gen?: NativeGenerator | string): void;
  getRngState(gen?: NativeGenerator | string): NativeTensor;
  setRngState(state: NativeTensor, gen?: NativeGenerator | string): void;
  buildInfo(): { torchVersion: string; cuda: boolean; cudaAvailable: boolean; cudaDeviceCount: number; parallelInfo: string };
  hasGloo: boolean;
  /** Autocast state of this thread for "cpu" or "cuda": [enabled, dtype code]. */
  autocastState?: (device: string) => [boolean, number];
  setAutocast?: (device: string, enabled: boolean, dtype: number) => void;
  autocastIncrementNesting?: () => number;
  /** Decrements the nesting level; at 0 the cache of casted weights is cleared. */
  autocastDecrementNesting?: () => number;
  /** openblas_get_corename() of the libblas in this process (null: not OpenBLAS). */
  blasCorename?: () => string | null;
  [key: string]: unknown;
}

const here = dirname(fileURLToPath(import.meta.url));
export const addonPath = process.env.VLPKIT_ADDON ?? join(here, "..", "..", "native", "build", "Release", "vlpkit.node");

// OpenMP's default is to spin-wait between parallel regions. With anything else running (a loader
// worker, another process) the spinning threads starve each other: a tiny model's step was measured
// 5x slower with 2 spinning threads than with 1. Passive waiting avoids that; it must be set before
// libgomp is loaded with the addon. An explicit OMP_WAIT_POLICY wins.
process.env.OMP_WAIT_POLICY ??= "PASSIVE";

// The right BLAS kernels on every CPU: OpenBLAS reads OPENBLAS_CORETYPE once, when libtorch loads
// it, so the decision (src/engine/cpu.ts) is made here, before the addon is required. Worker threads
// share the process's already-loaded library.
export const blasConfig: BlasConfig = isMainThread ? configureBlas(addonPath) : { source: "skipped", note: "worker thread" };

// How to (re)build the addon, in the repository or in an installed package (which ships native/src,
// native/binding.gyp and scripts/libtorch.mjs beside the addon it was packed with).
const packageRoot = join(here, "..", "..");
const rebuildHint = existsSync(join(packageRoot, "Makefile"))
  ? "build it with `make setup` (or `npm run build:native`; LIBTORCH=auto for the PyTorch on PATH, LIBTORCH=/path for another libtorch)"
  : `rebuild it against this machine's libtorch with \`npm run build:native\` in ${packageRoot} (e.g. \`npm explore vlpkit -- npm run build:native\`; LIBTORCH=auto for the PyTorch on PATH, LIBTORCH=/path for another libtorch), or point VLPKIT_ADDON at a built vlpkit.node`;

function load(): Addon {
  if (!existsSync(addonPath)) throw new Error(`vlpkit native addon not found at ${addonPath}: ${rebuildHint}`);
  let addon: Addon;
  try {
    addon = createRequire(import.meta.url)(addonPath) as Addon;
  } catch (e) {
    throw new Error(`vlpkit native addon ${addonPath} does not load (${(e as Error).message}): ${rebuildHint}`, { cause: e });
  }
  // libtorch starts with 1 thread on some machines; default to the cores we have.
  const threads = Number(process.env.VLP_NUM_THREADS ?? 0) || Math.max(1, availableParallelism());
  if (isMainThread) addon.setNumThreads(threads); // the thread pool is process-wide: only the main thread sets it
  return addon;
}

export const native: Addon = load();
