// Where tensors live: checking that a device can be used, moving host batches there (pinned memory and
// non-blocking copies on CUDA, as PyTorch's DataLoader(pin_memory=True) + .to(non_blocking=True)), and
// the device a module's parameters are on.
import { buildInfo, type Device, type Tensor } from "./tensor.ts";
import { deviceProblem, isCuda } from "./device.ts";
import type { Module } from "./nn.ts";

export { parseDevice, placeDevice, isCuda, backendForDevice } from "./device.ts";

/** Throws when `device` cannot be used here (e.g. "cuda" with a CPU-only libtorch); `where` names the flag or key. */
export function checkDevice(device: Device, where = "device"): void {
  const problem = deviceProblem(device, buildInfo(), where);
  if (problem) throw new Error(problem);
}

/**
 * `t` on `device`, for a tensor made on the host: itself on the CPU; on CUDA a pinned copy sent with a
 * non-blocking copy (the host tensors are freed at once: libtorch's pinned-memory cache keeps the
 * block until the copy has finished).
 */
export function toDevice(t: Tensor, device: Device): Tensor {
  if (!isCuda(device) || t.device === device) return t;
  const pinned = t.pinMemory();
  t.dispose();
  const out = pinned.to(device, { nonBlocking: true });
  pinned.dispose();
  return out;
}

/** The device of a module's parameters ("cpu" for a module without any). */
export function moduleDevice(m: Module): Device {
  const p = m.parameters()[0];
  return p ? p.device : "cpu";
}
