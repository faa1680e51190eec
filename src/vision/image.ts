/**
 * Image input pipeline: decode (JPEG/PNG/SVG/... via sharp) to 8-bit RGB HWC, resize,
 * convert to normalised float CHW, and cut into ViT patches.
 */
import { readFile } from "node:fs/promises";
import sharp, { type Sharp, type SharpOptions } from "sharp";

/** 8-bit RGB image, row-major HWC (data[(y * width + x) * 3 + c]). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Float image, CHW (data[(c * height + y) * width + x]). */
export interface ChwImage {
  data: Float32Array;
  channels: number;
  height: number;
  width: number;
}

export interface Normalization {
  mean: readonly number[];
  std: readonly number[];
}

/** ViLT/VLMo: mean = std = 0.5 per channel (maps [0, 1] to [-1, 1]). */
export const VLMO_NORM: Normalization = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
export const IMAGENET_NORM: Normalization = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/**
 * The most pixels any image may have where images are decoded (training, `vlp index build`, the
 * server, region extraction): 4096 x 4096, 48 MB as 8-bit RGB. A PNG of zeros compresses ~1000x,
 * so without the cap a 250 KB file of 16000 x 16000 decodes to 3.4 GB.
 */
export const MAX_IMAGE_PIXELS = 4096 * 4096;

/** sharp on an encoded image, refusing from its header one of more than MAX_IMAGE_PIXELS. */
export function openImage(input: string | Uint8Array, options: SharpOptions = {}): Sharp {
  return sharp(input, { limitInputPixels: MAX_IMAGE_PIXELS, ...options });
}

/** A decode error's message; sharp's bare "exceeds pixel limit" gets the image's size. */
export async function decodeErrorMessage(input: string | Uint8Array, e: unknown): Promise<string> {
  const msg = (e as Error).message.trim();
  if (!/pixel limit/i.test(msg)) return msg;
  try {
    const { width, height } = await sharp(input, { limitInputPixels: false }).metadata();
    return `${width}x${height} pixels, more than the ${MAX_IMAGE_PIXELS} (4096x4096) decoded`;
  } catch {
    return msg;
  }
}

/** Decode an image file or buffer to RGB. `name` labels errors (defaults to the path). */
export async function decodeImage(input: string | Uint8Array, name?: string): Promise<RgbImage> {
  const label = name ?? (typeof input === "string" ? input : "<buffer>");
  let bytes: Uint8Array;
  if (typeof input === "string") {
    try {
      bytes = await readFile(input);
    } catch (e) {
      throw new Error(`${label}: cannot read image (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  } else {
    bytes = input;
  }
  try {
    const { data, info } = await openImage(bytes, { failOn: "error" })
      .autoOrient()
      .flatten({ background: "#ffffff" })
      .toColourspace("srgb")
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels, got ${info.channels}`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (e) {
    throw new Error(`${label}: cannot decode image (${await decodeErrorMessage(bytes, e)})`);
  }
}

export type ResizeKernel = "nearest" | "linear" | "cubic" | "lanczos3";

export interface ResizeOptions {
  /** "square": exactly size x size (aspect not kept); "shorter": shorter side = size, aspect kept. */
  mode: "square" | "shorter";
  size: number;
  /** With mode "shorter": cap the longer side (ViLT uses 384 / 640). */
  maxLonger?: number;
  kernel?: ResizeKernel;
}

/** Output size of a resize without doing it. */
export function resizedSize(width: number, height: number, opts: ResizeOptions): [number, number] {
  if (opts.mode === "square") return [opts.size, opts.size];
  let scale = opts.size / Math.min(width, height);
  if (opts.maxLonger && Math.max(width, height) * scale > opts.maxLonger) {
    scale = opts.maxLonger / Math.max(width, height);
  }
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

export async function resizeImage(img: RgbImage, opts: ResizeOptions): Promise<RgbImage> {
  const [w, h] = resizedSize(img.width, img.height, opts);
  if (w === img.width && h === img.height) return img;
  const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(w, h, { fit: "fill", kernel: opts.kernel ?? "cubic" })
    .raw()
    .toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: w, height: h };
}

/** A crop box in pixels (integers, inside the image). */
export interface CropBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Cut `box` out of `img` and resize it to a `size` square (bicubic): RandomResizedCrop's second half. */
export async function cropResize(img: RgbImage, box: CropBox, size: number): Promise<RgbImage> {
  const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .extract(box)
    .resize(size, size, { fit: "fill", kernel: "cubic" })
    .raw()
    .toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: size, height: size };
}

/** HWC uint8 -> CHW float: (x / 255 - mean[c]) / std[c]. */
export function toChw(img: RgbImage, norm: Normalization = VLMO_NORM): ChwImage {
  const { width: W, height: H, data } = img;
  const out = new Float32Array(3 * H * W);
  const plane = H * W;
  for (let c = 0; c < 3; c++) {
    const m = norm.mean[c];
    const s = norm.std[c];
    for (let p = 0; p < plane; p++) out[c * plane + p] = (data[p * 3 + c] / 255 - m) / s;
  }
  return { data: out, channels: 3, height: H, width: W };
}

export interface Patches {
  /** [numPatches, patchDim] row-major. */
  data: Float32Array;
  numPatches: number;
  patchDim: number;
  gridH: number;
  gridW: number;
}

/**
 * Cut a CHW image into non-overlapping patch x patch squares: [numPatches, C*patch*patch].
 * Patch order is row-major over the grid (patch row, then patch column) -- the order of the
 * flattened output of ViT's stride-`patch` conv. Inside a patch the vector is ordered
 * (c, y, x), the layout of a conv weight [D, C, patch, patch], so that
 * conv(x)[d, i, j] == dot(weight[d].flat, patches[i * gridW + j]).
 */
export function patchify(img: ChwImage, patch: number): Patches {
  const { channels: C, height: H, width: W, data } = img;
  if (H % patch !== 0 || W % patch !== 0) {
    throw new Error(`patchify: image ${W}x${H} is not divisible by patch ${patch}`);
  }
  const gridH = H / patch;
  const gridW = W / patch;
  const patchDim = C * patch * patch;
  const out = new Float32Array(gridH * gridW * patchDim);
  let o = 0;
  for (let gy = 0; gy < gridH; gy++) {
    for (let gx = 0; gx < gridW; gx++) {
      for (let c = 0; c < C; c++) {
        for (let y = 0; y < patch; y++) {
          const row = (c * H + gy * patch + y) * W + gx * patch;
          for (let x = 0; x < patch; x++) out[o++] = data[row + x];
        }
      }
    }
  }
  return { data: out, numPatches: gridH * gridW, patchDim, gridH, gridW };
}

/**
 * Decoded images by key, kept until `maxBytes` are held; later ones are decoded each time, nothing is
 * evicted (an epoch visits every image once in a shuffled order, so no eviction order keeps more
 * hits). Decoding is most of an image batch's cost: VLMo-tiny's pre-training spent about half as much
 * CPU in sharp's threads as in its training thread (2-core AMD EPYC Zen 3, 2026-12-07). A hit returns the same
 * image, which its users only read.
 */
export class ImageCache {
  private readonly images = new Map<string, RgbImage>();
  /** Loads under way: a batch often holds one image several times (its captions), decoded once. */
  private readonly loading = new Map<string, Promise<RgbImage>>();
  private held = 0;
  constructor(readonly maxBytes: number) {}
  get bytes(): number {
    return this.held;
  }
  get size(): number {
    return this.images.size;
  }
  async get(key: string, load: () => Promise<RgbImage>): Promise<RgbImage> {
    const hit = this.images.get(key) ?? this.loading.get(key);
    if (hit) return hit;
    const pending = load();
    this.loading.set(key, pending);
    try {
      const img = await pending;
      if (this.held + img.data.byteLength <= this.maxBytes) {
        // a copy: the decoder's buffer may be a view of a larger allocation
        this.images.set(key, { data: new Uint8Array(img.data), width: img.width, height: img.height });
        this.held += img.data.byteLength;
      }
      return img;
    } finally {
      this.loading.delete(key);
    }
  }
}

/** The bytes of decoded images a process keeps per cache (ImageCache) by default. */
export const IMAGE_CACHE_BYTES = 256 * 2 ** 20;

/** Decode, resize and normalise in one go: a file path or encoded bytes (`name` names bytes in errors). */
export async function loadImageTensor(src: string | Uint8Array, resize: ResizeOptions, norm: Normalization = VLMO_NORM, name?: string): Promise<ChwImage> {
  return toChw(await resizeImage(await decodeImage(src, name), resize), norm);
}

function rawInput(rgb: Uint8Array, w: number, h: number) {
  if (rgb.length !== w * h * 3) throw new Error(`encode: buffer has ${rgb.length} bytes, expected ${w}x${h}x3`);
  return sharp(rgb, { raw: { width: w, height: h, channels: 3 } });
}

export async function encodePng(rgb: Uint8Array, w: number, h: number, compressionLevel = 6): Promise<Buffer> {
  return rawInput(rgb, w, h).png({ compressionLevel }).toBuffer();
}

export async function encodeJpeg(rgb: Uint8Array, w: number, h: number, quality = 90): Promise<Buffer> {
  return rawInput(rgb, w, h).jpeg({ quality }).toBuffer();
}
