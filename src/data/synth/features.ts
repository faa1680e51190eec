/**
 * Region features computed from a region's pixels only (never from a label):
 * a 32-d hand-crafted part (per-channel 6-bin colour histograms, channel means and
 * standard deviations, an 8-bin gradient-orientation histogram weighted by magnitude)
 * and a fixed random projection of a 4x4 area-averaged crop. Identical pixel content
 * gives identical features.
 */
import { Rng } from "../../engine/rng.ts";

export const HAND_DIM = 32;
const GRID = 4;
const CROP_DIM = GRID * GRID * 3;
/** Fixed so that features of different worlds are comparable. */
const PROJECTION_SEED = 0x5eed_f00d;

const projections = new Map<string, Float32Array>();

/** A Gaussian matrix [rows, cols] / sqrt(cols) drawn from PROJECTION_SEED and `key`, cached. */
function gaussianMatrix(key: string, rows: number, cols: number): Float32Array {
  let m = projections.get(key);
  if (!m) {
    const rng = Rng.derive(PROJECTION_SEED, key);
    m = new Float32Array(rows * cols);
    const s = 1 / Math.sqrt(cols);
    for (let i = 0; i < m.length; i++) m[i] = rng.normal() * s;
    projections.set(key, m);
  }
  return m;
}

/** The crop projection [rows, cols], cached by shape. */
const projection = (rows: number, cols: number): Float32Array => gaussianMatrix(`${rows}x${cols}`, rows, cols);

/** Integer pixel rectangle [x0, y0, x1, y1) of a float box, clipped and at least 1x1. */
export function pixelRect(box: ArrayLike<number>, W: number, H: number): [number, number, number, number] {
  const x0 = Math.min(W - 1, Math.max(0, Math.floor(box[0])));
  const y0 = Math.min(H - 1, Math.max(0, Math.floor(box[1])));
  const x1 = Math.max(x0 + 1, Math.min(W, Math.ceil(box[2])));
  const y1 = Math.max(y0 + 1, Math.min(H, Math.ceil(box[3])));
  return [x0, y0, x1, y1];
}

const HIST_BIN = Uint8Array.from({ length: 256 }, (_, v) => Math.min(5, Math.floor((v * 6) / 256)));
const TAN_22 = Math.tan(Math.PI / 8);
const TAN_67 = Math.tan((3 * Math.PI) / 8);

/** Undirected gradient orientation bin (8 bins over [0, pi)) without atan2. */
function orientationBin(gx: number, gy: number): number {
  if (gy < 0 || (gy === 0 && gx < 0)) {
    gx = -gx;
    gy = -gy;
  }
  const ax = Math.abs(gx);
  const bin = gy < TAN_22 * ax ? 0 : gy < ax ? 1 : gy < TAN_67 * ax ? 2 : 3;
  return gx >= 0 ? bin : 7 - bin;
}

/** Luminance plane of an RGB image (for the gradient statistics). */
export function luminance(rgb: Uint8Array, W: number, H: number): Float32Array {
  const lum = new Float32Array(W * H);
  for (let p = 0; p < W * H; p++) lum[p] = 0.299 * rgb[p * 3] + 0.587 * rgb[p * 3 + 1] + 0.114 * rgb[p * 3 + 2];
  return lum;
}

/** Sampling stride keeping about `target` pixels of a region of `area` pixels. */
const strideFor = (area: number, target: number): number => Math.max(1, Math.floor(Math.sqrt(area / target)));

function handFeatures(rgb: Uint8Array, lum: Float32Array, W: number, rect: number[], out: Float32Array): void {
  const [x0, y0, x1, y1] = rect;
  const step = strideFor((x1 - x0) * (y1 - y0), 256);
  let s0 = 0, s1 = 0, s2 = 0, q0 = 0, q1 = 0, q2 = 0;
  let n = 0;
  let ng = 0;
  const orient = new Float64Array(8);
  for (let y = y0; y < y1; y += step) {
    for (let x = x0; x < x1; x += step) {
      const p = y * W + x;
      const r = rgb[p * 3];
      const g = rgb[p * 3 + 1];
      const b = rgb[p * 3 + 2];
      s0 += r; s1 += g; s2 += b;
      q0 += r * r; q1 += g * g; q2 += b * b;
      out[HIST_BIN[r]] += 1;
      out[6 + HIST_BIN[g]] += 1;
      out[12 + HIST_BIN[b]] += 1;
      n++;
      if (x > x0 && x < x1 - 1 && y > y0 && y < y1 - 1) {
        const gx = lum[p + 1] - lum[p - 1];
        const gy = lum[p + W] - lum[p - W];
        ng++;
        if (gx === 0 && gy === 0) continue;
        orient[orientationBin(gx, gy)] += Math.sqrt(gx * gx + gy * gy) / 255;
      }
    }
  }
  for (let i = 0; i < 18; i++) out[i] /= n;
  const sums = [s0, s1, s2];
  const sqs = [q0, q1, q2];
  for (let c = 0; c < 3; c++) {
    const mean = sums[c] / n;
    out[18 + c] = mean / 255;
    out[21 + c] = Math.sqrt(Math.max(0, sqs[c] / n - mean * mean)) / 128;
  }
  for (let i = 0; i < 8; i++) out[24 + i] = ng > 0 ? orient[i] / ng : 0;
}

/** 4x4x3 area average of the rectangle, scaled to [-1, 1]. */
function cropGrid(rgb: Uint8Array, W: number, rect: number[], out: Float32Array): void {
  const [x0, y0, x1, y1] = rect;
  const cw = x1 - x0;
  const ch = y1 - y0;
  for (let gy = 0; gy < GRID; gy++) {
    const ya = y0 + Math.floor((gy * ch) / GRID);
    const yb = Math.max(ya + 1, y0 + Math.floor(((gy + 1) * ch) / GRID));
    for (let gx = 0; gx < GRID; gx++) {
      const xa = x0 + Math.floor((gx * cw) / GRID);
      const xb = Math.max(xa + 1, x0 + Math.floor(((gx + 1) * cw) / GRID));
      let r = 0, g = 0, b = 0, k = 0;
      const step = strideFor((xb - xa) * (yb - ya), 16);
      for (let y = ya; y < yb; y += step) {
        for (let x = xa; x < xb; x += step) {
          const o = (y * W + x) * 3;
          r += rgb[o];
          g += rgb[o + 1];
          b += rgb[o + 2];
          k++;
        }
      }
      const o = (gy * GRID + gx) * 3;
      out[o] = r / (k * 127.5) - 1;
      out[o + 1] = g / (k * 127.5) - 1;
      out[o + 2] = b / (k * 127.5) - 1;
    }
  }
}

function project(input: Float32Array, out: Float32Array, offset: number, rows: number): void {
  const m = projection(rows, input.length);
  const cols = input.length;
  for (let i = 0; i < rows; i++) {
    let s = 0;
    const row = i * cols;
    for (let j = 0; j < cols; j++) s += m[row + j] * input[j];
    out[offset + i] = s;
  }
}

/**
 * Features of the region `box` (pixels, x1 y1 x2 y2) of an RGB HWC image, written to
 * out[offset .. offset + dim). With dim > 32: [hand-crafted 32, projection of the crop];
 * otherwise a projection of both to dim. Large regions are sampled on a regular grid
 * (about 256 pixels). `lum` may pass a precomputed luminance(rgb) plane.
 */
export function regionFeatures(
  rgb: Uint8Array, W: number, H: number, box: ArrayLike<number>, dim: number,
  out: Float32Array = new Float32Array(dim), offset = 0, lum: Float32Array = luminance(rgb, W, H),
): Float32Array {
  const rect = pixelRect(box, W, H);
  const both = new Float32Array(HAND_DIM + CROP_DIM);
  const hand = both.subarray(0, HAND_DIM);
  const crop = both.subarray(HAND_DIM);
  handFeatures(rgb, lum, W, rect, hand);
  cropGrid(rgb, W, rect, crop);
  if (dim > HAND_DIM) {
    out.set(hand, offset);
    project(crop, out, offset + HAND_DIM, dim - HAND_DIM);
  } else {
    project(both, out, offset, dim);
  }
  return out;
}

/** Fixed codes of the detector's classes: row k of a Gaussian [rows, dim] / sqrt(dim), world independent. */
const codeBook = (kind: string, rows: number, dim: number): Float32Array => gaussianMatrix(`code:${kind}:${rows}x${dim}`, rows, dim);

/**
 * The part of a region's features that a trained detector's pooled features carry and pixel
 * statistics do not: a code of its own (noisy) class and attribute predictions, as the penultimate
 * layer of Faster R-CNN is trained to be linearly decodable into its 1,600 classes and 400
 * attributes. code = c_l * E_obj[label] + c_a * E_attr[attr] + noise, where c grows with the
 * detector's confidence and the noise (std 0.5 / sqrt(dim) per value) stands for everything else a
 * real feature holds. It encodes the detector's prediction, errors included, never the ground truth.
 */
export function detectorCode(
  label: number, labelConf: number, attr: number, attrConf: number, numLabels: number, numAttrs: number,
  dim: number, rng: Rng, out: Float32Array, offset: number,
): void {
  const eo = codeBook("obj", numLabels, dim);
  const ea = codeBook("attr", numAttrs, dim);
  const co = 0.5 + labelConf;
  const ca = 0.5 + attrConf;
  const noise = 0.5 / Math.sqrt(dim);
  for (let j = 0; j < dim; j++) {
    out[offset + j] = co * eo[label * dim + j] + ca * ea[attr * dim + j] + noise * rng.normal();
  }
}
