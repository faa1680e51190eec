// Detector-free region features for raw images: k×k grid cells with hand-made colour statistics.
import { normalizeBoxes, type RegionFeatures } from "./features.ts";

export interface GridRegions {
  numBoxes: number;
  boxes: Float32Array;
  normBoxes: Float32Array;
  objectsId: Int32Array;
  objectsConf: Float32Array;
  attrsId: Int32Array;
  attrsConf: Float32Array;
}

function cellEdges(k: number, size: number): number[] {
  return Array.from({ length: k + 1 }, (_, i) => Math.round((i * size) / k));
}

/**
 * k×k grid cells over a W×H image as pixel boxes (x1, y1, x2, y2), row-major,
 * cell edges rounded to whole pixels; no labels (ids -1, confidences 0).
 */
export function gridRegions(k: number, imgW: number, imgH: number): GridRegions {
  if (!Number.isInteger(k) || k <= 0) throw new Error(`gridRegions: k must be a positive integer, got ${k}`);
  if (!(imgW > 0 && imgH > 0)) throw new Error(`gridRegions: image size must be positive, got ${imgW}x${imgH}`);
  const xs = cellEdges(k, imgW);
  const ys = cellEdges(k, imgH);
  const n = k * k;
  const boxes = new Float32Array(4 * n);
  for (let r = 0; r < k; r++) {
    for (let c = 0; c < k; c++) {
      boxes.set([xs[c], ys[r], xs[c + 1], ys[r + 1]], 4 * (r * k + c));
    }
  }
  return {
    numBoxes: n, boxes, normBoxes: normalizeBoxes(boxes, imgW, imgH),
    objectsId: new Int32Array(n).fill(-1), objectsConf: new Float32Array(n),
    attrsId: new Int32Array(n).fill(-1), attrsConf: new Float32Array(n),
  };
}

/** Number of leading statistics in a grid-cell feature before the histograms. */
export const GRID_BASE_STATS = 14;

/**
 * Hand-made features for the k×k grid cells of an 8-bit image (`channels` 1, 3 or 4
 * interleaved; alpha ignored; grey is treated as R=G=B). Values are in [0, 1]
 * intensity units. For each cell, in this order:
 *   [0..2]   mean R, G, B          [3..5]  standard deviation R, G, B
 *   [6..8]   min R, G, B           [9..11] max R, G, B
 *   [12]     mean |horizontal luma difference|   [13] mean |vertical luma difference|
 *            (luma = 0.299 R + 0.587 G + 0.114 B, differences between neighbours in the cell)
 *   [14..]   R, G, B histograms with b = floor((dim - 14) / 3) equal-width bins each,
 *            as fractions of the cell's pixels (each channel's bins sum to 1)
 *   rest     zeros (dim - 14 not divisible by 3)
 * With dim < 14 the vector is the first dim statistics. Empty cells (k larger than
 * the image) are all zeros. Returns k*k*dim floats, cells row-major.
 */
export function gridCellFeatures(
  pixels: Uint8Array, width: number, height: number,
  opts: { k: number; dim: number; channels?: number },
): Float32Array {
  const { k, dim, channels = 3 } = opts;
  if (![1, 3, 4].includes(channels)) throw new Error(`gridCellFeatures: channels must be 1, 3 or 4, got ${channels}`);
  if (pixels.length !== width * height * channels) {
    throw new Error(`gridCellFeatures: ${pixels.length} bytes, expected ${width}x${height}x${channels} = ${width * height * channels}`);
  }
  if (!Number.isInteger(dim) || dim <= 0) throw new Error(`gridCellFeatures: dim must be a positive integer, got ${dim}`);
  const xs = cellEdges(k, width);
  const ys = cellEdges(k, height);
  const bins = Math.max(0, Math.floor((dim - GRID_BASE_STATS) / 3));
  const out = new Float32Array(k * k * dim);
  const stats = new Float64Array(GRID_BASE_STATS);
  const hist = new Float64Array(3 * bins);
  const rgb = [0, 0, 0];
  const px = (x: number, y: number) => {
    const o = (y * width + x) * channels;
    if (channels === 1) {
      rgb[0] = rgb[1] = rgb[2] = pixels[o] / 255;
    } else {
      rgb[0] = pixels[o] / 255;
      rgb[1] = pixels[o + 1] / 255;
      rgb[2] = pixels[o + 2] / 255;
    }
  };
  const luma = (x: number, y: number) => {
    px(x, y);
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
  };
  for (let r = 0; r < k; r++) {
    for (let c = 0; c < k; c++) {
      const [x0, x1, y0, y1] = [xs[c], xs[c + 1], ys[r], ys[r + 1]];
      const count = (x1 - x0) * (y1 - y0);
      if (count === 0) continue;
      stats.fill(0);
      hist.fill(0);
      for (let ch = 0; ch < 3; ch++) {
        stats[6 + ch] = Infinity;
        stats[9 + ch] = -Infinity;
      }
      let dx = 0;
      let dy = 0;
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          px(x, y);
          for (let ch = 0; ch < 3; ch++) {
            const v = rgb[ch];
            stats[ch] += v;
            stats[3 + ch] += v * v;
            if (v < stats[6 + ch]) stats[6 + ch] = v;
            if (v > stats[9 + ch]) stats[9 + ch] = v;
            if (bins > 0) hist[ch * bins + Math.min(bins - 1, Math.floor(v * bins))] += 1;
          }
          const l = luma(x, y);
          if (x + 1 < x1) dx += Math.abs(luma(x + 1, y) - l);
          if (y + 1 < y1) dy += Math.abs(luma(x, y + 1) - l);
        }
      }
      for (let ch = 0; ch < 3; ch++) {
        const mean = stats[ch] / count;
        stats[ch] = mean;
        stats[3 + ch] = Math.sqrt(Math.max(0, stats[3 + ch] / count - mean * mean));
      }
      const w = x1 - x0;
      const h = y1 - y0;
      stats[12] = w > 1 ? dx / ((w - 1) * h) : 0;
      stats[13] = h > 1 ? dy / (w * (h - 1)) : 0;
      const cell = out.subarray((r * k + c) * dim, (r * k + c + 1) * dim);
      for (let i = 0; i < Math.min(dim, GRID_BASE_STATS); i++) cell[i] = stats[i];
      for (let i = 0; i < 3 * bins; i++) cell[GRID_BASE_STATS + i] = hist[i] / count;
    }
  }
  return out;
}

/**
 * Detector-free regions for a decoded image: a k×k grid (default 6×6 = 36 cells,
 * like obj36) with `gridCellFeatures` as features (default dim 2048).
 */
export function gridRegionFeatures(
  imgId: string, pixels: Uint8Array, width: number, height: number,
  opts: { k?: number; dim?: number; channels?: number } = {},
): RegionFeatures {
  const k = opts.k ?? 6;
  const dim = opts.dim ?? 2048;
  const g = gridRegions(k, width, height);
  const features = gridCellFeatures(pixels, width, height, { k, dim, channels: opts.channels });
  return { imgId, imgH: height, imgW: width, dim, ...g, features };
}

/**
 * Grid regions straight from an encoded image (JPEG/PNG/WebP... via sharp): decoded
 * to 8-bit sRGB without alpha, at its stored size (no EXIF rotation, like cv2.imread
 * in the bottom-up-attention extractor), then `gridRegionFeatures`.
 */
export async function gridRegionsFromImage(
  imgId: string, encoded: Uint8Array, opts: { k?: number; dim?: number } = {},
): Promise<RegionFeatures> {
  const { openImage, decodeErrorMessage } = await import("../../vision/image.ts");
  let decoded: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    decoded = await openImage(encoded).removeAlpha().toColourspace("srgb").raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new Error(`image ${imgId}: cannot decode (${encoded.length} bytes): ${await decodeErrorMessage(encoded, err)}`);
  }
  const { data, info } = decoded;
  const pixels = new Uint8Array(data.buffer, data.byteOffset, data.length);
  return gridRegionFeatures(imgId, pixels, info.width, info.height, { ...opts, channels: info.channels });
}
