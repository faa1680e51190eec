// Mixed precision through libtorch's own autocast (at::autocast, what torch.autocast sets): inside
// autocast("bfloat16", fn), ops on the autocast lists run in the lower precision (linear, matmul,
// conv, bmm, ...) while precision-sensitive ones (softmax, layer_norm, losses, ...) run in float32,
// exactly as in PyTorch. Parameters stay float32 (autocast casts them per op and caches the casts
// of leaf weights until the outermost scope exits), so gradients, optimizer state and checkpoints
// stay float32.
//
// The state is thread-local in libtorch: it applies to ops run on the thread that entered the scope
// (vlpkit runs ops on the JS main thread; loader workers do not compute).
import { native } from "./native.ts";
import { DTYPE_CODE, dtypeFromCode, deviceType, precisionDtype, type DType, type Precision, type AutocastDType, type AutocastDevice } from "./dtype.ts";
export { precisionDtype, PRECISIONS, type Precision, type AutocastDType, type AutocastDevice } from "./dtype.ts";

function addon() {
  const { autocastState, setAutocast, autocastIncrementNesting, autocastDecrementNesting } = native;
  if (!autocastState || !setAutocast || !autocastIncrementNesting || !autocastDecrementNesting) {
    throw new Error("autocast: the native addon predates autocast support; rebuild it (`make setup` or `npm run build:native`)");
  }
  return { autocastState, setAutocast, autocastIncrementNesting, autocastDecrementNesting };
}

/** This thread's autocast state for a device. */
export function autocastState(device: AutocastDevice = "cpu"): { enabled: boolean; dtype: DType } {
  const [enabled, code] = addon().autocastState(device);
  return { enabled, dtype: dtypeFromCode(code) };
}

interface Saved { device: AutocastDevice; enabled: boolean; code: number; token: object }
const open: Saved[] = []; // this thread's scopes, innermost last

/** Whether an autocast scope (enabled or not) is open on this thread (cheap: no native call). */
export function autocastOpen(): boolean {
  return open.length > 0;
}

function enter(dtype: AutocastDType | null, device: string): Saved {
  const a = addon();
  const dev = deviceType(device);
  if (dtype !== null && dtype !== "bfloat16" && dtype !== "float16") throw new Error(`autocast: dtype must be "bfloat16" or "float16" (or null to disable), got ${JSON.stringify(dtype)}`);
  if (dtype === "float16" && dev !== "cuda") throw new Error(`autocast: float16 autocast is CUDA-only; on the CPU use "bfloat16"`);
  const [enabled, code] = a.autocastState(dev);
  const saved: Saved = { device: dev, enabled, code, token: {} };
  a.setAutocast(dev, dtype !== null, dtype !== null ? DTYPE_CODE[dtype] : code);
  a.autocastIncrementNesting();
  open.push(saved);
  return saved;
}

function exit(saved: Saved): boolean {
  const a = addon();
  const top = open[open.length - 1] === saved;
  const i = open.lastIndexOf(saved);
  if (i >= 0) open.splice(i, 1);
  a.autocastDecrementNesting(); // clears the cast cache when the outermost scope exits
  a.setAutocast(saved.device, saved.enabled, saved.code);
  return top;
}

/**
 * Runs fn with autocast to `dtype` on `device` ("cpu" by default; null disables autocast inside,
 * like torch.autocast(enabled=False)). Nests; the previous state comes back when fn returns or throws.
 * Tensors created inside keep their dtypes afterwards (a bf16 activation stays bf16).
 */
export function autocast<T>(dtype: AutocastDType | null, fn: () => T, device: string = "cpu"): T {
  const saved = enter(dtype, device);
  let result: T;
  try {
    result = fn();
  } finally {
    exit(saved);
  }
  if (result instanceof Promise) throw new Error("autocast(): fn returned a Promise; use autocastAsync for async work");
  return result;
}

/**
 * autocast for async functions. The state is the thread's, not the promise chain's: any other work
 * on this thread between fn's awaits also runs under it, so only use it when nothing else computes
 * concurrently. Interleaved async scopes are detected when they exit (state restored, then an error).
 */
export async function autocastAsync<T>(dtype: AutocastDType | null, fn: () => Promise<T>, device: string = "cpu"): Promise<T> {
  const saved = enter(dtype, device);
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    exit(saved);
    throw e;
  }
  if (!exit(saved)) throw new Error("autocastAsync(): scopes were interleaved (another autocast scope was entered and is still open)");
  return result;
}

/** Runs fn under the autocast of a training precision (fp32: plain float32). */
export function withPrecision<T>(precision: Precision | undefined, fn: () => T, device: string = "cpu"): T {
  const dtype = precisionDtype(precision ?? "fp32", device);
  return dtype === null ? fn() : autocast(dtype, fn, device);
}

/** Async withPrecision. */
export function withPrecisionAsync<T>(precision: Precision | undefined, fn: () => Promise<T>, device: string = "cpu"): Promise<T> {
  const dtype = precisionDtype(precision ?? "fp32", device);
  return dtype === null ? fn() : autocastAsync(dtype, fn, device);
}
