// VLMo's parameter arithmetic: the count of a config by part (shared attention, each modality
// expert, vision, embeddings, heads) without building the model.
import type { VLMoConfig } from "./config.ts";
import { relativePositionLayout } from "./relpos.ts";
import { stemChannels } from "./embeddings.ts";

export interface VLMoParameterCount {
  /** Shared self-attention (+ norm1, layer scales) over all layers. */
  attention: number;
  /** FFN experts with their LayerNorms, by expert. */
  experts: { text: number; image: number; vl: number; shared: number };
  /** Patch projection, image [CLS], absolute image positions, final norm, relative position table. */
  visionAndMisc: number;
  /** text_embeddings (word, unused absolute position, type, LayerNorm) + modality-type table. */
  embeddings: number;
  heads: number;
  /** Everything but the task heads. */
  backbone: number;
  total: number;
}

/** The parameter count of a config, without building the model (checked against numParameters() in the tests). */
export function vlmoParameterCount(c: VLMoConfig): VLMoParameterCount {
  const h = c.hiddenSize;
  const f = Math.floor(h * c.mlpRatio);
  const ffn = h * f + f + f * h + h + 2 * h; // fc1, fc2, its LayerNorm
  const grid = c.imageSize / c.patchSize;
  let attention = 0;
  const experts = { text: 0, image: 0, vl: 0, shared: 0 };
  for (let i = 0; i < c.numLayers; i++) {
    attention += 2 * h + 3 * h * h + (c.qkvBias ? 2 * h : 0) + h * h + h + (c.layerScaleInit === null ? 0 : 2 * h);
    if (c.standard) experts.shared += ffn;
    else {
      experts.text += ffn;
      experts.image += ffn;
      if (i >= c.vlffnStartLayer) experts.vl += ffn;
    }
  }
  const stem = c.patchStem === "conv" ? stemChannels(c.patchSize) : [];
  const patchEmbed = stem.length === 0 ? h * c.inChans * c.patchSize * c.patchSize + h
    : stem.reduce((n, ch, i) => n + (i === 0 ? c.inChans : stem[i - 1]) * ch * 9 + 2 * ch, 0) + stem[stem.length - 1] * h + h;
  const visionAndMisc = patchEmbed + h + (c.useAbsPosEmb ? (grid * grid + 1) * h : 0) + 2 * h
    + (c.relativePositionBias ? relativePositionLayout(grid, c.maxTextLenOfInitCkpt).total * c.numHeads * c.numLayers : 0);
  const embeddings = c.vocabSize * h + c.maxTextLen * h + 2 * h + 2 * h + c.numTokenTypes * h;
  const hd = c.heads;
  let heads = h * h + h; // pooler
  if (hd.mlm) heads += h * h + h + 2 * h + c.vocabSize * h + c.vocabSize;
  if (hd.itm) heads += 2 * h + 2;
  if (hd.itc) heads += 2 * h * h + 1;
  if (hd.itc && hd.itcVl && !c.standard) heads += 2 * h * h + 1;
  const classifier = (i: number, m: number, o: number) => i * m + m + 2 * m + m * o + o;
  if (hd.vqaLabels > 0) heads += classifier(h, 2 * h, hd.vqaLabels);
  if (hd.nlvr2) heads += classifier(2 * h, 2 * h, 2);
  const backbone = attention + experts.text + experts.image + experts.vl + experts.shared + visionAndMisc + embeddings;
  return { attention, experts, visionAndMisc, embeddings, heads, backbone, total: backbone + heads };
}
