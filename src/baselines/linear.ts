// The image-side baseline of VLMo: a dual encoder whose image encoder is linear, trained with VLMo's
// in-batch image-text contrastive loss (computeItc) on the same world's train captions and pixels.
//
//   image  pixels at the VLMo preset's image size (tiny: 32 px, 8 px patches; square resize, mean =
//          std = 0.5) -> linear patch projection (Conv2d, kernel = stride = patch, as VLMo's
//          patch_embed) -> mean over patches -> Linear -> L2-normalised
//   text   mean of learned word embeddings (BERT wordpiece ids) -> Linear -> L2-normalised
//   score  cosine x a learned logit scale (CLIP's init 1/0.07)
// Each step takes `batchSize` distinct train images with one random caption each. Evaluation:
// zero-shot retrieval (IR/TR R@1/5/10) on the test split (and its first 100 images when bigger).
import { join } from "node:path";
import { Module, Linear, Conv2d, full, tensor, tidy, noGrad, manualSeed, F, type Tensor } from "../engine/index.ts";
import { readRetrievalSplit, evalSet, pixelArray, type EvalSet } from "../tasks/retrieval/data.ts";
import { computeItc } from "../objectives/losses.ts";
import { VLMO_PRESETS, type VLMoPreset } from "../models/vlmo/index.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import { WordVocab, BowText, captionTexts, trainBaseline, indexTensor, zeroShotWithSubset, type BaselineOptions } from "./common.ts";
import type { BaselineRun } from "./bow.ts";

export interface LinearOptions extends BaselineOptions {
  /** The joint embedding width. */
  embedDim: number;
  /** Image and patch size from this VLMo preset (the recipes/vlmo-tiny.json model: "tiny"). */
  preset: VLMoPreset;
}

export const LINEAR_DEFAULTS: Omit<LinearOptions, "world"> = { steps: 1500, seed: 0, batchSize: 64, lr: 3e-3, dim: 64, embedDim: 64, preset: "tiny", maxTextLen: 40, logEvery: 0 };

export class LinearDualEncoder extends Module {
  readonly patch: Conv2d;
  readonly imgProj: Linear;
  readonly text: BowText;
  readonly txtProj: Linear;
  readonly logitScale: Tensor;
  constructor(vocabSize: number, readonly patchSize: number, dim: number, embedDim: number) {
    super();
    this.patch = this.module("patch", new Conv2d(3, dim, patchSize, patchSize));
    this.imgProj = this.module("img_proj", new Linear(dim, embedDim));
    this.text = this.module("text", new BowText(vocabSize, dim));
    this.txtProj = this.module("txt_proj", new Linear(dim, embedDim));
    this.logitScale = this.param("logit_scale", full([], Math.log(1 / 0.07)));
  }
  /** Pixels [B, 3, S, S] -> [B, embedDim], unit length. */
  encodeImage(pixels: Tensor): Tensor {
    return F.normalize(this.imgProj.forward(this.patch.forward(pixels).flatten(2).mean(-1)));
  }
  /** Compact word ids [B, L] -> [B, embedDim], unit length. */
  encodeText(ids: Tensor): Tensor {
    return F.normalize(this.txtProj.forward(this.text.forward(ids)));
  }
}

/** Train the linear dual encoder on the train split and evaluate zero-shot retrieval on test. */
export async function runLinear(opts: Partial<LinearOptions> & { world: string }): Promise<BaselineRun> {
  const o: LinearOptions = { ...LINEAR_DEFAULTS, ...opts };
  const t0 = performance.now();
  manualSeed(o.seed);
  const { imageSize, patchSize } = VLMO_PRESETS[o.preset];
  const tok = BertTokenizer.load();
  const sets = Object.fromEntries((["train", "test"] as const).map((s) => [s, evalSet(readRetrievalSplit(o.world, s))])) as Record<"train" | "test", EvalSet>;
  const vocab = new WordVocab(tok, captionTexts(sets.train));
  const imagesDir = join(o.world, "images");
  const pixels = async (set: EvalSet): Promise<Tensor> => {
    const a = await pixelArray(imagesDir, set.images.map((im) => im.file), imageSize);
    return tensor(a.data as Float32Array, { shape: a.shape }).keep();
  };
  const data = {
    train: { px: await pixels(sets.train), txt: vocab.encode(captionTexts(sets.train), o.maxTextLen).keep() },
    test: { px: await pixels(sets.test), txt: vocab.encode(captionTexts(sets.test), o.maxTextLen).keep() },
  };

  const model = new LinearDualEncoder(vocab.size, patchSize, o.dim, o.embedDim);
  trainBaseline(model, sets.train, o, 0x2545f491, { name: "linear", what: "itc loss" }, (s) => {
    const img = model.encodeImage(data.train.px.indexSelect(0, indexTensor(s.images)));
    const txt = model.encodeText(data.train.txt.indexSelect(0, indexTensor(s.captions)));
    return computeItc(img, txt, model.logitScale).loss;
  }, () => noGrad(() => model.logitScale.clamp_(0, Math.log(100)))); // CLIP clamps the logit scale at 100

  const test = tidy(() => noGrad(() => model.encodeImage(data.test.px).matmul(model.encodeText(data.test.txt).T).contiguous().toFloat32Array()));
  const metrics: Record<string, number> = zeroShotWithSubset(test, sets.test);
  metrics.steps = o.steps;
  metrics.seconds = (performance.now() - t0) / 1000;
  for (const d of Object.values(data)) {
    d.px.dispose();
    d.txt.dispose();
  }
  return {
    metrics,
    description: `linear: ${imageSize} px / ${patchSize} px patches (VLMo ${o.preset}) -> linear patch projection (${o.dim}) -> mean -> linear (${o.embedDim}); bag of words (${o.dim}) -> linear; ITC, ${o.steps} steps x ${o.batchSize}, lr ${o.lr}, seed ${o.seed}; train ${sets.train.images.length} images / ${sets.train.captions.length} captions, test ${sets.test.images.length} images / ${sets.test.captions.length} captions`,
  };
}
