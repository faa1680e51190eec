// MSP pre-training of LXMERT-S (paper section 3): stages token -> phrase -> sentence, each a
// pre-training run of its own (data, epochs, batch size) starting from the previous one.
//   token:    text = the detected labels in order; IFRS + MLM + MRFR + MOC
//   phrase:   text = region phrases joined by commas; TITP + MLM + MRFR + MOC
//   sentence: text = captions; TITS + ITM with hard samples (ITM_HS) + MLM + MRFR + MOC
// Any order is allowed ("S", "T->S", "S->P->T", ...), and `joint` trains one stage that samples a
// granularity per batch (T+P+S of the paper's Table 4).
import { lxmertConfig, type LxmertPreset, type LxmertConfig, type LxmertInputs } from "../models/lxmert.ts";
import { LxmertSForMSP } from "../models/lxmert_msp.ts";
import { computeItm, computeIfrs, computeTopic, type LossOut, type ObjectLossWeighting } from "../objectives/losses.ts";
import { shuffleTriplets } from "../objectives/masking.ts";
import { sectionOf, STAGE_SETTINGS, VISUAL_WEIGHTING, type Recipe } from "./recipe.ts";
import { Type, num, RATIO, WEIGHT } from "./schema.ts";
import { defineSource, type Source, type Stage, type StepContext } from "../train/trainer.ts";
import type { RegionTextBatch } from "./builder.ts";
import { need } from "../data/batches.ts";
import type { Tensor, Generator } from "../engine/index.ts";
import { worldFile, regionTextSpec, maskText, maskVisual, weighted, topicTargets, maskedLm, maskedObjectPrediction, mlmVocab, matchedItc, type MlmVocab } from "./common.ts";
import { sourcesFor, sharedFile, lxmertInputs, splitOf, sourceName, REGION_TEXT_FORMATS, type DataSource } from "./sources.ts";

export type Granularity = "token" | "phrase" | "sentence";
const GRANULARITIES: Granularity[] = ["token", "phrase", "sentence"];
const ALIASES: Record<string, Granularity> = { t: "token", p: "phrase", s: "sentence", token: "token", phrase: "phrase", sentence: "sentence" };

/** The paper's section 4.4: token 10 epochs at batch 64, phrase and sentence 20 epochs at batch 128. */
export const MSP_PAPER_STAGES: Record<Granularity, { epochs: number; batchSize: number }> = {
  token: { epochs: 10, batchSize: 64 },
  phrase: { epochs: 20, batchSize: 128 },
  sentence: { epochs: 20, batchSize: 128 },
};

export const MSP_LOSSES: Record<Granularity, Record<string, number>> = {
  token: { ifrs: 1, mlm: 1, obj: 1 },
  phrase: { titp: 1, mlm: 1, obj: 1 },
  sentence: { tits: 1, itm: 1, mlm: 1, obj: 1 },
};

/**
 * vlpkit's align-before-fuse term for LXMERT-S trained from scratch (`msp.itc`, weight; 0 = off, the
 * paper): an ITC loss on the sentence stage between the text alone and the image alone through the
 * cross layers (cross-attention skipped), over the batch's matched pairs, two captions of one image
 * both positives. LXMERT-S has no unimodal encoder of its own; this runs its layers as one.
 */
export const MSP_ITC_DIM = 64;

/**
 * MSP's defaults. `lossesOnMismatched`: MLM and the visual losses (MRFR, MOC) on every pair of the
 * sentence stage, ITM negatives included, as the official LXMERT pre-training does (it masks only
 * the QA target of a mismatched pair, and MSP has no QA); false = SemVLP's rule, no MLM/visual
 * targets on mismatched pairs.
 */
export const MSP_DEFAULTS = { lossesOnMismatched: true, hardFraction: undefined as number | undefined, itc: 0, itmPaired: false };

/** The recipe's `msp` section (registered by src/methods/msp.ts); the defaults are buildMSP's. */
export const MSP_SECTION = Type.Object({
  order: Type.Optional(Type.Array(Type.String(), { description: "the stages in order (default token, phrase, sentence)" })),
  joint: Type.Optional(Type.Boolean({ description: "one stage mixing the granularities instead of one stage each" })),
  stages: Type.Optional(Type.Record(Type.String(), Type.Object({
    ...STAGE_SETTINGS,
    losses: Type.Optional(Type.Record(Type.String(), num(WEIGHT), { description: "loss weights of the stage" })),
  }, { additionalProperties: false }), { description: "per stage: the train fields it overrides and its loss weights" })),
  visualWeighting: Type.Optional(VISUAL_WEIGHTING),
  lossesOnMismatched: Type.Optional(Type.Boolean({ description: "MLM and the visual losses on ITM negatives too (default true, as LXMERT)" })),
  hardFraction: Type.Optional(num(RATIO, { description: "the share of ITM negatives drawn from the hard-negative pool" })),
  itc: Type.Optional(num(WEIGHT, { description: "weight of the ITC term in the sentence stage (default 0)" })),
  itmPaired: Type.Optional(Type.Boolean()),
}, { additionalProperties: false, description: "MSP's (LXMERT-S) settings" });

export function parseOrder(order: string[]): Granularity[] {
  return order.map((o) => {
    const g = ALIASES[o.toLowerCase()];
    if (!g) throw new Error(`recipe.msp.order: unknown stage "${o}" (expected token, phrase or sentence)`);
    return g;
  });
}

export function buildMSP(r: Recipe): { model: LxmertSForMSP; stages: Stage[] } {
  const m = { order: ["token", "phrase", "sentence"], joint: false, stages: {}, visualWeighting: "mask" as const, ...MSP_DEFAULTS, ...(sectionOf(r, "msp", MSP_SECTION) ?? {}) };
  const order = parseOrder(m.order);
  const sources = sourcesFor(r.data, "msp", REGION_TEXT_FORMATS);
  checkMspSources(sources, order);
  const overrides = (r.model.overrides ?? {}) as Partial<LxmertConfig>;
  const itcDim = m.itc > 0 ? (overrides.itcDim || MSP_ITC_DIM) : overrides.itcDim;
  const config = lxmertConfig(r.model.preset as LxmertPreset, { taskQa: false, topicHead: true, ...overrides, itcDim } as Partial<LxmertConfig>);
  const model = new LxmertSForMSP(config);
  const vocab = mlmVocab(config.vocabSize);
  const objectVocab = sharedFile(sources, "objectVocab", (src) => (src.format === "synth" ? worldFile(src.world!, "vocab/objects_vocab.txt") : src.objectVocab));

  const spec = (src: DataSource, g: Granularity, split: "train" | "val") => {
    const inputs = mspInputFiles(src, g, split);
    return inputs && regionTextSpec({
      examples: inputs.examples,
      regions: inputs.regions,
      maxTextLen: g === "token" ? 40 : 20,
      maxBoxes: 36,
      seed: r.train.seed,
      itm: g === "sentence" ? { prob: 0.5, hardPool: inputs.hardPool, hardFraction: m.hardFraction, paired: m.itmPaired || undefined } : undefined,
      objectVocab: g === "token" ? undefined : objectVocab,
      labels: { objects: config.numObjectLabels, attrs: config.numAttrLabels },
      interleave: split !== "train" || undefined,
    });
  };
  // one trainer source per granularity and data source (named by the granularity alone when one data source feeds it)
  const sourcesOf = (g: Granularity): Source[] => {
    const st = (m.stages as Record<string, { batchSize?: number; losses?: Record<string, number> }>)[g] ?? {};
    const losses = { ...MSP_LOSSES[g], ...(g === "sentence" && m.itc > 0 ? { itc: m.itc } : {}), ...(st.losses ?? {}) };
    const feeding = sources.filter((src) => feeds(src, g));
    return feeding.map((src) => defineSource({
      name: sourceName(g, src, feeding.length),
      weight: src.weight,
      batchSize: st.batchSize ?? r.train.batchSize,
      data: spec(src, g, "train")!,
      evalData: spec(src, g, "val"),
      step: (batch, _meta, ctx) => mspStep(model, g, losses, { weighting: m.visualWeighting, vocab, lossesOnMismatched: m.lossesOnMismatched }, batch, ctx),
    }));
  };

  const stageOf = (g: Granularity): Stage => {
    const st = (m.stages as Record<string, { epochs?: number; steps?: number; lr?: number }>)[g] ?? {};
    return { name: g, sources: sourcesOf(g), lr: st.lr ?? r.train.lr, warmup: r.train.warmup, epochs: st.epochs ?? r.train.epochs, steps: st.steps ?? r.train.steps, weightDecay: r.train.weightDecay };
  };
  if (m.joint) {
    const srcs = order.flatMap(sourcesOf);
    // the joint stage's budget: the sum of the order's stage steps when each gives them (the budget of
    // running the stages one after another, as the paper's comparison needs), else train.steps/epochs
    const each = order.map((g) => (m.stages as Record<string, { steps?: number }>)[g]?.steps);
    const steps = each.every((n) => n !== undefined) ? each.reduce((a, n) => a + n!, 0) : r.train.steps;
    return { model, stages: [{ name: "joint", sources: srcs, lr: r.train.lr, warmup: r.train.warmup, epochs: r.train.epochs, steps, weightDecay: r.train.weightDecay }] };
  }
  return { model, stages: order.map(stageOf) };
}

/**
 * Whether a source has data for a granularity: a synthetic world has all three (msp/*.json); an
 * lxmert source the sentences (its captions); a vg source the phrases (region descriptions) and
 * tokens (the names of its objects), as MSP's paper takes them from Visual Genome.
 */
function feeds(src: DataSource, g: Granularity): boolean {
  if (src.format === "lxmert") return g === "sentence";
  if (src.format === "vg") return (g === "phrase" && !!src.regionDescriptions) || (g === "token" && !!src.objects);
  return true;
}

/**
 * Every stage of `order` needs a source that feeds it, and the topic labels of the phrase and
 * sentence stages (TITP, TITS) need the detector's object vocabulary.
 */
function checkMspSources(sources: DataSource[], order: Granularity[]): void {
  for (const g of order) {
    if (!sources.some((src) => feeds(src, g))) {
      throw new Error(`recipe.msp.order: no source feeds the ${g} stage (${g === "sentence" ? "a synth or lxmert source" : g === "phrase" ? "a synth source, or vg with regionDescriptions" : "a synth source, or vg with objects"}); the sources are ${sources.map((s) => `${s.name} (${s.format})`).join(", ")}`);
    }
  }
  sources.forEach((src, i) => {
    if (src.format !== "synth" && !src.objectVocab && order.some((g) => g !== "token" && feeds(src, g))) {
      throw new Error(`recipe.data.sources[${i}].objectVocab: required by MSP (the topic labels of its phrase and sentence stages, TITP/TITS): the detector's objects_vocab.txt`);
    }
  });
}

/** A source's examples, regions and hard-negative pool for one granularity and split (undefined: no such held-out split). */
function mspInputFiles(src: DataSource, g: Granularity, split: "train" | "val") {
  if (src.format === "lxmert") {
    const inputs = lxmertInputs(src, split, ["mscoco"]);
    return inputs && { ...inputs, hardPool: src.hardNegatives };
  }
  if (src.format === "vg") {
    const sp = splitOf(src, split);
    const path = sp && (g === "phrase" ? sp.regionDescriptions : sp.objects);
    return path ? { examples: [{ path, granularity: g, format: g === "phrase" ? "vg-phrases" as const : "vg-objects" as const }], regions: sp.regions!, hardPool: undefined } : undefined;
  }
  const w = src.world!;
  return {
    examples: [{ path: worldFile(w, `msp/${g}_${split}.json`), granularity: g }],
    regions: src.regions ?? worldFile(w, "features/obj36.tsv"),
    hardPool: g === "sentence" ? worldFile(w, "hardneg/hard_negative.json") : undefined,
  };
}

/**
 * The masked inputs and targets of an MSP step: IFRS shuffling (token stage), region masking, word
 * masking, and `matched`, the pairs the MLM/visual losses are restricted to (undefined = every pair:
 * the official LXMERT rule, MSP's default; with `lossesOnMismatched` false, the matched pairs only).
 */
export function mspInputs(g: Granularity, batch: RegionTextBatch, generator: Generator, vocab: MlmVocab, lossesOnMismatched = MSP_DEFAULTS.lossesOnMismatched) {
  const [b, n] = batch.feats.shape;
  // IFRS (token stage): shuffle feature triplets (boxes stay); shuffled regions are not also masked
  let feats = batch.feats;
  let shuffled: Tensor | null = null;
  if (g === "token") {
    const sh = shuffleTriplets(b, n, { prob: 0.05, generator, device: feats.device });
    feats = feats.gather(1, sh.index.unsqueeze(2).expand(b, n, feats.size(2)));
    shuffled = sh.shuffled;
  }
  const vis = maskVisual({ ...batch, feats, region_valid: shuffled ? batch.region_valid.logicalAnd(shuffled.logicalNot()) : batch.region_valid }, generator);
  const matched = !lossesOnMismatched && g === "sentence" ? batch.matched : undefined;
  const text = maskText(batch, generator, vocab, { wholeWord: false, matched });
  return { vis, text, shuffled, matched };
}

function mspStep(model: LxmertSForMSP, g: Granularity, losses: Record<string, number>, o: { weighting: ObjectLossWeighting; vocab: MlmVocab; lossesOnMismatched: boolean }, batch: RegionTextBatch, ctx: StepContext) {
  const { vis, text, shuffled, matched: lossPairs } = mspInputs(g, batch, ctx.generator, o.vocab, o.lossesOnMismatched);
  const inputs: LxmertInputs = { inputIds: text.inputIds, attentionMask: batch.attention_mask, positionIds: batch.word_position_ids, visualFeats: vis.feats, visualPos: batch.boxes, visualAttentionMask: batch.region_valid };
  const out = model.bert.forward(inputs);
  const matched = g === "sentence" ? batch.matched : undefined;
  const topic = g !== "token" ? model.cls.topic(out.pooledOutput) : undefined;
  const parts = {
    mlm: maskedLm(out.languageOutput, text.labels, (x) => model.cls.predictions.forward(x)),
    obj: model.obj_predict_head
      ? maskedObjectPrediction((x, p) => model.obj_predict_head!.forward(x, p), out.regionOutput, out.pooledOutput, { feats: batch.feats, objLabels: batch.obj_labels, objConf: batch.obj_conf, attrLabels: batch.attr_labels, attrConf: batch.attr_conf, mask: vis.mask, matched: lossPairs }, { weighting: o.weighting })
      : undefined,
    ifrs: shuffled ? computeIfrs(model.ifrs_head.forward(out.regionOutput), batch.feats, shuffled) : undefined,
    titp: g === "phrase" && topic ? computeTopic(topic, topicTargets(need(batch, "topic_ids", "MSP's TITP"), model.config.vocabSize), "titp") : undefined,
    tits: g === "sentence" && topic ? computeTopic(topic, topicTargets(need(batch, "topic_ids", "MSP's TITS"), model.config.vocabSize), "tits") : undefined,
    itm: matched ? computeItm(model.cls.seq_relationship.forward(out.itmInput), matched.long()) : undefined,
    itc: g === "sentence" && (losses.itc ?? 0) > 0 ? mspItc(model, batch) : undefined,
  };
  return { ...weighted(parts, losses), tag: g };
}

/** The align-before-fuse ITC of a sentence batch (MSP_ITC_DIM's comment), on its matched pairs. */
function mspItc(model: LxmertSForMSP, batch: RegionTextBatch): LossOut | undefined {
  return matchedItc(batch, batch.matched.nonzero().squeeze(1), model.logit_scale!, (pick) =>
    model.itcFeatures({ inputIds: pick(batch.input_ids), attentionMask: pick(batch.attention_mask), positionIds: pick(batch.word_position_ids), visualFeats: pick(batch.feats), visualPos: pick(batch.boxes), visualAttentionMask: pick(batch.region_valid) }));
}

export { GRANULARITIES, LxmertSForMSP };
