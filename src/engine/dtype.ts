// Tensor element types: names used in vlpkit, their c10::ScalarType codes and typed arrays.
export type DType = "float32" | "float64" | "float16" | "bfloat16" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";

export const DTYPE_CODE: Record<DType, number> = {
  uint8: 0, int8: 1, int16: 2, int32: 3, int64: 4, float16: 5, float32: 6, float64: 7, bool: 11, bfloat16: 15,
};
const CODE_DTYPE = new Map<number, DType>(Object.entries(DTYPE_CODE).map(([k, v]) => [v, k as DType]));

export function dtypeFromCode(code: number): DType {
  const d = CODE_DTYPE.get(code);
  if (!d) throw new Error(`unsupported libtorch scalar type code ${code}`);
  return d;
}

export const ELEMENT_SIZE: Record<DType, number> = {
  uint8: 1, int8: 1, int16: 2, int32: 4, int64: 8, float16: 2, float32: 4, float64: 8, bool: 1, bfloat16: 2,
};

export const isFloating = (d: DType): boolean => d === "float32" || d === "float64" || d === "float16" || d === "bfloat16";

export type TypedArray =
  | Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array | BigInt64Array | Uint16Array;

/** A typed array viewing `buf` as the given dtype (float16/bfloat16 as raw Uint16 bits, bool as Uint8). */
export function typedView(buf: ArrayBuffer, dtype: DType): TypedArray {
  switch (dtype) {
    case "float32": return new Float32Array(buf);
    case "float64": return new Float64Array(buf);
    case "int64": return new BigInt64Array(buf);
    case "int32": return new Int32Array(buf);
    case "int16": return new Int16Array(buf);
    case "int8": return new Int8Array(buf);
    case "uint8": case "bool": return new Uint8Array(buf);
    case "float16": case "bfloat16": return new Uint16Array(buf);
  }
}

/** The dtype a typed array holds by default. */
export function dtypeOfArray(a: ArrayBufferView): DType {
  if (a instanceof Float32Array) return "float32";
  if (a instanceof Float64Array) return "float64";
  if (a instanceof BigInt64Array) return "int64";
  if (a instanceof Int32Array) return "int32";
  if (a instanceof Int16Array) return "int16";
  if (a instanceof Int8Array) return "int8";
  if (a instanceof Uint8Array) return "uint8";
  throw new Error(`cannot infer a dtype from ${a.constructor.name}`);
}

// ---- training precision (src/engine/precision.ts runs it; these are pure, for recipe validation) ----
/** Training precision: float32 everywhere, or autocast to bfloat16 (CPU, CUDA) / float16 (CUDA only). */
export type Precision = "fp32" | "bf16" | "fp16";
export const PRECISIONS: readonly Precision[] = ["fp32", "bf16", "fp16"];
export type AutocastDType = "bfloat16" | "float16";
export type AutocastDevice = "cpu" | "cuda";
export const deviceType = (device: string): AutocastDevice => (device.startsWith("cuda") ? "cuda" : "cpu");

/** The autocast dtype of a precision on a device (null: float32, no autocast); throws for fp16 on the CPU. */
export function precisionDtype(precision: Precision, device = "cpu"): AutocastDType | null {
  switch (precision) {
    case "fp32":
      return null;
    case "bf16":
      return "bfloat16";
    case "fp16":
      if (deviceType(device) !== "cuda") {
        throw new Error(`precision "fp16" needs a CUDA device (float16 autocast is CUDA-only; on ${device} use "bf16")`);
      }
      return "float16";
    default:
      throw new Error(`unknown precision ${JSON.stringify(precision)} (expected "fp32", "bf16" or "fp16")`);
  }
}

