/**
 * RandAugment on raw RGB buffers (Cubuk et al. 2020; as used by ViLT/VLMo fine-tuning):
 * apply N ops drawn uniformly from the list below, each at magnitude M in [0, 10]
 * (10 = strongest), with a random sign for signed ops. Deterministic given the seed.
 */
import { Rng } from "../engine/rng.ts";
import { cropResize, type RgbImage, type CropBox } from "./image.ts";

export const AUG_OPS = [
  "identity", "autocontrast", "equalize", "brightness", "contrast", "sharpness",
  "posterize", "solarize", "color", "translate", "shear", "rotate",
] as const;
export type AugOp = (typeof AUG_OPS)[number];

export const FILL = 128;

const clampByte = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

function mapPixels(img: RgbImage, f: (v: number, c: number, p: number) => number): RgbImage {
  const out = new Uint8Array(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = clampByte(f(img.data[i], i % 3, (i / 3) | 0));
  return { data: out, width: img.width, height: img.height };
}

/** ITU-R 601 luma per pixel (PIL's "L" conversion). */
function grayPlane(img: RgbImage): Float64Array {
  const n = img.width * img.height;
  const g = new Float64Array(n);
  const d = img.data;
  for (let p = 0; p < n; p++) g[p] = (d[p * 3] * 299 + d[p * 3 + 1] * 587 + d[p * 3 + 2] * 114) / 1000;
  return g;
}

/** out = degenerate + factor * (img - degenerate), PIL ImageEnhance style. */
function blend(img: RgbImage, degenerate: (c: number, p: number) => number, factor: number): RgbImage {
  return mapPixels(img, (v, c, p) => {
    const d = degenerate(c, p);
    return d + factor * (v - d);
  });
}

function autocontrast(img: RgbImage): RgbImage {
  const lo = [255, 255, 255];
  const hi = [0, 0, 0];
  img.data.forEach((v, i) => {
    const c = i % 3;
    if (v < lo[c]) lo[c] = v;
    if (v > hi[c]) hi[c] = v;
  });
  return mapPixels(img, (v, c) => (hi[c] > lo[c] ? ((v - lo[c]) * 255) / (hi[c] - lo[c]) : v));
}

/** Per-channel histogram equalisation (PIL ImageOps.equalize's lookup table). */
function equalize(img: RgbImage): RgbImage {
  const luts = [0, 1, 2].map((c) => {
    const hist = new Array(256).fill(0);
    for (let i = c; i < img.data.length; i += 3) hist[img.data[i]]++;
    const nonzero = hist.filter((h) => h > 0);
    const step = Math.floor((nonzero.reduce((a, b) => a + b, 0) - nonzero[nonzero.length - 1]) / 255);
    if (step === 0) return hist.map((_, v) => v);
    let n = Math.floor(step / 2);
    return hist.map((h) => {
      const out = Math.min(255, Math.floor(n / step));
      n += h;
      return out;
    });
  });
  return mapPixels(img, (v, c) => luts[c][v]);
}

/** PIL's SMOOTH kernel (1 1 1 / 1 5 1 / 1 1 1) / 13 on the interior, borders kept. */
function smoothed(img: RgbImage): Uint8Array {
  const { width: W, height: H, data } = img;
  const out = data.slice();
  for (let y = 1; y < H - 1; y++) {
    for (let x = 1; x < W - 1; x++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) s += data[((y + dy) * W + x + dx) * 3 + c];
        s += 4 * data[(y * W + x) * 3 + c];
        out[(y * W + x) * 3 + c] = clampByte(s / 13);
      }
    }
  }
  return out;
}

/**
 * Inverse-mapped affine warp with bilinear sampling: output pixel (x, y) (centres) reads the
 * input at (a*x + b*y + c, d*x + e*y + f); outside the image reads FILL.
 */
export function affine(img: RgbImage, [a, b, c, d, e, f]: number[]): RgbImage {
  const { width: W, height: H, data } = img;
  const out = new Uint8Array(data.length);
  const at = (x: number, y: number, ch: number): number => (x < 0 || y < 0 || x >= W || y >= H ? FILL : data[(y * W + x) * 3 + ch]);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const sx = a * (x + 0.5) + b * (y + 0.5) + c - 0.5;
      const sy = d * (x + 0.5) + e * (y + 0.5) + f - 0.5;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      for (let ch = 0; ch < 3; ch++) {
        const top = at(x0, y0, ch) * (1 - fx) + at(x0 + 1, y0, ch) * fx;
        const bottom = at(x0, y0 + 1, ch) * (1 - fx) + at(x0 + 1, y0 + 1, ch) * fx;
        out[(y * W + x) * 3 + ch] = clampByte(top * (1 - fy) + bottom * fy);
      }
    }
  }
  return { data: out, width: W, height: H };
}

/** Apply one op at magnitude m in [0, 10]; `rng` picks signs and axes. */
export function applyOp(img: RgbImage, op: AugOp, m: number, rng: Rng, translateMax = 0.45): RgbImage {
  const level = Math.max(0, Math.min(10, m)) / 10;
  const sign = rng.chance(0.5) ? -1 : 1;
  const factor = 1 + sign * 0.9 * level;
  const cx = img.width / 2;
  const cy = img.height / 2;
  switch (op) {
    case "identity": return { data: img.data.slice(), width: img.width, height: img.height };
    case "autocontrast": return autocontrast(img);
    case "equalize": return equalize(img);
    case "brightness": return blend(img, () => 0, factor);
    case "contrast": {
      const g = grayPlane(img);
      const mean = Math.round(g.reduce((s, v) => s + v, 0) / g.length);
      return blend(img, () => mean, factor);
    }
    case "color": {
      const g = grayPlane(img);
      return blend(img, (_, p) => g[p], factor);
    }
    case "sharpness": {
      const s = smoothed(img);
      return blend(img, (c, p) => s[p * 3 + c], factor);
    }
    case "posterize": {
      const bits = 8 - Math.round(4 * level); // keep 8 .. 4 high bits
      const mask = (0xff << (8 - bits)) & 0xff;
      return mapPixels(img, (v) => v & mask);
    }
    case "solarize": {
      const threshold = 256 - Math.round(256 * level);
      return mapPixels(img, (v) => (v >= threshold ? 255 - v : v));
    }
    case "translate": {
      const horizontal = rng.chance(0.5);
      const t = sign * translateMax * level * (horizontal ? img.width : img.height);
      return affine(img, horizontal ? [1, 0, -t, 0, 1, 0] : [1, 0, 0, 0, 1, -t]);
    }
    case "shear": {
      const s = sign * 0.3 * level;
      return rng.chance(0.5) ? affine(img, [1, s, -s * cy, 0, 1, 0]) : affine(img, [1, 0, 0, s, 1, -s * cx]);
    }
    case "rotate": {
      const a = (sign * 30 * level * Math.PI) / 180;
      const cos = Math.cos(a);
      const sin = Math.sin(a);
      // Inverse rotation about the centre.
      return affine(img, [cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy]);
    }
  }
}

export interface RandAugmentOptions {
  /** Ops per image (default 2). */
  n?: number;
  /** Magnitude in [0, 10] (default 9). */
  m?: number;
  /** Seed, or a generator to draw from (one of them is required). */
  seed?: number;
  rng?: Rng;
  ops?: readonly AugOp[];
  /** Each drawn op is applied with this probability (default 1; ALBEF's RandomAugment, which VLMo uses, 0.5). */
  p?: number;
  /** Largest translation as a fraction of the side, reached at magnitude 10 (default 0.45). */
  translateMax?: number;
}

export function randAugment(img: RgbImage, opts: RandAugmentOptions): RgbImage {
  const rng = opts.rng ?? (opts.seed !== undefined ? new Rng(opts.seed >>> 0) : null);
  if (!rng) throw new Error("randAugment: give a seed or an rng");
  const ops = opts.ops ?? AUG_OPS;
  let out = img;
  for (let i = 0; i < (opts.n ?? 2); i++) {
    const op = rng.pick(ops);
    if (opts.p === undefined || rng.chance(opts.p)) out = applyOp(out, op, opts.m ?? 9, rng, opts.translateMax);
  }
  return out;
}

/**
 * torchvision's RandomResizedCrop box: an area fraction drawn from `scale` and an aspect ratio
 * log-uniform in `ratio`, 10 tries to fit it in the image; otherwise the whole image cut to the
 * nearest allowed ratio, centred.
 */
export function randomResizedCropBox(width: number, height: number, rng: Rng, scale: readonly [number, number] = [0.08, 1], ratio: readonly [number, number] = [3 / 4, 4 / 3]): CropBox {
  const area = width * height;
  const [lr0, lr1] = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let i = 0; i < 10; i++) {
    const target = area * rng.range(scale[0], scale[1]);
    const aspect = Math.exp(rng.range(lr0, lr1));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) return { left: rng.intIn(0, width - w), top: rng.intIn(0, height - h), width: w, height: h };
  }
  const r = width / height;
  const [w, h] = r < ratio[0] ? [width, Math.round(width / ratio[0])] : r > ratio[1] ? [Math.round(height * ratio[1]), height] : [width, height];
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

/** Mirror left-right. */
export function hflip(img: RgbImage): RgbImage {
  const { width: W, height: H, data } = img;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < 3; c++) out[(y * W + x) * 3 + c] = data[(y * W + W - 1 - x) * 3 + c];
  return { data: out, width: W, height: H };
}

/** A pre-training image augmentation: random resized crop, optional flip, then RandAugment. */
export interface PretrainAugment {
  /** RandomResizedCrop's area fraction range. */
  scale: [number, number];
  /** Mirror half of the images (breaks captions that say "left" or "right"). */
  flip: boolean;
  /** RandAugment: ops drawn, their magnitude (0-10), the chance each is applied, the op list and the largest translation (fraction of the side). */
  n: number;
  m: number;
  p: number;
  ops: readonly AugOp[];
  translateMax: number;
}

/**
 * VLMo's pre-training transform (`square_transform_randaug` of the official code, after ALBEF):
 * RandomResizedCrop to scale [0.5, 1], horizontal flip, RandomAugment(2, 7) over identity,
 * autocontrast, equalize, brightness, sharpness, shear x / y, translate x / y and rotate, each drawn op
 * applied with probability 0.5. "shear" and "translate" pick their axis at random, so each is listed
 * twice (the official list has an X and a Y entry). Translation reaches 10 px of a 224-px image at
 * magnitude 10, as ALBEF's does. Not bit-identical to PIL's ops (brightness and sharpness take a random
 * sign here, ALBEF's only brighten / sharpen).
 */
export const VLMO_PRETRAIN_AUGMENT: PretrainAugment = {
  scale: [0.5, 1], flip: true, n: 2, m: 7, p: 0.5, translateMax: 10 / 224,
  ops: ["identity", "autocontrast", "equalize", "brightness", "sharpness", "shear", "shear", "translate", "translate", "rotate"],
};

/** One training view of an image: crop + resize to `size`, flip, RandAugment, all drawn from `rng`. */
export async function augmentView(img: RgbImage, size: number, aug: PretrainAugment, rng: Rng): Promise<RgbImage> {
  let out = await cropResize(img, randomResizedCropBox(img.width, img.height, rng, aug.scale), size);
  if (aug.flip && rng.chance(0.5)) out = hflip(out);
  return randAugment(out, { rng, n: aug.n, m: aug.m, p: aug.p, ops: aug.ops, translateMax: aug.translateMax });
}
