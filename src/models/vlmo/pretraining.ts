// VLMo as its stage-1 pre-training (src/pretrain/vlmo.ts) trains it: the model plus the
// masked-patch head, or with `labels` an image-labelling head (Visual Genome's names and attributes).
import { Tensor, zeros, F } from "../../engine/index.ts";
import { Linear } from "../../engine/nn.ts";
import { hogDim } from "../../objectives/hog.ts";
import { VLMoModel } from "./model.ts";
import type { VLMoConfig } from "./config.ts";

/**
 * VLMo with the stage-1 masked-patch head (`mim_mask_token`, `mim_head`) and, when stage 1 labels
 * images (`labels` > 0), the labelling head `label_head` over the max of the patch tokens; all other
 * names are official.
 */
export class VLMoForPretraining extends VLMoModel {
  readonly mim_mask_token: Tensor;
  readonly mim_head: Linear;
  readonly label_head: Linear | null;
  /** `mimTarget`: what stage 1 regresses per masked patch (its width sizes `mim_head`); `labels`: the image labels' count (0: none). */
  constructor(config: VLMoConfig, readonly mimTarget: MimTarget = "pixels", labels = 0) {
    super(config);
    const h = config.hiddenSize;
    this.mim_mask_token = this.param("mim_mask_token", F.truncNormal_(zeros([1, 1, h]), 0, 0.02));
    const width = mimTarget === "hog" ? hogDim(config.patchSize, config.inChans) : config.patchSize * config.patchSize * config.inChans;
    this.mim_head = this.module("mim_head", new Linear(h, width));
    this.label_head = labels > 0 ? this.module("label_head", new Linear(h, labels)) : null;
  }

  /**
   * The image labels' logits [B, labels] from an image-only pass: the label head over the element-wise
   * max of the patch tokens (an object anywhere in the image raises its labels, as max pooling over a
   * convolutional map does).
   */
  labelLogits(pixels: Tensor): Tensor {
    if (!this.label_head) throw new Error("VLMoForPretraining.labelLogits: the model was built without image labels (labels = 0)");
    const out = this.inferImageFromEmbeddings(this.embedImage(pixels));
    return this.label_head.forward(out.hidden.narrow(1, 1, out.hidden.size(1) - 1).amax([1]));
  }
}

/** Stage 1's masked-patch target: normalised pixels (MAE/SimMIM) or HOG (MaskFeat), both stand-ins for BEiT's dVAE tokens. */
export type MimTarget = "pixels" | "hog";
