// The pre-training objectives (the package's `vlpkit/objectives`): each loss as a function of model
// outputs and targets, token / region masking, and the sampling of mismatched pairs and answers.
export * from "./losses.ts";
export * from "./masking.ts";
export * from "./sampling.ts";
