// Task heads shared by LXMERT, LXMERT-S and SemVLP (VLMo has its own). Names follow the official
// LXMERT / LXMERT-S checkpoints: cls.predictions.*, cls.seq_relationship, cls.seq_relationship_new
// + cls.LayerNorm (LXMERT-S topic), obj_predict_head.transform / decoder_dict.{obj,attr,feat},
// answer_head.logit_fc.{0,2,3}, logit_fc.{0,2,3} (NLVR2).
import { Module, Linear, LayerNorm, Sequential, GELU } from "../engine/nn.ts";
import { cat, type Tensor } from "../engine/tensor.ts";
import { BertLMPredictionHead, BertPredictionHeadTransform, type BertLikeConfig } from "./bert.ts";

export type VisualLoss = "obj" | "attr" | "feat";
export const VISUAL_LOSSES: readonly VisualLoss[] = ["obj", "attr", "feat"];

/** What the object-prediction head needs to know beyond the transformer sizes. */
export interface VisualHeadConfig extends BertLikeConfig {
  numObjectLabels: number;
  numAttrLabels: number;
  visualFeatDim: number;
  visualLosses: VisualLoss[];
}

/** Named child modules (PyTorch's nn.ModuleDict). */
export class ModuleDict<M extends Module = Module> extends Module {
  readonly items = new Map<string, M>();
  set(name: string, m: M): M {
    this.module(name, m);
    this.items.set(name, m);
    return m;
  }
  get(name: string): M {
    const m = this.items.get(name);
    if (!m) throw new Error(`ModuleDict: no module ${name}`);
    return m;
  }
}

/** LXMERT-S topic head for TITP/TITS: Linear(h, vocab) -> GeLU -> LayerNorm(vocab), trained with BCE-with-logits against a multi-hot over the vocabulary. */
function topicLogits(dense: Linear, norm: LayerNorm, pooled: Tensor): Tensor {
  return norm.forward(dense.forward(pooled).gelu("none"));
}

export interface PreTrainingHeadOutputs {
  /** MLM logits [B, L, vocab]. */
  lmLogits: Tensor;
  /** Image-text matching logits [B, 2] (class 1 = matched). */
  matchLogits: Tensor;
  /** LXMERT-S topic logits [B, vocab] (only with the topic head). */
  topicLogits?: Tensor;
}

/**
 * The `cls` module: MLM head (`predictions`), ITM classifier (`seq_relationship`, Linear(h, 2)) and,
 * for LXMERT-S, the topic head flat as `seq_relationship_new` + `LayerNorm` (official names).
 */
export class BertPreTrainingHeads extends Module {
  readonly predictions: BertLMPredictionHead;
  readonly seq_relationship: Linear;
  readonly seq_relationship_new: Linear | null = null;
  readonly LayerNorm: LayerNorm | null = null;

  constructor(c: BertLikeConfig, tiedWeight: Tensor | null, opts: { topic?: boolean } = {}) {
    super();
    this.predictions = this.module("predictions", new BertLMPredictionHead(c, tiedWeight));
    if (opts.topic) {
      this.seq_relationship_new = this.module("seq_relationship_new", new Linear(c.hiddenSize, c.vocabSize));
      this.LayerNorm = this.module("LayerNorm", new LayerNorm(c.vocabSize, c.layerNormEps));
    }
    this.seq_relationship = this.module("seq_relationship", new Linear(c.hiddenSize, 2));
  }

  topic(pooled: Tensor): Tensor {
    if (!this.seq_relationship_new || !this.LayerNorm) throw new Error("this model has no topic head");
    return topicLogits(this.seq_relationship_new, this.LayerNorm, pooled);
  }

  /** `itmInput`: what the ITM classifier reads when it is not `pooled` (a model's product read-out). */
  forward(sequence: Tensor, pooled: Tensor, itmInput: Tensor = pooled): PreTrainingHeadOutputs {
    const out: PreTrainingHeadOutputs = {
      lmLogits: this.predictions.forward(sequence),
      matchLogits: this.seq_relationship.forward(itmInput),
    };
    if (this.seq_relationship_new) out.topicLogits = this.topic(pooled);
    return out;
  }
}

/** A standalone ITM classifier: Linear(h, 2) named `seq_relationship` (class 1 = matched). */
export class ItmHead extends Module {
  readonly seq_relationship: Linear;
  constructor(hidden: number) {
    super();
    this.seq_relationship = this.module("seq_relationship", new Linear(hidden, 2));
  }
  forward(pooled: Tensor): Tensor {
    return this.seq_relationship.forward(pooled);
  }
}

/**
 * Masked-object prediction: the BERT transform, then one Linear per visual loss: object classes
 * (`obj`), attributes (`attr`) and ROI-feature regression (`feat`, to the feature dimension).
 * With `pooledProduct` (the official LXMERT-S code) the transformed states are multiplied
 * element-wise by the pooled output before the decoders.
 */
export class BertVisualObjHead extends Module {
  readonly transform: BertPredictionHeadTransform;
  readonly decoder_dict: ModuleDict<Linear>;
  readonly losses: VisualLoss[];
  readonly pooledProduct: boolean;

  constructor(c: VisualHeadConfig, opts: { pooledProduct?: boolean } = {}) {
    super();
    this.transform = this.module("transform", new BertPredictionHeadTransform(c));
    this.decoder_dict = this.module("decoder_dict", new ModuleDict<Linear>());
    const dims: Record<VisualLoss, number> = { obj: c.numObjectLabels, attr: c.numAttrLabels, feat: c.visualFeatDim };
    for (const k of c.visualLosses) {
      if (!(k in dims)) throw new Error(`unknown visual loss ${k}`);
      this.decoder_dict.set(k, new Linear(c.hiddenSize, dims[k]));
    }
    this.losses = [...c.visualLosses];
    this.pooledProduct = !!opts.pooledProduct;
  }

  /** `regions` [B, N, h] (without any visual [CLS]); `pooled` [B, h] is needed with pooledProduct. */
  forward(regions: Tensor, pooled?: Tensor): Partial<Record<VisualLoss, Tensor>> {
    let h = this.transform.forward(regions);
    if (this.pooledProduct) {
      if (!pooled) throw new Error("BertVisualObjHead: pooledProduct needs the pooled output");
      h = h.mul(pooled.unsqueeze(1));
    }
    const out: Partial<Record<VisualLoss, Tensor>> = {};
    for (const k of this.losses) out[k] = this.decoder_dict.get(k).forward(h);
    return out;
  }
}

/**
 * Image-QA / VQA / GQA answer head in LXMERT order: Linear(h, 2h) -> GeLU -> LayerNorm(2h) ->
 * Linear(2h, n_answers), as `logit_fc.0/2/3`.
 */
export class BertVisualAnswerHead extends Module {
  readonly logit_fc: Sequential;
  constructor(hidden: number, numAnswers: number, eps = 1e-12) {
    super();
    this.logit_fc = this.module("logit_fc", new Sequential(new Linear(hidden, 2 * hidden), new GELU(), new LayerNorm(2 * hidden, eps), new Linear(2 * hidden, numAnswers)));
  }
  forward(pooled: Tensor): Tensor {
    return this.logit_fc.forward(pooled);
  }
}

/**
 * NLVR2 pair classifier (LXMERT): the sentence is encoded with each of the two images, the two
 * pooled vectors are concatenated (2h) -> Linear(2h, 2h) -> GeLU -> LayerNorm(2h) -> Linear(2h, 2).
 */
export class NLVR2Head extends Module {
  readonly logit_fc: Sequential;
  constructor(hidden: number, eps = 1e-12) {
    super();
    this.logit_fc = this.module("logit_fc", new Sequential(new Linear(2 * hidden, 2 * hidden), new GELU(), new LayerNorm(2 * hidden, eps), new Linear(2 * hidden, 2)));
  }
  forward(pooled0: Tensor, pooled1: Tensor): Tensor {
    return this.logit_fc.forward(cat([pooled0, pooled1], -1));
  }
  /** Pooled outputs of 2B passes with the two images of each example adjacent (img0, img1, img0, ...). */
  forwardInterleaved(pooled: Tensor): Tensor {
    return this.logit_fc.forward(pooled.reshape(-1, 2 * pooled.size(-1)));
  }
}

/**
 * LXMERT-S IFRS head (image features random shuffle): the BERT transform, then Linear(h, featDim),
 * mapping each visual output back to the ROI-feature space; trained with an L2 loss against the
 * original (unshuffled) features.
 */
export class IFRSHead extends Module {
  readonly transform: BertPredictionHeadTransform;
  readonly decoder: Linear;
  constructor(c: BertLikeConfig & { visualFeatDim: number }) {
    super();
    this.transform = this.module("transform", new BertPredictionHeadTransform(c));
    this.decoder = this.module("decoder", new Linear(c.hiddenSize, c.visualFeatDim));
  }
  forward(regions: Tensor): Tensor {
    return this.decoder.forward(this.transform.forward(regions));
  }
}
