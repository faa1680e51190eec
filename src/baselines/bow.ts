// The region-side baseline of SemVLP and MSP (LXMERT-S): a bilinear image-text matcher over a bag of
// words and the detected regions, trained on the same world's train captions and obj36 regions.
//
//   text   t = mean of learned word embeddings (BERT wordpiece ids, compact vocabulary, dim d)
//   image  i = mean over the valid boxes of a linear projection of [standardised 64-d feature, box]
//          (optionally a per-box ReLU layer first, `boxHidden` > 0)
//   score  s(t, i) = t . i + b   (the bilinear form t^T W i with W folded into the box projection:
//          mean-then-project is linear, so a separate W would add nothing)
//
// Losses (`loss`): "itm" = BCE on s with 50% random negative images per caption; "itc" = in-batch
// contrastive (computeItc over distinct images, one caption each); "itm+itc" = their sum (default:
// it learned best, see README "Baselines"). Evaluation on held-out captions: ITM accuracy of s > 0
// (a val-tuned threshold for "itc", whose b is not trained) with one random-negative draw per caption,
// and zero-shot retrieval (IR/TR R@1/5/10) on the test split and its first 100 images.
import { join } from "node:path";
import { Module, Linear, tensor, zeros, cat, tidy, noGrad, manualSeed, F, type Tensor } from "../engine/index.ts";
import { openRegions } from "../data/regions/index.ts";
import { regionArrays } from "../tasks/data.ts";
import { readRetrievalSplit, evalSet, type EvalSet } from "../tasks/retrieval/data.ts";
import { computeItc } from "../objectives/losses.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import {
  WordVocab, BowText, captionTexts, itmPairs, type BaselineOptions, itmAccuracy, itmChance, bestThreshold, trainBaseline, indexTensor, zeroShotWithSubset, subMatrix, worldHardPairs,
} from "./common.ts";

export type BowLoss = "itm" | "itc" | "itm+itc";

export interface BowOptions extends BaselineOptions {
  /** 0: the linear box projection; > 0: Linear(D+4, h) + ReLU before it. */
  boxHidden: number;
  loss: BowLoss;
  maxBoxes: number;
  /** obj36 TSV or `.regions` store (default <world>/features/obj36.tsv). */
  regions?: string;
}

export const BOW_DEFAULTS: Omit<BowOptions, "world"> = { steps: 1500, seed: 0, batchSize: 64, lr: 3e-3, dim: 64, boxHidden: 0, loss: "itm+itc", maxTextLen: 40, maxBoxes: 36, logEvery: 0 };

/** Images of a split as tensors: [n, N, D+4] standardised features + boxes, [n, N] valid mask. */
export interface RegionTensors {
  x: Tensor;
  valid: Tensor;
}

export class BowModel extends Module {
  readonly text: BowText;
  readonly box: Linear;
  readonly hidden: Linear | null;
  readonly bias: Tensor;
  /** ITC temperature: log of the logit scale (fixed at 0: the raw dot products are the logits). */
  readonly logitScale: Tensor;
  constructor(vocabSize: number, inDim: number, readonly dim: number, boxHidden = 0) {
    super();
    this.text = this.module("text", new BowText(vocabSize, dim));
    this.hidden = this.module("hidden", boxHidden > 0 ? new Linear(inDim, boxHidden) : null);
    this.box = this.module("box", new Linear(boxHidden > 0 ? boxHidden : inDim, dim));
    this.bias = this.param("bias", zeros([1]));
    this.logitScale = this.buffer("logit_scale", zeros([]));
  }
  encodeImage(x: Tensor, valid: Tensor): Tensor {
    const h = this.hidden ? this.hidden.forward(x).relu() : x;
    const m = valid.float().unsqueeze(-1);
    return this.box.forward(h).mul(m).sum(1).div(m.sum(1).clampMin(1));
  }
  encodeText(ids: Tensor): Tensor {
    return this.text.forward(ids);
  }
  /** Pairwise ITM logits [rows of img x rows of txt] (the bias included). */
  scores(img: Tensor, txt: Tensor): Tensor {
    return img.matmul(txt.T).add(this.bias);
  }
}

/** Region tensors of a split's images, standardised with `stats` (computed from these images when absent). */
export function regionTensors(arrays: ReturnType<typeof regionArrays>, stats?: { mean: Tensor; std: Tensor }): RegionTensors & { stats: { mean: Tensor; std: Tensor } } {
  const f = tensor(arrays.feats.data as Float32Array, { shape: arrays.feats.shape });
  const b = tensor(arrays.boxes.data as Float32Array, { shape: arrays.boxes.shape });
  const valid = tensor(arrays.region_valid.data as Uint8Array, { shape: arrays.region_valid.shape }).bool();
  const raw = cat([f, b], -1);
  if (!stats) {
    const flat = raw.reshape(-1, raw.size(-1)).indexSelect(0, valid.reshape(-1).nonzero().squeeze(1));
    stats = { mean: flat.mean(0).keep(), std: flat.std(0).clampMin(1e-3).keep() };
  }
  return { x: raw.sub(stats.mean).div(stats.std).mul(valid.float().unsqueeze(-1)), valid, stats };
}

export interface BaselineRun {
  metrics: Record<string, number>;
  /** Printed rows: what was trained. */
  description: string;
}

/** Train the bow baseline on the train split and evaluate it on val and test; returns the metrics (see README "Baselines"). */
export async function runBow(opts: Partial<BowOptions> & { world: string }): Promise<BaselineRun> {
  const o: BowOptions = { ...BOW_DEFAULTS, ...opts };
  const t0 = performance.now();
  manualSeed(o.seed);
  const regions = await openRegions(o.regions ?? join(o.world, "features", "obj36.tsv"));
  const tok = BertTokenizer.load();
  const sets = Object.fromEntries((["train", "val", "test"] as const).map((s) => [s, evalSet(readRetrievalSplit(o.world, s))])) as Record<"train" | "val" | "test", EvalSet>;
  const vocab = new WordVocab(tok, captionTexts(sets.train));
  const data = tidy(() => {
    const tr = regionTensors(regionArrays(regions, sets.train.images.map((im) => im.id), o.maxBoxes));
    const out: Record<string, { img: RegionTensors; txt: Tensor }> = {};
    for (const s of ["train", "val", "test"] as const) {
      const img = s === "train" ? tr : regionTensors(regionArrays(regions, sets[s].images.map((im) => im.id), o.maxBoxes), tr.stats);
      out[s] = { img: { x: img.x.keep(), valid: img.valid.keep() }, txt: vocab.encode(captionTexts(sets[s]), o.maxTextLen).keep() };
    }
    tr.stats.mean.dispose();
    tr.stats.std.dispose();
    return out;
  });
  regions.close();

  const inDim = data.train.img.x.size(-1);
  const model = new BowModel(vocab.size, inDim, o.dim, o.boxHidden);
  trainBaseline(model, sets.train, o, 0x51ed270b, { name: "bow", what: "loss" }, (s) => {
    const txt = model.encodeText(data.train.txt.indexSelect(0, indexTensor(s.captions)));
    let total: Tensor | null = null;
    if (o.loss !== "itc") {
      const ii = indexTensor(s.itmImages);
      const img = model.encodeImage(data.train.img.x.indexSelect(0, ii), data.train.img.valid.indexSelect(0, ii));
      const logit = img.mul(txt).sum(-1).add(model.bias);
      total = F.binaryCrossEntropyWithLogits(logit, tensor(Float32Array.from(s.matched)));
    }
    if (o.loss !== "itm") {
      const ii = indexTensor(s.images);
      const img = model.encodeImage(data.train.img.x.indexSelect(0, ii), data.train.img.valid.indexSelect(0, ii));
      const itc = computeItc(img, txt, model.logitScale).loss;
      total = total ? total.add(itc) : itc;
    }
    return total!;
  });

  const scoresOf = (s: "val" | "test"): Float32Array =>
    tidy(() => noGrad(() => model.scores(model.encodeImage(data[s].img.x, data[s].img.valid), model.encodeText(data[s].txt)).contiguous().toFloat32Array()));
  const val = scoresOf("val"), test = scoresOf("test");
  const pv = itmPairs(sets.val), pt = itmPairs(sets.test);
  const threshold = o.loss === "itc" ? bestThreshold(val, sets.val.captions.length, pv) : 0;
  const metrics: Record<string, number> = {
    itm_acc: itmAccuracy(test, sets.test.captions.length, pt, threshold),
    itm_chance: itmChance(pt),
    itm_acc_val: itmAccuracy(val, sets.val.captions.length, pv, threshold),
    itm_chance_val: itmChance(pv),
    ...zeroShotWithSubset(test, sets.test),
  };
  // ITM with hard negatives on the first 100 test images, as for the fusion models (experiments/heldout.ts)
  const sub = subMatrix(test, sets.test, Math.min(100, sets.test.images.length));
  const hard = worldHardPairs(o.world, sub.set);
  if (hard) {
    metrics.itm_hs_acc_100 = itmAccuracy(sub.i2t, sub.set.captions.length, hard.pairs, threshold);
    metrics.itm_acc_100 = itmAccuracy(sub.i2t, sub.set.captions.length, itmPairs(sub.set), threshold);
  }
  metrics.steps = o.steps;
  metrics.seconds = (performance.now() - t0) / 1000;
  for (const s of Object.values(data)) {
    s.img.x.dispose();
    s.img.valid.dispose();
    s.txt.dispose();
  }
  return {
    metrics,
    description: `bow: mean word embedding . mean box projection (d ${o.dim}${o.boxHidden ? `, box hidden ${o.boxHidden}` : ""}), loss ${o.loss}, ${o.steps} steps x ${o.batchSize}, lr ${o.lr}, seed ${o.seed}; train ${sets.train.images.length} images / ${sets.train.captions.length} captions, val ${sets.val.images.length}, test ${sets.test.images.length} images / ${sets.test.captions.length} captions`,
  };
}
