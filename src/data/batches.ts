// The batches of the downstream task builders, declared on this floor because their consumers sit
// below the builders: tasks/data.ts and tasks/retrieval_data.ts (floor 8) make them, the methods'
// task models and retrieval losses (floor 7) and the region task models (floor 4) read them. Each
// builder re-exports its interface. (The pre-training batches are declared by their builders:
// pretrain/builder.ts RegionTextBatch, pretrain/imagetext.ts ImageTextBatch.)
//
// Shapes: B examples, L = maxTextLen, N = maxBoxes, D = the region feature size, S = the image side.
import type { Tensor } from "../engine/index.ts";

/**
 * A classification batch (VQA, GQA, NLVR2: tasks/data.ts). Region models get text and regions per
 * row, R rows: B, or 2B for NLVR2 (each statement twice, with its first then its second image, in
 * adjacent rows); pixel models (VLMo) get one row per example and the image(s) as pixels.
 */
export interface TaskBatch {
  /** [R, L] int64 token ids. */
  input_ids: Tensor;
  /** [R, L] int64: 1 for a token, 0 for padding. */
  attention_mask: Tensor;
  /** [R, L] int64 LXMERT-S word positions (region models). */
  word_position_ids?: Tensor;
  /** [R, N, D] float32 region features (region models). */
  feats?: Tensor;
  /** [R, N, 4] float32 normalised boxes (region models). */
  boxes?: Tensor;
  /** [R, N] bool: the image has a box there (region models). */
  region_valid?: Tensor;
  /** [B, 3, S, S] float32, normalised as VLMo's (pixel models, VQA and GQA). */
  pixels?: Tensor;
  /** [B, 3, S, S] float32: NLVR2's first and second image (pixel models). */
  pixels0?: Tensor;
  pixels1?: Tensor;
  /** [B, answers] float32 soft answer scores (VQA, GQA; zeros on an unlabelled split). */
  target?: Tensor;
  /** [B] int64: 1 when the NLVR2 statement is true. */
  label?: Tensor;
}

export interface TaskMeta {
  /** The question ids / NLVR2 identifiers, in batch order. */
  ids: (number | string)[];
}

/** A field a batch of this kind must hold, or an error naming it (e.g. a region model given a pixel batch). */
export function need<B extends object, K extends keyof B & string>(b: B, key: K, who: string): NonNullable<B[K]> {
  const v = b[key];
  if (v === undefined || v === null) throw new Error(`${who}: the batch has no ${key} (it was built for another kind of model)`);
  return v as NonNullable<B[K]>;
}

/**
 * A retrieval fine-tuning batch (tasks/retrieval_data.ts): B captions with their images. With
 * `fourWay` (LXMERT-S, ViLBERT-style) it also holds, per example, a random negative image
 * (`neg_*`), a caption of a hard-negative image (`hard_*`) and one of a random image (`rand_*`).
 */
export interface RetrievalBatch {
  /** [B, L] int64 token ids, attention mask and LXMERT-S word positions of the captions. */
  input_ids: Tensor;
  attention_mask: Tensor;
  word_position_ids: Tensor;
  /** [B] int64: the image's index in the split. */
  img_index: Tensor;
  /** [B, N, D] float32, [B, N, 4] float32, [B, N] bool: the images' regions (region models). */
  feats?: Tensor;
  boxes?: Tensor;
  region_valid?: Tensor;
  /** [B, 3, S, S] float32 (pixel models). */
  pixels?: Tensor;
  /** fourWay: the random negative images' regions. */
  neg_feats?: Tensor;
  neg_boxes?: Tensor;
  neg_region_valid?: Tensor;
  /** fourWay: [B, L] int64, a caption of a hard-negative image. */
  hard_input_ids?: Tensor;
  hard_attention_mask?: Tensor;
  hard_word_position_ids?: Tensor;
  /** fourWay: [B, L] int64, a caption of a random other image. */
  rand_input_ids?: Tensor;
  rand_attention_mask?: Tensor;
  rand_word_position_ids?: Tensor;
}

export interface RetrievalMeta {
  /** Each example's image id. */
  imgIds: string[];
  /** fourWay: the ids of the negative images and of the images the hard and random captions describe. */
  negImgIds?: string[];
  hardImgIds?: string[];
  /** fourWay: whether the hard caption came from the image's hard-negative pool (else a random image). */
  hardFromPool?: boolean[];
  randCapImgIds?: string[];
}
