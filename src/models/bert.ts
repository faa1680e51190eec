// BERT building blocks shared by LXMERT, LXMERT-S and SemVLP. Module and parameter names follow
// BERT / LXMERT checkpoints ("embeddings.word_embeddings", "attention.self.query", "output.LayerNorm",
// ...), so published weights load by name. Every block is post-LN (residual, then LayerNorm) with
// LayerNorm eps 1e-12 and the erf form of GELU, as in BERT-base.
import { Module, Linear, LayerNorm, Embedding, Dropout } from "../engine/nn.ts";
import { Tensor, arange, zeros, zerosLike, type Generator } from "../engine/tensor.ts";
import * as F from "../engine/functional.ts";
import { tidy } from "../engine/scope.ts";

/** The transformer hyper-parameters every BERT-style model here shares (JSON-serialisable). */
export interface BertLikeConfig {
  vocabSize: number;
  hiddenSize: number;
  numAttentionHeads: number;
  intermediateSize: number;
  /** "gelu" is the exact (erf) GELU of BERT; "gelu_tanh" the tanh approximation. */
  hiddenAct: Activation;
  hiddenDropoutProb: number;
  attentionProbsDropoutProb: number;
  maxPositionEmbeddings: number;
  typeVocabSize: number;
  /** Standard deviation of the N(0, std) initialisation of weights and embeddings. */
  initializerRange: number;
  layerNormEps: number;
  /**
   * Which embedding tables treat id 0 as padding (no gradient flows into row 0):
   * "all" = word, position and token type, as in the official LXMERT/LXMERT-S code;
   * "word" = the word table only, as in Hugging Face BERT; "none".
   */
  embeddingPaddingIdx: "all" | "word" | "none";
}

export type Activation = "gelu" | "gelu_tanh" | "relu" | "swish";

export function activate(x: Tensor, act: Activation): Tensor {
  switch (act) {
    case "gelu": return x.gelu("none");
    case "gelu_tanh": return x.gelu("tanh");
    case "relu": return x.relu();
    case "swish": return x.silu();
  }
}

function checkHeads(c: BertLikeConfig): void {
  if (c.hiddenSize % c.numAttentionHeads !== 0) {
    throw new Error(`hidden size ${c.hiddenSize} is not a multiple of the number of attention heads ${c.numAttentionHeads}`);
  }
}

/**
 * The additive attention mask of BERT: a [B, S] mask (1 = attend, 0 = padding; any dtype) becomes
 * (1 - m) * -10000 of shape [B, 1, 1, S], broadcast over heads and query positions.
 */
export function extendedAttentionMask(mask: Tensor | null | undefined, dtype: "float32" | "float64" | "float16" | "bfloat16" = "float32"): Tensor | null {
  if (!mask) return null;
  if (mask.ndim !== 2) throw new Error(`attention mask must be [batch, seq], got [${mask.shape}]`);
  return mask.unsqueeze(1).unsqueeze(2).to(dtype).neg().add(1).mul(-10000);
}

// ---- embeddings ------------------------------------------------------------------------------------

export interface EmbeddingInputs {
  tokenTypeIds?: Tensor | null;
  /** Explicit position ids [B, L] (LXMERT-S word-level positions); default 0..L-1. */
  positionIds?: Tensor | null;
}

/** word + position + token-type embeddings, then LayerNorm and dropout. */
export class BertEmbeddings extends Module {
  readonly word_embeddings: Embedding;
  readonly position_embeddings: Embedding;
  readonly token_type_embeddings: Embedding;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;

  constructor(c: BertLikeConfig) {
    super();
    const pad = c.embeddingPaddingIdx;
    this.word_embeddings = this.module("word_embeddings", new Embedding(c.vocabSize, c.hiddenSize, pad === "none" ? -1 : 0));
    this.position_embeddings = this.module("position_embeddings", new Embedding(c.maxPositionEmbeddings, c.hiddenSize, pad === "all" ? 0 : -1));
    this.token_type_embeddings = this.module("token_type_embeddings", new Embedding(c.typeVocabSize, c.hiddenSize, pad === "all" ? 0 : -1));
    this.LayerNorm = this.module("LayerNorm", new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.dropout = this.module("dropout", new Dropout(c.hiddenDropoutProb));
  }

  forward(inputIds: Tensor, opts: EmbeddingInputs = {}): Tensor {
    const len = inputIds.size(1);
    if (!opts.positionIds && len > this.position_embeddings.num) {
      throw new Error(`sequence length ${len} exceeds max_position_embeddings ${this.position_embeddings.num}`);
    }
    const positions = opts.positionIds ?? arange(len, undefined, 1, { device: inputIds.device }).unsqueeze(0);
    const types = opts.tokenTypeIds ?? zerosLike(inputIds);
    const words = this.word_embeddings.forward(inputIds);
    const sum = words.add(this.position_embeddings.forward(positions)).add(this.token_type_embeddings.forward(types));
    return this.dropout.forward(this.LayerNorm.forward(sum));
  }
}

/**
 * LXMERT's object encoder: (LN(Linear(feat)) + LN(Linear(box))) / 2, then dropout.
 * Names: visn_fc, visn_layer_norm, box_fc, box_layer_norm.
 */
export class VisualFeatEncoder extends Module {
  readonly visn_fc: Linear;
  readonly visn_layer_norm: LayerNorm;
  readonly box_fc: Linear;
  readonly box_layer_norm: LayerNorm;
  readonly dropout: Dropout;

  constructor(c: BertLikeConfig & { visualFeatDim: number; visualPosDim: number }) {
    super();
    this.visn_fc = this.module("visn_fc", new Linear(c.visualFeatDim, c.hiddenSize));
    this.visn_layer_norm = this.module("visn_layer_norm", new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.box_fc = this.module("box_fc", new Linear(c.visualPosDim, c.hiddenSize));
    this.box_layer_norm = this.module("box_layer_norm", new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.dropout = this.module("dropout", new Dropout(c.hiddenDropoutProb));
  }

  forward(feats: Tensor, boxes: Tensor): Tensor {
    const x = this.visn_layer_norm.forward(this.visn_fc.forward(feats));
    const y = this.box_layer_norm.forward(this.box_fc.forward(boxes));
    return this.dropout.forward(x.add(y).div(2));
  }
}

// ---- attention -------------------------------------------------------------------------------------

/**
 * Multi-head scaled dot-product attention with query/key/value projections (the official LXMERT
 * code calls this module BertAttention, Hugging Face BertSelfAttention). Keys and values come from
 * `context` (the input itself for self-attention). Returns [context layer, attention probabilities
 * [B, heads, Sq, Sk]]; the probabilities are those before attention dropout.
 */
export class BertSelfAttention extends Module {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  readonly dropout: Dropout;
  readonly numHeads: number;
  readonly headSize: number;

  constructor(c: BertLikeConfig, ctxDim = c.hiddenSize) {
    super();
    checkHeads(c);
    this.numHeads = c.numAttentionHeads;
    this.headSize = c.hiddenSize / c.numAttentionHeads;
    this.query = this.module("query", new Linear(c.hiddenSize, c.hiddenSize));
    this.key = this.module("key", new Linear(ctxDim, c.hiddenSize));
    this.value = this.module("value", new Linear(ctxDim, c.hiddenSize));
    this.dropout = this.module("dropout", new Dropout(c.attentionProbsDropoutProb));
  }

  /** [B, S, H*D] -> [B, H, S, D] */
  private heads(x: Tensor): Tensor {
    const [b, s] = x.shape;
    return x.view(b, s, this.numHeads, this.headSize).permute(0, 2, 1, 3);
  }

  forward(hidden: Tensor, context: Tensor = hidden, mask: Tensor | null = null): [Tensor, Tensor] {
    const q = this.heads(this.query.forward(hidden));
    const k = this.heads(this.key.forward(context));
    const v = this.heads(this.value.forward(context));
    let scores = q.matmul(k.transpose(-1, -2)).div(Math.sqrt(this.headSize));
    if (mask) scores = scores.add(mask);
    const probs = scores.softmax(-1);
    const ctx = this.dropout.forward(probs).matmul(v).permute(0, 2, 1, 3).contiguous();
    const [b, s] = hidden.shape;
    return [ctx.view(b, s, this.numHeads * this.headSize), probs];
  }
}

/** dense -> dropout -> LayerNorm(x + residual). Used after every attention (BertSelfOutput in HF). */
export class BertAttOutput extends Module {
  readonly dense: Linear;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(c: BertLikeConfig) {
    super();
    this.dense = this.module("dense", new Linear(c.hiddenSize, c.hiddenSize));
    this.LayerNorm = this.module("LayerNorm", new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.dropout = this.module("dropout", new Dropout(c.hiddenDropoutProb));
  }
  forward(hidden: Tensor, residual: Tensor): Tensor {
    return this.LayerNorm.forward(this.dropout.forward(this.dense.forward(hidden)).add(residual));
  }
}
export { BertAttOutput as BertSelfOutput };

/** Self-attention sub-layer: `self` (attention) + `output` (dense, residual, LN). LXMERT: BertSelfattLayer. */
export class BertAttention extends Module {
  readonly self: BertSelfAttention;
  readonly output: BertAttOutput;
  constructor(c: BertLikeConfig) {
    super();
    this.self = this.module("self", new BertSelfAttention(c));
    this.output = this.module("output", new BertAttOutput(c));
  }
  forward(x: Tensor, mask: Tensor | null): [Tensor, Tensor] {
    const [ctx, probs] = this.self.forward(x, x, mask);
    return [this.output.forward(ctx, x), probs];
  }
}

/** What a pluggable cross-modal attention module must offer: queries from x, keys/values from ctx. */
export interface CrossModalAttention extends Module {
  forward(x: Tensor, ctx: Tensor, ctxMask: Tensor | null): [Tensor, Tensor];
}

/**
 * Cross-attention sub-layer: queries from one stream, keys/values from the other, then dense,
 * residual (to the query stream) and LayerNorm. The attention child is named `att` in LXMERT
 * (BertCrossattLayer: visual_attention.att.query) and `self` in Hugging Face BERT's crossattention
 * (crossattention.self.query); pass the name.
 */
export class BertCrossAttention extends Module implements CrossModalAttention {
  readonly att: BertSelfAttention;
  readonly output: BertAttOutput;
  constructor(c: BertLikeConfig, attName: "att" | "self" = "att", ctxDim = c.hiddenSize) {
    super();
    this.att = this.module(attName, new BertSelfAttention(c, ctxDim));
    this.output = this.module("output", new BertAttOutput(c));
  }
  forward(x: Tensor, ctx: Tensor, ctxMask: Tensor | null = null): [Tensor, Tensor] {
    const [c, probs] = this.att.forward(x, ctx, ctxMask);
    return [this.output.forward(c, x), probs];
  }
}

// ---- feed-forward ----------------------------------------------------------------------------------

export class BertIntermediate extends Module {
  readonly dense: Linear;
  constructor(private readonly c: BertLikeConfig) {
    super();
    this.dense = this.module("dense", new Linear(c.hiddenSize, c.intermediateSize));
  }
  forward(x: Tensor): Tensor {
    return activate(this.dense.forward(x), this.c.hiddenAct);
  }
}

export class BertOutput extends Module {
  readonly dense: Linear;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(c: BertLikeConfig) {
    super();
    this.dense = this.module("dense", new Linear(c.intermediateSize, c.hiddenSize));
    this.LayerNorm = this.module("LayerNorm", new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.dropout = this.module("dropout", new Dropout(c.hiddenDropoutProb));
  }
  forward(hidden: Tensor, residual: Tensor): Tensor {
    return this.LayerNorm.forward(this.dropout.forward(this.dense.forward(hidden)).add(residual));
  }
}

// ---- layer -----------------------------------------------------------------------------------------

export interface BertLayerOutput {
  output: Tensor;
  /** Self-attention probabilities [B, heads, S, S]. */
  selfProbs: Tensor;
  /** Cross-attention probabilities [B, heads, S, S_ctx] when the cross-attention ran. */
  crossProbs?: Tensor;
}

/**
 * One BERT block: self-attention sub-layer, an optional (pluggable) cross-attention sub-layer,
 * then the FFN (intermediate + output). Names: attention, crossattention, intermediate, output.
 */
export class BertLayer extends Module {
  readonly attention: BertAttention;
  readonly intermediate: BertIntermediate;
  readonly output: BertOutput;
  private _cross: CrossModalAttention | null = null;

  constructor(c: BertLikeConfig) {
    super();
    this.attention = this.module("attention", new BertAttention(c));
    this.intermediate = this.module("intermediate", new BertIntermediate(c));
    this.output = this.module("output", new BertOutput(c));
  }

  /** Plug a cross-attention module into this block (registered as `crossattention`). */
  plugCrossAttention(m: CrossModalAttention): void {
    this._cross = this.module("crossattention", m);
  }
  get crossattention(): CrossModalAttention | null {
    return this._cross;
  }

  ffn(x: Tensor): Tensor {
    return this.output.forward(this.intermediate.forward(x), x);
  }

  /**
   * self-attention -> (cross-attention to `context` when given) -> FFN. The cross-attention only
   * runs when a context is passed; asking for it on a block without one is an error.
   */
  forward(x: Tensor, mask: Tensor | null, context?: { states: Tensor; mask: Tensor | null }): BertLayerOutput {
    if (context && !this._cross) throw new Error("BertLayer: a context was given but this block has no cross-attention");
    // The block's temporaries are freed when it returns (autograd keeps what backward needs), like
    // Python's reference counting: a lower peak of live native memory.
    return tidy(() => {
      const [att, selfProbs] = this.attention.forward(x, mask);
      if (!context) return { output: this.ffn(att), selfProbs };
      const [crossed, crossProbs] = this._cross!.forward(att, context.states, context.mask);
      return { output: this.ffn(crossed), selfProbs, crossProbs };
    });
  }
}

// ---- pooler and prediction heads -------------------------------------------------------------------

/** dense + tanh on position 0. */
/** Mean over the sequence of [B, S, h] where mask [B, S] is 1 (all positions when mask is null). */
export function maskedMean(h: Tensor, mask: Tensor | null | undefined): Tensor {
  if (!mask) return h.mean(1);
  const w = mask.to(h.dtype).unsqueeze(-1);
  return h.mul(w).sum(1).div(w.sum(1));
}

export class BertPooler extends Module {
  readonly dense: Linear;
  constructor(c: BertLikeConfig) {
    super();
    this.dense = this.module("dense", new Linear(c.hiddenSize, c.hiddenSize));
  }
  forward(hidden: Tensor): Tensor {
    return this.poolVector(hidden.select(1, 0));
  }
  /** dense -> tanh of any [B, h] vector (a mean or a product read-out instead of the [CLS]). */
  poolVector(v: Tensor): Tensor {
    return this.dense.forward(v).tanh();
  }
}

/** dense -> activation -> LayerNorm. */
export class BertPredictionHeadTransform extends Module {
  readonly dense: Linear;
  readonly LayerNorm: LayerNorm;
  constructor(private readonly c: BertLikeConfig) {
    super();
    this.dense = this.module("dense", new Linear(c.hiddenSize, c.hiddenSize));
    this.LayerNorm = this.module("LayerNorm", new LayerNorm(c.hiddenSize, c.layerNormEps));
  }
  forward(x: Tensor): Tensor {
    return this.LayerNorm.forward(activate(this.dense.forward(x), this.c.hiddenAct));
  }
}

/** A bias-free linear layer over a weight owned elsewhere (the tied MLM decoder). */
export class TiedLinear extends Module {
  readonly weight: Tensor;
  constructor(weight: Tensor) {
    super();
    this.weight = this.param("weight", weight);
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight);
  }
}

/**
 * MLM head: transform, then a decoder to the vocabulary plus an output-only `bias`. The decoder
 * weight is the word-embedding matrix when `tiedWeight` is given (BERT/LXMERT), else its own.
 */
export class BertLMPredictionHead extends Module {
  readonly transform: BertPredictionHeadTransform;
  readonly decoder: TiedLinear | Linear;
  readonly bias: Tensor;
  readonly tied: boolean;
  constructor(c: BertLikeConfig, tiedWeight: Tensor | null = null) {
    super();
    this.transform = this.module("transform", new BertPredictionHeadTransform(c));
    this.tied = tiedWeight !== null;
    if (tiedWeight && (tiedWeight.size(0) !== c.vocabSize || tiedWeight.size(1) !== c.hiddenSize)) {
      throw new Error(`tied decoder weight must be [${c.vocabSize}, ${c.hiddenSize}], got [${tiedWeight.shape}]`);
    }
    this.decoder = this.module("decoder", tiedWeight ? new TiedLinear(tiedWeight) : new Linear(c.hiddenSize, c.vocabSize, false));
    this.bias = this.param("bias", zeros([c.vocabSize]));
  }
  forward(hidden: Tensor): Tensor {
    return this.decoder.forward(this.transform.forward(hidden)).add(this.bias);
  }
}

// ---- initialisation --------------------------------------------------------------------------------

/**
 * BERT's initialisation over every submodule: Linear and Embedding weights ~ N(0, std), Linear
 * biases 0, LayerNorm weight 1 and bias 0 (like `init_bert_weights`; padding rows are not zeroed,
 * as in the official code). Tied weights are drawn once. Other parameters keep their values.
 */
export function initBertWeights(module: Module, std: number, generator?: Generator): void {
  const seen = new Set<Tensor>();
  const normal = (t: Tensor) => {
    if (seen.has(t)) return;
    seen.add(t);
    F.normal_(t, 0, std, generator);
  };
  for (const [, m] of module.namedModules()) {
    if (m instanceof Linear) {
      normal(m.weight);
      if (m.bias) F.zeros_(m.bias);
    } else if (m instanceof Embedding) {
      normal(m.weight);
    } else if (m instanceof LayerNorm) {
      F.ones_(m.weight);
      F.zeros_(m.bias);
    }
  }
}
