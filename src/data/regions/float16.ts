// IEEE 754 binary16 encoding and decoding, for `.regions` stores with float16 features.

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** binary16 bits for float32 bits `x`, round-to-nearest-even (overflow → inf, NaN stays NaN). */
function float32BitsToHalf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0); // inf / NaN
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal → ±0
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1) === 1)) h++;
    return sign | h; // may round up into the smallest normal, which is the right encoding
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // carry may reach inf: correct
  return sign | h;
}

/** IEEE 754 binary16 bits of `v` (rounded to float32 first), round-to-nearest-even. */
export function floatToHalf(v: number): number {
  f32Scratch[0] = v;
  return float32BitsToHalf(u32Scratch[0]);
}

/**
 * Encode values to binary16 into `out`. Returns the index of the first finite value
 * that overflowed to ±inf (|v| ≥ 65520), or -1.
 */
export function encodeHalfArray(src: ArrayLike<number>, out: Uint16Array): number {
  const n = src.length;
  let overflow = -1;
  if (src instanceof Float32Array) {
    const bits = new Uint32Array(src.buffer, src.byteOffset, n);
    for (let i = 0; i < n; i++) {
      const x = bits[i];
      const h = float32BitsToHalf(x);
      if (overflow < 0 && (h & 0x7fff) === 0x7c00 && (x & 0x7f800000) !== 0x7f800000) overflow = i;
      out[i] = h;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const h = floatToHalf(src[i]);
      if (overflow < 0 && (h & 0x7fff) === 0x7c00 && Number.isFinite(src[i])) overflow = i;
      out[i] = h;
    }
  }
  return overflow;
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m === 0 ? sign * Infinity : NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** float32 bit patterns of all 65536 halves (bit copies keep NaN payloads and are faster than float stores) */
let halfBits: Uint32Array | null = null;

/** Decode binary16 bits to float32 (table lookup). */
export function decodeHalfArray(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  if (out.length < src.length) throw new Error(`decodeHalfArray: output has ${out.length} slots for ${src.length} values`);
  if (!halfBits) {
    const f = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f[h] = halfToFloat(h);
    halfBits = new Uint32Array(f.buffer);
  }
  const table = halfBits;
  const bits = new Uint32Array(out.buffer, out.byteOffset, src.length);
  const n = src.length;
  for (let i = 0; i < n; i++) bits[i] = table[src[i]];
  return out;
}
