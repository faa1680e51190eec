// The image(-text) batch builder of VLMo pre-training: images decoded and resized with sharp,
// normalised with mean = std = 0.5, and captions tokenised; read from the Karpathy split JSON and
// the image folder. `mode` selects what a batch holds: "image" (stage 1), "text" (stage 2) or
// "pair" (stage 3). Runs in the loader's worker threads.
import { join } from "node:path";
import type { BatchBuilder, HostBatch } from "../data/loader.ts";
import { readKarpathy, karpathySubset } from "../data/formats/karpathy.ts";
import { loadImageTensor, VLMO_NORM } from "../vision/image.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import { interleaveByImage } from "./examples.ts";

export interface ImageTextArgs {
  karpathy: string;
  images: string;
  split: "train" | "val" | "test";
  mode: "image" | "text" | "pair";
  imageSize: number;
  maxTextLen: number;
}

export async function createBuilder(a: ImageTextArgs): Promise<BatchBuilder> {
  const images = karpathySubset(readKarpathy(a.karpathy).images, a.split);
  if (images.length === 0) throw new Error(`${a.karpathy}: no ${a.split} images`);
  // one example per caption (pair/text) or per image (image); held-out captions in caption-major order
  const captions = () => images.flatMap((im) => im.sentences.map((s) => ({ file: im.filename, text: s.raw })));
  const examples = a.mode === "image"
    ? images.map((im) => ({ file: im.filename, text: "" }))
    : a.split === "train" ? captions() : interleaveByImage(captions(), (e) => e.file);
  const tok = a.mode === "image" ? null : BertTokenizer.load();
  return {
    length: examples.length,
    async build(indices: number[]): Promise<HostBatch> {
      const b = indices.length;
      const arrays: HostBatch["arrays"] = {};
      if (a.mode !== "text") {
        const S = a.imageSize;
        const pixels = new Float32Array(b * 3 * S * S);
        const loaded = await Promise.all(indices.map((i) => loadImageTensor(join(a.images, examples[i].file), { mode: "square", size: S }, VLMO_NORM)));
        loaded.forEach((img, k) => pixels.set(img.data, k * 3 * S * S));
        arrays.pixels = { data: pixels, shape: [b, 3, S, S], dtype: "float32" };
      }
      if (tok) {
        const L = a.maxTextLen;
        const ids = new BigInt64Array(b * L), mask = new BigInt64Array(b * L), words = new BigInt64Array(b * L);
        indices.forEach((i, k) => {
          const enc = tok.encode(examples[i].text, undefined, { maxLength: L, padding: true });
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
      return { arrays, meta: { files: indices.map((i) => examples[i].file), texts: indices.map((i) => examples[i].text) } };
    },
  };
}
