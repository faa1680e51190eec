// Downstream models on a region-based backbone (SemVLP, LXMERT-S): the classification model of VQA,
// GQA and NLVR2 and the retrieval matcher. Names keep the pre-training ones, so a pre-training run's
// weights load by name: `bert.*` (the backbone), `answer_head.logit_fc.{0,2,3}` (VQA/GQA, LXMERT's
// BertVisualAnswerHead) or `logit_fc.{0,2,3}` (NLVR2, LXMERT's pair classifier), and the
// pre-trained ITM classifier `cls.seq_relationship.*` (retrieval).
// What a task reads: the backbone's pair vector (`itmInput`): SemVLP's pooled output, pooler(h_CLS) in
// single-stream mode and pooler(o_IMG) in two-stream mode, LXMERT-S's product pooler, or, with
// config.itmRead "prod", the product read-out that pre-training's ITM trained.
import { need, type TaskBatch } from "../data/batches.ts";
import { Module, Sequential, type Tensor } from "../engine/index.ts";
import { initBertWeights, type BertLikeConfig } from "./bert.ts";
import { BertVisualAnswerHead, ItmHead, NLVR2Head } from "./heads.ts";
import { SemVLPModel, type SemVLPMode } from "./semvlp.ts";
import type { LxmertModel } from "./lxmert.ts";

export type TaskHead = { kind: "qa"; answers: number } | { kind: "nlvr2" };

/** A region backbone's config: BERT's and the width of the region features. */
export type RegionBackboneConfig = BertLikeConfig & { visualFeatDim: number };
export type RegionBackbone = SemVLPModel | LxmertModel;

/** A SemVLP or LXMERT-S backbone (`backbone(config)`, made first) + a QA or NLVR2 head. */
export class RegionTaskModel extends Module {
  readonly bert: RegionBackbone;
  readonly answer_head: BertVisualAnswerHead | null = null;
  readonly logit_fc: Sequential | null = null;
  private readonly pair: NLVR2Head | null = null;

  constructor(readonly method: string, readonly config: RegionBackboneConfig, readonly head: TaskHead, readonly mode: SemVLPMode, backbone: (c: RegionBackboneConfig) => RegionBackbone) {
    super();
    const c = config;
    this.bert = this.module("bert", backbone(c));
    if (head.kind === "qa") this.answer_head = this.module("answer_head", new BertVisualAnswerHead(c.hiddenSize, head.answers, c.layerNormEps));
    else {
      this.pair = new NLVR2Head(c.hiddenSize, c.layerNormEps);
      this.logit_fc = this.module("logit_fc", this.pair.logit_fc);
    }
    initBertWeights(this, c.initializerRange);
  }

  pooled(b: TaskBatch): Tensor {
    const who = `${this.method} task model`;
    const x = { inputIds: b.input_ids, attentionMask: b.attention_mask, positionIds: need(b, "word_position_ids", who), visualFeats: need(b, "feats", who), visualPos: need(b, "boxes", who), visualAttentionMask: need(b, "region_valid", who) };
    // the vector the model's ITM head reads, as VLMo's pair vector: the product read-out when
    // config.itmRead is "prod" (a tiny recipe's departure), else the pooled output (the official read;
    // LXMERT-S: its product pooler). MSP-tiny's VQA gains from pre-training only with this read
    // (400 steps, backbone lr 1e-4: +3.9 points over two seeds; with the pooled output -0.5, session 16)
    return (this.bert instanceof SemVLPModel ? this.bert.forward(x, this.mode) : this.bert.forward(x)).itmInput;
  }

  /** [B, answers] (QA) or [B, 2] (NLVR2, from 2B rows with each statement's two images adjacent). */
  forward(b: TaskBatch): Tensor {
    const p = this.pooled(b);
    return this.answer_head ? this.answer_head.forward(p) : this.pair!.forwardInterleaved(p);
  }
}

export interface TextInputs {
  ids: Tensor;
  mask: Tensor;
  /** LXMERT-S word-level position ids. */
  wpos: Tensor;
}
export interface RegionInputs {
  feats: Tensor;
  boxes: Tensor;
  valid: Tensor;
}

/**
 * A region-based fusion model for retrieval: the SemVLP or LXMERT-S backbone (`bert`) and the
 * pre-trained ITM classifier (`cls.seq_relationship`). Its score for a pair is the ITM log-odds.
 */
export class RegionMatcher extends Module {
  readonly bert: RegionBackbone;
  readonly cls: ItmHead;
  constructor(readonly method: string, readonly config: RegionBackboneConfig, readonly mode: SemVLPMode, backbone: (c: RegionBackboneConfig) => RegionBackbone) {
    super();
    this.bert = this.module("bert", backbone(config));
    this.cls = this.module("cls", new ItmHead(config.hiddenSize));
    initBertWeights(this, config.initializerRange);
  }

  /** ITM logits [P, 2] of P (text, regions) pairs. */
  logits(t: TextInputs, r: RegionInputs): Tensor {
    const base = { inputIds: t.ids, attentionMask: t.mask, visualFeats: r.feats, visualPos: r.boxes, visualAttentionMask: r.valid };
    const out = this.bert instanceof SemVLPModel ? this.bert.forward(base, this.mode) : this.bert.forward({ ...base, positionIds: t.wpos });
    return this.cls.forward(out.itmInput);
  }

  /** Match score [P]: logit[1] - logit[0] (ranks like P(match)). */
  score(t: TextInputs, r: RegionInputs): Tensor {
    const l = this.logits(t, r);
    return l.select(1, 1).sub(l.select(1, 0));
  }
}
