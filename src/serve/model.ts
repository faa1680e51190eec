// What serving does with a VLMo checkpoint: normalised ITC embeddings of texts and images (the
// dual encoder), ITM match scores and VQA answers (the fusion encoder), and the fusion encoder's
// attention from a text token to the image patches. Every call runs without gradients inside
// tidy(), so the native memory of a request is freed when it returns; results are plain arrays.
// `vlp serve --precision bf16` runs each pass under autocast (Inference.precision).
import { basename, resolve } from "node:path";
import sharp, { type Metadata } from "sharp";
import { tensor, tidy, noGrad, Module, type Tensor, type Device } from "../engine/index.ts";
import { moduleDevice, placeDevice, toDevice } from "../engine/placement.ts";
import { autocast } from "../engine/precision.ts";
import type { AutocastDType } from "../engine/dtype.ts";
import { VLMoModel } from "../models/vlmo/index.ts";
import { loadRun, readRunInfo, type RunInfo } from "../methods/index.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import { MAX_IMAGE_PIXELS, decodeImage, resizeImage, toChw, VLMO_NORM } from "../vision/image.ts";

/** A client mistake (bad image, unknown checkpoint...): the server answers it with `status`. */
export class RequestError extends Error {
  /** Extra response headers (Retry-After, WWW-Authenticate). */
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

export interface ServedModel {
  /** The name requests use to pick it (the run directory's base name). */
  name: string;
  dir: string;
  model: VLMoModel;
  info: RunInfo;
  /** VQA answers by class index (from finetune.json), when the model has a VQA head. */
  labels: string[] | null;
}

/** Loads a run directory (pre-training or fine-tuning) for inference, on `device` (default the CPU). */
export async function loadServedModel(dir: string, name?: string, device: Device = "cpu"): Promise<ServedModel> {
  const info = readRunInfo(dir);
  if (info.method !== "vlmo") throw new Error(`${dir}: a ${info.method} run, not a VLMo one`);
  const { model, def } = await loadRun(dir);
  if (!(model instanceof VLMoModel)) {
    model.dispose();
    throw new Error(`${dir}: a ${def.title} run; serving takes a VLMo run`);
  }
  model.to(placeDevice(device));
  evalEverywhere(model);
  const vqa = model.config.heads.vqaLabels;
  let labels: string[] | null = null;
  if (vqa > 0) {
    if (!Array.isArray(info.labels) || info.labels.length !== vqa) {
      throw new Error(`${dir}: the model has a VQA head of ${vqa} answers but its finetune.json has ${Array.isArray(info.labels) ? info.labels.length : "no"} labels`);
    }
    labels = info.labels;
  }
  return { name: name ?? basename(resolve(dir)), dir: resolve(dir), model, info, labels };
}

/**
 * model.eval() reaches registered submodules only; VLMo's Dropout/DropPath members (text dropout,
 * stochastic depth) are plain fields, so they would stay in training mode and make inference
 * random. This switches off every Module reachable through the object's fields.
 */
export function evalEverywhere(m: Module, seen = new Set<Module>()): void {
  if (seen.has(m)) return;
  seen.add(m);
  m.training = false;
  for (const v of Object.values(m)) {
    if (v instanceof Module) evalEverywhere(v, seen);
    else if (Array.isArray(v)) for (const x of v) if (x instanceof Module) evalEverywhere(x, seen);
  }
}

// ---- images ---------------------------------------------------------------------------------

export const IMAGE_FORMATS = ["png", "jpeg", "webp"] as const;
/** One image's most pixels: the cap every decoder applies (vision/image.ts). */
export { MAX_IMAGE_PIXELS };

/** The format of an image by its magic bytes, or null. */
export function sniffImage(b: Uint8Array): (typeof IMAGE_FORMATS)[number] | null {
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 && b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a) return "png";
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  if (b.length >= 12 && String.fromCharCode(...b.subarray(0, 4)) === "RIFF" && String.fromCharCode(...b.subarray(8, 12)) === "WEBP") return "webp";
  return null;
}

/** Base64 (optionally a data: URL) to bytes; `field` names the place in errors. */
export function imageBytesFromBase64(s: string, field: string): Uint8Array {
  let b64 = s;
  const m = /^data:([a-z/+.-]*)(;[a-z0-9=-]+)*;base64,/i.exec(s);
  if (m) b64 = s.slice(m[0].length);
  else if (s.startsWith("data:")) throw new RequestError(400, `${field}: a data: URL must be base64-encoded (data:image/png;base64,...)`);
  b64 = b64.replace(/\s+/g, "");
  if (b64.length === 0) throw new RequestError(400, `${field}: empty image`);
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64)) throw new RequestError(400, `${field}: not base64`);
  return new Uint8Array(Buffer.from(b64, "base64"));
}

export interface ImageHeader {
  format: (typeof IMAGE_FORMATS)[number];
  width: number;
  height: number;
}

/** Format and pixel size from the header alone (no decoding); 415/400/413 name `field`. */
export async function probeImage(bytes: Uint8Array, field: string): Promise<ImageHeader> {
  const format = sniffImage(bytes);
  if (!format) throw new RequestError(415, `${field}: not a PNG, JPEG or WebP image (accepted formats: ${IMAGE_FORMATS.join(", ")})`);
  let meta: Metadata;
  try {
    // the header only: sharp's own pixel limit would turn a huge size into a generic error
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw new RequestError(400, `${field}: cannot read the ${format} header (${(e as Error).message.trim()})`);
  }
  if (!meta.width || !meta.height) throw new RequestError(400, `${field}: the ${format} has no size`);
  if (meta.width * meta.height > MAX_IMAGE_PIXELS) throw new RequestError(413, `${field}: ${meta.width}x${meta.height} pixels, more than the ${MAX_IMAGE_PIXELS} accepted`);
  return { format, width: meta.width, height: meta.height };
}

/** Decodes an image probeImage accepted, resizes it to size x size and normalises: CHW float32. */
export async function decodeForModel(bytes: Uint8Array, size: number, field: string): Promise<Float32Array> {
  try {
    const rgb = await decodeImage(bytes, field);
    return toChw(await resizeImage(rgb, { mode: "square", size }), VLMO_NORM).data;
  } catch (e) {
    throw new RequestError(400, (e as Error).message);
  }
}

/** Checks format and size, decodes, resizes to size x size and normalises: CHW float32. */
export async function prepareImage(bytes: Uint8Array, size: number, field: string): Promise<Float32Array> {
  await probeImage(bytes, field);
  return decodeForModel(bytes, size, field);
}

// ---- the model's operations -------------------------------------------------------------------

export interface AttentionMaps {
  /** WordPiece tokens of the text, [CLS] and [SEP] included. */
  tokens: string[];
  /** Patches per side. */
  grid: number;
  /** Layers averaged (the last ones). */
  layers: number;
  /** Per token: attention to each patch (row-major grid), renormalised to sum 1 over the patches. */
  maps: number[][];
  /** Per token: the share of its attention that goes to image patches (before renormalising). */
  imageShare: number[];
}

export class Inference {
  readonly tokenizer = BertTokenizer.load();
  /** Where the model is: request tensors are sent there, answers read back. */
  readonly device: Device;
  /**
   * `precision`: the autocast dtype of every forward pass (`vlp serve --precision`; null = float32).
   * The scope opens and closes inside each synchronous pass, so concurrent requests never see
   * another's autocast state; answers are read back as float32.
   */
  constructor(readonly served: ServedModel, readonly precision: AutocastDType | null = null) {
    this.device = moduleDevice(served.model);
  }

  /** A forward pass of one request: no gradients, the precision's autocast, native memory freed on return. */
  private run<T>(fn: () => T): T {
    return noGrad(() => autocast(this.precision, () => tidy(fn), this.device));
  }

  get model(): VLMoModel {
    return this.served.model;
  }
  get imageSize(): number {
    return this.model.config.imageSize;
  }
  get dim(): number {
    return this.model.config.hiddenSize;
  }
  get hasItc(): boolean {
    return this.model.itc_text_proj !== null && this.model.itc_image_proj !== null;
  }
  get hasItm(): boolean {
    return this.model.itm_score !== null;
  }
  get hasVqa(): boolean {
    return this.served.labels !== null;
  }

  /** ids/mask [B, T] for texts, padded to the longest (at most maxTextLen tokens). */
  private textTensors(texts: string[]): { ids: Tensor; mask: Tensor; tokens: string[][] } {
    const L = this.model.config.maxTextLen;
    const encs = texts.map((t) => this.tokenizer.encode(t, undefined, { maxLength: L }));
    const T = Math.max(...encs.map((e) => e.inputIds.length));
    const ids = new BigInt64Array(texts.length * T);
    const mask = new BigInt64Array(texts.length * T);
    encs.forEach((e, b) => e.inputIds.forEach((id, j) => {
      ids[b * T + j] = BigInt(id);
      mask[b * T + j] = 1n;
    }));
    return {
      ids: toDevice(tensor(ids, { shape: [texts.length, T] }), this.device),
      mask: toDevice(tensor(mask, { shape: [texts.length, T] }), this.device),
      tokens: encs.map((e) => this.tokenizer.convertIdsToTokens(e.inputIds)),
    };
  }

  private pixels(images: Float32Array[]): Tensor {
    const S = this.imageSize;
    const all = new Float32Array(images.length * 3 * S * S);
    images.forEach((im, i) => all.set(im, i * 3 * S * S));
    return toDevice(tensor(all, { shape: [images.length, 3, S, S] }), this.device);
  }

  private needItc(): void {
    if (!this.hasItc) throw new RequestError(409, `checkpoint ${this.served.name} has no ITC heads (itc_text_proj/itc_image_proj): it cannot embed`);
  }

  /** Normalised ITC embeddings of texts, one Float32Array of `dim` per text. */
  embedTexts(texts: string[]): Float32Array[] {
    this.needItc();
    if (texts.length === 0) return [];
    return this.run(() => {
      const { ids, mask } = this.textTensors(texts);
      const e = this.model.inferText(ids, mask, { vlBranch: false }).itc!;
      return rows(e);
    });
  }

  /** Normalised ITC embeddings of prepared images (prepareImage). */
  embedImages(images: Float32Array[]): Float32Array[] {
    this.needItc();
    if (images.length === 0) return [];
    return this.run(() => rows(this.model.inferImage(this.pixels(images), { vlBranch: false }).itc!));
  }

  /** ITM: the probability that each text matches the image (softmax of the ITM head), with the raw logits. */
  itm(image: Float32Array, texts: string[]): { match: number; logit: number }[] {
    if (!this.hasItm) throw new RequestError(409, `checkpoint ${this.served.name} has no ITM head (itm_score)`);
    return this.run(() => {
      const { ids, mask } = this.textTensors(texts);
      const px = this.pixels([image]).expand(texts.length, -1, -1, -1);
      const logits = this.model.itmLogits(this.model.inferFusion(ids, mask, px));
      const p = logits.softmax(-1).select(1, 1).toFloat32Array();
      const l = logits.select(1, 1).toFloat32Array();
      return Array.from(p, (m, i) => ({ match: m, logit: l[i] }));
    });
  }

  /** The top-k answers to a question about an image, scored by the VQA head's sigmoid (as trained with BCE). */
  vqa(image: Float32Array, question: string, k: number): { answer: string; score: number }[] {
    const labels = this.served.labels;
    if (!labels) throw new RequestError(409, `checkpoint ${this.served.name} has no VQA head`);
    return this.run(() => {
      const { ids, mask } = this.textTensors([question]);
      const logits = this.model.vqaLogits(this.model.inferFusion(ids, mask, this.pixels([image]))).select(0, 0);
      const [v, i] = logits.sigmoid().topk(Math.min(k, labels.length));
      const idx = i.toArray();
      return Array.from(v.toFloat32Array(), (s, j) => ({ answer: labels[idx[j]], score: s }));
    });
  }

  /**
   * Attention of the fusion encoder from each text token to the image patches: the last `layers`
   * layers' attention probabilities averaged over layers and heads, the row of the token, the
   * columns of the patches (the image [CLS] left out), renormalised over the patches.
   */
  attention(image: Float32Array, text: string, layers = 1): AttentionMaps {
    const L = this.model.numLayers;
    const nl = Math.max(1, Math.min(layers, L));
    return this.run(() => {
      const { ids, mask, tokens } = this.textTensors([text]);
      const T = ids.size(1);
      const g = this.model.gridSize;
      const P = g * g;
      const out = this.model.inferFusion(ids, mask, this.pixels([image]), { outputAttentions: true });
      const atts = out.attentions!.slice(L - nl);
      let a = atts[0];
      for (let i = 1; i < atts.length; i++) a = a.add(atts[i]);
      // [1, heads, N, N] -> [T, N]: text rows, averaged over heads and layers
      const rowsT = a.select(0, 0).mean(0).narrow(0, 0, T).div(nl);
      const patches = rowsT.narrow(1, T + 1, P);
      const share = patches.sum(1);
      const maps = patches.div(share.unsqueeze(1).clampMin(1e-12));
      const m = maps.toFloat32Array();
      return {
        tokens: tokens[0],
        grid: g,
        layers: nl,
        maps: Array.from({ length: T }, (_, t) => Array.from(m.subarray(t * P, (t + 1) * P))),
        imageShare: Array.from(share.toFloat32Array()),
      };
    });
  }
}

function rows(t: Tensor): Float32Array[] {
  const [n, d] = t.shape;
  const a = t.contiguous().toFloat32Array();
  return Array.from({ length: n }, (_, i) => a.slice(i * d, (i + 1) * d));
}
