// VLMo's relative position bias, in the official layout: one table
// `relative_position_bias_table` [rows, heads * layers] for all layers (layer l reads columns
// [l*heads, (l+1)*heads)); the rows of a W x W patch grid and a text of up to M tokens, and the
// [N, N] index of an input into those rows. The model gathers every layer's bias at once
// (VLMoModel.relativePositionBias in model.ts).
import { tensor, type Tensor } from "../../engine/index.ts";
import type { Modality } from "./mome.ts";

/**
 * The row layout of `relative_position_bias_table` for a W x W patch grid and text checkpoints of
 * length M: rows [0, (2W-1)^2) patch-to-patch offsets; then image cls->patch, patch->cls,
 * cls->cls; then text->image, image->text; then 2M rows for text offsets and text cls->token,
 * token->cls, cls->cls as the last three.
 */
export function relativePositionLayout(grid: number, maxTextLenOfInitCkpt: number) {
  const imageRel = (2 * grid - 1) * (2 * grid - 1) + 3;
  const total = imageRel + 2 * maxTextLenOfInitCkpt + 2;
  return { imageRel, total, textToImage: imageRel, imageToText: imageRel + 1 };
}

/** Index [N, N] (int64) into the table's rows for "text" (N = textLen), "image" or "vl" (text first) inputs. */
export function relativePositionIndex(kind: Modality, grid: number, maxTextLenOfInitCkpt: number, textLen: number): Tensor {
  const { imageRel, total, textToImage, imageToText } = relativePositionLayout(grid, maxTextLenOfInitCkpt);
  const nImg = grid * grid + 1;
  const T = kind === "image" ? 0 : textLen;
  if (T > maxTextLenOfInitCkpt) throw new Error(`relative position bias: text length ${T} exceeds the table's ${maxTextLenOfInitCkpt}`);
  const I = kind === "text" ? 0 : nImg;
  const N = T + I;
  const idx = new BigInt64Array(N * N);
  const put = (r: number, c: number, v: number) => { idx[r * N + c] = BigInt(v); };
  // text block
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) {
      let v: number;
      if (i === 0 && j === 0) v = total - 1;
      else if (j === 0) v = total - 2;
      else if (i === 0) v = total - 3;
      else v = imageRel + maxTextLenOfInitCkpt + (j - i);
      put(i, j, v);
    }
    for (let j = 0; j < I; j++) put(i, T + j, textToImage);
  }
  // image block (position 0 = image [CLS], then patches in raster order)
  const W2 = 2 * grid - 1;
  for (let i = 0; i < I; i++) {
    for (let j = 0; j < T; j++) put(T + i, j, imageToText);
    for (let j = 0; j < I; j++) {
      let v: number;
      if (i === 0 && j === 0) v = imageRel - 1;
      else if (j === 0) v = imageRel - 2;
      else if (i === 0) v = imageRel - 3;
      else {
        const ri = Math.floor((i - 1) / grid), ci = (i - 1) % grid;
        const rj = Math.floor((j - 1) / grid), cj = (j - 1) % grid;
        v = (ri - rj + grid - 1) * W2 + (ci - cj + grid - 1);
      }
      put(T + i, T + j, v);
    }
  }
  return tensor(idx, { shape: [N, N] });
}
