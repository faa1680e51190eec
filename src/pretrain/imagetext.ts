// The image(-text) batch builder of VLMo pre-training: images decoded and resized with sharp,
// normalised with mean = std = 0.5, and captions tokenised; read from a Karpathy split JSON and
// image folder, COCO caption annotations, or ViLT Arrow tables (imagetext_input.ts). `mode`
// selects what a batch holds: "image" (stage 1), "text" (stage 2) or "pair" (stage 3). Runs in the
// loader's worker threads.
import type { BatchBuilder, HostBatch } from "../data/loader.ts";
import { decodeImage, resizeImage, toChw, VLMO_NORM, type ChwImage } from "../vision/image.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import { imageTextExamples, type ImageTextInput } from "./imagetext_input.ts";

export interface ImageTextArgs {
  /** The data (`input`), or the Karpathy file + image folder of `split` (train = train + restval). */
  input?: ImageTextInput;
  karpathy?: string;
  images?: string;
  /** "train" is read in file order; a held-out split in caption-major order (interleaveByImage). */
  split: "train" | "val" | "test";
  mode: "image" | "text" | "pair";
  imageSize: number;
  maxTextLen: number;
}

/** The input of a builder's arguments: `input`, or the Karpathy file and image folder of `split`. */
function inputOf(a: ImageTextArgs): ImageTextInput {
  if (a.input) return a.input;
  if (!a.karpathy || !a.images) throw new Error("image-text builder: needs input, or karpathy and images");
  return { format: "karpathy", json: a.karpathy, images: a.images, splits: a.split === "train" ? ["train", "restval"] : [a.split] };
}

/** An encoded image (a file path or bytes; `name` names bytes in errors) decoded, resized to a `size` square and normalised as VLMo's are. */
async function loadImage(src: string | Uint8Array, name: string, size: number): Promise<ChwImage> {
  const img = await decodeImage(src, typeof src === "string" ? undefined : name);
  return toChw(await resizeImage(img, { mode: "square", size }), VLMO_NORM);
}

export async function createBuilder(a: ImageTextArgs): Promise<BatchBuilder> {
  // one example per caption (pair/text) or per image (image); held-out captions in caption-major order
  const examples = imageTextExamples(inputOf(a), a.mode === "image" ? "image" : "caption", a.split === "train" ? "file" : "interleaved");
  const tok = a.mode === "image" ? null : BertTokenizer.load();
  return {
    length: examples.length,
    async build(indices: number[]): Promise<HostBatch> {
      const b = indices.length;
      const arrays: HostBatch["arrays"] = {};
      if (a.mode !== "text") {
        const S = a.imageSize;
        const pixels = new Float32Array(b * 3 * S * S);
        const loaded = await Promise.all(indices.map((i) => loadImage(examples.image(i), examples.key(i), S)));
        loaded.forEach((img, k) => pixels.set(img.data, k * 3 * S * S));
        arrays.pixels = { data: pixels, shape: [b, 3, S, S], dtype: "float32" };
      }
      const texts = indices.map((i) => examples.text(i));
      if (tok) {
        const L = a.maxTextLen;
        const ids = new BigInt64Array(b * L), mask = new BigInt64Array(b * L), words = new BigInt64Array(b * L);
        texts.forEach((text, k) => {
          const enc = tok.encode(text, undefined, { maxLength: L, padding: true });
          for (let j = 0; j < L; j++) {
            ids[k * L + j] = BigInt(enc.inputIds[j]);
            mask[k * L + j] = BigInt(enc.attentionMask[j]);
            words[k * L + j] = BigInt(enc.wordIds[j]);
          }
        });
        arrays.input_ids = { data: ids, shape: [b, L], dtype: "int64" };
        arrays.attention_mask = { data: mask, shape: [b, L], dtype: "int64" };
        arrays.word_ids = { data: words, shape: [b, L], dtype: "int64" };
      }
      return { arrays, meta: { files: indices.map((i) => examples.key(i)), texts } };
    },
  };
}
