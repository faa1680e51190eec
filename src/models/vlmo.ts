// VLMo (Wang et al. 2021): a Mixture-of-Modality-Experts (MoME) Transformer that encodes text
// only, images only, or image-text pairs with one set of shared self-attention weights and
// modality experts (V-FFN, L-FFN, VL-FFN) in place of the feed-forward network.
//
// Structure and parameter names follow the official implementation (microsoft/unilm `vlmo/`,
// built on ViLT and BEiT) so that its state_dicts load by name:
//   text_embeddings.{word_embeddings,position_embeddings,token_type_embeddings,LayerNorm}
//   token_type_embeddings.weight                  modality type: text 0, image 1 (NLVR2: 2)
//   relative_position_bias_table                  [rows, heads * layers]: one parameter and one gather
//                                                 for all layers; layer l reads columns [l*heads, (l+1)*heads)
//   transformer.{patch_embed.proj, cls_token, pos_embed?, blocks.N.*, norm}
//   transformer.blocks.N.{norm1, attn.{qkv.weight,q_bias,v_bias,proj}, gamma_1, gamma_2,
//                         norm2_text, mlp_text, norm2_imag, mlp_imag, norm2_vl?, mlp_vl?}
//   pooler.dense, itc_*_proj.fc, itm_score.fc, mlm_score.*, logit_scale, vqa_classifier, nlvr2_classifier
// Deviations of the official code from the paper that we follow: the image has no absolute
// position embedding by default (relative position bias only); the text embedding module owns a
// (never added) absolute position table and its own token-type table, both kept for checkpoints.
import {
  Module, Linear, LayerNorm, Embedding, Dropout, DropPath, Conv2d, ModuleList,
  Tensor, zeros, ones, full, cat, tensor, fromBytes, zerosLike, linspace, tidy, F, type DType,
} from "../engine/index.ts";
import { maskedMean } from "./bert.ts";
import { loadPthStateDict } from "../engine/serialize/pth.ts";
import {
  Pooler, ITCHead, ITMHead, MLMHead, ClassifierHead, l2normalize,
} from "./vlmo_heads.ts";

// ---- configuration ----------------------------------------------------------------------------

export interface VLMoHeadsConfig {
  /** MLM head (`mlm_score`): transform + untied decoder. */
  mlm: boolean;
  /** ITM head (`itm_score`): Linear(h, 2) on the pooled fusion [CLS]. */
  itm: boolean;
  /** ITC projections `itc_text_proj`, `itc_image_proj` and `logit_scale`. */
  itc: boolean;
  /** The VL-branch ITC projections `itc_vl_text_proj`, `itc_vl_image_proj` and `logit_vl_scale` (pre-training). */
  itcVl: boolean;
  /** VQA classifier with this many answers (0 = none). */
  vqaLabels: number;
  /** NLVR2 classifier (and a third modality-type embedding for the second image). */
  nlvr2: boolean;
}

/** Everything that defines a VLMo network; plain JSON. */
export interface VLMoConfig {
  name: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  mlpRatio: number;
  imageSize: number;
  patchSize: number;
  inChans: number;
  /** Layers with index >= this one carry a VL-FFN (base 10, large 21). numLayers = none. */
  vlffnStartLayer: number;
  /** Text length the model is run with (official: 40); also the rows of the unused absolute text table. */
  maxTextLen: number;
  /** Text length of the checkpoint that sized the relative-position table (official: 196). */
  maxTextLenOfInitCkpt: number;
  vocabSize: number;
  /** Table 5 ablation: a standard Transformer, one FFN (`mlp`, `norm2`) shared by every modality. */
  standard: boolean;
  /** Absolute image position embedding `transformer.pos_embed` (official base/large: false). */
  useAbsPosEmb: boolean;
  /** Relative position bias (official base/large: true). */
  relativePositionBias: boolean;
  /**
   * What the ITC projections read: "cls" (the official [CLS] after the final norm) or "mean" (vlpkit,
   * for models trained from scratch: the masked mean of the sequence, whose [CLS] carries almost
   * nothing before attention has learned to gather, see README "Pre-training that learns").
   */
  itcPool?: "cls" | "mean";
  /**
   * What the ITM head reads: "pooled" (official: the pooler on the fusion [CLS]) or "prod" (vlpkit
   * option: the pooler's dense layer over the element-wise product of the fused text part's mean and
   * the fused image part's mean, a bilinear read-out a from-scratch model has at step 0).
   */
  itmRead?: "pooled" | "prod";
  /** Layer scale init (0.1); null = no gamma_1/gamma_2. */
  layerScaleInit: number | null;
  qkvBias: boolean;
  /** LayerNorm eps of the Transformer (1e-6); the text embedding LayerNorm uses 1e-12. */
  lnEps: number;
  textLnEps: number;
  /** Stochastic depth, linearly increasing to this rate over the layers. */
  dropPathRate: number;
  /** Dropout after the text embedding LayerNorm (official: equal to drop_path_rate). */
  textDropout: number;
  /** Dropout inside attention/MLP and after the image embedding (official: 0). */
  dropRate: number;
  attnDropRate: number;
  /** Rows of `token_type_embeddings` (2; 3 when an NLVR2 head is present). */
  numTokenTypes: number;
  heads: VLMoHeadsConfig;
}

const PRETRAIN_HEADS: VLMoHeadsConfig = { mlm: true, itm: true, itc: true, itcVl: true, vqaLabels: 0, nlvr2: false };

const BASE: VLMoConfig = {
  name: "vlmo-base",
  hiddenSize: 768,
  numLayers: 12,
  numHeads: 12,
  mlpRatio: 4,
  imageSize: 224,
  patchSize: 16,
  inChans: 3,
  vlffnStartLayer: 10,
  maxTextLen: 40,
  maxTextLenOfInitCkpt: 196,
  vocabSize: 30522,
  standard: false,
  useAbsPosEmb: false,
  relativePositionBias: true,
  itcPool: "cls",
  itmRead: "pooled",
  layerScaleInit: 0.1,
  qkvBias: true,
  lnEps: 1e-6,
  textLnEps: 1e-12,
  dropPathRate: 0.1,
  textDropout: 0.1,
  dropRate: 0,
  attnDropRate: 0,
  numTokenTypes: 2,
  heads: PRETRAIN_HEADS,
};

export const VLMO_PRESETS = {
  base: BASE,
  large: { ...BASE, name: "vlmo-large", hiddenSize: 1024, numLayers: 24, numHeads: 16, vlffnStartLayer: 21 },
  /** CPU tests: 4 layers (VL-FFN in the top 2), 64 hidden, 32 px images in 8 px patches (16 patches). */
  tiny: { ...BASE, name: "vlmo-tiny", hiddenSize: 64, numLayers: 4, numHeads: 4, vlffnStartLayer: 2, imageSize: 32, patchSize: 8 },
  /** CPU experiments: 4 layers, 128 hidden, 64 px images in 16 px patches. */
  small: { ...BASE, name: "vlmo-small", hiddenSize: 128, numLayers: 4, numHeads: 4, vlffnStartLayer: 2, imageSize: 64, patchSize: 16 },
} satisfies Record<string, VLMoConfig>;

export type VLMoPreset = keyof typeof VLMO_PRESETS;

/** A config from a preset with overrides (heads merged field by field); validated. */
export function vlmoConfig(preset: VLMoPreset | VLMoConfig, overrides: Partial<Omit<VLMoConfig, "heads">> & { heads?: Partial<VLMoHeadsConfig> } = {}): VLMoConfig {
  const base = typeof preset === "string" ? VLMO_PRESETS[preset] : preset;
  const cfg: VLMoConfig = { ...base, ...overrides, heads: { ...base.heads, ...(overrides.heads ?? {}) } };
  if (overrides.numTokenTypes === undefined && cfg.heads.nlvr2) cfg.numTokenTypes = Math.max(3, cfg.numTokenTypes);
  validateConfig(cfg);
  return cfg;
}

export function validateConfig(c: VLMoConfig): void {
  const fail = (m: string) => { throw new Error(`VLMoConfig ${c.name}: ${m}`); };
  if (c.hiddenSize % c.numHeads !== 0) fail(`hiddenSize ${c.hiddenSize} is not divisible by numHeads ${c.numHeads}`);
  if (c.imageSize % c.patchSize !== 0) fail(`imageSize ${c.imageSize} is not a multiple of patchSize ${c.patchSize}`);
  if (c.vlffnStartLayer < 1 || c.vlffnStartLayer > c.numLayers) fail(`vlffnStartLayer ${c.vlffnStartLayer} must be in [1, ${c.numLayers}]`);
  if (c.relativePositionBias && c.maxTextLen > c.maxTextLenOfInitCkpt) fail(`maxTextLen ${c.maxTextLen} exceeds maxTextLenOfInitCkpt ${c.maxTextLenOfInitCkpt}`);
  if (c.heads.nlvr2 && c.numTokenTypes < 3) fail("an NLVR2 head needs numTokenTypes >= 3");
}

// ---- init helpers (the official init: N(0, 0.02) for Linear/Embedding, zero biases, LN 1/0) ----

function initLinear(l: Linear, std = 0.02): Linear {
  F.truncNormal_(l.weight, 0, std, -2, 2);
  if (l.bias) F.zeros_(l.bias);
  return l;
}
function initEmbedding(e: Embedding, std = 0.02): Embedding {
  F.normal_(e.weight, 0, std);
  return e;
}

// ---- building blocks (timm style) ---------------------------------------------------------------

/** fc1 -> GELU (erf) -> dropout -> fc2 -> dropout. */
export class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly drop: Dropout;
  constructor(dim: number, hidden: number, drop = 0) {
    super();
    this.fc1 = this.module("fc1", initLinear(new Linear(dim, hidden)));
    this.fc2 = this.module("fc2", initLinear(new Linear(hidden, dim)));
    this.drop = this.module("drop", new Dropout(drop));
  }
  forward(x: Tensor): Tensor {
    return this.drop.forward(this.fc2.forward(this.drop.forward(this.fc1.forward(x).gelu())));
  }
}

/**
 * Multi-head self-attention shared by all modalities. `qkv` has no bias of its own: the bias is
 * [q_bias, 0, v_bias] (no key bias). Logits are computed in float32, the relative position bias
 * of this layer ([heads, N, N]) is added, padded keys are set to -inf.
 */
export class Attention extends Module {
  readonly qkv: Linear;
  readonly q_bias: Tensor | null;
  readonly v_bias: Tensor | null;
  readonly proj: Linear;
  readonly scale: number;
  readonly attnDrop: Dropout;
  readonly projDrop: Dropout;
  constructor(readonly dim: number, readonly numHeads: number, qkvBias = true, attnDrop = 0, projDrop = 0) {
    super();
    this.scale = (dim / numHeads) ** -0.5;
    this.qkv = this.module("qkv", new Linear(dim, 3 * dim, false));
    F.truncNormal_(this.qkv.weight, 0, 0.02, -2, 2);
    this.q_bias = this.param("q_bias", qkvBias ? zeros([dim]) : null);
    this.v_bias = this.param("v_bias", qkvBias ? zeros([dim]) : null);
    this.proj = this.module("proj", initLinear(new Linear(dim, dim)));
    this.attnDrop = this.module("attn_drop", new Dropout(attnDrop));
    this.projDrop = this.module("proj_drop", new Dropout(projDrop));
  }

  /**
   * x [B, N, C]; keyMasked: bool [B, N], true = padding (ignored as a key); relBias [heads, N, N].
   * Returns the output and, with `wantAttn`, the attention probabilities [B, heads, N, N].
   */
  forward(x: Tensor, keyMasked: Tensor | null, relBias: Tensor | null, wantAttn = false): { out: Tensor; attn: Tensor | null } {
    const [B, N, C] = x.shape;
    const bias = this.q_bias && this.v_bias ? cat([this.q_bias, zerosLike(this.v_bias), this.v_bias]) : null;
    const qkv = F.linear(x, this.qkv.weight, bias).reshape(B, N, 3, this.numHeads, C / this.numHeads).permute(2, 0, 3, 1, 4);
    const [q, k, v] = qkv.unbind(0);
    let logits = q.mul(this.scale).float().matmul(k.float().transpose(-2, -1));
    if (relBias) logits = logits.add(relBias.unsqueeze(0));
    if (keyMasked) logits = logits.maskedFill(keyMasked.unsqueeze(1).unsqueeze(1), -Infinity);
    let attn = logits.softmax(-1);
    if (attn.dtype !== x.dtype) attn = attn.to(x.dtype);
    const probs = attn;
    attn = this.attnDrop.forward(attn);
    const ctx = attn.matmul(v).transpose(1, 2).reshape(B, N, C);
    return { out: this.projDrop.forward(this.proj.forward(ctx)), attn: wantAttn ? probs : null };
  }
}

export type Modality = "text" | "image" | "vl";

/**
 * A MoME block: x + DropPath(γ1·Attn(LN1 x)), then x + DropPath(γ2·FFN_e(LN2_e x)) with the
 * expert e chosen by the modality: "text" -> L-FFN, "image" -> V-FFN, "vl" -> VL-FFN in layers that
 * have one, else L-FFN for the first `textLen` positions and V-FFN for the rest (text first).
 */
export class MoMEBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly dropPath: DropPath;
  readonly gamma_1: Tensor | null;
  readonly gamma_2: Tensor | null;
  readonly norm2_text: LayerNorm | null = null;
  readonly mlp_text: Mlp | null = null;
  readonly norm2_imag: LayerNorm | null = null;
  readonly mlp_imag: Mlp | null = null;
  readonly norm2_vl: LayerNorm | null = null;
  readonly mlp_vl: Mlp | null = null;
  /** Standard-Transformer ablation: the single FFN. */
  readonly norm2: LayerNorm | null = null;
  readonly mlp: Mlp | null = null;

  constructor(cfg: VLMoConfig, readonly withVlffn: boolean, dropPath: number) {
    super();
    const h = cfg.hiddenSize;
    const hidden = Math.floor(h * cfg.mlpRatio);
    this.norm1 = this.module("norm1", new LayerNorm(h, cfg.lnEps));
    this.attn = this.module("attn", new Attention(h, cfg.numHeads, cfg.qkvBias, cfg.attnDropRate, cfg.dropRate));
    this.dropPath = this.module("drop_path", new DropPath(dropPath));
    if (cfg.standard) {
      this.norm2 = this.module("norm2", new LayerNorm(h, cfg.lnEps));
      this.mlp = this.module("mlp", new Mlp(h, hidden, cfg.dropRate));
    } else {
      this.norm2_text = this.module("norm2_text", new LayerNorm(h, cfg.lnEps));
      this.norm2_imag = this.module("norm2_imag", new LayerNorm(h, cfg.lnEps));
      this.mlp_text = this.module("mlp_text", new Mlp(h, hidden, cfg.dropRate));
      this.mlp_imag = this.module("mlp_imag", new Mlp(h, hidden, cfg.dropRate));
      if (withVlffn) {
        this.mlp_vl = this.module("mlp_vl", new Mlp(h, hidden, cfg.dropRate));
        this.norm2_vl = this.module("norm2_vl", new LayerNorm(h, cfg.lnEps));
      }
    }
    const g = cfg.layerScaleInit;
    this.gamma_1 = this.param("gamma_1", g === null ? null : ones([h]).mul_(g));
    this.gamma_2 = this.param("gamma_2", g === null ? null : ones([h]).mul_(g));
  }

  /** The residual branch of an expert: DropPath(γ2 · FFN(LN(x))). */
  private ffn(x: Tensor, norm: LayerNorm, mlp: Mlp): Tensor {
    const y = mlp.forward(norm.forward(x));
    return this.dropPath.forward(this.gamma_2 ? y.mul(this.gamma_2) : y);
  }

  /** Which experts this block uses for a modality (for routing inspection). */
  expertsFor(modality: Modality): ("mlp" | "mlp_text" | "mlp_imag" | "mlp_vl")[] {
    if (this.mlp) return ["mlp"];
    if (modality === "text") return ["mlp_text"];
    if (modality === "image") return ["mlp_imag"];
    return this.mlp_vl ? ["mlp_vl"] : ["mlp_text", "mlp_imag"];
  }

  forward(x: Tensor, opts: { modality: Modality; keyMasked?: Tensor | null; relBias?: Tensor | null; textLen?: number; wantAttn?: boolean }): { out: Tensor; attn: Tensor | null } {
    const a = this.attn.forward(this.norm1.forward(x), opts.keyMasked ?? null, opts.relBias ?? null, !!opts.wantAttn);
    x = x.add(this.dropPath.forward(this.gamma_1 ? a.out.mul(this.gamma_1) : a.out));
    let out: Tensor;
    if (this.mlp && this.norm2) {
      out = x.add(this.ffn(x, this.norm2, this.mlp));
    } else if (opts.modality === "text") {
      out = x.add(this.ffn(x, this.norm2_text!, this.mlp_text!));
    } else if (opts.modality === "image") {
      out = x.add(this.ffn(x, this.norm2_imag!, this.mlp_imag!));
    } else if (this.mlp_vl && this.norm2_vl) {
      out = x.add(this.ffn(x, this.norm2_vl, this.mlp_vl));
    } else {
      const T = opts.textLen;
      if (T === undefined) throw new Error("MoMEBlock: a fusion input below the VL layers needs textLen");
      const xt = x.narrow(1, 0, T);
      const xi = x.narrow(1, T, x.size(1) - T);
      out = cat([xt.add(this.ffn(xt, this.norm2_text!, this.mlp_text!)), xi.add(this.ffn(xi, this.norm2_imag!, this.mlp_imag!))], 1);
    }
    return { out, attn: a.attn };
  }
}

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

/** The vision side and the shared blocks (`transformer.*`). */
export class MultiWayTransformer extends Module {
  readonly patch_embed: PatchEmbed;
  readonly cls_token: Tensor;
  readonly pos_embed: Tensor | null;
  readonly blocks: ModuleList<MoMEBlock>;
  readonly norm: LayerNorm;
  readonly posDrop: Dropout;
  constructor(readonly cfg: VLMoConfig) {
    super();
    const h = cfg.hiddenSize;
    this.patch_embed = this.module("patch_embed", new PatchEmbed(cfg.imageSize, cfg.patchSize, cfg.inChans, h));
    this.cls_token = this.param("cls_token", F.truncNormal_(zeros([1, 1, h]), 0, 0.02, -2, 2));
    this.pos_embed = this.param("pos_embed", cfg.useAbsPosEmb ? F.truncNormal_(zeros([1, this.patch_embed.numPatches + 1, h]), 0, 0.02, -2, 2) : null);
    this.posDrop = this.module("pos_drop", new Dropout(cfg.dropRate));
    const rates = linspace(0, cfg.dropPathRate, cfg.numLayers).toArray();
    this.blocks = this.module("blocks", new ModuleList(rates.map((r, i) => new MoMEBlock(cfg, !cfg.standard && i >= cfg.vlffnStartLayer, r))));
    this.norm = this.module("norm", new LayerNorm(h, cfg.lnEps));
  }

  /** Pixels [B, C, H, W] -> [B, 1 + patches, h]: image [CLS] first, then patches in raster order. */
  visualEmbed(pixels: Tensor): Tensor {
    const x = this.patch_embed.forward(pixels).flatten(2).transpose(1, 2);
    const B = x.size(0);
    let e = cat([this.cls_token.expand(B, -1, -1), x], 1);
    if (this.pos_embed) e = e.add(this.pos_embed);
    return this.posDrop.forward(e);
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

// ---- relative position index (official layout) ---------------------------------------------------

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

// ---- the model ------------------------------------------------------------------------------------

export interface InspectOptions {
  /** Also return the hidden state after every block (before the final LayerNorm). */
  outputHiddenStates?: boolean;
  /** Also return every block's attention probabilities [B, heads, N, N]. */
  outputAttentions?: boolean;
}

export interface VLMoEncoderOutput {
  /** Final hidden states after `transformer.norm` [B, N, h]. */
  hidden: Tensor;
  /**
   * The official `raw_cls_feats`: position 0 of the last block's output BEFORE the final norm in the
   * text-only and image-only passes (`infer_text` / `infer_image`), AFTER it in the fusion pass
   * (`infer`, where it equals `hidden[:, 0]`). Heads use `pooled` / `cls` / `itc`, as official.
   */
  rawCls: Tensor;
  hiddenStates?: Tensor[];
  attentions?: Tensor[];
}

export interface VLMoUnimodalOutput extends VLMoEncoderOutput {
  /** Final [CLS] (after the final norm) [B, h]. */
  cls: Tensor;
  /** L2-normalised ITC embedding through itc_text_proj / itc_image_proj (when the model has ITC heads). */
  itc?: Tensor;
  /** VL branch (pre-training ITC): the upper blocks re-run with the VL-FFN from the last V/L-FFN layer's output. */
  vlHidden?: Tensor;
  vlCls?: Tensor;
  itcVl?: Tensor;
}

export interface VLMoFusionOutput extends VLMoEncoderOutput {
  textFeats: Tensor;
  imageFeats: Tensor;
  /** Text [CLS] after the final norm (hidden[:, 0]). */
  textCls: Tensor;
  /** Image [CLS] after the final norm (hidden[:, textLen]). */
  imageCls: Tensor;
  /** pooler(hidden[:, 0]): the pair representation for ITM / VQA / NLVR2. */
  pooled: Tensor;
  /** With config.itmRead "prod": what the ITM head reads instead of `pooled`. */
  itmInput?: Tensor;
}

export interface UnimodalOptions extends InspectOptions {
  /** Run the VL branch too (default: when the model has the VL-branch ITC heads). */
  vlBranch?: boolean;
}

export class VLMoModel extends Module {
  readonly config: VLMoConfig;
  readonly transformer: MultiWayTransformer;
  readonly text_embeddings: TextEmbeddings;
  readonly token_type_embeddings: Embedding;
  /** One parameter for every layer: rows per relative offset, columns [layer0 heads, layer1 heads, ...]. */
  readonly relative_position_bias_table: Tensor | null;
  readonly pooler: Pooler;
  readonly mlm_score: MLMHead | null;
  readonly itm_score: ITMHead | null;
  readonly itc_text_proj: ITCHead | null;
  readonly itc_image_proj: ITCHead | null;
  readonly itc_vl_text_proj: ITCHead | null;
  readonly itc_vl_image_proj: ITCHead | null;
  readonly logit_scale: Tensor | null;
  readonly logit_vl_scale: Tensor | null;
  readonly vqa_classifier: ClassifierHead | null;
  readonly nlvr2_classifier: ClassifierHead | null;
  private readonly indexCache = new Map<string, Tensor>();

  constructor(config: VLMoConfig) {
    super();
    validateConfig(config);
    this.config = structuredClone(config);
    const cfg = this.config;
    const h = cfg.hiddenSize;
    this.transformer = this.module("transformer", new MultiWayTransformer(cfg));
    const grid = this.transformer.patch_embed.gridSize;
    this.relative_position_bias_table = this.param(
      "relative_position_bias_table",
      cfg.relativePositionBias ? zeros([relativePositionLayout(grid, cfg.maxTextLenOfInitCkpt).total, cfg.numHeads * cfg.numLayers]) : null,
    );
    this.text_embeddings = this.module("text_embeddings", new TextEmbeddings(cfg));
    this.token_type_embeddings = this.module("token_type_embeddings", initEmbedding(new Embedding(cfg.numTokenTypes, h)));
    this.pooler = this.module("pooler", new Pooler(h));
    const hd = cfg.heads;
    this.mlm_score = this.module("mlm_score", hd.mlm ? new MLMHead(h, cfg.vocabSize) : null);
    this.itm_score = this.module("itm_score", hd.itm ? new ITMHead(h) : null);
    this.itc_text_proj = this.module("itc_text_proj", hd.itc ? new ITCHead(h) : null);
    this.itc_image_proj = this.module("itc_image_proj", hd.itc ? new ITCHead(h) : null);
    const vl = hd.itc && hd.itcVl && !cfg.standard;
    this.itc_vl_text_proj = this.module("itc_vl_text_proj", vl ? new ITCHead(h) : null);
    this.itc_vl_image_proj = this.module("itc_vl_image_proj", vl ? new ITCHead(h) : null);
    this.logit_scale = this.param("logit_scale", hd.itc ? full([], Math.log(1 / 0.07)) : null);
    this.logit_vl_scale = this.param("logit_vl_scale", vl ? full([], Math.log(1 / 0.07)) : null);
    this.vqa_classifier = this.module("vqa_classifier", hd.vqaLabels > 0 ? new ClassifierHead(h, 2 * h, hd.vqaLabels) : null);
    this.nlvr2_classifier = this.module("nlvr2_classifier", hd.nlvr2 ? new ClassifierHead(2 * h, 2 * h, 2) : null);
  }

  get numLayers(): number {
    return this.config.numLayers;
  }
  get blocks(): MoMEBlock[] {
    return this.transformer.blocks.items;
  }
  get gridSize(): number {
    return this.transformer.patch_embed.gridSize;
  }
  /** Tokens of an image input: [CLS] + patches. */
  get imageTokens(): number {
    return this.transformer.patch_embed.numPatches + 1;
  }

  // ---- embeddings ----

  /** Text ids [B, T] -> text embeddings + modality type 0. */
  embedText(ids: Tensor): Tensor {
    return this.text_embeddings.forward(ids).add(this.token_type_embeddings.weight.select(0, 0));
  }
  /** Pixels [B, 3, H, W] -> image embeddings + modality type `typeIdx` (1; NLVR2's second image 2). */
  embedImage(pixels: Tensor, typeIdx = 1): Tensor {
    if (typeIdx >= this.config.numTokenTypes) throw new Error(`embedImage: token type ${typeIdx} needs numTokenTypes > ${typeIdx}`);
    return this.transformer.visualEmbed(pixels).add(this.token_type_embeddings.weight.select(0, typeIdx));
  }

  // ---- relative position bias ----

  /** The cached index for an input kind (kept; freed with the model). */
  relativePositionIndex(kind: Modality, textLen: number): Tensor {
    const key = `${kind}:${kind === "image" ? 0 : textLen}`;
    let t = this.indexCache.get(key);
    if (!t) {
      t = relativePositionIndex(kind, this.gridSize, this.config.maxTextLenOfInitCkpt, textLen).keep();
      this.indexCache.set(key, t);
    }
    if (this.relative_position_bias_table && t.device !== this.relative_position_bias_table.device) {
      const moved = t.to(this.relative_position_bias_table.device).keep();
      t.dispose();
      this.indexCache.set(key, moved);
      t = moved;
    }
    return t;
  }

  /** The bias of every layer ([heads, N, N] each, layer l = table columns [l*heads, (l+1)*heads)), from one gather. */
  relativePositionBias(kind: Modality, textLen: number): (Tensor | null)[] {
    const table = this.relative_position_bias_table;
    if (!table) return Array(this.numLayers).fill(null);
    const idx = this.relativePositionIndex(kind, textLen);
    const all = F.embedding(table, idx).permute(2, 0, 1).contiguous();
    return all.chunk(this.numLayers, 0);
  }

  // ---- encoders ----

  /** Runs blocks [from, to) on x with the given modality routing. */
  private runBlocks(x: Tensor, modality: Modality, from: number, to: number, bias: (Tensor | null)[], keyMasked: Tensor | null, textLen: number | undefined, o: InspectOptions, states: Tensor[] | null, attns: Tensor[] | null): Tensor {
    for (let i = from; i < to; i++) {
      const blk = this.blocks[i];
      const r = tidy(() => blk.forward(x, { modality, keyMasked, relBias: bias[i], textLen, wantAttn: !!o.outputAttentions }));
      x = r.out;
      states?.push(x);
      if (attns && r.attn) attns.push(r.attn);
    }
    return x;
  }

  private encode(x: Tensor, modality: Modality, keyMasked: Tensor | null, textLen: number, o: InspectOptions & { vlBranch?: boolean }): VLMoEncoderOutput & { vlHidden?: Tensor } {
    const L = this.numLayers;
    const bias = this.relativePositionBias(modality, textLen);
    const states: Tensor[] = [];
    const attns: Tensor[] | null = o.outputAttentions ? [] : null;
    const h = this.runBlocks(x, modality, 0, L, bias, keyMasked, textLen, o, states, attns);
    const out: VLMoEncoderOutput & { vlHidden?: Tensor } = { hidden: this.transformer.norm.forward(h), rawCls: h.select(1, 0) };
    if (o.outputHiddenStates) out.hiddenStates = states;
    if (attns) out.attentions = attns;
    if (o.vlBranch && modality !== "vl") {
      const s = this.config.vlffnStartLayer;
      if (s < L) {
        const v = this.runBlocks(states[s - 1], "vl", s, L, bias, keyMasked, textLen, {}, null, null);
        out.vlHidden = this.transformer.norm.forward(v);
      }
    }
    return out;
  }

  private keyMask(mask: Tensor | null | undefined): Tensor | null {
    if (!mask) return null;
    return mask.eq(0);
  }

  private wantVl(o: UnimodalOptions): boolean {
    return o.vlBranch ?? (this.itc_vl_text_proj !== null);
  }

  /** The vector an ITC projection reads: [CLS] (official) or the masked mean of the sequence (config.itcPool). */
  private itcRead(hidden: Tensor, mask: Tensor | null): Tensor {
    return this.config.itcPool === "mean" ? maskedMean(hidden, mask) : hidden.select(1, 0);
  }

  /** Text-only pass (L-FFN everywhere). ids [B, T] int64, mask [B, T] (1 = token, 0 = padding). */
  inferText(ids: Tensor, mask: Tensor | null, o: UnimodalOptions = {}): VLMoUnimodalOutput {
    const T = ids.size(1);
    const vlBranch = this.wantVl(o);
    const enc = this.encode(this.embedText(ids), "text", this.keyMask(mask), T, { ...o, vlBranch });
    const cls = enc.hidden.select(1, 0);
    const out: VLMoUnimodalOutput = { ...enc, cls };
    if (this.itc_text_proj) out.itc = l2normalize(this.itc_text_proj.forward(this.itcRead(enc.hidden, mask)));
    if (enc.vlHidden) {
      out.vlCls = enc.vlHidden.select(1, 0);
      if (this.itc_vl_text_proj) out.itcVl = l2normalize(this.itc_vl_text_proj.forward(this.itcRead(enc.vlHidden, mask)));
    }
    return out;
  }

  /** Image-only pass (V-FFN everywhere). pixels [B, 3, H, W]. */
  inferImage(pixels: Tensor, o: UnimodalOptions & { imageTokenType?: number } = {}): VLMoUnimodalOutput {
    const vlBranch = this.wantVl(o);
    const enc = this.encode(this.embedImage(pixels, o.imageTokenType ?? 1), "image", null, 0, { ...o, vlBranch });
    const cls = enc.hidden.select(1, 0);
    const out: VLMoUnimodalOutput = { ...enc, cls };
    if (this.itc_image_proj) out.itc = l2normalize(this.itc_image_proj.forward(this.itcRead(enc.hidden, null)));
    if (enc.vlHidden) {
      out.vlCls = enc.vlHidden.select(1, 0);
      if (this.itc_vl_image_proj) out.itcVl = l2normalize(this.itc_vl_image_proj.forward(this.itcRead(enc.vlHidden, null)));
    }
    return out;
  }

  /** Image-only pass from precomputed image embeddings (embedImage), e.g. with masked patches for stage-1 pre-training. */
  inferImageFromEmbeddings(imageEmbeds: Tensor, o: InspectOptions = {}): VLMoEncoderOutput {
    return this.encode(imageEmbeds, "image", null, 0, o);
  }

  /** Fusion pass over [text; image]: L-FFN/V-FFN by position below the VL layers, VL-FFN from them on. */
  inferFusion(ids: Tensor, mask: Tensor | null, pixels: Tensor, o: InspectOptions & { imageTokenType?: number } = {}): VLMoFusionOutput {
    return this.inferFusionFromEmbeddings(this.embedText(ids), mask, this.embedImage(pixels, o.imageTokenType ?? 1), o);
  }

  /** Fusion pass from precomputed embeddings (embedText / embedImage), e.g. to reuse them for ITM negatives. */
  inferFusionFromEmbeddings(textEmbeds: Tensor, mask: Tensor | null, imageEmbeds: Tensor, o: InspectOptions = {}): VLMoFusionOutput {
    const [B, T] = textEmbeds.shape;
    const I = imageEmbeds.size(1);
    let keyMasked: Tensor | null = null;
    if (mask) keyMasked = cat([mask.eq(0), zeros([B, I], { dtype: "bool", device: mask.device })], 1);
    const enc = this.encode(cat([textEmbeds, imageEmbeds], 1), "vl", keyMasked, T, o);
    return {
      ...enc,
      // official `infer`: raw_cls_feats after transformer.norm (the unimodal passes take it before)
      rawCls: enc.hidden.select(1, 0),
      textFeats: enc.hidden.narrow(1, 0, T),
      imageFeats: enc.hidden.narrow(1, T, I),
      textCls: enc.hidden.select(1, 0),
      imageCls: enc.hidden.select(1, T),
      pooled: this.pooler.forward(enc.hidden),
      itmInput: this.config.itmRead === "prod"
        ? this.pooler.poolVector(maskedMean(enc.hidden.narrow(1, 0, T), mask).mul(enc.hidden.narrow(1, T, I).mean(1)))
        : undefined,
    };
  }

  // ---- heads ----

  private need<T>(h: T | null, name: string): T {
    if (h === null) throw new Error(`VLMoModel ${this.config.name}: no ${name} head (enable it in config.heads)`);
    return h;
  }
  /** exp(logit_scale): the ITC temperature's inverse. */
  itcScale(): Tensor {
    return this.need(this.logit_scale, "itc").exp();
  }
  itcVlScale(): Tensor {
    return this.need(this.logit_vl_scale, "itcVl").exp();
  }
  /** ITM logits [B, 2] from a fusion output (or its pooled vector). */
  itmLogits(f: VLMoFusionOutput | Tensor): Tensor {
    return this.need(this.itm_score, "itm").forward(f instanceof Tensor ? f : (f.itmInput ?? f.pooled));
  }
  /** MLM logits [B, T, vocab] from text features (the fusion output's textFeats or a text-only hidden). */
  mlmLogits(textFeats: Tensor): Tensor {
    return this.need(this.mlm_score, "mlm").forward(textFeats);
  }
  vqaLogits(f: VLMoFusionOutput | Tensor): Tensor {
    return this.need(this.vqa_classifier, "vqa").forward(f instanceof Tensor ? f : f.pooled);
  }
  /** NLVR2 logits [B, 2]: the same text with image 0 (type 1) and image 1 (type 2), pooled vectors concatenated. */
  nlvr2Logits(ids: Tensor, mask: Tensor | null, pixels0: Tensor, pixels1: Tensor): Tensor {
    const head = this.need(this.nlvr2_classifier, "nlvr2");
    const a = this.inferFusion(ids, mask, pixels0, { imageTokenType: 1 }).pooled;
    const b = this.inferFusion(ids, mask, pixels1, { imageTokenType: 2 }).pooled;
    return head.forward(cat([a, b], -1));
  }

  override dispose(): void {
    for (const t of this.indexCache.values()) t.dispose();
    this.indexCache.clear();
    super.dispose();
  }
}

// ---- official checkpoints ---------------------------------------------------------------------------

/** Keys of official checkpoints that are not parameters of this model (index buffers), dropped on load. */
const OFFICIAL_BUFFERS = [
  "text_embeddings.position_ids", // registered persistent by transformers < 4.31
  "text_embeddings.token_type_ids",
  "relative_position_index",
  "text_relative_position_index",
  "text_imag_relative_position_index",
];

/**
 * Maps an official VLMo state_dict onto this model's names. Our names are the official ones, so
 * the map is the identity except for: a DeepSpeed "module." prefix (stripped); the index buffers of
 * OFFICIAL_BUFFERS (dropped: we rebuild them); and, for a model with an NLVR2 head loading a
 * 2-row `token_type_embeddings.weight` (a pre-trained checkpoint), the third row copied from the
 * image row, as the official fine-tuning does.
 */
export function convertOfficialStateDict(sd: Map<string, Tensor>, model: VLMoModel): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k0, t] of sd) {
    const k = k0.startsWith("module.") ? k0.slice("module.".length) : k0;
    if (OFFICIAL_BUFFERS.includes(k)) continue;
    out.set(k, t);
  }
  const tt = out.get("token_type_embeddings.weight");
  const rows = model.config.numTokenTypes;
  if (tt && tt.size(0) === 2 && rows === 3) {
    out.set("token_type_embeddings.weight", cat([tt, tt.narrow(0, 1, 1)], 0));
  }
  return out;
}

/** Reads a torch.save'd official VLMo checkpoint (.pth/.ckpt) and loads it strictly (after convertOfficialStateDict). */
export function loadOfficialCheckpoint(model: VLMoModel, path: string, opts: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
  return tidy(() => {
    const raw = loadPthStateDict(path);
    const sd = new Map<string, Tensor>();
    for (const [k, r] of raw) sd.set(k, fromBytes(r.data, r.dtype as DType, r.shape));
    return model.loadStateDict(convertOfficialStateDict(sd, model), { strict: opts.strict ?? true, where: `VLMo checkpoint ${path}` });
  });
}

// ---- parameter count ----------------------------------------------------------------------------------

export interface VLMoParameterCount {
  /** Shared self-attention (+ norm1, layer scales) over all layers. */
  attention: number;
  /** FFN experts with their LayerNorms, by expert. */
  experts: { text: number; image: number; vl: number; shared: number };
  /** Patch projection, image [CLS], absolute image positions, final norm, relative position table. */
  visionAndMisc: number;
  /** text_embeddings (word, unused absolute position, type, LayerNorm) + modality-type table. */
  embeddings: number;
  heads: number;
  /** Everything but the task heads. */
  backbone: number;
  total: number;
}

/** The parameter count of a config, without building the model (checked against numParameters() in the tests). */
export function vlmoParameterCount(c: VLMoConfig): VLMoParameterCount {
  const h = c.hiddenSize;
  const f = Math.floor(h * c.mlpRatio);
  const ffn = h * f + f + f * h + h + 2 * h; // fc1, fc2, its LayerNorm
  const grid = c.imageSize / c.patchSize;
  let attention = 0;
  const experts = { text: 0, image: 0, vl: 0, shared: 0 };
  for (let i = 0; i < c.numLayers; i++) {
    attention += 2 * h + 3 * h * h + (c.qkvBias ? 2 * h : 0) + h * h + h + (c.layerScaleInit === null ? 0 : 2 * h);
    if (c.standard) experts.shared += ffn;
    else {
      experts.text += ffn;
      experts.image += ffn;
      if (i >= c.vlffnStartLayer) experts.vl += ffn;
    }
  }
  const visionAndMisc = h * c.inChans * c.patchSize * c.patchSize + h + h + (c.useAbsPosEmb ? (grid * grid + 1) * h : 0) + 2 * h
    + (c.relativePositionBias ? relativePositionLayout(grid, c.maxTextLenOfInitCkpt).total * c.numHeads * c.numLayers : 0);
  const embeddings = c.vocabSize * h + c.maxTextLen * h + 2 * h + 2 * h + c.numTokenTypes * h;
  const hd = c.heads;
  let heads = h * h + h; // pooler
  if (hd.mlm) heads += h * h + h + 2 * h + c.vocabSize * h + c.vocabSize;
  if (hd.itm) heads += 2 * h + 2;
  if (hd.itc) heads += 2 * h * h + 1;
  if (hd.itc && hd.itcVl && !c.standard) heads += 2 * h * h + 1;
  const classifier = (i: number, m: number, o: number) => i * m + m + 2 * m + m * o + o;
  if (hd.vqaLabels > 0) heads += classifier(h, 2 * h, hd.vqaLabels);
  if (hd.nlvr2) heads += classifier(2 * h, 2 * h, 2);
  const backbone = attention + experts.text + experts.image + experts.vl + experts.shared + visionAndMisc + embeddings;
  return { attention, experts, visionAndMisc, embeddings, heads, backbone, total: backbone + heads };
}
