// Data (the package's `vlpkit/data`): the batch loader (worker threads), region-feature stores and
// the readers / writers of each dataset format (src/data/formats/, one file per format).
export * from "./loader.ts";
export * from "./regions/index.ts";
export { IMAGE_EXTS, listImages } from "./image_files.ts";
export { FormatError, FieldError, type ReadOptions, type ReadResult } from "./formats/util.ts";
export * from "./formats/arrow.ts";
export * from "./formats/coco.ts";
export * from "./formats/gqa.ts";
export * from "./formats/hardneg.ts";
export * from "./formats/karpathy.ts";
export * from "./formats/lxmert_pretrain.ts";
export * from "./formats/nlvr2.ts";
export * from "./formats/obj36.ts";
export * from "./formats/vg.ts";
export * from "./formats/vqa.ts";
export * from "./formats/wds.ts";
export { generateWorld, type WorldOptions, type WorldSummary } from "./synth/world.ts";
export { inspectPath, type InspectReport } from "./inspect/index.ts";
