// VLMo as its stage-1 pre-training (src/pretrain/vlmo.ts) trains it: the model plus the
// masked-patch head.
import { Tensor, zeros, F } from "../../engine/index.ts";
import { Linear } from "../../engine/nn.ts";
import { hogDim } from "../../objectives/hog.ts";
import { VLMoModel } from "./model.ts";
import type { VLMoConfig } from "./config.ts";

/** VLMo with the stage-1 masked-patch head (`mim_mask_token`, `mim_head`); all other names are official. */
export class VLMoForPretraining extends VLMoModel {
  readonly mim_mask_token: Tensor;
  readonly mim_head: Linear;
  /** `mimTarget`: what stage 1 regresses per masked patch (its width sizes `mim_head`). */
  constructor(config: VLMoConfig, readonly mimTarget: MimTarget = "pixels") {
    super(config);
    const h = config.hiddenSize;
    this.mim_mask_token = this.param("mim_mask_token", F.truncNormal_(zeros([1, 1, h]), 0, 0.02));
    const width = mimTarget === "hog" ? hogDim(config.patchSize, config.inChans) : config.patchSize * config.patchSize * config.inChans;
    this.mim_head = this.module("mim_head", new Linear(h, width));
  }
}

/** Stage 1's masked-patch target: normalised pixels (MAE/SimMIM) or HOG (MaskFeat), both stand-ins for BEiT's dVAE tokens. */
export type MimTarget = "pixels" | "hog";
