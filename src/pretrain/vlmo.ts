// VLMo's stagewise pre-training (paper section 2.3):
//   1. image-only:  the vision side learns from images alone (BEiT's masked image modelling in the
//      paper; here masked patch regression, see computeMim), V-FFN and self-attention trained; or,
//      with `imageTask: "vg-labels"` / `"vg-objects"` (a named departure), learns to name each
//      image's Visual Genome objects and attributes / objects (computeImageLabels), the labels
//      behind the other methods' detector;
//   2. text-only:   masked language modelling on text, with the self-attention and the vision
//      expert FROZEN (the paper's rule, which the official code omits: unilm issue #1727);
//   3. image-text:  ITC + ITM with hard negatives mined from the ITC similarities + MLM on the
//      fusion encoder, everything trained. As in the official compute_itc, ITC is the mean of the
//      [CLS]-projection loss and the VL-FFN branch's loss (see vlmoItc); as in the official
//      compute_mlm, this stage's MLM loss is weighted 0.25 (`mlmWeight`, VLMO_MLM_WEIGHT).
// Any stage can be skipped (`order`), e.g. ["image-text"] for the Table 4/5 ablations without the
// stagewise steps; `standard: true` swaps MoME for a standard Transformer (one shared FFN).
import { Tensor, cat, zeros, ones, tensor, where } from "../engine/index.ts";
import { toDevice } from "../engine/placement.ts";
import { vlmoConfig, type VLMoModel, type VLMoPreset, type VLMoConfig, type VLMoUnimodalOutput } from "../models/vlmo/index.ts";
import { VLMoForPretraining, type MimTarget } from "../models/vlmo/pretraining.ts";
import { computeImageLabels, computeItc, computeItm, computeMim, sampleHardNegatives } from "../objectives/losses.ts";
import { vgLabelTable, VG_LABEL_LIMITS, type VgLabelTable } from "../data/vg_labels.ts";
import { otherIndex } from "../objectives/sampling.ts";
import { hogPatches } from "../objectives/hog.ts";
import type { Rng } from "../engine/rng.ts";
import { sectionOf, STAGE_SETTINGS, type Recipe } from "./recipe.ts";
import { Type, choice, num, COUNT, WEIGHT, RATIO, type Static } from "./schema.ts";
import type { Source, Stage, StepContext } from "../train/trainer.ts";
import type { Dist } from "../engine/dist.ts";
import type { LossOut } from "../objectives/losses.ts";
import { worldFile, trimTextPadding, weighted, maskedLm, maskText, mlmVocab, renameMetrics, type MlmVocab } from "./common.ts";
import type { CaptionBatch, ImageTextArgs, ImageTextBatch, ImageTextMeta, ImageTextMode } from "./imagetext.ts";
import type { ImageTextInput } from "./imagetext_input.ts";
import { sourcesFor, splitOf, arrowTables, sourceName, webdatasetInput, IMAGE_TEXT_FORMATS, type DataSource } from "./sources.ts";
import type { BuilderSpec } from "../data/loader.ts";
import { AUG_OPS, VLMO_PRETRAIN_AUGMENT, type PretrainAugment } from "../vision/augment.ts";

export { VLMoForPretraining, type MimTarget };

const IMAGETEXT_MODULE = new URL("./imagetext.ts", import.meta.url).href;

export type VLMoStageName = "image" | "text" | "image-text";

/** Parameters frozen in stage 2: self-attention (with its norm, layer scale and relative bias) and the vision side. */
export const STAGE2_FROZEN = /(\.attn\.|\.norm1\.|\.gamma_1$|mlp_imag|norm2_imag|relative_position_bias_table|patch_embed|cls_token|pos_embed)/;

/** BEiT-style blockwise masking of ~ratio of the patches of a g x g grid: rectangles until enough are covered. */
export function blockMask(g: number, ratio: number, rng: Rng): boolean[] {
  const n = g * g;
  const target = Math.round(n * ratio);
  const m = new Array<boolean>(n).fill(false);
  let count = 0;
  for (let tries = 0; count < target && tries < 100 * n; tries++) {
    const area = 1 + rng.int(Math.max(1, Math.min(target - count, Math.ceil(n / 4))));
    const aspect = Math.exp((rng.next() * 2 - 1) * Math.log(3));
    const h = Math.max(1, Math.min(g, Math.round(Math.sqrt(area * aspect))));
    const w = Math.max(1, Math.min(g, Math.round(Math.sqrt(area / aspect))));
    const top = rng.int(g - h + 1);
    const left = rng.int(g - w + 1);
    for (let i = top; i < top + h; i++) {
      for (let j = left; j < left + w; j++) {
        if (!m[i * g + j] && count < target) {
          m[i * g + j] = true;
          count++;
        }
      }
    }
  }
  return m;
}

/** Pixels [B, 3, S, S] -> patches [B, P, 3*p*p] in the order of the patch embedding's grid. */
export function patchesOf(pixels: Tensor, p: number): Tensor {
  const [b, c, s] = pixels.shape;
  const g = s / p;
  return pixels.reshape(b, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c * p * p);
}

/** The official weight of the image-text stage's MLM loss (compute_mlm returns mlm_loss * 0.25; text-only MLM is unweighted). */
export const VLMO_MLM_WEIGHT = 0.25;

/** VLMo's MLM inputs: whole-word masking, drawn with the batch's word count from its metadata (no host read). */
function mlmInputs(batch: CaptionBatch, meta: ImageTextMeta, ctx: StepContext, vocab: MlmVocab) {
  return maskText(batch, ctx.generator, vocab, { wholeWord: true, words: meta.words });
}

/**
 * ITC over the global batch (VLMo's and CLIP's data-parallel contrastive loss): every rank's image
 * and text features are gathered, this rank's first, so local pair i is row i / column i; the
 * gathered features carry gradients back to the rank that computed them. With the ranks' gradients
 * averaged (DDP) this equals one process computing ITC over the whole batch. No `dist` (or one
 * process): the local batch alone.
 */
export function globalItc(img: Tensor, txt: Tensor, logitScale: Tensor, dist?: Dist): LossOut & { i2t: Tensor; t2i: Tensor } {
  if (!dist || dist.world === 1) return computeItc(img, txt, logitScale);
  return computeItc(img, txt, logitScale, { allImg: dist.gatherLocalFirst(img, { grad: true }), allTxt: dist.gatherLocalFirst(txt, { grad: true }), offset: 0 });
}

/**
 * VLMo's pre-training ITC (official compute_itc): the mean of two contrastive losses, one on the
 * [CLS] projections of the unimodal passes (`itc_*_proj`, `logit_scale`) and one on the VL branch,
 * where the top blocks re-run with the VL-FFN from the last V/L-FFN layer's output, then the final
 * norm and `itc_vl_*_proj` (`logit_vl_scale`). Both use the global batch under `dist`. Metrics: the
 * main branch's as computeItc names them (i2t/t2i from the [CLS] projections, which also drive the
 * hard negatives), the VL branch's with the prefix `itc_vl_` (and `logit_vl_scale`); `itc_loss` is
 * the mean, `itc_cls_loss` the main branch's own. A model without VL-branch heads (the standard
 * Transformer ablation, or heads.itcVl off) has the main branch only.
 */
export function vlmoItc(model: VLMoModel, img: VLMoUnimodalOutput, txt: VLMoUnimodalOutput, dist?: Dist): LossOut & { i2t: Tensor; t2i: Tensor } {
  if (!img.itc || !txt.itc || !model.logit_scale) throw new Error("vlmoItc: the model has no ITC heads");
  const main = globalItc(img.itc, txt.itc, model.logit_scale, dist);
  if (!model.logit_vl_scale) return main;
  if (!img.itcVl || !txt.itcVl) throw new Error("vlmoItc: the model has VL-branch ITC heads but the passes ran without vlBranch");
  const vl = globalItc(img.itcVl, txt.itcVl, model.logit_vl_scale, dist);
  const loss = main.loss.add(vl.loss).mul(0.5);
  const vlMetrics = Object.fromEntries(Object.entries(vl.metrics).map(([k, x]) => [k === "logit_scale" ? "logit_vl_scale" : k.replace(/^itc_/, "itc_vl_"), x]));
  return { loss, i2t: main.i2t, t2i: main.t2i, metrics: { ...main.metrics, ...vlMetrics, itc_cls_loss: main.metrics.itc_loss, itc_loss: loss.detach() } };
}

/** The recipe's `vlmo.augment`: true, false, or some fields of VLMO_PRETRAIN_AUGMENT. */
const AUGMENT = Type.Union([
  Type.Boolean(),
  Type.Object({
    scale: Type.Optional(Type.Array(num({ min: 0, max: 1 }), { minItems: 2, maxItems: 2, description: "RandomResizedCrop's area fraction [lo, hi] (official 0.5, 1)" })),
    flip: Type.Optional(Type.Boolean({ description: "mirror half of the images (official true)" })),
    n: Type.Optional(num({ int: true, min: 0, max: 16 }, { description: "RandAugment ops drawn per image (official 2)" })),
    m: Type.Optional(num({ min: 0, max: 10 }, { description: "their magnitude, 0-10 (official 7)" })),
    p: Type.Optional(num(RATIO, { description: "the chance each drawn op applies (official 0.5)" })),
    ops: Type.Optional(Type.Array(choice(AUG_OPS), { minItems: 1, description: "the op list drawn from" })),
    translateMax: Type.Optional(num(RATIO, { description: "largest translation as a fraction of the side, at magnitude 10 (official 10/224)" })),
  }, { additionalProperties: false }),
], { description: "image augmentation in the image and image-text stages (default true: the official crop + flip + RandAugment; false: none; an object: some fields overridden)" });

/** The recipe's `vlmo` section (registered by src/methods/vlmo.ts); the defaults are buildVLMo's. */
export const VLMO_SECTION = Type.Object({
  order: Type.Optional(Type.Array(Type.String(), { description: "the stages in order (default image, text, image-text)" })),
  stages: Type.Optional(Type.Record(Type.String(), Type.Object(STAGE_SETTINGS, { additionalProperties: false }), { description: "per stage: the train fields it overrides" })),
  standard: Type.Optional(Type.Boolean({ description: "Table 5 ablation: a standard Transformer, one FFN for every modality" })),
  itmHardNegatives: Type.Optional(Type.Boolean({ description: "ITM negatives drawn from the batch's ITC similarities (default true)" })),
  mlmWeight: Type.Optional(num(WEIGHT)),
  itmWeight: Type.Optional(num(WEIGHT)),
  itmRandomSteps: Type.Optional(num(COUNT, { description: "image-text steps with random ITM negatives before the hard ones" })),
  trimPadding: Type.Optional(Type.Boolean({ description: "trim each batch's text to its longest (default true)" })),
  mimTarget: Type.Optional(choice(["pixels", "hog"], { description: "what masked image modelling predicts (default pixels)" })),
  imageTask: Type.Optional(choice(["mim", "vg-objects", "vg-labels"], { description: "the image-only stage's task: masked image modelling (default, BEiT's), or naming each image's Visual Genome objects (vg-objects) or objects and attributes (vg-labels): the supervision of the detector behind LXMERT's and SemVLP's region features; a named departure" })),
  vg: Type.Optional(Type.String({ minLength: 1, description: "imageTask vg-objects / vg-labels: the Visual Genome folder (attributes.json, image_data.json); default the synthetic world's vg/" })),
  augment: Type.Optional(AUGMENT),
}, { additionalProperties: false, description: "VLMo's settings" });

/**
 * `recipe.vlmo.augment` (its shape checked by VLMO_SECTION): true or absent (the paper's "We apply
 * RandAugment to the input images": the official pre-training transform, VLMO_PRETRAIN_AUGMENT), false
 * (plain resize), or an object overriding some of its fields (e.g. `{ "flip": false }` where captions
 * say left and right).
 */
export function pretrainAugment(a: Static<typeof AUGMENT> | undefined, where = "recipe.vlmo.augment"): PretrainAugment | null {
  if (a === false) return null;
  if (a === true || a === undefined) return VLMO_PRETRAIN_AUGMENT;
  const out = { ...VLMO_PRETRAIN_AUGMENT, ...a } as PretrainAugment;
  if (!(out.scale[0] > 0 && out.scale[0] <= out.scale[1])) throw new Error(`${where}.scale: expected [lo, hi] with 0 < lo <= hi <= 1, got ${JSON.stringify(out.scale)}`);
  return out;
}

export function buildVLMo(r: Recipe): { model: VLMoForPretraining; stages: Stage[] } {
  const v = { order: ["image", "text", "image-text"], standard: false, itmHardNegatives: true, mlmWeight: VLMO_MLM_WEIGHT, itmWeight: 1, itmRandomSteps: 0, trimPadding: true, mimTarget: "pixels", imageTask: "mim", augment: true, stages: {}, ...(sectionOf(r, "vlmo", VLMO_SECTION) ?? {}) } as {
    augment: Static<typeof AUGMENT>; imageTask: "mim" | "vg-objects" | "vg-labels"; vg?: string; itmRandomSteps: number; mimTarget: MimTarget; order: string[]; standard: boolean; itmHardNegatives: boolean; mlmWeight: number; itmWeight: number; trimPadding: boolean; stages: Record<string, { epochs?: number; steps?: number; batchSize?: number; lr?: number }>;
  };
  const config = vlmoConfig(r.model.preset as VLMoPreset, { standard: v.standard, ...(r.model.overrides ?? {}) } as Partial<VLMoConfig>);
  const sources = sourcesFor(r.data, "vlmo", IMAGE_TEXT_FORMATS);
  const labels = v.imageTask !== "mim" && v.order.includes("image") ? vgLabelsOf(v.vg, sources, v.imageTask === "vg-labels") : null;
  const model = new VLMoForPretraining(config, v.mimTarget, labels?.size ?? 0);
  const augment = pretrainAugment(v.augment);
  const vocab = mlmVocab(config.vocabSize);
  const spec = <M extends ImageTextMode>(src: DataSource, mode: M, split: "train" | "val" = "train"): BuilderSpec<ImageTextBatch<M>, ImageTextMeta> | undefined => {
    const input = imageTextInput(src, split);
    return input && { module: IMAGETEXT_MODULE, args: { input, split, mode, imageSize: config.imageSize, maxTextLen: config.maxTextLen, augment, seed: r.train.seed } satisfies ImageTextArgs };
  };
  // one trainer source per data source of a stage (named by the stage alone when one data source feeds it)
  const sourcesOf = <M extends ImageTextMode>(name: string, batchSize: number, mode: M, step: Source<ImageTextBatch<M>, ImageTextMeta>["step"]): Source<ImageTextBatch<M>, ImageTextMeta>[] => sources.map((src) => ({
    name: sourceName(name, src, sources.length), weight: src.weight, batchSize, data: spec(src, mode)!, evalData: spec(src, mode, "val"), step,
  }));
  const p = config.patchSize;
  const g = config.imageSize / p;

  // stage 1 with imageTask vg-objects / vg-labels: each image's Visual Genome names (and attributes), multi-hot
  const stepLabels = (batch: ImageTextBatch<"image">, meta: ImageTextMeta) => {
    const t = labels!, L = t.size;
    const y = new Float32Array(meta.files.length * L);
    meta.files.forEach((f, k) => {
      const row = t.labelsOf(f);
      if (!row) throw new Error(`recipe.vlmo.imageTask ${v.imageTask}: image ${f} has no record in the Visual Genome folder ${t.dir} (image_data.json url or coco_id, attributes.json)`);
      y.set(row, k * L);
    });
    const target = toDevice(tensor(y, { shape: [meta.files.length, L] }), batch.pixels.device);
    return { ...weighted({ lbl: computeImageLabels(model.labelLogits(batch.pixels), target, t.groups) }, {}), tag: "image" };
  };

  const stepImage = (batch: ImageTextBatch<"image">, meta: ImageTextMeta, ctx: StepContext) => {
    if (labels) return stepLabels(batch, meta);
    const b = batch.pixels.size(0);
    const masks = Array.from({ length: b }, () => blockMask(g, 0.4, ctx.rng));
    const dev = batch.pixels.device;
    const mask = toDevice(tensor(masks.map((m) => m.map((x) => (x ? 1 : 0))), { dtype: "bool" }), dev);
    const emb = model.embedImage(batch.pixels);
    const patchesMasked = cat([zeros([b, 1], { dtype: "bool", device: dev }), mask], 1).unsqueeze(-1);
    const x = where(patchesMasked, model.mim_mask_token.expand(b, emb.size(1), emb.size(2)), emb);
    const out = model.inferImageFromEmbeddings(x);
    const pred = model.mim_head.forward(out.hidden.slice(1, 1));
    const mim = v.mimTarget === "hog" ? computeMim(pred, hogPatches(batch.pixels, p), mask, { standardize: false }) : computeMim(pred, patchesOf(batch.pixels, p), mask);
    return { ...weighted({ mim }, {}), tag: "image" };
  };

  const stepText = (full: ImageTextBatch<"text">, meta: ImageTextMeta, ctx: StepContext) => {
    const batch = v.trimPadding ? trimTextPadding(full, meta.longest) : full;
    const { inputIds, labels } = mlmInputs(batch, meta, ctx, vocab);
    const out = model.inferText(inputIds, batch.attention_mask, { vlBranch: false });
    return { ...weighted({ textmlm: renameMetrics(maskedLm(out.hidden, labels, (x) => model.mlmLogits(x)), "text_") }, {}), tag: "text" };
  };

  const stepPair = (full: ImageTextBatch<"pair">, meta: ImageTextMeta, ctx: StepContext) => {
    // data parallel: ITC and the hard negatives use the global batch (every rank's, this rank's first)
    const dist = ctx.dist && ctx.dist.world > 1 ? ctx.dist : undefined;
    // texts gathered across ranks need one length: trim only on one process
    const batch = v.trimPadding && !dist ? trimTextPadding(full, meta.longest) : full;
    const ids = batch.input_ids;
    const mask = batch.attention_mask;
    const b = ids.size(0);
    const dev = ids.device;
    // the VL branch of each unimodal pass feeds the second ITC loss (official compute_itc)
    const vlBranch = model.logit_vl_scale !== null;
    const txt = model.inferText(ids, mask, { vlBranch });
    // one patch embedding for the image-only pass, the ITM pairs and the MLM pass (the official code
    // embeds the pixels in each; the same values with no image dropout, which the official sets to 0)
    const iEmb = model.embedImage(batch.pixels);
    const img = model.inferImagePass(iEmb, { vlBranch });
    const itc = vlmoItc(model, img, txt, dist);
    // ITM: one hard negative text per image and one hard negative image per text, sampled from the ITC
    // similarities: a host read per step on an accelerator (sampleHardNegatives draws on the CPU)
    const randomOther = () => toDevice(tensor(Array.from({ length: b }, (_, i) => otherIndex(ctx.rng, b, i)), { dtype: "int64" }), dev);
    // the curriculum (vlmo.itmRandomSteps): random negatives for the stage's first steps, then the paper's
    const hard = v.itmHardNegatives && ctx.step > itmHardFrom;
    const negText = hard ? sampleHardNegatives(itc.i2t.detach(), 0, ctx.generator) : randomOther();
    const negImage = hard ? sampleHardNegatives(itc.t2i.detach(), 0, ctx.generator) : randomOther();
    const tEmb = model.embedText(ids);
    let negTextEmb: Tensor, negMask: Tensor, negImageEmb: Tensor;
    if (dist && hard) {
      // global hard negatives (the paper's "global hard negative mining"): the negatives' raw inputs
      // come from any rank and are embedded here, so their gradients stay on this rank
      const allIds = dist.gatherLocalFirst(ids);
      negTextEmb = model.embedText(allIds.indexSelect(0, negText));
      negMask = dist.gatherLocalFirst(mask).indexSelect(0, negText);
      negImageEmb = model.embedImage(dist.gatherLocalFirst(batch.pixels).indexSelect(0, negImage));
    } else {
      negTextEmb = tEmb.indexSelect(0, negText);
      negMask = mask.indexSelect(0, negText);
      negImageEmb = iEmb.indexSelect(0, negImage);
    }
    const fused = model.inferFusionFromEmbeddings(cat([tEmb, tEmb, negTextEmb], 0), cat([mask, mask, negMask], 0), cat([iEmb, negImageEmb, iEmb], 0));
    const itmLabels = cat([ones([b], { dtype: "int64", device: dev }), zeros([2 * b], { dtype: "int64", device: dev })]);
    const itm = computeItm(model.itmLogits(fused), itmLabels);
    // MLM on the fusion encoder: masked text with its image
    const m = mlmInputs(batch, meta, ctx, vocab);
    const mlmOut = model.inferFusionFromEmbeddings(model.embedText(m.inputIds), mask, iEmb);
    const mlm = maskedLm(mlmOut.textFeats, m.labels, (x) => model.mlmLogits(x));
    return { ...weighted({ itc, itm, mlm }, { mlm: v.mlmWeight, itm: v.itmWeight }), tag: "image-text" };
  };

  // the global step after which the image-text stage draws hard ITM negatives: the earlier stages' steps + itmRandomSteps
  const itmHardFrom = v.itmRandomSteps > 0 ? v.order.slice(0, v.order.indexOf("image-text")).reduce((n, name) => {
    const steps = v.stages[name]?.steps ?? r.train.steps;
    if (steps === undefined) throw new Error(`recipe.vlmo.itmRandomSteps: the stages before image-text must be given in steps (recipe.vlmo.stages.${name}.steps)`);
    return n + steps;
  }, 0) + v.itmRandomSteps : 0;
  const stages: Stage[] = v.order.map((name) => {
    const st = v.stages[name] ?? {};
    const common = { lr: st.lr ?? r.train.lr, warmup: r.train.warmup, epochs: st.epochs ?? r.train.epochs, steps: st.steps ?? r.train.steps, weightDecay: r.train.weightDecay, betas: [0.9, 0.98] as [number, number] };
    const batchSize = st.batchSize ?? r.train.batchSize;
    switch (name) {
      case "image": return { ...common, name, sources: sourcesOf(name, batchSize, "image", stepImage) };
      case "text": return { ...common, name, frozen: (n: string) => STAGE2_FROZEN.test(n), sources: sourcesOf(name, batchSize, "text", stepText) };
      case "image-text":
        // ITM pairs every image with another text of its batch (hard or random negatives): one is not enough
        if (batchSize < 2) throw new Error(`${st.batchSize !== undefined ? "recipe.vlmo.stages.image-text.batchSize" : "recipe.train.batchSize"}: the image-text stage needs a batch of at least 2, got ${batchSize}: image-text matching pairs each image with another text of the batch (${v.itmHardNegatives ? "a hard negative drawn from the batch's ITC similarities" : "a random other text"})`);
        return { ...common, name, sources: sourcesOf(name, batchSize, "pair", stepPair) };
      default: throw new Error(`recipe.vlmo.order: unknown stage "${name}" (expected image, text or image-text)`);
    }
  });
  return { model, stages };
}

/**
 * The image labels of imageTask vg-labels (names and attributes, `attributes` true) or vg-objects
 * (names alone), from `recipe.vlmo.vg` or the synthetic world's vg/ folder. On the world the names
 * alone teach a pixel encoder the shapes and the two together do not, yet the two together teach
 * retrieval far more (README, session 17).
 */
function vgLabelsOf(dir: string | undefined, sources: DataSource[], attributes: boolean): VgLabelTable & { dir: string } {
  const d = dir ?? (sources.length === 1 && sources[0].format === "synth" ? worldFile(sources[0].world!, "vg") : undefined);
  if (!d) throw new Error(`recipe.vlmo.imageTask: name the Visual Genome folder (recipe.vlmo.vg: attributes.json and image_data.json); only a single synthetic-world source has a default`);
  return { ...vgLabelTable(d, { ...VG_LABEL_LIMITS, ...(attributes ? {} : { attributes: 0 }) }), dir: d };
}

/**
 * Where a source's images and captions are for one split (undefined: a held-out split it does not
 * have). The synthetic world is a Karpathy file (data.karpathy, relative to it) over its images/.
 */
function imageTextInput(src: DataSource, split: "train" | "val"): ImageTextInput | undefined {
  const sp = splitOf(src, split);
  const karpathySplits = split === "train" ? ["train", "restval"] : ["val"];
  switch (src.format) {
    case "synth": {
      const w = src.world!;
      return { format: "karpathy", json: worldFile(w, src.karpathy ?? "karpathy/dataset_synth.json"), images: worldFile(w, "images"), splits: karpathySplits };
    }
    case "karpathy": return { format: "karpathy", json: src.json as string, images: src.images!, splits: sp!.split ?? karpathySplits, text: src.text as "raw" | "tokens" | undefined };
    case "coco-captions": return sp && { format: "coco-captions", json: sp.json as string, images: sp.images! };
    case "vilt-arrow": return sp && { format: "vilt-arrow", tables: arrowTables(src.root!, sp.tables!, `recipe.data.sources (${src.name}).tables`) };
    case "webdataset": return webdatasetInput(src, split);
    default: throw new Error(`recipe.data.sources (${src.name}): format ${src.format} does not feed vlmo`);
  }
}
