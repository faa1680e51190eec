// VLMo's input embeddings: image patches (`transformer.patch_embed`) and BERT-style text embeddings
// (`text_embeddings.*`). The modality-type table (`token_type_embeddings`) and the image [CLS] /
// positions belong to the model (model.ts) and the MoME Transformer (mome.ts).
import { Module, LayerNorm, GroupNorm, Embedding, Dropout, Conv2d, ModuleList, F, Tensor } from "../../engine/index.ts";
import type { VLMoConfig } from "./config.ts";
import { initEmbedding } from "./init.ts";

/**
 * One stage of the convolutional stem: a 3x3 convolution at full resolution, GroupNorm (one group),
 * ReLU, then 2x2 max pooling (`patch_embed.stem.N.{conv,norm}`).
 */
export class StemStage extends Module {
  readonly conv: Conv2d;
  readonly norm: GroupNorm;
  constructor(inChans: number, outChans: number) {
    super();
    this.conv = this.module("conv", new Conv2d(inChans, outChans, 3, 1, 1, false));
    this.norm = this.module("norm", new GroupNorm(1, outChans));
  }
  forward(x: Tensor): Tensor {
    return F.maxPool2d(this.norm.forward(this.conv.forward(x)).relu(), 2);
  }
}

/** Channels of the convolutional stem's stages for a patch size (a power of two): 16, 32, 64, ... */
export function stemChannels(patchSize: number): number[] {
  const stages = Math.log2(patchSize);
  if (!Number.isInteger(stages) || stages < 1) throw new Error(`a convolutional stem needs a power-of-two patch size, got ${patchSize}`);
  return Array.from({ length: stages }, (_, i) => 16 << i);
}

/**
 * Pixels [B, C, H, W] to patch features [B, h, H/p, W/p] (`transformer.patch_embed`).
 * - `stemKind` "linear" (official): `proj` = Conv2d(patch, stride patch), one linear map of each patch.
 * - `stemKind` "conv" (config `patchStem`, a vlpkit departure, ViT's "hybrid architecture"): log2(patch) `StemStage`s halve the
 *   resolution with max pooling, then `proj` = Conv2d(channels, h, 1). A linear patch map learns colours
 *   but not the synthetic world's 6-20 px shapes from 4,300 images; full-resolution convolutions with
 *   max pooling do (README "Pre-training that learns", session 15).
 */
export class PatchEmbed extends Module {
  readonly proj: Conv2d;
  readonly stem: ModuleList<StemStage> | null;
  readonly gridSize: number;
  constructor(readonly imageSize: number, readonly patchSize: number, inChans: number, dim: number, stemKind: "linear" | "conv" = "linear") {
    super();
    this.gridSize = imageSize / patchSize;
    if (stemKind === "conv") {
      const chans = stemChannels(patchSize);
      this.stem = this.module("stem", new ModuleList(chans.map((c, i) => new StemStage(i === 0 ? inChans : chans[i - 1], c))));
      this.proj = this.module("proj", new Conv2d(chans[chans.length - 1], dim, 1));
    } else {
      this.stem = null;
      // PyTorch's default Conv2d init (the official init leaves the patch projection untouched).
      this.proj = this.module("proj", new Conv2d(inChans, dim, patchSize, patchSize));
    }
  }
  get numPatches(): number {
    return this.gridSize * this.gridSize;
  }
  forward(x: Tensor): Tensor {
    const [, , H, W] = x.shape;
    if (H !== this.imageSize || W !== this.imageSize) throw new Error(`PatchEmbed: image ${H}x${W} does not match the model's ${this.imageSize}x${this.imageSize}`);
    if (this.stem) for (const s of this.stem.items) x = s.forward(x);
    return this.proj.forward(x);
  }
}

/** BERT-style text embeddings as in HF `BertEmbeddings` with position_embedding_type "rel_pos". */
export class TextEmbeddings extends Module {
  readonly word_embeddings: Embedding;
  /** Present in the official state_dict but never added (relative position bias instead). */
  readonly position_embeddings: Embedding;
  readonly token_type_embeddings: Embedding;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(cfg: VLMoConfig) {
    super();
    const h = cfg.hiddenSize;
    this.word_embeddings = this.module("word_embeddings", initEmbedding(new Embedding(cfg.vocabSize, h, 0)));
    this.position_embeddings = this.module("position_embeddings", initEmbedding(new Embedding(cfg.maxTextLen, h)));
    this.token_type_embeddings = this.module("token_type_embeddings", initEmbedding(new Embedding(2, h)));
    this.LayerNorm = this.module("LayerNorm", new LayerNorm(h, cfg.textLnEps));
    this.dropout = this.module("dropout", new Dropout(cfg.textDropout));
  }
  /** ids [B, T] int64 -> LN(word + type 0), then dropout. */
  forward(ids: Tensor): Tensor {
    const e = this.word_embeddings.forward(ids).add(this.token_type_embeddings.weight.select(0, 0));
    return this.dropout.forward(this.LayerNorm.forward(e));
  }
}
