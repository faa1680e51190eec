// LXMERT (Tan & Bansal 2019) and LXMERT-S (Liu et al. 2021, the MSP paper), structured and named like
// the official code so official checkpoints load strictly by name:
//   bert.embeddings.*                          word / position / token-type embeddings
//   bert.encoder.visn_fc.{visn_fc,visn_layer_norm,box_fc,box_layer_norm}   object encoder
//   bert.encoder.layer.N.*                     language layers (BERT blocks)
//   bert.encoder.r_layers.N.*                  object-relationship layers (BERT blocks)
//   bert.encoder.x_layers.N.{visual_attention,lang_self_att,visn_self_att,lang_inter,lang_output,visn_inter,visn_output}
//   bert.pooler.dense, bert.pooler_f.dense (LXMERT-S), bert.word_embeddings (LXMERT-S visual [CLS])
//   cls.predictions.*, cls.seq_relationship, cls.seq_relationship_new + cls.LayerNorm (LXMERT-S topic)
//   obj_predict_head.*, answer_head.logit_fc.*
// A cross-modality layer has ONE cross-attention module (visual_attention) used in both directions,
// then per-stream self-attention and FFN.
import { Module, ModuleList, Embedding } from "../engine/nn.ts";
import { cat, ones, tensor, type Tensor } from "../engine/tensor.ts";
import { tidy } from "../engine/scope.ts";
import { maskedMean, BertAttention, BertCrossAttention, BertEmbeddings, BertIntermediate, BertLayer, BertOutput, BertPooler, VisualFeatEncoder, extendedAttentionMask, initBertWeights, type BertLikeConfig } from "./bert.ts";
import { BertPreTrainingHeads, BertVisualAnswerHead, BertVisualObjHead, VISUAL_LOSSES, type VisualLoss } from "./heads.ts";

export interface LxmertConfig extends BertLikeConfig {
  /** Language layers (9 in LXMERT, 0 in LXMERT-S). */
  lLayers: number;
  /** Cross-modality layers (5). */
  xLayers: number;
  /** Object-relationship layers (5 in LXMERT, 0 in LXMERT-S). */
  rLayers: number;
  visualFeatDim: number;
  visualPosDim: number;
  numObjectLabels: number;
  numAttrLabels: number;
  visualLosses: VisualLoss[];
  /** Answers of the pre-training QA head (9500 in the official LXMERT pre-training). */
  numQaLabels: number;
  /** MLM decoder tied to the word embeddings (true in BERT/LXMERT). */
  tieWordEmbeddings: boolean;
  // ---- LXMERT-S specifics ----
  /** Word-level position ids from the tokenizer (`positionIds` input) instead of 0..L-1. */
  wordPositions: boolean;
  /** A visual [CLS]: embedding of the text's first token id into the feature space, box [0,0,1,1], prepended. */
  visualCls: boolean;
  /** Pooled = pooler(lang[0]) * pooler_f(vision[0]). */
  productPooler: boolean;
  /**
   * What the poolers read: "cls" (official: the language [CLS], and LXMERT-S's visual [CLS]) or "mean"
   * (vlpkit option for models trained from scratch: the mean of each sequence over its real positions).
   */
  pool?: "cls" | "mean";
  /**
   * What the ITM classifier reads: "pooled" (official) or "prod", vlpkit's product read-out for models
   * trained from scratch, `pooler(mean(lang) * mean(vision))` with the fused streams (as SemVLP/VLMo's
   * `itmRead`): a bilinear text x image term from the first step.
   */
  itmRead?: "pooled" | "prod";
  /**
   * > 0: `itc_text_proj` / `itc_image_proj` of this size and a `logit_scale` on the model for an
   * align-before-fuse ITC term (vlpkit, not in the papers): the cross layers run each stream alone,
   * their cross-attention skipped (`encodeText` / `encodeImage`), read as masked means. 0: none.
   */
  itcDim?: number;
  /** The TITP/TITS topic head in `cls`. */
  topicHead: boolean;
  /** Official LXMERT-S object head: transformed states times the pooled output before the decoders. */
  objHeadPooledProduct: boolean;
  // ---- pre-training heads present ----
  taskObjPredict: boolean;
  taskQa: boolean;
}

const BERT_BASE: BertLikeConfig = {
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
  embeddingPaddingIdx: "all",
};

const LXMERT_BASE: LxmertConfig = {
  ...BERT_BASE,
  lLayers: 9,
  xLayers: 5,
  rLayers: 5,
  visualFeatDim: 2048,
  visualPosDim: 4,
  numObjectLabels: 1600,
  numAttrLabels: 400,
  visualLosses: ["obj", "attr", "feat"],
  numQaLabels: 9500,
  tieWordEmbeddings: true,
  wordPositions: false,
  visualCls: false,
  productPooler: false,
  pool: "cls",
  itmRead: "pooled",
  itcDim: 0,
  topicHead: false,
  objHeadPooledProduct: false,
  taskObjPredict: true,
  taskQa: true,
};

const LXMERT_S_FLAGS = { lLayers: 0, xLayers: 5, rLayers: 0, wordPositions: true, visualCls: true, productPooler: true, topicHead: true, objHeadPooledProduct: true } as const;
const TINY = { hiddenSize: 64, numAttentionHeads: 4, intermediateSize: 256, visualFeatDim: 64, numQaLabels: 16 } as const;

/** Named configurations: base sizes as published, tiny ones for CPU tests and the synthetic world. */
export const LXMERT_PRESETS = {
  lxmert: LXMERT_BASE,
  lxmertS: { ...LXMERT_BASE, ...LXMERT_S_FLAGS },
  lxmertTiny: { ...LXMERT_BASE, ...TINY, lLayers: 2, xLayers: 2, rLayers: 2 },
  lxmertSTiny: { ...LXMERT_BASE, ...LXMERT_S_FLAGS, ...TINY, xLayers: 2 },
} satisfies Record<string, LxmertConfig>;
export type LxmertPreset = keyof typeof LXMERT_PRESETS;

/** A configuration from a preset (or a JSON object) with overrides; unknown keys are rejected. */
export function lxmertConfig(base: LxmertPreset | Partial<LxmertConfig> = "lxmert", overrides: Partial<LxmertConfig> = {}): LxmertConfig {
  const from = typeof base === "string" ? LXMERT_PRESETS[base] : { ...LXMERT_BASE, ...base };
  if (!from) throw new Error(`unknown LXMERT preset ${String(base)}`);
  const c: LxmertConfig = { ...from, ...overrides, visualLosses: [...(overrides.visualLosses ?? from.visualLosses)] };
  for (const k of Object.keys(c)) if (!(k in LXMERT_BASE)) throw new Error(`unknown LxmertConfig key ${k}`);
  for (const l of c.visualLosses) if (!VISUAL_LOSSES.includes(l)) throw new Error(`unknown visual loss ${l}`);
  if (c.hiddenSize % c.numAttentionHeads) throw new Error(`hiddenSize ${c.hiddenSize} not divisible by ${c.numAttentionHeads} heads`);
  return c;
}

// ---- encoder -----------------------------------------------------------------------------------------

export interface XLayerOutput {
  lang: Tensor;
  visn: Tensor;
  /** Cross-attention probabilities, language queries over vision [B, h, L, V]. */
  langToVisn: Tensor;
  /** Cross-attention probabilities, vision queries over language [B, h, V, L]. */
  visnToLang: Tensor;
  langSelf: Tensor;
  visnSelf: Tensor;
}

/** LXMERT's cross-modality layer: shared cross-attention both ways, then per-stream self-attention and FFN. */
export class LxmertXLayer extends Module {
  readonly visual_attention: BertCrossAttention;
  readonly lang_self_att: BertAttention;
  readonly visn_self_att: BertAttention;
  readonly lang_inter: BertIntermediate;
  readonly lang_output: BertOutput;
  readonly visn_inter: BertIntermediate;
  readonly visn_output: BertOutput;

  constructor(c: LxmertConfig) {
    super();
    this.visual_attention = this.module("visual_attention", new BertCrossAttention(c, "att"));
    this.lang_self_att = this.module("lang_self_att", new BertAttention(c));
    this.visn_self_att = this.module("visn_self_att", new BertAttention(c));
    this.lang_inter = this.module("lang_inter", new BertIntermediate(c));
    this.lang_output = this.module("lang_output", new BertOutput(c));
    this.visn_inter = this.module("visn_inter", new BertIntermediate(c));
    this.visn_output = this.module("visn_output", new BertOutput(c));
  }

  forward(lang: Tensor, langMask: Tensor | null, visn: Tensor, visnMask: Tensor | null): XLayerOutput {
    // temporaries are freed on return (autograd keeps what backward needs)
    return tidy(() => {
      const [langX, langToVisn] = this.visual_attention.forward(lang, visn, visnMask);
      const [visnX, visnToLang] = this.visual_attention.forward(visn, lang, langMask);
      const [langS, langSelf] = this.lang_self_att.forward(langX, langMask);
      const [visnS, visnSelf] = this.visn_self_att.forward(visnX, visnMask);
      return {
        lang: this.lang_output.forward(this.lang_inter.forward(langS), langS),
        visn: this.visn_output.forward(this.visn_inter.forward(visnS), visnS),
        langToVisn,
        visnToLang,
        langSelf,
        visnSelf,
      };
    });
  }

  /** One stream through this layer without the other: its self-attention and FFN, the cross-attention skipped. */
  forwardAlone(x: Tensor, mask: Tensor | null, stream: "lang" | "visn"): Tensor {
    return tidy(() => {
      const [s] = (stream === "lang" ? this.lang_self_att : this.visn_self_att).forward(x, mask);
      return stream === "lang" ? this.lang_output.forward(this.lang_inter.forward(s), s) : this.visn_output.forward(this.visn_inter.forward(s), s);
    });
  }
}

export interface InspectOptions {
  outputAttentions?: boolean;
  outputHiddenStates?: boolean;
}

export interface LxmertEncoderOutput {
  lang: Tensor;
  visn: Tensor;
  /** Embedding output, then the output of every language layer, then of every cross layer. */
  languageHiddenStates?: Tensor[];
  /** Object-encoder output, then every relationship layer, then every cross layer. */
  visionHiddenStates?: Tensor[];
  /** Self-attention probabilities of the language layers, then the cross layers' lang_self_att. */
  languageAttentions?: Tensor[];
  /** Self-attention probabilities of the relationship layers, then the cross layers' visn_self_att. */
  visionAttentions?: Tensor[];
  /** Per cross layer: language queries over vision. */
  crossLangToVisnAttentions?: Tensor[];
  /** Per cross layer: vision queries over language. */
  crossVisnToLangAttentions?: Tensor[];
}

/** The official LXRTEncoder: object encoder, language layers, relationship layers, cross layers. */
export class LxmertEncoder extends Module {
  readonly visn_fc: VisualFeatEncoder;
  readonly layer: ModuleList<BertLayer>;
  readonly x_layers: ModuleList<LxmertXLayer>;
  readonly r_layers: ModuleList<BertLayer>;

  constructor(c: LxmertConfig) {
    super();
    this.visn_fc = this.module("visn_fc", new VisualFeatEncoder(c));
    this.layer = this.module("layer", new ModuleList(Array.from({ length: c.lLayers }, () => new BertLayer(c))));
    this.x_layers = this.module("x_layers", new ModuleList(Array.from({ length: c.xLayers }, () => new LxmertXLayer(c))));
    this.r_layers = this.module("r_layers", new ModuleList(Array.from({ length: c.rLayers }, () => new BertLayer(c))));
  }

  forward(lang: Tensor, langMask: Tensor | null, feats: Tensor, boxes: Tensor, visnMask: Tensor | null, o: InspectOptions = {}): LxmertEncoderOutput {
    let visn = this.visn_fc.forward(feats, boxes);
    const out: LxmertEncoderOutput = { lang, visn };
    const hs = !!o.outputHiddenStates;
    const at = !!o.outputAttentions;
    const lh: Tensor[] = [lang];
    const vh: Tensor[] = [visn];
    const la: Tensor[] = [];
    const va: Tensor[] = [];
    const l2v: Tensor[] = [];
    const v2l: Tensor[] = [];
    for (const l of this.layer) {
      const r = l.forward(lang, langMask);
      lang = r.output;
      lh.push(lang);
      la.push(r.selfProbs);
    }
    for (const l of this.r_layers) {
      const r = l.forward(visn, visnMask);
      visn = r.output;
      vh.push(visn);
      va.push(r.selfProbs);
    }
    for (const l of this.x_layers) {
      const r = l.forward(lang, langMask, visn, visnMask);
      lang = r.lang;
      visn = r.visn;
      lh.push(lang);
      vh.push(visn);
      la.push(r.langSelf);
      va.push(r.visnSelf);
      l2v.push(r.langToVisn);
      v2l.push(r.visnToLang);
    }
    out.lang = lang;
    out.visn = visn;
    if (hs) {
      out.languageHiddenStates = lh;
      out.visionHiddenStates = vh;
    }
    if (at) {
      out.languageAttentions = la;
      out.visionAttentions = va;
      out.crossLangToVisnAttentions = l2v;
      out.crossVisnToLangAttentions = v2l;
    }
    return out;
  }
}

/** One stream through the whole encoder without the other (language or relationship layers, then the cross layers alone). */
function encodeAlone(e: LxmertEncoder, stream: "lang" | "visn", x: Tensor, mask: Tensor | null): Tensor {
  for (const l of stream === "lang" ? e.layer : e.r_layers) x = l.forward(x, mask).output;
  for (const l of e.x_layers) x = l.forwardAlone(x, mask, stream);
  return x;
}

// ---- model ---------------------------------------------------------------------------------------------

export interface LxmertInputs {
  /** [B, L] int64 token ids, [CLS] first. */
  inputIds: Tensor;
  tokenTypeIds?: Tensor | null;
  /** [B, L] 1 for tokens, 0 for padding (any dtype). */
  attentionMask?: Tensor | null;
  /** [B, L] int64 word-level position ids (required with `wordPositions`; from the tokenizer's wordPositionIds). */
  positionIds?: Tensor | null;
  /** [B, N, visualFeatDim] ROI features. */
  visualFeats: Tensor;
  /** [B, N, 4] boxes (x1/W, y1/H, x2/W, y2/H). */
  visualPos: Tensor;
  /** [B, N] 1 for real boxes (optional; LXMERT always has 36 and no mask). */
  visualAttentionMask?: Tensor | null;
}

export interface LxmertOutput extends Omit<LxmertEncoderOutput, "lang" | "visn"> {
  /** Language stream output [B, L, h]. */
  languageOutput: Tensor;
  /** Vision stream output [B, N (+1 with a visual [CLS] at index 0), h]. */
  visionOutput: Tensor;
  /** The region outputs only [B, N, h] (visionOutput without the visual [CLS]). */
  regionOutput: Tensor;
  /** [B, h]: pooler(lang[0]), or pooler(lang[0]) * pooler_f(vision[0]) with the product pooler. */
  pooledOutput: Tensor;
  /** What the ITM classifier reads: `pooledOutput`, or the product read-out (config.itmRead "prod"). */
  itmInput: Tensor;
}

/** The LXMERT backbone (official LXRTModel, `bert.` in checkpoints). */
export class LxmertModel extends Module {
  readonly embeddings: BertEmbeddings;
  readonly encoder: LxmertEncoder;
  readonly pooler: BertPooler;
  readonly pooler_f: BertPooler | null = null;
  /** LXMERT-S visual [CLS]: token id -> a feature-space vector ([vocab, visualFeatDim]). */
  readonly word_embeddings: Embedding | null = null;

  constructor(readonly config: LxmertConfig) {
    super();
    const c = config;
    this.embeddings = this.module("embeddings", new BertEmbeddings(c));
    this.encoder = this.module("encoder", new LxmertEncoder(c));
    this.pooler = this.module("pooler", new BertPooler(c));
    if (c.productPooler) this.pooler_f = this.module("pooler_f", new BertPooler(c));
    if (c.visualCls) this.word_embeddings = this.module("word_embeddings", new Embedding(c.vocabSize, c.visualFeatDim, c.embeddingPaddingIdx === "none" ? -1 : 0));
  }

  /** The embedded text [B, L, h] (word-level positions for LXMERT-S). */
  private embedText(x: LxmertInputs): Tensor {
    const c = this.config;
    if (c.wordPositions && !x.positionIds) throw new Error("LXMERT-S uses word-level position ids: pass positionIds (the tokenizer's wordPositionIds)");
    return this.embeddings.forward(x.inputIds, { tokenTypeIds: x.tokenTypeIds, positionIds: c.wordPositions ? x.positionIds : null });
  }

  /** The visual inputs with LXMERT-S's visual [CLS] prepended: features, boxes and mask [B, N(+1)]. */
  private visualInputs(x: LxmertInputs): { feats: Tensor; boxes: Tensor; vmask: Tensor | null } {
    let feats = x.visualFeats;
    let boxes = x.visualPos;
    let vmask = x.visualAttentionMask ?? null;
    if (this.word_embeddings) {
      const b = feats.size(0);
      const clsFeat = this.word_embeddings.forward(x.inputIds.select(1, 0)).unsqueeze(1);
      feats = cat([clsFeat.to(feats.dtype), feats], 1);
      const clsBox = tensor([0, 0, 1, 1], { dtype: boxes.dtype as "float32" }).to(boxes.device).expand(b, 1, 4);
      boxes = cat([clsBox, boxes], 1);
      if (vmask) vmask = cat([ones([b, 1], { dtype: vmask.dtype, device: vmask.device }), vmask], 1);
    }
    return { feats, boxes, vmask };
  }

  /** The text alone through the encoder (cross-attention skipped): [B, L, h]. */
  encodeText(x: LxmertInputs): Tensor {
    return encodeAlone(this.encoder, "lang", this.embedText(x), extendedAttentionMask(x.attentionMask, this.dtype()));
  }

  /** The image alone through the encoder (cross-attention skipped): [B, N(+1), h], and its mask. */
  encodeImage(x: LxmertInputs): { hidden: Tensor; mask: Tensor | null } {
    const { feats, boxes, vmask } = this.visualInputs(x);
    return { hidden: encodeAlone(this.encoder, "visn", this.encoder.visn_fc.forward(feats, boxes), extendedAttentionMask(vmask, this.dtype())), mask: vmask };
  }

  private dtype(): "float32" {
    return this.embeddings.LayerNorm.weight.dtype as "float32";
  }

  forward(x: LxmertInputs, o: InspectOptions = {}): LxmertOutput {
    const c = this.config;
    const lang = this.embedText(x);
    const { feats, boxes, vmask } = this.visualInputs(x);
    const enc = this.encoder.forward(lang, extendedAttentionMask(x.attentionMask, this.dtype()), feats, boxes, extendedAttentionMask(vmask, this.dtype()), o);
    const mean = c.pool === "mean";
    let pooled = mean ? this.pooler.poolVector(maskedMean(enc.lang, x.attentionMask)) : this.pooler.forward(enc.lang);
    if (this.pooler_f) pooled = pooled.mul(mean ? this.pooler_f.poolVector(maskedMean(enc.visn, vmask)) : this.pooler_f.forward(enc.visn));
    const { lang: languageOutput, visn: visionOutput, ...rest } = enc;
    const regionOutput = this.word_embeddings ? visionOutput.slice(1, 1) : visionOutput;
    const itmInput = c.itmRead === "prod" ? this.pooler.poolVector(maskedMean(languageOutput, x.attentionMask).mul(maskedMean(visionOutput, vmask))) : pooled;
    return { ...rest, languageOutput, visionOutput, regionOutput, pooledOutput: pooled, itmInput };
  }
}

export interface LxmertPreTrainingOutput extends LxmertOutput {
  lmLogits: Tensor;
  matchLogits: Tensor;
  topicLogits?: Tensor;
  /** Object head outputs on the regions (the visual [CLS] skipped): obj [B,N,numObjectLabels], attr, feat [B,N,featDim]. */
  visualLogits?: Partial<Record<VisualLoss, Tensor>>;
  answerLogits?: Tensor;
}

/** LXMERT / LXMERT-S with the pre-training heads (official LXRTPretraining). */
export class LxmertForPreTraining extends Module {
  readonly bert: LxmertModel;
  readonly cls: BertPreTrainingHeads;
  readonly obj_predict_head: BertVisualObjHead | null = null;
  readonly answer_head: BertVisualAnswerHead | null = null;

  constructor(readonly config: LxmertConfig, opts: { init?: boolean } = {}) {
    super();
    const c = config;
    this.bert = this.module("bert", new LxmertModel(c));
    this.cls = this.module("cls", new BertPreTrainingHeads(c, c.tieWordEmbeddings ? this.bert.embeddings.word_embeddings.weight : null, { topic: c.topicHead }));
    if (c.taskObjPredict) this.obj_predict_head = this.module("obj_predict_head", new BertVisualObjHead(c, { pooledProduct: c.objHeadPooledProduct }));
    if (c.taskQa) this.answer_head = this.module("answer_head", new BertVisualAnswerHead(c.hiddenSize, c.numQaLabels, c.layerNormEps));
    if (opts.init ?? true) initBertWeights(this, c.initializerRange);
  }

  forward(x: LxmertInputs, o: InspectOptions = {}): LxmertPreTrainingOutput {
    const out = this.bert.forward(x, o);
    const heads = this.cls.forward(out.languageOutput, out.pooledOutput, out.itmInput);
    const res: LxmertPreTrainingOutput = { ...out, ...heads };
    if (this.obj_predict_head) res.visualLogits = this.obj_predict_head.forward(out.regionOutput, out.pooledOutput);
    if (this.answer_head) res.answerLogits = this.answer_head.forward(out.pooledOutput);
    return res;
  }
}

// ---- parameter counts ----------------------------------------------------------------------------------

/**
 * Parameters "of the transformer part" as counted in the MSP paper's Table 1 (footnote: word
 * embeddings and pre-training heads excluded): everything under `bert.encoder` (object encoder,
 * language, relationship and cross layers), i.e. without the BERT embeddings, the LXMERT-S visual
 * [CLS] embedding, the poolers and the heads. Gives 183.5M for LXMERT and 84.3M for LXMERT-S.
 */
export function transformerParameterCount(m: LxmertForPreTraining | LxmertModel): number {
  const backbone = m instanceof LxmertForPreTraining ? m.bert : m;
  return backbone.encoder.numParameters();
}
