// The trainer (the package's `vlpkit/train`): stages of steps over sources, checkpoints, exact
// resume and data parallelism; progress is reported through a callback.
export * from "./trainer.ts";
export type { Progress, ProgressFactory } from "./progress.ts";
export { claimRunDir, runFiles, type ClaimOptions } from "./rundir.ts";
export { parseMetrics, renderRunPlot } from "./plot.ts";
