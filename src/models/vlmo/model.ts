// The VLMo model: embeddings, the MoME Transformer and the heads, run in VLMo's three forward modes:
// text only (`inferText`: L-FFN everywhere), image only (`inferImage`: V-FFN everywhere) and
// image-text fusion (`inferFusion`: L-FFN / V-FFN by position below the VL layers, VL-FFN from them
// on); the unimodal passes can also re-run the top blocks with the VL-FFN (the VL branch of
// pre-training ITC). Head read-outs: ITC, ITM, MLM, VQA, NLVR2.
import {
  Module, Embedding, Tensor, zeros, full, cat, tidy, F,
} from "../../engine/index.ts";
import { maskedMean } from "../bert.ts";
import {
  Pooler, ITCHead, ITMHead, MLMHead, ClassifierHead, l2normalize,
} from "./heads.ts";
import { validateConfig, type VLMoConfig } from "./config.ts";
import { initEmbedding } from "./init.ts";
import { MultiWayTransformer, type MoMEBlock, type Modality } from "./mome.ts";
import { TextEmbeddings } from "./embeddings.ts";
import { relativePositionIndex, relativePositionLayout } from "./relpos.ts";

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
  /** The pair representation for ITM / VQA / NLVR2: pooler(hidden[:, 0]), or the product read-out (config.itmRead "prod"). */
  pooled: Tensor;
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
    return this.inferImagePass(this.embedImage(pixels, o.imageTokenType ?? 1), o);
  }

  /**
   * The image-only pass with its read-outs (ITC, VL branch) from embedImage's output, so that one
   * patch embedding can serve every pass of a pre-training step (inferImageFromEmbeddings: the
   * encoder alone).
   */
  inferImagePass(imageEmbeds: Tensor, o: UnimodalOptions = {}): VLMoUnimodalOutput {
    const vlBranch = this.wantVl(o);
    const enc = this.encode(imageEmbeds, "image", null, 0, { ...o, vlBranch });
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
      pooled: this.pairVector(enc.hidden, mask, T, I),
    };
  }

  /**
   * The pair representation: pooler(hidden[:, 0]) (official), or with config.itmRead "prod" the
   * product read-out, pooler(mean(fused text) ⊙ mean(fused image)), for ITM and for every head that
   * reads `pooled` (VQA, NLVR2), so that fine-tuning starts from the vector pre-training trained.
   */
  private pairVector(hidden: Tensor, mask: Tensor | null, T: number, I: number): Tensor {
    if (this.config.itmRead !== "prod") return this.pooler.forward(hidden);
    return this.pooler.poolVector(maskedMean(hidden.narrow(1, 0, T), mask).mul(hidden.narrow(1, T, I).mean(1)));
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
    return this.need(this.itm_score, "itm").forward(f instanceof Tensor ? f : f.pooled);
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
