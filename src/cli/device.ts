// The `--device cpu|cuda|cuda:N` flag of `vlp pretrain`, `finetune`, `eval`, `serve` and `index build`.
// Its form is checked without libtorch; whether the device exists is checked (loading the engine)
// before any model is built, with an error that names the flag.
import { parseDevice } from "../engine/device.ts";
import { PRECISIONS, precisionDtype, type AutocastDType, type Precision } from "../engine/dtype.ts";

export const DEVICE_OPTION = { device: { type: "string" as const } };

export const DEVICE_HELP = "  --device      cpu, cuda or cuda:N: where the model and every batch go (default: the recipe's train.device, else cpu)";

/** The flag's value checked for its form, or undefined when absent. */
export function deviceFlag(value: string | undefined): string | undefined {
  return value === undefined ? undefined : parseDevice(value, "--device");
}

/**
 * `device` if this build can use it; else throws naming where it came from: the flag
 * (`--device cuda: this libtorch build has no CUDA ...`) or the recipe key.
 */
export async function usableDevice(device: string, fromFlag: boolean, recipeKey = "recipe.train.device"): Promise<string> {
  const { checkDevice } = await import("../engine/placement.ts");
  checkDevice(device, fromFlag ? `--device ${device}` : `${recipeKey} "${device}"`);
  return device;
}

/** `--precision fp32|bf16|fp16` of `vlp eval` and `vlp index build`: autocast for their forward passes. */
export const PRECISION_OPTION = { precision: { type: "string" as const, default: "fp32" } };

/** The autocast dtype of `--precision` on `device` (null for fp32); an error naming the flag otherwise. */
export function precisionFlag(value: string | undefined, device: string): AutocastDType | null {
  const p = value ?? "fp32";
  if (!(PRECISIONS as readonly string[]).includes(p)) throw new Error(`--precision: expected ${PRECISIONS.join(", ")}, got "${p}"`);
  try {
    return precisionDtype(p as Precision, device);
  } catch (e) {
    throw new Error(`--precision ${p}: ${(e as Error).message}`);
  }
}
