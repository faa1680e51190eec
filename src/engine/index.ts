// vlpkit's engine: tensors, autograd, scopes, functional ops (nn, optim and serialize beside it).
export * from "./tensor.ts";
export * from "./dtype.ts";
export { tidy, tidyAsync, scopeDepth } from "./scope.ts";
export * as F from "./functional.ts";
export * as nn from "./nn.ts";
export { Module, Linear, LayerNorm, Embedding, Dropout, DropPath, Conv2d, ModuleList, Sequential, GELU, StateDictError, type StateDict } from "./nn.ts";
export { initDistributed, distConfigFromEnv, distBackends, Dist, DistError, type DistConfig } from "./dist.ts";
export { DataParallel, broadcastModule, broadcastOptimizer, broadcastTensors, allReduceGradients, reduceMetrics, assignBuckets, type DDPOptions } from "./ddp.ts";
export { autocast, autocastAsync, autocastState, withPrecision, withPrecisionAsync, precisionDtype, PRECISIONS, type Precision, type AutocastDType } from "./precision.ts";
