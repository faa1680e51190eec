/**
 * The engine-independent tensor representation used by every serializer in
 * this folder: a dtype, a shape and the C-contiguous little-endian bytes.
 */

export type DType =
  | "float32"
  | "float64"
  | "float16"
  | "bfloat16"
  | "int64"
  | "int32"
  | "int16"
  | "int8"
  | "uint8"
  | "bool";

export interface RawTensor {
  dtype: DType;
  shape: number[];
  /** little-endian, C-contiguous bytes */
  data: Uint8Array;
}

export const DTYPES: readonly DType[] = [
  "float32",
  "float64",
  "float16",
  "bfloat16",
  "int64",
  "int32",
  "int16",
  "int8",
  "uint8",
  "bool",
];

const ELEMENT_SIZE: Record<DType, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

export function isDType(x: unknown): x is DType {
  return typeof x === "string" && Object.prototype.hasOwnProperty.call(ELEMENT_SIZE, x);
}

/** Bytes per element of `dtype`. */
export function elementSize(dtype: DType): number {
  const size = ELEMENT_SIZE[dtype];
  if (size === undefined) throw new Error(`unknown dtype ${JSON.stringify(dtype)}`);
  return size;
}

/**
 * Number of elements of `shape` (1 for a scalar, shape []). Throws if a
 * dimension is not a non-negative safe integer or the product overflows.
 */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new Error(`invalid shape [${shape.join(", ")}]: dimension ${d} is not a non-negative integer`);
    }
    n *= d;
    if (!Number.isSafeInteger(n)) throw new Error(`invalid shape [${shape.join(", ")}]: element count overflows`);
  }
  return n;
}

/** Expected byte length of a tensor of this dtype and shape. */
export function byteLength(dtype: DType, shape: readonly number[]): number {
  const n = numel(shape) * elementSize(dtype);
  if (!Number.isSafeInteger(n)) throw new Error(`invalid shape [${shape.join(", ")}]: byte length overflows`);
  return n;
}

/** True if `x` looks like a RawTensor (used to find tensor leaves in nested values). */
export function isRawTensor(x: unknown): x is RawTensor {
  if (typeof x !== "object" || x === null) return false;
  const t = x as Partial<RawTensor>;
  return isDType(t.dtype) && Array.isArray(t.shape) && t.data instanceof Uint8Array;
}

/**
 * Throws (naming `where`) unless `t` is a well-formed RawTensor whose byte
 * length matches its dtype and shape.
 */
export function checkRawTensor(t: RawTensor, where: string): void {
  if (!isRawTensor(t)) throw new Error(`${where}: not a RawTensor {dtype, shape, data: Uint8Array}`);
  let expected: number;
  try {
    expected = byteLength(t.dtype, t.shape);
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`);
  }
  if (t.data.byteLength !== expected) {
    throw new Error(
      `${where}: ${t.dtype} tensor of shape [${t.shape.join(", ")}] needs ${expected} bytes but data has ${t.data.byteLength}`,
    );
  }
}
