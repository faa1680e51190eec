// The pre-training losses of SemVLP, MSP (LXMERT-S) and VLMo, each a pure function from model
// outputs and batch targets to a loss and its metrics (open_clip/ViLT style: no model code here).
// Nothing here reads a tensor to the host: metrics are detached 0-d tensors, read by the trainer
// only when it logs a row (src/train/metric_sums.ts), and a count of zero (no masked token, no ITM
// row) is handled on the device.
import { Tensor, F, arange, where, multinomial, noGrad, type Generator } from "../engine/index.ts";
import { IGNORE } from "./masking.ts";
import { toDevice } from "../engine/placement.ts";

/** Metrics are detached 0-d tensors; NaN means "not measured on this batch" (the trainer leaves it out of the row). */
export type LossMetrics = Record<string, Tensor>;

export interface LossOut {
  loss: Tensor;
  metrics: LossMetrics;
}

/** `value` where `cond` (a 0-d bool tensor) holds, else NaN: a metric reported only on batches that measure it. */
export function measuredIf(cond: Tensor, value: Tensor): Tensor {
  return where(cond, value.detach().to("float64"), NaN);
}

/** `num / den` of two counts in float64 (the value a host division of the two read counts gives); 0 when den is 0. */
export function ratio(num: Tensor, den: Tensor): Tensor {
  const d = den.to("float64");
  return where(d.gt(0), num.to("float64").div(d.clampMin(1)), 0);
}

/**
 * The mean of `sum` over `n` targets as the mean reduction computes it (sum / n, in the loss's
 * dtype), 0 with a zero gradient when there is none: no host branch on the count.
 */
function meanOver(sum: Tensor, n: Tensor): Tensor {
  return sum.div(n.clampMin(1).to(sum.dtype));
}

/** Positions with a target (label != -1), flattened: [K] indices into B*L. Gather before big vocab heads. */
export function targetPositions(labels: Tensor): Tensor {
  return labels.reshape(-1).ne(IGNORE).nonzero().squeeze(1);
}

/** Masked language modelling: cross-entropy over the vocabulary at masked positions only. */
export function computeMlm(logits: Tensor, labels: Tensor): LossOut {
  const v = logits.size(-1);
  const flatLabels = labels.reshape(-1);
  const flat = logits.reshape(-1, v);
  const has = flatLabels.ne(IGNORE);
  const n = has.sum();
  // no target (n = 0): loss 0, mlm_loss not measured, accuracy 0
  const loss = meanOver(F.crossEntropy(flat, flatLabels, { ignoreIndex: IGNORE, reduction: "sum" }), n);
  return noGrad(() => ({ loss, metrics: { mlm_loss: measuredIf(n.gt(0), loss), mlm_acc: ratio(flat.argmax(-1).eq(flatLabels).logicalAnd(has).sum(), n), mlm_count: n } }));
}

export type ObjectLossWeighting = "mask" | "confidence" | "mask*confidence";

export interface ObjectTargets {
  feats: Tensor; //      [B, N, D] original region features
  objLabels: Tensor; //  [B, N] int64 detected class ids (-1 none)
  objConf: Tensor; //    [B, N]
  attrLabels: Tensor; // [B, N] int64 (-1 none)
  attrConf: Tensor; //   [B, N]
  mask: Tensor; //       [B, N] bool: masked regions
  /**
   * [B] bool: when given, mismatched pairs get no visual loss. SemVLP's rule (its paper); the official
   * LXMERT code applies the visual losses to every pair and masks only QA (MSP: lossesOnMismatched).
   */
  matched?: Tensor;
}

/**
 * Masked object prediction: ROI-feature regression (MRFR, SmoothL1 averaged over the feature dim)
 * and detected-label classification (MOC: object class + attribute).
 * weighting "mask": only masked regions count (the papers' description); "confidence": every region
 * weighted by the detector's confidence (the official LXMERT code's behaviour); "mask*confidence": both.
 * Losses are scaled by 1/0.15 like LXMERT's visual losses. `denom` (default B * N) is the count the
 * sums are divided by: pretrain/common.ts's maskedObjectPrediction passes the batch's B * N with its
 * selected rows.
 */
export function computeObjectPrediction(
  pred: { feat?: Tensor; obj?: Tensor; attr?: Tensor },
  t: ObjectTargets,
  o: { weighting?: ObjectLossWeighting; scale?: number; weights?: { feat?: number; obj?: number; attr?: number }; denom?: number } = {},
): LossOut {
  const weighting = o.weighting ?? "mask";
  const scale = o.scale ?? 1 / 0.15;
  let maskW = t.mask.float();
  if (t.matched) maskW = maskW.mul(t.matched.float().unsqueeze(1));
  // the mean is over every region of the batch (B * N), also when the targets are a selection of rows
  const denom = o.denom ?? maskW.numel;
  const metrics: LossMetrics = {};
  let total: Tensor | null = null;
  const add = (name: string, l: Tensor, w = 1) => {
    metrics[name] = l.detach();
    const lw = l.mul(w);
    total = total ? total.add(lw) : lw;
  };
  if (pred.feat) {
    const per = F.smoothL1Loss(pred.feat, t.feats, "none").mean(-1);
    add("mrfr_loss", per.mul(maskW).sum().div(denom).mul(scale), o.weights?.feat ?? 1);
  }
  const classLoss = (logits: Tensor, labels: Tensor, conf: Tensor) => {
    const c = logits.size(-1);
    const per = F.crossEntropy(logits.reshape(-1, c), labels.reshape(-1).clampMin(0), { reduction: "none" }).reshape(labels.shape);
    const has = labels.ge(0).float();
    const w = weighting === "mask" ? maskW : weighting === "confidence" ? conf.mul(has).mul(t.matched ? t.matched.float().unsqueeze(1) : 1) : maskW.mul(conf);
    return per.mul(w).mul(has).sum().div(denom).mul(scale);
  };
  if (pred.obj) {
    add("moc_obj_loss", classLoss(pred.obj, t.objLabels, t.objConf), o.weights?.obj ?? 1);
    const m = t.mask.logicalAnd(t.objLabels.ge(0));
    metrics.obj_acc = noGrad(() => ratio(pred.obj!.argmax(-1).eq(t.objLabels).logicalAnd(m).sum(), m.sum()));
  }
  if (pred.attr) add("moc_attr_loss", classLoss(pred.attr, t.attrLabels, t.attrConf), o.weights?.attr ?? 1);
  if (!total) throw new Error("computeObjectPrediction: no prediction given");
  return { loss: total, metrics };
}

/** Two-way image-text matching: cross-entropy on [N, 2] logits with labels 1 = matched (-1: no ITM for that row). */
export function computeItm(logits: Tensor, labels: Tensor): LossOut {
  const has = labels.ne(IGNORE);
  const n = has.sum();
  const loss = meanOver(F.crossEntropy(logits, labels, { ignoreIndex: IGNORE, reduction: "sum" }), n);
  // a batch without ITM rows: loss 0, and only itm_count (0) measured
  return noGrad(() => {
    const some = n.gt(0);
    return { loss, metrics: { itm_loss: measuredIf(some, loss), itm_acc: measuredIf(some, ratio(logits.argmax(-1).eq(labels).logicalAnd(has).sum(), n)), itm_count: measuredIf(some.logicalNot(), n) } };
  });
}

/**
 * Image-text contrastive loss (CLIP/VLMo): logits = exp(logit_scale) * img @ txt^T, symmetric
 * cross-entropy. With gathered features, row i of the local batch matches column offset + i.
 */
export function computeItc(img: Tensor, txt: Tensor, logitScale: Tensor, o: { allImg?: Tensor; allTxt?: Tensor; offset?: number } = {}): LossOut & { i2t: Tensor; t2i: Tensor } {
  const scale = logitScale.exp();
  const i2t = img.matmul((o.allTxt ?? txt).T).mul(scale);
  const t2i = txt.matmul((o.allImg ?? img).T).mul(scale);
  const labels = arange(img.size(0), undefined, 1, { device: img.device }).add(o.offset ?? 0);
  const loss = F.crossEntropy(i2t, labels).add(F.crossEntropy(t2i, labels)).div(2);
  const metrics = noGrad(() => ({ itc_loss: loss.detach(), itc_i2t_acc: i2t.argmax(-1).eq(labels).float().mean(), itc_t2i_acc: t2i.argmax(-1).eq(labels).float().mean(), logit_scale: scale.detach() }));
  return { loss, i2t, t2i, metrics };
}

/**
 * ITC when rows may share an image (several captions of one image in a batch): `keys` [B] names each
 * row's image; a text's positives are every image with its key (soft targets spread evenly), and the
 * same for images. Rows are the (text, image) pairs of the batch, features unit-norm.
 */
export function computeItcKeyed(img: Tensor, txt: Tensor, logitScale: Tensor, keys: Tensor): LossOut {
  const scale = logitScale.exp();
  const i2t = img.matmul(txt.T).mul(scale);
  const same = keys.unsqueeze(1).eq(keys.unsqueeze(0)).float();
  const target = same.div(same.sum(1, true));
  const loss = F.logSoftmax(i2t, 1).mul(target).sum(1).mean().add(F.logSoftmax(i2t.T, 1).mul(target).sum(1).mean()).div(-2);
  const metrics = noGrad(() => ({
    itc_loss: loss.detach(),
    itc_i2t_acc: same.gather(1, i2t.argmax(1).unsqueeze(1)).mean(),
    itc_t2i_acc: same.gather(1, i2t.T.argmax(1).unsqueeze(1)).mean(),
    logit_scale: scale.detach(),
  }));
  return { loss, metrics };
}

/**
 * VLMo/ALBEF hard negatives: for each row of a similarity matrix (local rows vs all columns), sample
 * one column from softmax(sim) with the positive (column offset + i) given zero weight.
 */
export function sampleHardNegatives(sim: Tensor, offset: number, generator?: Generator): Tensor {
  // with one column the only candidate is the positive: softmax of [-inf] is NaN and multinomial fails
  if (sim.size(1) < 2) throw new Error(`hard negatives need a batch of at least 2 (each row's negative is another item of the batch); this batch has ${sim.size(1)}`);
  return noGrad(() => {
    const b = sim.size(0);
    const pos = arange(b, undefined, 1, { device: sim.device }).add(offset).unsqueeze(1);
    // softmax with the positive removed; identical to softmax-then-zero after multinomial's normalisation, without underflow
    const weights = sim.float().scatter(1, pos, -Infinity).softmax(1);
    // drawn on the host with the (CPU) generator, as the masks are: on an accelerator the weights'
    // copy to the CPU is the image-text step's one host read (the sampling needs their values)
    return toDevice(multinomial(weights.cpu(), 1, false, generator).squeeze(1), sim.device);
  });
}

/**
 * Image QA during pre-training. "sampled": cross-entropy on one answer per question (sampled from the
 * soft labels beforehand; -1 = no question), LXMERT's pre-training loss. "soft": BCE on the soft
 * scores times the number of answers (the VQA fine-tuning loss). No loss on mismatched pairs.
 */
export function computeQa(logits: Tensor, target: Tensor, matched?: Tensor, mode: "sampled" | "soft" = "sampled"): LossOut {
  if (mode === "sampled") {
    const labels = matched ? where(matched, target, IGNORE) : target;
    const n = labels.ne(IGNORE).sum();
    const loss = meanOver(F.crossEntropy(logits, labels, { ignoreIndex: IGNORE, reduction: "sum" }), n);
    return noGrad(() => ({ loss, metrics: { qa_loss: measuredIf(n.gt(0), loss), qa_acc: ratio(logits.argmax(-1).eq(labels).sum(), n), qa_count: n } }));
  }
  const w = matched ? matched.float().unsqueeze(1).expandAs(target) : undefined;
  const loss = F.binaryCrossEntropyWithLogits(logits, target, { weight: w }).mul(target.size(1));
  return noGrad(() => ({ loss, metrics: { qa_loss: loss.detach(), qa_score: target.gather(1, logits.argmax(-1).unsqueeze(1)).mean() } }));
}

/**
 * MSP's IFRS (equation 1): at the positions of shuffled triplets, regress the original ROI feature of
 * that position with a squared L2 loss; averaged over the shuffled positions.
 */
export function computeIfrs(pred: Tensor, originalFeats: Tensor, shuffled: Tensor): LossOut {
  const n = shuffled.sum();
  const sq = pred.sub(originalFeats).square().sum(-1);
  const loss = meanOver(sq.mul(shuffled.float()).sum(), n);
  return noGrad(() => ({ loss, metrics: { ifrs_loss: measuredIf(n.gt(0), loss), ifrs_count: n } }));
}

/** MSP's TITP/TITS (equation 2): multi-label BCE over the vocabulary, averaged over the V classes. */
export function computeTopic(logits: Tensor, multiHot: Tensor, name = "topic"): LossOut {
  const loss = F.binaryCrossEntropyWithLogits(logits, multiHot);
  const metrics = noGrad(() => {
    const pred = logits.gt(0);
    const tgt = multiHot.gt(0.5);
    const tp = pred.logicalAnd(tgt).sum();
    return { [`${name}_loss`]: loss.detach(), [`${name}_precision`]: ratio(tp, pred.sum()), [`${name}_recall`]: ratio(tp, tgt.sum()) };
  });
  return { loss, metrics };
}

/**
 * VLMo stage 1 (image-only) substitute for BEiT's masked image modelling: BEiT predicts discrete
 * visual tokens of a pretrained dVAE we do not have, so we regress the per-patch-normalised pixels of
 * masked patches (MAE/SimMIM style) with MSE over masked patches only; or, with `standardize: false`,
 * any per-patch target as given (MaskFeat's HOG, objectives/hog.ts).
 */
export function computeMim(pred: Tensor, patches: Tensor, mask: Tensor, o: { standardize?: boolean } = {}): LossOut {
  // pixel targets are standardised per patch (MAE's normalised pixels); HOG targets come L2-normalised
  const target = o.standardize === false ? patches : patches.sub(patches.mean(-1, true)).div(patches.var(-1, true, true).add(1e-6).sqrt());
  const per = pred.sub(target).square().mean(-1);
  const m = mask.float();
  const n = m.sum();
  const loss = meanOver(per.mul(m).sum(), n);
  return noGrad(() => ({ loss, metrics: { mim_loss: loss.detach(), mim_count: n } }));
}

/**
 * Image labelling (VLMo's image-only stage with `imageTask: "vg-labels"`): binary cross-entropy of
 * multi-hot labels [B, L] against logits [B, L], averaged within each label group (Visual Genome's
 * object names, its attributes) and then over the groups, so that neither group outweighs the other
 * by its size. Metrics: the loss, each group's, and each group's precision at k (k = an image's number
 * of true labels in the group: the share of its top-k scores that are true labels).
 */
export function computeImageLabels(logits: Tensor, targets: Tensor, groups: Record<string, [number, number]>): LossOut {
  const metrics: LossMetrics = {};
  const parts = Object.entries(groups).filter(([, [lo, hi]]) => hi > lo).map(([name, [lo, hi]]) => {
    const x = logits.narrow(1, lo, hi - lo), y = targets.narrow(1, lo, hi - lo);
    const l = F.binaryCrossEntropyWithLogits(x, y);
    noGrad(() => {
      metrics[`lbl_${name}_loss`] = l.detach();
      // precision@k without a host read: a label is in an image's top k when it scores at least the
      // image's k-th highest score (fewer than k labels above it); one sort per row, [B, L] memory
      const k = y.sum(1, true);
      const kth = x.sort(1, true)[0].gather(1, k.sub(1).clampMin(0).to("int64"));
      const hits = x.ge(kth).logicalAnd(y.gt(0)).sum();
      metrics[`lbl_${name}_p@k`] = ratio(hits, k.sum());
    });
    return l;
  });
  const loss = parts.reduce((a, b) => a.add(b)).div(parts.length);
  noGrad(() => { metrics.lbl_loss = loss.detach(); });
  return { loss, metrics };
}

