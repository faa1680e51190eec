// LXMERT-S as MSP pre-trains it (src/pretrain/msp.ts): LXMERT's pre-training model plus the IFRS
// head and, optionally, vlpkit's align-before-fuse ITC projections.
import { LxmertForPreTraining, type LxmertConfig, type LxmertInputs } from "./lxmert.ts";
import { IFRSHead } from "./heads.ts";
import { initBertWeights, maskedMean } from "./bert.ts";
import { F, Linear, full, type Tensor } from "../engine/index.ts";

/**
 * LXMERT-S with its pre-training heads plus the IFRS feature-reconstruction head (`ifrs_head`, which
 * the official fine-tuning code never had); every other name is the official one (`bert.*`, `cls.*`).
 */
export class LxmertSForMSP extends LxmertForPreTraining {
  readonly ifrs_head: IFRSHead;
  readonly itc_text_proj: Linear | null = null;
  readonly itc_image_proj: Linear | null = null;
  readonly logit_scale: Tensor | null = null;
  constructor(config: LxmertConfig) {
    super(config);
    this.ifrs_head = this.module("ifrs_head", new IFRSHead(config));
    initBertWeights(this.ifrs_head, config.initializerRange);
    if (config.itcDim) {
      this.itc_text_proj = this.module("itc_text_proj", new Linear(config.hiddenSize, config.itcDim));
      this.itc_image_proj = this.module("itc_image_proj", new Linear(config.hiddenSize, config.itcDim));
      this.logit_scale = this.param("logit_scale", full([], Math.log(1 / 0.07)));
      initBertWeights(this.itc_text_proj, config.initializerRange);
      initBertWeights(this.itc_image_proj, config.initializerRange);
    }
  }

  /** Unit-norm ITC embeddings: the masked means of the text alone and the image alone through the cross layers (config.itcDim). */
  itcFeatures(x: LxmertInputs): { text: Tensor; image: Tensor } {
    if (!this.itc_text_proj || !this.itc_image_proj) throw new Error("LXMERT-S: itcFeatures needs config.itcDim > 0");
    const t = maskedMean(this.bert.encodeText(x), x.attentionMask);
    const v = this.bert.encodeImage(x);
    return { text: F.normalize(this.itc_text_proj.forward(t), 2, -1), image: F.normalize(this.itc_image_proj.forward(maskedMean(v.hidden, v.mask)), 2, -1) };
  }
}
