// vlpkit (the package's main entry, `import ... from "vlpkit"`): the engine, the tokenizer, image
// decoding and the model classes with their presets. Each floor also has its own entry point with
// everything it exports: `vlpkit/engine`, `vlpkit/models`, `vlpkit/data`, `vlpkit/objectives`,
// `vlpkit/train` (see package.json "exports" and ARCHITECTURE.md).
export * from "./engine/index.ts";
export { BertTokenizer, loadBertBaseUncasedVocab, BERT_UNCASED_VOCAB_SIZE, type Encoding, type EncodeOptions, type TruncationStrategy } from "./text/tokenizer.ts";
export { openImage, decodeImage, resizeImage, toChw, patchify, loadImageTensor, VLMO_NORM, IMAGENET_NORM, type RgbImage, type ChwImage, type Normalization, type Patches, type ResizeOptions } from "./vision/image.ts";
export { randAugment, type RandAugmentOptions } from "./vision/augment.ts";
export {
  VLMoModel, vlmoConfig, VLMO_PRESETS, vlmoParameterCount, loadOfficialCheckpoint, type VLMoConfig, type VLMoPreset,
} from "./models/vlmo/index.ts";
export { ITCHead, ITMHead, MLMHead, ClassifierHead, itcScores } from "./models/vlmo/heads.ts";
export { LxmertModel, LxmertForPreTraining, lxmertConfig, LXMERT_PRESETS, type LxmertConfig, type LxmertPreset } from "./models/lxmert.ts";
export { SemVLPModel, SemVLPForPreTraining, semvlpConfig, SEMVLP_PRESETS, type SemVLPConfig, type SemVLPPreset, type SemVLPMode } from "./models/semvlp.ts";
export { loadPretrained, type LoadPretrainedOptions, type PretrainedLoad } from "./models/pretrained.ts";
export * as models from "./models/index.ts";
export * as data from "./data/index.ts";
export * as objectives from "./objectives/index.ts";
export * as train from "./train/index.ts";
