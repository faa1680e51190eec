// VLMo's input embeddings: image patches (`transformer.patch_embed`) and BERT-style text embeddings
// (`text_embeddings.*`). The modality-type table (`token_type_embeddings`) and the image [CLS] /
// positions belong to the model (model.ts) and the MoME Transformer (mome.ts).
import { Module, LayerNorm, Embedding, Dropout, Conv2d, Tensor } from "../../engine/index.ts";
import type { VLMoConfig } from "./config.ts";
import { initEmbedding } from "./init.ts";

/** Conv2d(patch, stride patch) from pixels [B, C, H, W] to [B, h, H/p, W/p] (`transformer.patch_embed.proj`). */
export class PatchEmbed extends Module {
  readonly proj: Conv2d;
  readonly gridSize: number;
  constructor(readonly imageSize: number, readonly patchSize: number, inChans: number, dim: number) {
    super();
    this.gridSize = imageSize / patchSize;
    // PyTorch's default Conv2d init (the official init leaves the patch projection untouched).
    this.proj = this.module("proj", new Conv2d(inChans, dim, patchSize, patchSize));
  }
  get numPatches(): number {
    return this.gridSize * this.gridSize;
  }
  forward(x: Tensor): Tensor {
    const [, , H, W] = x.shape;
    if (H !== this.imageSize || W !== this.imageSize) throw new Error(`PatchEmbed: image ${H}x${W} does not match the model's ${this.imageSize}x${this.imageSize}`);
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
