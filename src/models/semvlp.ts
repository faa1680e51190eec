// SemVLP (ICLR 2021 submission): ONE set of BERT blocks (self-attention phi_S, FFN phi_F) shared by a
// single-stream and a two-stream mode, plus a pluggable cross-modal attention phi_C used only in
// the blocks above L_s in two-stream mode.
//
// Which stream queries which (paper, eq. 2 and footnote 1):
//   h^l_j = phi_F(phi_S(h^{l-1}_j, H^{l-1}))                          text: every layer, no phi_C
//   o^l_j = phi_F(phi_S(o^{l-1}_j, O^{l-1}))              l <= L_s    image, below L_s
//   o^l_j = phi_F(phi_C(phi_S(o^{l-1}_j, O^{l-1}), H^L))  l >  L_s    image, above L_s
// phi_C takes the image state as its first argument and the text's LAST-layer states H^L as its
// second, and footnote 1 says the cross-modal attention goes only "from text space to image space".
// We read this as: the IMAGE stream supplies the queries, the final text representations H^L
// supply keys and values (text information flows into the image stream, like a transformer
// decoder attending to an encoder's output). The text stream is encoded alone through all L
// blocks (so two-stream MLM is predicted "from text modality alone", as section 2.3.1 says), and
// two-stream tasks read o_IMG (the image [IMG] token). Within a block the order is
// self-attention -> cross-attention -> FFN, each post-LN with a residual (BERT's decoder block).
//
// Single-stream mode concatenates S^0 = {[IMG], o'_1..o'_n, [CLS], w_1..w_m, [SEP]} (image part
// first, as S^0 in eq. 1 and StructVBERT) and runs the same blocks without phi_C; its tasks read
// h_CLS (the text [CLS]).
//
// Inputs: words get BERT embeddings (word + position 0..m-1 + token type); regions get LXMERT's
// feature+box encoder (LN(W_f f) + LN(W_b l)) / 2; [IMG] is a learned hidden-size vector
// (`bert.encoder.img_embedding`, one row) prepended to the regions in both modes.
//
// Names follow BERT so a BERT checkpoint loads into the shared blocks: bert.embeddings.*,
// bert.encoder.layer.N.{attention,intermediate,output}.*, bert.pooler.dense, cls.predictions.*,
// cls.seq_relationship; new: bert.encoder.visn_fc.*, bert.encoder.img_embedding.weight,
// bert.encoder.layer.N.crossattention.{self,output}.* (N >= L_s), obj_predict_head.*, answer_head.*.
// The pooler (`bert.pooler`) is shared: it pools h_CLS in single mode and o_IMG in two mode.
import { Module, ModuleList, Embedding, Dropout, Linear } from "../engine/nn.ts";
import { cat, ones, full, type Tensor } from "../engine/tensor.ts";
import * as F from "../engine/functional.ts";
import { maskedMean, BertCrossAttention, BertEmbeddings, BertLayer, BertPooler, VisualFeatEncoder, extendedAttentionMask, initBertWeights, type BertLikeConfig, type CrossModalAttention } from "./bert.ts";
import { BertPreTrainingHeads, BertVisualAnswerHead, BertVisualObjHead, VISUAL_LOSSES, type VisualLoss } from "./heads.ts";
import type { InspectOptions } from "./lxmert.ts";

export { maskedMean };

export interface SemVLPConfig extends BertLikeConfig {
  /** L: number of shared blocks. */
  numHiddenLayers: number;
  /** L_s: blocks 1..L_s have no cross-attention; blocks L_s+1..L get one (L_s = L: none at all). */
  crossLayerStart: number;
  visualFeatDim: number;
  visualPosDim: number;
  numObjectLabels: number;
  numAttrLabels: number;
  visualLosses: VisualLoss[];
  numQaLabels: number;
  tieWordEmbeddings: boolean;
  taskObjPredict: boolean;
  taskQa: boolean;
  /**
   * vlpkit's align-before-fuse term (not in the SemVLP paper; ALBEF/VLMo style): when > 0, ITC
   * projections `itc_text_proj` / `itc_image_proj` of this size and a learnable `logit_scale` on the
   * unimodal text and image passes (read as `itcPool` says). 0 (default, the paper): none.
   */
  itcDim?: number;
  /** What the ITC embeddings read: "cls" (h_CLS / o_IMG) or "mean" (the masked mean of each unimodal sequence). */
  itcPool?: "cls" | "mean";
  /**
   * What the pooler (ITM, QA, fine-tuning heads) reads: "cls" (the paper: h_CLS in single mode, o_IMG
   * in two mode) or "mean" (vlpkit option: the masked mean of the same sequence, the joint one in
   * single mode, O^L in two mode).
   */
  pool?: "cls" | "mean";
  /**
   * What the ITM head reads: "pooled" (the paper: the pooled output above) or "prod" (vlpkit option:
   * pooler.dense over the element-wise product of the fused text part's mean and the fused image
   * part's mean, a bilinear text x image read-out that a from-scratch fusion model has at step 0).
   */
  itmRead?: "pooled" | "prod";
}

const SEMVLP_BASE: SemVLPConfig = {
  vocabSize: 30522,
  hiddenSize: 768,
  numAttentionHeads: 12,
  intermediateSize: 3072,
  hiddenAct: "gelu",
  hiddenDropoutProb: 0.1,
  attentionProbsDropoutProb: 0.1,
  maxPositionEmbeddings: 512,
  typeVocabSize: 2,
  initializerRange: 0.02,
  layerNormEps: 1e-12,
  embeddingPaddingIdx: "word",
  numHiddenLayers: 12,
  crossLayerStart: 6,
  visualFeatDim: 2048,
  visualPosDim: 4,
  numObjectLabels: 1600,
  numAttrLabels: 400,
  visualLosses: ["obj", "attr", "feat"],
  numQaLabels: 9500,
  tieWordEmbeddings: true,
  taskObjPredict: true,
  taskQa: true,
  itcDim: 0,
  itcPool: "cls",
  pool: "cls",
  itmRead: "pooled",
};

export const SEMVLP_PRESETS = {
  base: SEMVLP_BASE,
  tiny: { ...SEMVLP_BASE, hiddenSize: 64, numAttentionHeads: 4, intermediateSize: 256, numHiddenLayers: 4, crossLayerStart: 2, visualFeatDim: 64, numQaLabels: 16 },
  small: { ...SEMVLP_BASE, hiddenSize: 128, numAttentionHeads: 4, intermediateSize: 512, numHiddenLayers: 6, crossLayerStart: 3, visualFeatDim: 64, numQaLabels: 16 },
} satisfies Record<string, SemVLPConfig>;
export type SemVLPPreset = keyof typeof SEMVLP_PRESETS;

export function semvlpConfig(base: SemVLPPreset | Partial<SemVLPConfig> = "base", overrides: Partial<SemVLPConfig> = {}): SemVLPConfig {
  const from = typeof base === "string" ? SEMVLP_PRESETS[base] : { ...SEMVLP_BASE, ...base };
  if (!from) throw new Error(`unknown SemVLP preset ${String(base)}`);
  const c: SemVLPConfig = { ...from, ...overrides, visualLosses: [...(overrides.visualLosses ?? from.visualLosses)] };
  for (const k of Object.keys(c)) if (!(k in SEMVLP_BASE)) throw new Error(`unknown SemVLPConfig key ${k}`);
  for (const l of c.visualLosses) if (!VISUAL_LOSSES.includes(l)) throw new Error(`unknown visual loss ${l}`);
  if (!Number.isInteger(c.crossLayerStart) || c.crossLayerStart < 0 || c.crossLayerStart > c.numHiddenLayers) {
    throw new Error(`crossLayerStart (L_s) must be in 0..${c.numHiddenLayers}, got ${c.crossLayerStart}`);
  }
  if (c.hiddenSize % c.numAttentionHeads) throw new Error(`hiddenSize ${c.hiddenSize} not divisible by ${c.numAttentionHeads} heads`);
  return c;
}

export type SemVLPMode = "single" | "two";

/** Builds the cross-modal attention phi_C of block `layerIndex` (0-based, >= L_s). */
export type CrossAttentionFactory = (c: SemVLPConfig, layerIndex: number) => CrossModalAttention;
const defaultCross: CrossAttentionFactory = (c) => new BertCrossAttention(c, "self");

/** The shared blocks plus the image embedding. */
export class SemVLPEncoder extends Module {
  readonly visn_fc: VisualFeatEncoder;
  readonly img_embedding: Embedding;
  readonly layer: ModuleList<BertLayer>;
  private readonly imgDropout: Dropout;

  constructor(readonly config: SemVLPConfig, crossFactory: CrossAttentionFactory = defaultCross) {
    super();
    const c = config;
    this.visn_fc = this.module("visn_fc", new VisualFeatEncoder(c));
    this.img_embedding = this.module("img_embedding", new Embedding(1, c.hiddenSize));
    this.imgDropout = this.module("img_dropout", new Dropout(c.hiddenDropoutProb));
    this.layer = this.module("layer", new ModuleList<BertLayer>());
    for (let i = 0; i < c.numHiddenLayers; i++) {
      const l = new BertLayer(c);
      if (i >= c.crossLayerStart) l.plugCrossAttention(crossFactory(c, i));
      this.layer.push(l);
    }
  }

  /** [IMG] followed by the encoded regions: [B, 1+N, h]. */
  imageEmbeddings(feats: Tensor, boxes: Tensor): Tensor {
    const regions = this.visn_fc.forward(feats, boxes);
    const [b, , h] = regions.shape;
    const img = this.imgDropout.forward(this.img_embedding.weight.unsqueeze(0).expand(b, 1, h));
    return cat([img.to(regions.dtype), regions], 1);
  }
}

export interface SemVLPInputs {
  /** [B, L] int64 token ids ([CLS] ... [SEP]). */
  inputIds: Tensor;
  tokenTypeIds?: Tensor | null;
  /** [B, L] 1 = token, 0 = padding. */
  attentionMask?: Tensor | null;
  positionIds?: Tensor | null;
  /** [B, N, visualFeatDim] */
  visualFeats: Tensor;
  /** [B, N, 4] */
  visualPos: Tensor;
  /** [B, N] 1 = real region. */
  visualAttentionMask?: Tensor | null;
}

export interface SemVLPOutput {
  mode: SemVLPMode;
  /** H^L [B, L, h]. */
  textOutput: Tensor;
  /** O^L [B, 1+N, h] with o_IMG at index 0. */
  imageOutput: Tensor;
  /** The region outputs [B, N, h] ([IMG] dropped). */
  regionOutput: Tensor;
  /** pooler(h_CLS) in single mode, pooler(o_IMG) in two mode. */
  pooledOutput: Tensor;
  /**
   * The pair vector (config.itmRead): the pooled output, or the product read-out. The ITM head, the
   * pre-training QA head and the task heads (VQA, GQA, NLVR2) read it.
   */
  itmInput: Tensor;
  /** Single mode: the joint sequence [IMG, regions, text] after the embeddings and after every block. */
  hiddenStates?: Tensor[];
  /** Single mode: self-attention probabilities of every block over the joint sequence. */
  attentions?: Tensor[];
  /** Two mode: text embeddings, then every block. */
  textHiddenStates?: Tensor[];
  /** Two mode: image embeddings, then every block. */
  imageHiddenStates?: Tensor[];
  textAttentions?: Tensor[];
  imageAttentions?: Tensor[];
  /** Two mode: per block above L_s, image queries over the text's H^L [B, heads, 1+N, L]. */
  crossAttentions?: Tensor[];
}

/** The SemVLP backbone (`bert.` in checkpoints). */
export class SemVLPModel extends Module {
  readonly embeddings: BertEmbeddings;
  readonly encoder: SemVLPEncoder;
  readonly pooler: BertPooler;

  constructor(readonly config: SemVLPConfig, opts: { crossAttention?: CrossAttentionFactory } = {}) {
    super();
    this.embeddings = this.module("embeddings", new BertEmbeddings(config));
    this.encoder = this.module("encoder", new SemVLPEncoder(config, opts.crossAttention));
    this.pooler = this.module("pooler", new BertPooler(config));
  }

  forward(x: SemVLPInputs, mode: SemVLPMode, o: InspectOptions = {}): SemVLPOutput {
    return mode === "single" ? this.single(x, o) : this.two(x, o);
  }

  private embed(x: SemVLPInputs): { text: Tensor; image: Tensor } {
    return {
      text: this.embeddings.forward(x.inputIds, { tokenTypeIds: x.tokenTypeIds, positionIds: x.positionIds }),
      image: this.encoder.imageEmbeddings(x.visualFeats, x.visualPos),
    };
  }

  /** The pooler over mean(text) * mean(image), the means over each part's real positions. */
  private prodRead(text: Tensor, textMask: Tensor | null | undefined, image: Tensor, imageMask: Tensor | null): Tensor {
    return this.pooler.poolVector(maskedMean(text, textMask).mul(maskedMean(image, imageMask)));
  }

  /** The image sequence's mask [B, 1+N]: [IMG] always real, then the regions' mask (null: no mask given). */
  imageMask(x: Pick<SemVLPInputs, "visualAttentionMask">): Tensor | null {
    const m = x.visualAttentionMask;
    return m ? cat([ones([m.size(0), 1], { dtype: m.dtype, device: m.device }), m], 1) : null;
  }

  private single(x: SemVLPInputs, o: InspectOptions): SemVLPOutput {
    const { text, image } = this.embed(x);
    const [b, nImg] = image.shape;
    const len = text.size(1);
    const dtype = text.dtype as "float32";
    let mask: Tensor | null = null;
    if (x.attentionMask || x.visualAttentionMask) {
      const im = this.imageMask(x) ?? ones([b, nImg], { dtype: "float32", device: text.device });
      const tm = x.attentionMask ?? ones([b, len], { dtype: "float32", device: text.device });
      mask = cat([im.to("float32"), tm.to("float32")], 1);
    }
    const ext = extendedAttentionMask(mask, dtype);
    let s = cat([image, text], 1);
    const hs: Tensor[] = [s];
    const at: Tensor[] = [];
    for (const l of this.encoder.layer) {
      const r = l.forward(s, ext);
      s = r.output;
      hs.push(s);
      at.push(r.selfProbs);
    }
    const imageOutput = s.narrow(1, 0, nImg);
    const textOutput = s.narrow(1, nImg, len);
    const pooledOutput = this.config.pool === "mean" ? this.pooler.poolVector(maskedMean(s, mask)) : this.pooler.forward(textOutput);
    const itmInput = this.config.itmRead === "prod" ? this.prodRead(textOutput, x.attentionMask, imageOutput, this.imageMask(x)) : pooledOutput;
    const out: SemVLPOutput = { mode: "single", textOutput, imageOutput, regionOutput: imageOutput.slice(1, 1), pooledOutput, itmInput };
    if (o.outputHiddenStates) out.hiddenStates = hs;
    if (o.outputAttentions) out.attentions = at;
    return out;
  }

  /**
   * The unimodal passes of the shared blocks (no phi_C): the text alone (exactly two-stream mode's
   * text stream, H^L [B, L, h]) and the image alone ([IMG] + regions through every block with
   * self-attention only, [B, 1+N, h]). vlpkit's align-before-fuse ITC reads h_CLS and o_IMG of these.
   */
  encodeText(x: Pick<SemVLPInputs, "inputIds" | "tokenTypeIds" | "attentionMask" | "positionIds">): Tensor {
    let h = this.embeddings.forward(x.inputIds, { tokenTypeIds: x.tokenTypeIds, positionIds: x.positionIds });
    const ext = extendedAttentionMask(x.attentionMask, h.dtype as "float32");
    for (const l of this.encoder.layer) h = l.forward(h, ext).output;
    return h;
  }

  encodeImage(x: Pick<SemVLPInputs, "visualFeats" | "visualPos" | "visualAttentionMask">): Tensor {
    let v = this.encoder.imageEmbeddings(x.visualFeats, x.visualPos);
    const ext = extendedAttentionMask(this.imageMask(x), v.dtype as "float32");
    for (const l of this.encoder.layer) v = l.forward(v, ext).output;
    return v;
  }

  private two(x: SemVLPInputs, o: InspectOptions): SemVLPOutput {
    const { text, image } = this.embed(x);
    const dtype = text.dtype as "float32";
    const textExt = extendedAttentionMask(x.attentionMask, dtype);
    const imageExt = extendedAttentionMask(this.imageMask(x), dtype);
    const layers = this.encoder.layer.items;
    const ls = this.config.crossLayerStart;

    let h = text;
    const ths: Tensor[] = [h];
    const tat: Tensor[] = [];
    for (const l of layers) {
      const r = l.forward(h, textExt);
      h = r.output;
      ths.push(h);
      tat.push(r.selfProbs);
    }
    let v = image;
    const ihs: Tensor[] = [v];
    const iat: Tensor[] = [];
    const cat_: Tensor[] = [];
    layers.forEach((l, i) => {
      const r = i < ls ? l.forward(v, imageExt) : l.forward(v, imageExt, { states: h, mask: textExt });
      v = r.output;
      ihs.push(v);
      iat.push(r.selfProbs);
      if (r.crossProbs) cat_.push(r.crossProbs);
    });
    const vmask = this.imageMask(x);
    const pooledOutput = this.config.pool === "mean" ? this.pooler.poolVector(maskedMean(v, vmask)) : this.pooler.forward(v);
    const itmInput = this.config.itmRead === "prod" ? this.prodRead(h, x.attentionMask, v, vmask) : pooledOutput;
    const out: SemVLPOutput = { mode: "two", textOutput: h, imageOutput: v, regionOutput: v.slice(1, 1), pooledOutput, itmInput };
    if (o.outputHiddenStates) {
      out.textHiddenStates = ths;
      out.imageHiddenStates = ihs;
    }
    if (o.outputAttentions) {
      out.textAttentions = tat;
      out.imageAttentions = iat;
      out.crossAttentions = cat_;
    }
    return out;
  }
}

export interface SemVLPPreTrainingOutput extends SemVLPOutput {
  /** MLM logits over H^L [B, L, vocab]. */
  lmLogits: Tensor;
  /** ITM logits on the pooled h_CLS / o_IMG [B, 2]. */
  matchLogits: Tensor;
  /** Masked-object heads on the regions of O^L. */
  visualLogits?: Partial<Record<VisualLoss, Tensor>>;
  /** Image-QA logits on the pooled output. */
  answerLogits?: Tensor;
}

/** SemVLP with LXMERT's pre-training heads (MLM tied to the word embeddings, ITM, object prediction, QA). */
export class SemVLPForPreTraining extends Module {
  readonly bert: SemVLPModel;
  readonly cls: BertPreTrainingHeads;
  readonly obj_predict_head: BertVisualObjHead | null = null;
  readonly answer_head: BertVisualAnswerHead | null = null;
  readonly itc_text_proj: Linear | null = null;
  readonly itc_image_proj: Linear | null = null;
  readonly logit_scale: Tensor | null = null;

  constructor(readonly config: SemVLPConfig, opts: { init?: boolean; crossAttention?: CrossAttentionFactory } = {}) {
    super();
    const c = config;
    this.bert = this.module("bert", new SemVLPModel(c, { crossAttention: opts.crossAttention }));
    this.cls = this.module("cls", new BertPreTrainingHeads(c, c.tieWordEmbeddings ? this.bert.embeddings.word_embeddings.weight : null));
    if (c.taskObjPredict) this.obj_predict_head = this.module("obj_predict_head", new BertVisualObjHead(c));
    if (c.taskQa) this.answer_head = this.module("answer_head", new BertVisualAnswerHead(c.hiddenSize, c.numQaLabels, c.layerNormEps));
    if (c.itcDim) {
      this.itc_text_proj = this.module("itc_text_proj", new Linear(c.hiddenSize, c.itcDim));
      this.itc_image_proj = this.module("itc_image_proj", new Linear(c.hiddenSize, c.itcDim));
      this.logit_scale = this.param("logit_scale", full([], Math.log(1 / 0.07)));
    }
    if (opts.init ?? true) initBertWeights(this, c.initializerRange);
  }

  /** Unit-norm ITC embeddings of the unimodal text and image passes (h_CLS / o_IMG, or their means: config.itcPool); needs `itcDim`. */
  itcFeatures(x: SemVLPInputs): { text: Tensor; image: Tensor } {
    if (!this.itc_text_proj || !this.itc_image_proj) throw new Error("SemVLP: itcFeatures needs config.itcDim > 0");
    const ht = this.bert.encodeText(x);
    const hv = this.bert.encodeImage(x);
    const mean = this.config.itcPool === "mean";
    const t = mean ? maskedMean(ht, x.attentionMask) : ht.select(1, 0);
    const v = mean ? maskedMean(hv, this.bert.imageMask(x)) : hv.select(1, 0);
    return { text: F.normalize(this.itc_text_proj.forward(t), 2, -1), image: F.normalize(this.itc_image_proj.forward(v), 2, -1) };
  }

  forward(x: SemVLPInputs, mode: SemVLPMode, o: InspectOptions = {}): SemVLPPreTrainingOutput {
    const out = this.bert.forward(x, mode, o);
    const heads = this.cls.forward(out.textOutput, out.itmInput);
    const res: SemVLPPreTrainingOutput = { ...out, lmLogits: heads.lmLogits, matchLogits: heads.matchLogits };
    if (this.obj_predict_head) res.visualLogits = this.obj_predict_head.forward(out.regionOutput);
    if (this.answer_head) res.answerLogits = this.answer_head.forward(out.itmInput);
    return res;
  }
}

/** Parameter groups of a SemVLP model: the shared blocks, the cross-attention, and the rest. */
export function semvlpParameterGroups(m: SemVLPForPreTraining | SemVLPModel): { shared: number; cross: number; visual: number; embeddings: number } {
  const b = m instanceof SemVLPForPreTraining ? m.bert : m;
  let shared = 0;
  let cross = 0;
  for (const [n, p] of b.encoder.layer.namedParameters()) {
    if (/\.crossattention\./.test(`.${n}`)) cross += p.numel;
    else shared += p.numel;
  }
  return { shared, cross, visual: b.encoder.visn_fc.numParameters() + b.encoder.img_embedding.numParameters(), embeddings: b.embeddings.numParameters() };
}
