// SemVLP pre-training (paper section 3): one shared transformer, each mini-batch trained in
// single-stream mode (regions + words concatenated; low-level alignment) or two-stream mode
// (separate encoding, text->image cross-attention above L_s; high-level alignment), 50/50 by
// default. Tasks: MLM, masked object prediction (feature regression + label classification),
// ITM (50% random negatives) and image QA; MLM, object and QA losses only on matched pairs.
import { SemVLPForPreTraining, semvlpConfig, type SemVLPMode, type SemVLPPreset } from "../models/semvlp.ts";
import { computeItm, computeQa } from "../objectives/losses.ts";
import { sectionOf, TRAIN_RANGES, VISUAL_WEIGHTING, type Recipe } from "./recipe.ts";
import { Type, num, RATIO, WEIGHT } from "./schema.ts";
import type { Generator } from "../engine/index.ts";
import { defineSource, type Stage } from "../train/trainer.ts";
import type { RegionTextBatch } from "./builder.ts";
import { worldFile, regionTextSpec, answerCount, maskText, maskVisual, weighted, maskedLm, maskedObjectPrediction, renameMetrics, mlmVocab, matchedItc, type MlmVocab } from "./common.ts";
import { sourcesFor, sharedFile, lxmertInputs, sourceName, REGION_TEXT_FORMATS, type DataSource } from "./sources.ts";

/** The paper's tasks, weight 1 each; `itc` (vlpkit's align-before-fuse term, not in the paper) is off by default. */
export const SEMVLP_LOSSES = { mlm: 1, obj: 1, attr: 1, feat: 1, itm: 1, qa: 1, itc: 0 };

/**
 * The masked inputs of a SemVLP step. SemVLP's rule (paper section 3): no MLM (nor object or QA)
 * targets on mismatched pairs, so `matched` restricts every loss but ITM (unlike LXMERT, which
 * masks only QA on them: see MSP's lossesOnMismatched).
 */
export function semvlpInputs(batch: RegionTextBatch, generator: Generator, vocab: MlmVocab) {
  const matched = batch.matched;
  return { text: maskText(batch, generator, vocab, { matched }), vis: maskVisual(batch, generator), matched };
}

/** The recipe's `semvlp` section (registered by src/methods/semvlp.ts); the defaults are buildSemVLP's. */
export const SEMVLP_SECTION = Type.Object({
  singleRatio: Type.Optional(num(RATIO, { description: "the share of single-stream mini-batches (default 0.5)" })),
  losses: Type.Optional(Type.Object(
    { mlm: Type.Optional(num(WEIGHT)), obj: Type.Optional(num(WEIGHT)), attr: Type.Optional(num(WEIGHT)), feat: Type.Optional(num(WEIGHT)), itm: Type.Optional(num(WEIGHT)), qa: Type.Optional(num(WEIGHT)), itc: Type.Optional(num(WEIGHT)) } satisfies Record<keyof typeof SEMVLP_LOSSES, unknown>,
    { additionalProperties: false, description: "loss weights (default 1 each, itc 0)" },
  )),
  visualWeighting: Type.Optional(VISUAL_WEIGHTING),
  qa: Type.Optional(Type.Boolean({ description: "the image QA task (default true)" })),
  itmSources: Type.Optional(Type.Array(Type.String(), { description: "the sentf sources ITM negatives are drawn from" })),
  textSources: Type.Optional(Type.Array(Type.String(), { description: "the sentf sources read (default mscoco, vqa, gqa)" })),
  itmPaired: Type.Optional(Type.Boolean()),
  textWarmup: Type.Optional(Type.Object({
    steps: num({ int: true, min: 0, max: 1e9 }),
    lr: Type.Optional(num(TRAIN_RANGES.lr)),
  }, { additionalProperties: false, description: "a text-only warmup stage before the main one" })),
}, { additionalProperties: false, description: "SemVLP's settings" });

export function buildSemVLP(r: Recipe): { model: SemVLPForPreTraining; stages: Stage[] } {
  const s = { singleRatio: 0.5, losses: SEMVLP_LOSSES, visualWeighting: "mask" as const, qa: true, itmSources: undefined as string[] | undefined, textSources: ["mscoco", "vqa", "gqa"], itmPaired: false, textWarmup: undefined as { steps: number; lr?: number } | undefined, ...(sectionOf(r, "semvlp", SEMVLP_SECTION) ?? {}) };
  const sources = sourcesFor(r.data, "semvlp", REGION_TEXT_FORMATS.filter((f) => f !== "vg"));
  const answers = semvlpAnswers(sources, s.qa);
  const losses = { ...SEMVLP_LOSSES, ...s.losses };
  const base = semvlpConfig(r.model.preset as SemVLPPreset, r.model.overrides ?? {});
  const itcDim = losses.itc > 0 ? (base.itcDim || base.hiddenSize) : base.itcDim;
  const config = semvlpConfig(r.model.preset as SemVLPPreset, { ...(r.model.overrides ?? {}), ...(answers ? { numQaLabels: answerCount(answers) } : {}), taskQa: s.qa, itcDim });
  const model = new SemVLPForPreTraining(config);
  const vocab = mlmVocab(config.vocabSize);
  // LXMERT's pre-training data: captions plus VQA/GQA questions, with 50% random ITM negatives
  const spec = (src: DataSource, split: "train" | "val", withItm = true) => {
    const inputs = regionTextInputs(src, split, s.textSources);
    return inputs && regionTextSpec({
      ...inputs,
      maxTextLen: 20,
      maxBoxes: 36,
      seed: r.train.seed,
      itm: withItm ? { prob: 0.5, sources: s.itmSources, paired: s.itmPaired } : undefined,
      answers: s.qa ? answers : undefined,
      labels: { objects: config.numObjectLabels, attrs: config.numAttrLabels },
      interleave: split !== "train" || undefined,
    });
  };
  const stage: Stage = {
    name: "semvlp",
    lr: r.train.lr,
    warmup: r.train.warmup,
    epochs: r.train.epochs,
    steps: r.train.steps,
    weightDecay: r.train.weightDecay,
    sources: sources.map((src) => defineSource({
      name: sourceName("image-text", src, sources.length),
      weight: src.weight,
      batchSize: r.train.batchSize,
      data: spec(src, "train")!,
      evalData: spec(src, "val"),
      step(batch, _meta, ctx) {
        const mode: SemVLPMode = ctx.rng.next() < s.singleRatio ? "single" : "two";
        const { text, vis, matched } = semvlpInputs(batch, ctx.generator, vocab);
        // the backbone, then each head on what it needs (MLM only at masked positions)
        const out = model.bert.forward({ inputIds: text.inputIds, attentionMask: batch.attention_mask, visualFeats: vis.feats, visualPos: batch.boxes, visualAttentionMask: batch.region_valid }, mode);
        const answer = model.answer_head?.forward(out.itmInput);
        // align before fuse (vlpkit, optional): ITC between the unimodal h_CLS and o_IMG of the pairs that match
        const itc = losses.itc > 0
          ? matchedItc(batch, matched.logicalAnd(batch.itm_target.ne(-1)).nonzero().squeeze(1), model.logit_scale!, (pick) =>
            model.itcFeatures({ inputIds: pick(batch.input_ids), attentionMask: pick(batch.attention_mask), visualFeats: pick(batch.feats), visualPos: pick(batch.boxes), visualAttentionMask: pick(batch.region_valid) }))
          : undefined;
        const res = weighted({
          itc,
          mlm: maskedLm(out.textOutput, text.labels, (x) => model.cls.predictions.forward(x)),
          obj: model.obj_predict_head ? maskedObjectPrediction(
            (x) => model.obj_predict_head!.forward(x),
            out.regionOutput,
            undefined,
            { feats: batch.feats, objLabels: batch.obj_labels, objConf: batch.obj_conf, attrLabels: batch.attr_labels, attrConf: batch.attr_conf, mask: vis.mask, matched },
            { weighting: s.visualWeighting, weights: { obj: losses.obj, attr: losses.attr, feat: losses.feat } },
          ) : undefined,
          itm: computeItm(model.cls.seq_relationship.forward(out.itmInput), batch.itm_target),
          qa: answer ? computeQa(answer, batch.qa_target, matched) : undefined,
        }, { mlm: losses.mlm, obj: 1, itm: losses.itm, qa: losses.qa, itc: losses.itc });
        return { loss: res.loss, metrics: res.metrics, tag: mode };
      },
    })),
  };
  if (!s.textWarmup) return { model, stages: [stage] };
  // The paper starts the shared blocks from StructBERT, a text encoder; from scratch, vlpkit can warm
  // them up with text-only MLM on the same texts first (the text stream alone, as two-stream mode
  // encodes it), so that attention is not at its N(0, 0.02) start when the image-text stage begins.
  const tw = s.textWarmup;
  const text: Stage = {
    name: "text",
    lr: tw.lr ?? r.train.lr,
    warmup: r.train.warmup,
    steps: tw.steps,
    weightDecay: r.train.weightDecay,
    sources: sources.map((src) => defineSource({
      name: sourceName("text", src, sources.length),
      weight: src.weight,
      batchSize: r.train.batchSize,
      data: spec(src, "train", false)!,
      evalData: spec(src, "val", false),
      step(batch, _meta, ctx) {
        const m = maskText(batch, ctx.generator, vocab);
        const h = model.bert.encodeText({ inputIds: m.inputIds, attentionMask: batch.attention_mask });
        const mlm = renameMetrics(maskedLm(h, m.labels, (x) => model.cls.predictions.forward(x)), "text_");
        return { loss: mlm.loss, metrics: mlm.metrics, tag: "text" };
      },
    })),
  };
  return { model, stages: [text, stage] };
}

/**
 * The QA head's answer vocabulary: a synthetic world's vqa/trainval_ans2label.json, an lxmert
 * source's `answers` (one file for all sources). Required while the QA task is on.
 */
function semvlpAnswers(sources: DataSource[], qa: boolean): string | undefined {
  const answers = sharedFile(sources, "answers", (src) => (src.format === "synth" ? worldFile(src.world!, "vqa/trainval_ans2label.json") : src.answers));
  if (qa && !answers) throw new Error(`recipe.data.sources[0].answers: required while SemVLP's QA task is on (semvlp.qa): the ans2label JSON of the answers (LXMERT's data/vqa/trainval_ans2label.json); or set semvlp.qa to false`);
  return answers;
}

/** A source's examples and regions for one split (undefined: a held-out split the source does not have). */
function regionTextInputs(src: DataSource, split: "train" | "val", textSources: string[]) {
  if (src.format === "lxmert") return lxmertInputs(src, split, textSources);
  const w = src.world!;
  return { examples: [{ path: worldFile(w, `lxmert/mscoco_${split}.json`), sources: textSources }], regions: src.regions ?? worldFile(w, "features/obj36.tsv") };
}
