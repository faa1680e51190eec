// VLMo's configuration: every field that defines a network (plain JSON), the official base / large
// sizes and vlpkit's tiny / small presets, and the checks a config must pass before a model is built.

export interface VLMoHeadsConfig {
  /** MLM head (`mlm_score`): transform + untied decoder. */
  mlm: boolean;
  /** ITM head (`itm_score`): Linear(h, 2) on the pooled fusion [CLS]. */
  itm: boolean;
  /** ITC projections `itc_text_proj`, `itc_image_proj` and `logit_scale`. */
  itc: boolean;
  /** The VL-branch ITC projections `itc_vl_text_proj`, `itc_vl_image_proj` and `logit_vl_scale` (pre-training). */
  itcVl: boolean;
  /** VQA classifier with this many answers (0 = none). */
  vqaLabels: number;
  /** NLVR2 classifier (and a third modality-type embedding for the second image). */
  nlvr2: boolean;
}

/** Everything that defines a VLMo network; plain JSON. */
export interface VLMoConfig {
  name: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  mlpRatio: number;
  imageSize: number;
  patchSize: number;
  inChans: number;
  /** Layers with index >= this one carry a VL-FFN (base 10, large 21). numLayers = none. */
  vlffnStartLayer: number;
  /** Text length the model is run with (official: 40); also the rows of the unused absolute text table. */
  maxTextLen: number;
  /** Text length of the checkpoint that sized the relative-position table (official: 196). */
  maxTextLenOfInitCkpt: number;
  vocabSize: number;
  /** Table 5 ablation: a standard Transformer, one FFN (`mlp`, `norm2`) shared by every modality. */
  standard: boolean;
  /** Absolute image position embedding `transformer.pos_embed` (official base/large: false). */
  useAbsPosEmb: boolean;
  /** Relative position bias (official base/large: true). */
  relativePositionBias: boolean;
  /**
   * What the ITC projections read: "cls" (the official [CLS] after the final norm) or "mean" (vlpkit,
   * for models trained from scratch: the masked mean of the sequence, whose [CLS] carries almost
   * nothing before attention has learned to gather, see README "Pre-training that learns").
   */
  itcPool?: "cls" | "mean";
  /**
   * What the ITM head reads: "pooled" (official: the pooler on the fusion [CLS]) or "prod" (vlpkit
   * option: the pooler's dense layer over the element-wise product of the fused text part's mean and
   * the fused image part's mean, a bilinear read-out a from-scratch model has at step 0). With "prod"
   * the fusion output's `pooled`, which the VQA and NLVR2 heads read, is that product read-out too.
   */
  itmRead?: "pooled" | "prod";
  /**
   * How pixels become patch tokens: "linear" (official: one Conv2d with kernel and stride = patch) or
   * "conv" (vlpkit departure, the ViT paper's hybrid input: a convolutional stem, `PatchEmbed` in
   * embeddings.ts). Absent = "linear".
   */
  patchStem?: "linear" | "conv";
  /** Layer scale init (0.1); null = no gamma_1/gamma_2. */
  layerScaleInit: number | null;
  qkvBias: boolean;
  /** LayerNorm eps of the Transformer (1e-6); the text embedding LayerNorm uses 1e-12. */
  lnEps: number;
  textLnEps: number;
  /** Stochastic depth, linearly increasing to this rate over the layers. */
  dropPathRate: number;
  /** Dropout after the text embedding LayerNorm (official: equal to drop_path_rate). */
  textDropout: number;
  /** Dropout inside attention/MLP and after the image embedding (official: 0). */
  dropRate: number;
  attnDropRate: number;
  /** Rows of `token_type_embeddings` (2; 3 when an NLVR2 head is present). */
  numTokenTypes: number;
  heads: VLMoHeadsConfig;
}

const PRETRAIN_HEADS: VLMoHeadsConfig = { mlm: true, itm: true, itc: true, itcVl: true, vqaLabels: 0, nlvr2: false };

const BASE: VLMoConfig = {
  name: "vlmo-base",
  hiddenSize: 768,
  numLayers: 12,
  numHeads: 12,
  mlpRatio: 4,
  imageSize: 224,
  patchSize: 16,
  inChans: 3,
  vlffnStartLayer: 10,
  maxTextLen: 40,
  maxTextLenOfInitCkpt: 196,
  vocabSize: 30522,
  standard: false,
  useAbsPosEmb: false,
  relativePositionBias: true,
  itcPool: "cls",
  itmRead: "pooled",
  layerScaleInit: 0.1,
  qkvBias: true,
  lnEps: 1e-6,
  textLnEps: 1e-12,
  dropPathRate: 0.1,
  textDropout: 0.1,
  dropRate: 0,
  attnDropRate: 0,
  numTokenTypes: 2,
  heads: PRETRAIN_HEADS,
};

export const VLMO_PRESETS = {
  base: BASE,
  large: { ...BASE, name: "vlmo-large", hiddenSize: 1024, numLayers: 24, numHeads: 16, vlffnStartLayer: 21 },
  /** CPU tests: 4 layers (VL-FFN in the top 2), 64 hidden, 32 px images in 8 px patches (16 patches). */
  tiny: { ...BASE, name: "vlmo-tiny", hiddenSize: 64, numLayers: 4, numHeads: 4, vlffnStartLayer: 2, imageSize: 32, patchSize: 8 },
  /** CPU experiments: 4 layers, 128 hidden, 64 px images in 16 px patches. */
  small: { ...BASE, name: "vlmo-small", hiddenSize: 128, numLayers: 4, numHeads: 4, vlffnStartLayer: 2, imageSize: 64, patchSize: 16 },
} satisfies Record<string, VLMoConfig>;

export type VLMoPreset = keyof typeof VLMO_PRESETS;

/** A config from a preset with overrides (heads merged field by field); validated. */
export function vlmoConfig(preset: VLMoPreset | VLMoConfig, overrides: Partial<Omit<VLMoConfig, "heads">> & { heads?: Partial<VLMoHeadsConfig> } = {}): VLMoConfig {
  const base = typeof preset === "string" ? VLMO_PRESETS[preset] : preset;
  const cfg: VLMoConfig = { ...base, ...overrides, heads: { ...base.heads, ...(overrides.heads ?? {}) } };
  if (overrides.numTokenTypes === undefined && cfg.heads.nlvr2) cfg.numTokenTypes = Math.max(3, cfg.numTokenTypes);
  validateConfig(cfg);
  return cfg;
}

export function validateConfig(c: VLMoConfig): void {
  const fail = (m: string) => { throw new Error(`VLMoConfig ${c.name}: ${m}`); };
  if (c.hiddenSize % c.numHeads !== 0) fail(`hiddenSize ${c.hiddenSize} is not divisible by numHeads ${c.numHeads}`);
  if (c.imageSize % c.patchSize !== 0) fail(`imageSize ${c.imageSize} is not a multiple of patchSize ${c.patchSize}`);
  if (c.vlffnStartLayer < 1 || c.vlffnStartLayer > c.numLayers) fail(`vlffnStartLayer ${c.vlffnStartLayer} must be in [1, ${c.numLayers}]`);
  if (c.relativePositionBias && c.maxTextLen > c.maxTextLenOfInitCkpt) fail(`maxTextLen ${c.maxTextLen} exceeds maxTextLenOfInitCkpt ${c.maxTextLenOfInitCkpt}`);
  if (c.patchStem !== undefined && c.patchStem !== "linear" && c.patchStem !== "conv") fail(`patchStem must be "linear" or "conv", got ${JSON.stringify(c.patchStem)}`);
  if (c.patchStem === "conv" && !(c.patchSize >= 2 && Number.isInteger(Math.log2(c.patchSize)))) fail(`patchStem "conv" needs a power-of-two patchSize, got ${c.patchSize} (2, 4, 8, ...)`);
  if (c.heads.nlvr2 && c.numTokenTypes < 3) fail("an NLVR2 head needs numTokenTypes >= 3");
}
