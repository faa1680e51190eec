// vlpkit's engine (the package's `vlpkit/engine`): tensors, autograd, scopes, functional ops, nn modules,
// optimizers, schedules, gradient utilities, the host PRNG, devices, checkpoints and safetensors / .pth IO.
export * from "./tensor.ts";
export * from "./dtype.ts";
export { tidy, tidyAsync, scopeDepth } from "./scope.ts";
export * as F from "./functional.ts";
export * as nn from "./nn.ts";
export { Module, Linear, LayerNorm, GroupNorm, Embedding, Dropout, DropPath, Conv2d, ModuleList, Sequential, GELU, StateDictError, type StateDict } from "./nn.ts";
export { initDistributed, distConfigFromEnv, distBackends, Dist, DistError, type DistConfig, type ReduceOp, type Backend } from "./dist.ts";
export { DataParallel, broadcastModule, broadcastOptimizer, broadcastTensors, allReduceGradients, reduceMetrics, assignBuckets, type DDPOptions } from "./ddp.ts";
export { autocast, autocastAsync, autocastState, withPrecision, withPrecisionAsync, precisionDtype, PRECISIONS, type Precision, type AutocastDType } from "./precision.ts";
export { Optimizer, Adam, AdamW, SGD, paramGroupsNoDecay, defaultNoDecay, type ParamGroup, type ParamGroupSpec, type AdamOptions, type SGDOptions, type OptimizerStateDict } from "./optim.ts";
export { makeSchedule, applyLr, linearWarmupDecay, polynomialDecay, cosineDecay, constantWithWarmup, type Schedule, type ScheduleConfig } from "./schedule.ts";
export { clipGradNorm, clipGradNormTensor, hasNonFinite, hasNonFiniteGrad, GradAccumulator } from "./grad.ts";
export { Rng, mixSeed, stepRng, hashSeed } from "./rng.ts";
export { parseDevice, isCuda, placeDevice, deviceProblem } from "./device.ts";
export { checkDevice, toDevice, moduleDevice } from "./placement.ts";
export {
  saveStateDict, loadStateDictFile, saveCheckpoint, loadCheckpoint, latestCheckpoint, resolveCheckpoint,
  readTrainerState, isCompleteCheckpoint, type TrainerState, type CheckpointParts,
} from "./checkpoint.ts";
export { readSafetensors, writeSafetensors, openSafetensors, encodeSafetensors, decodeSafetensors, type SafetensorsFile } from "./serialize/safetensors.ts";
export { loadPth, loadPthStateDict } from "./serialize/pth.ts";
export { writeFileAtomic, writeJsonAtomic } from "./serialize/atomic.ts";
export { addonPath } from "./native.ts";
// types the functions above take or return
export type { GroupBase, ParamState, AdamHyper, SGDHyper, NoDecayOptions } from "./optim.ts";
export type { WarmupOptions } from "./schedule.ts";
export type { AccumulatedStep } from "./grad.ts";
export type { CudaInfo } from "./device.ts";
export type { ResolveOptions } from "./checkpoint.ts";
export type { Metadata, TensorInput, SafetensorsContents, SafetensorsEntry } from "./serialize/safetensors.ts";
export type { RawTensor } from "./serialize/raw.ts";
export type { LoadPthOptions, LoadStateDictOptions } from "./serialize/pth.ts";
export type { AtomicWriter, AtomicWriteOptions, JsonAtomicOptions } from "./serialize/atomic.ts";
export type { NativeTensor, NativeGenerator } from "./native.ts";
export type { Trackable } from "./scope.ts";
