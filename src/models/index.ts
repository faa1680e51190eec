// The models (the package's `vlpkit/models`): BERT blocks, LXMERT / LXMERT-S, SemVLP, VLMo, their
// pre-training and task models and heads, the parameter-name maps between these and the Hugging
// Face / official checkpoints, and loadPretrained, which loads such checkpoints through them.
export * from "./bert.ts";
export * from "./heads.ts";
export * from "./namemap.ts";
export * from "./pretrained.ts";
export * from "./lxmert.ts";
export * from "./lxmert_msp.ts";
export * from "./region_tasks.ts";
export * from "./semvlp.ts";
export * from "./vlmo/index.ts";
// lxmert.ts and vlmo/model.ts each define the same { outputAttentions?, outputHiddenStates? } options
export type { InspectOptions } from "./vlmo/index.ts";
