// The image(-text) batch builder of VLMo pre-training: images decoded and resized with sharp,
// normalised with mean = std = 0.5, and captions tokenised; read from a Karpathy split JSON and
// image folder, COCO caption annotations, ViLT Arrow tables (imagetext_input.ts), or WebDataset
// shards streamed through the loader (streamedBuilder below). `mode`
// selects what a batch holds: "image" (stage 1), "text" (stage 2) or "pair" (stage 3). Runs in the
// loader's worker threads.
import type { BatchBuilder, HostArray, HostArrays, HostBatch } from "../data/loader.ts";
import type { Tensor } from "../engine/index.ts";
import { textArrays, textExtent, type TextExtent } from "../data/text_arrays.ts";
import { decodeImage, resizeImage, toChw, ImageCache, IMAGE_CACHE_BYTES, VLMO_NORM, type ChwImage, type RgbImage } from "../vision/image.ts";
import { augmentView, type PretrainAugment } from "../vision/augment.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import { basename } from "node:path";
import { countSamples, streamRefs, WdsError, WdsRefReader, type WdsRef } from "../data/formats/wds.ts";
import { Rng, hashSeed } from "../engine/rng.ts";
import { imageTextExamples, type ImageTextInput, type WebDatasetInput } from "./imagetext_input.ts";

export type ImageTextMode = "image" | "text" | "pair";

/** The images of a batch: [B, 3, S, S] float32 pixels, resized to S = imageSize and normalised (mean = std = 0.5). */
export interface ImageBatch {
  pixels: Tensor;
}
/** The captions of a batch: [B, L] int64 token ids, attention mask (1 token, 0 padding) and word index of each token (-1 none); L = maxTextLen. */
export interface CaptionBatch {
  input_ids: Tensor;
  attention_mask: Tensor;
  word_ids: Tensor;
}
/**
 * An image-text batch, by the builder's mode: the images alone ("image", stage 1), the captions
 * alone ("text", stage 2), or each image with its caption ("pair", stage 3).
 */
export type ImageTextBatch<M extends ImageTextMode = ImageTextMode> = { image: ImageBatch; text: CaptionBatch; pair: ImageBatch & CaptionBatch }[M];

/** What an image-text batch carries besides its tensors; `longest`/`words` (TextExtent) are 0 without captions. */
export interface ImageTextMeta extends TextExtent {
  /** Each example's image file (or shard#key). */
  files: string[];
  texts: string[];
}

type ImageTextHost<M extends ImageTextMode = ImageTextMode> = HostBatch<ImageTextBatch<M>, ImageTextMeta>;

/** A batch's host arrays and metadata from its pixels (modes with images) and encoded captions (modes with text). */
function imageTextBatch<M extends ImageTextMode>(pixels: HostArray | null, captions: HostArrays<CaptionBatch> | null, files: string[], texts: string[]): ImageTextHost<M> {
  // the mode decided which of the two are there
  const arrays = { ...(pixels ? { pixels } : {}), ...(captions ?? {}) } as HostArrays<ImageTextBatch<M>>;
  const extent = captions ? textExtent(captions.attention_mask, captions.word_ids) : { longest: 0, words: 0 };
  return { arrays, meta: { files, texts, ...extent } };
}

const CAPTION_FIELDS = { input_ids: "inputIds", attention_mask: "attentionMask", word_ids: "wordIds" } as const;

export interface ImageTextArgs<M extends ImageTextMode = ImageTextMode> {
  /** The data (`input`), or the Karpathy file + image folder of `split` (train = train + restval). */
  input?: ImageTextInput;
  karpathy?: string;
  images?: string;
  /** "train" is read in file order; a held-out split in caption-major order (interleaveByImage). */
  split: "train" | "val" | "test";
  mode: M;
  imageSize: number;
  maxTextLen: number;
  /** Training views of the images (train split, image and pair modes): crop, flip, RandAugment; null: none. */
  augment?: PretrainAugment | null;
  /** Seeds the augmentation with the step and the example (exact resume). */
  seed?: number;
}

/** The input of a builder's arguments: `input`, or the Karpathy file and image folder of `split`. */
function inputOf(a: ImageTextArgs): ImageTextInput {
  if (a.input) return a.input;
  if (!a.karpathy || !a.images) throw new Error("image-text builder: needs input, or karpathy and images");
  return { format: "karpathy", json: a.karpathy, images: a.images, splits: a.split === "train" ? ["train", "restval"] : [a.split] };
}

/**
 * An encoded image (a file path or bytes; `name` names bytes in errors) decoded, resized to a `size`
 * square and normalised as VLMo's are; with `view`, a training view drawn from its generator instead
 * of the plain resize.
 */
async function loadImage(src: string | Uint8Array, name: string, size: number, view?: { augment: PretrainAugment; rng: Rng }): Promise<ChwImage> {
  const decode = () => decodeImage(src, typeof src === "string" ? undefined : name);
  // files are kept by path (as decoded for a view, else resized); bytes are decoded each time
  const kept = (kind: string, load: () => Promise<RgbImage>) => (typeof src === "string" ? decoded.get(`${kind}|${src}`, load) : load());
  if (view) return toChw(await augmentView(await kept("source", decode), size, view.augment, view.rng), VLMO_NORM);
  return toChw(await kept(String(size), async () => resizeImage(await decode(), { mode: "square", size })), VLMO_NORM);
}

/**
 * The images this thread decoded, by file (resized to the batch's size, or as decoded for augmented
 * views): every stage and split of a run reads the same files (bytes from Arrow tables or WebDataset
 * shards are decoded each time).
 */
const decoded = new ImageCache(IMAGE_CACHE_BYTES);

/** The augmentation of example `index` at `step`, when the builder augments (train split, images in the batch). */
function viewOf(a: ImageTextArgs, step: number, index: number): { augment: PretrainAugment; rng: Rng } | undefined {
  return a.augment && a.split === "train" && a.mode !== "text" ? { augment: a.augment, rng: new Rng(hashSeed("augment", a.seed ?? 0, step, index)) } : undefined;
}

export async function createBuilder<M extends ImageTextMode>(a: ImageTextArgs<M>): Promise<BatchBuilder<ImageTextBatch<M>, ImageTextMeta>> {
  const input = inputOf(a);
  if (input.format === "webdataset") return streamedBuilder(a, input);
  // one example per caption (pair/text) or per image (image); held-out captions in caption-major order
  const examples = imageTextExamples(input, a.mode === "image" ? "image" : "caption", a.split === "train" ? "file" : "interleaved");
  const tok = a.mode === "image" ? null : BertTokenizer.load();
  return {
    length: examples.length,
    async build(indices: number[], step: number): Promise<ImageTextHost<M>> {
      const b = indices.length;
      let pixels: HostArray | null = null;
      if (a.mode !== "text") {
        const S = a.imageSize;
        const data = new Float32Array(b * 3 * S * S);
        const loaded = await Promise.all(indices.map((i) => loadImage(examples.image(i), examples.key(i), S, viewOf(a, step, i))));
        loaded.forEach((img, k) => data.set(img.data, k * 3 * S * S));
        pixels = { data, shape: [b, 3, S, S], dtype: "float32" };
      }
      const texts = indices.map((i) => examples.text(i));
      return imageTextBatch(pixels, tok ? textArrays(tok, texts, a.maxTextLen, CAPTION_FIELDS) : null, indices.map((i) => examples.key(i)), texts);
    },
  };
}

/**
 * WebDataset shards, streamed (the loader's `stream`): an epoch is the shards in a seeded order,
 * each scanned in turn for where its samples lie, through a seeded shuffle buffer of those
 * locations (streamRefs); a batch's images and captions are read by position when it is built
 * (in the worker threads). One example per sample, in every mode; a sample with several captions
 * (lines of the text file, or a JSON "captions" list) trains on one drawn from the step's seed,
 * and is held out on its first. The epoch's length is counted from the shards' headers once.
 */
function streamedBuilder<M extends ImageTextMode>(a: ImageTextArgs<M>, input: WebDatasetInput): BatchBuilder<ImageTextBatch<M>, ImageTextMeta> {
  const required = [input.image.join(";"), input.text];
  const files = new WdsRefReader();
  const tok = a.mode === "image" ? null : BertTokenizer.load();
  let length: number | undefined;
  return {
    get length() {
      length ??= countSamples(input.shards, { required });
      return length;
    },
    stream: (epoch, o) => streamRefs(input.shards, { ...o, epoch, buffer: input.shuffleBuffer, required }),
    async build(indices: number[], step: number, items?: unknown[]): Promise<ImageTextHost<M>> {
      if (!items) throw new Error("webdataset builder: a streamed source is read through the loader's stream (items, not indices)");
      const refs = items as WdsRef[];
      const b = refs.length;
      let pixels: HostArray | null = null;
      if (a.mode !== "text") {
        const S = a.imageSize;
        const data = new Float32Array(b * 3 * S * S);
        const loaded = await Promise.all(refs.map((r, k) => loadImage(files.read(r, input.image.join(";")), `${r.shard}: sample "${r.key}"`, S, viewOf(a, step, indices[k]))));
        loaded.forEach((img, k) => data.set(img.data, k * 3 * S * S));
        pixels = { data, shape: [b, 3, S, S], dtype: "float32" };
      }
      const texts = a.mode === "image" ? refs.map(() => "") : refs.map((r, k) => {
        const captions = wdsCaptions(r, files.read(r, input.text), input.text);
        return captions[a.split === "train" && captions.length > 1 ? new Rng(hashSeed("caption", step, indices[k])).int(captions.length) : 0];
      });
      return imageTextBatch(pixels, tok ? textArrays(tok, texts, a.maxTextLen, CAPTION_FIELDS) : null, refs.map((r) => `${basename(r.shard)}#${r.key}`), texts);
    },
  };
}

/** A sample's captions: the non-empty lines of a text file, or a JSON file's "caption" (or "captions" list). */
function wdsCaptions(r: WdsRef, bytes: Uint8Array, ext: string): string[] {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  if (ext === "json" || ext.endsWith(".json")) {
    let v: { caption?: unknown; captions?: unknown };
    try {
      v = JSON.parse(text) as typeof v;
    } catch (err) {
      throw new WdsError(r.shard, r.key, `"${ext}" is not valid JSON: ${(err as Error).message}`);
    }
    const list = typeof v?.caption === "string" ? [v.caption] : Array.isArray(v?.captions) ? v.captions.filter((c): c is string => typeof c === "string" && c !== "") : [];
    if (list.length === 0) throw new WdsError(r.shard, r.key, `"${ext}" has no "caption" string or "captions" list`);
    return list;
  }
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  if (lines.length === 0) throw new WdsError(r.shard, r.key, `"${ext}" is empty (no caption)`);
  return lines;
}
