// Functional ops and losses (torch.nn.functional), as calls of the ATen operators.
import { call, Tensor, reductionCode, type Reduction, type Generator } from "./tensor.ts";
import { noGrad } from "./tensor.ts";
import { autocastOpen } from "./precision.ts";

export const softmax = (x: Tensor, dim: number): Tensor => x.softmax(dim);
export const logSoftmax = (x: Tensor, dim: number): Tensor => x.logSoftmax(dim);
export const relu = (x: Tensor): Tensor => x.relu();
export const gelu = (x: Tensor, approximate: "none" | "tanh" = "none"): Tensor => x.gelu(approximate);
export const tanh = (x: Tensor): Tensor => x.tanh();
export const sigmoid = (x: Tensor): Tensor => x.sigmoid();

export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return call("aten::linear", x, weight, bias ?? undefined);
}

/** Under autocast, a norm's input takes its weight's dtype (the norms run in the weight's precision). */
function normInput(x: Tensor, weight?: Tensor | null): Tensor {
  return autocastOpen() && weight && x.dtype !== weight.dtype ? x.to(weight.dtype) : x;
}

/**
 * Layer normalization. Under autocast a reduced-precision input (e.g. a bfloat16 linear output) is
 * normalized in float32 and gives float32: PyTorch 1.13's CPU autocast has no rule for layer_norm
 * and its kernel then fails on a bfloat16 input with float32 weights ("expected scalar type
 * BFloat16 but found Float"); later PyTorch versions autocast layer_norm to float32.
 */
export function layerNorm(x: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return call("aten::layer_norm", normInput(x, weight), normalizedShape, weight ?? undefined, bias ?? undefined, eps, true);
}

/** Inverted dropout; identity when !train or p == 0. */
export function dropout(x: Tensor, p: number, train: boolean): Tensor {
  if (!train || p === 0) return call("aten::alias", x);
  return call("aten::dropout", x, p, train);
}

export function embedding(weight: Tensor, ids: Tensor, paddingIdx = -1): Tensor {
  return call("aten::embedding", weight, ids, paddingIdx, false, false);
}

export function conv2d(x: Tensor, w: Tensor, bias?: Tensor | null, stride: number | number[] = 1, padding: number | number[] = 0, dilation: number | number[] = 1, groups = 1): Tensor {
  return call("aten::conv2d", x, w, bias ?? undefined, stride, padding, dilation, groups);
}

/** GroupNorm over [B, C, ...]: C split into numGroups groups, each normalised over its channels and all positions. */
export function groupNorm(x: Tensor, numGroups: number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return call("aten::group_norm", normInput(x, weight), numGroups, weight ?? undefined, bias ?? undefined, eps, true);
}

export function avgPool2d(x: Tensor, kernel: number | number[], stride?: number | number[], padding: number | number[] = 0): Tensor {
  return call("aten::avg_pool2d", x, kernel, stride ?? [], padding, false, true, undefined);
}
export function maxPool2d(x: Tensor, kernel: number | number[], stride?: number | number[], padding: number | number[] = 0): Tensor {
  return call("aten::max_pool2d", x, kernel, stride ?? [], padding, 1, false);
}
export function adaptiveAvgPool2d(x: Tensor, output: number | number[]): Tensor {
  return call("aten::adaptive_avg_pool2d", x, typeof output === "number" ? [output, output] : output);
}
export function adaptiveAvgPool1d(x: Tensor, output: number): Tensor {
  return call("aten::adaptive_avg_pool1d", x, [output]);
}

/** x / max(||x||_p, eps) along dim (torch.nn.functional.normalize). */
export function normalize(x: Tensor, p = 2, dim = -1, eps = 1e-12): Tensor {
  return x.div(x.norm(p, dim, true).clampMin(eps).expandAs(x));
}

export function cosineSimilarity(a: Tensor, b: Tensor, dim = 1, eps = 1e-8): Tensor {
  return call("aten::cosine_similarity", a, b, dim, eps);
}

export function oneHot(ids: Tensor, numClasses = -1): Tensor {
  return call("aten::one_hot", ids, numClasses);
}

// ---- losses --------------------------------------------------------------------------------------------

export interface CrossEntropyOptions {
  weight?: Tensor;
  ignoreIndex?: number;
  reduction?: Reduction;
  labelSmoothing?: number;
}

/** Cross-entropy over class logits [N, C] (or [N, C, ...]) with int64 targets or class probabilities. */
export function crossEntropy(logits: Tensor, target: Tensor, o: CrossEntropyOptions = {}): Tensor {
  return call("aten::cross_entropy_loss", logits, target, o.weight, reductionCode(o.reduction), o.ignoreIndex ?? -100, o.labelSmoothing ?? 0);
}

export function nllLoss(logProbs: Tensor, target: Tensor, o: CrossEntropyOptions = {}): Tensor {
  return call("aten::nll_loss_nd", logProbs, target, o.weight, reductionCode(o.reduction), o.ignoreIndex ?? -100);
}

export function binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor, o: { weight?: Tensor; posWeight?: Tensor; reduction?: Reduction } = {}): Tensor {
  return call("aten::binary_cross_entropy_with_logits", logits, target, o.weight, o.posWeight, reductionCode(o.reduction));
}

export function smoothL1Loss(x: Tensor, target: Tensor, reduction: Reduction = "mean", beta = 1.0): Tensor {
  return call("aten::smooth_l1_loss", x, target, reductionCode(reduction), beta);
}

export function mseLoss(x: Tensor, target: Tensor, reduction: Reduction = "mean"): Tensor {
  return call("aten::mse_loss", x, target, reductionCode(reduction));
}

export function l1Loss(x: Tensor, target: Tensor, reduction: Reduction = "mean"): Tensor {
  return call("aten::l1_loss", x, target, reductionCode(reduction));
}

/** KL(target || input) with input given as log-probabilities (torch.nn.functional.kl_div). */
export function klDiv(logInput: Tensor, target: Tensor, reduction: Reduction | "batchmean" = "mean", logTarget = false): Tensor {
  if (reduction === "batchmean") {
    return call<Tensor>("aten::kl_div", logInput, target, reductionCode("sum"), logTarget).div(logInput.size(0));
  }
  return call("aten::kl_div", logInput, target, reductionCode(reduction), logTarget);
}

export function marginRankingLoss(a: Tensor, b: Tensor, target: Tensor, margin = 0, reduction: Reduction = "mean"): Tensor {
  return call("aten::margin_ranking_loss", a, b, target, margin, reductionCode(reduction));
}

// ---- initialisers (in place, without recording gradients) ------------------------------------------------

/** Truncated normal in [a, b] by inverse-CDF sampling (as torch.nn.init.trunc_normal_). */
export function truncNormal_(t: Tensor, mean = 0, std = 1, a = -2, b = 2, generator?: Generator): Tensor {
  noGrad(() => {
    const cdf = (x: number) => (1 + erf(x / Math.SQRT2)) / 2;
    const l = cdf((a - mean) / std);
    const u = cdf((b - mean) / std);
    t.uniform_(2 * l - 1, 2 * u - 1, generator);
    t.erfinv_();
    t.mul_(std * Math.SQRT2);
    t.add_(mean);
    t.clamp_(a, b);
  });
  return t;
}

/** Abramowitz-Stegun 7.1.26 is not precise enough for the bounds; use a series/continued fraction. */
function erf(x: number): number {
  // erf via the relation to the regularized gamma function, accurate to ~1e-15 for |x| < 6.
  const sign = x < 0 ? -1 : 1;
  const ax = Math.abs(x);
  if (ax > 6) return sign;
  let sum = ax;
  let term = ax;
  for (let n = 1; n < 200; n++) {
    term *= (-ax * ax) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17) break;
  }
  return sign * (2 / Math.sqrt(Math.PI)) * sum;
}

export function normal_(t: Tensor, mean = 0, std = 1, generator?: Generator): Tensor {
  noGrad(() => t.normal_(mean, std, generator));
  return t;
}
export function uniform_(t: Tensor, a = 0, b = 1, generator?: Generator): Tensor {
  noGrad(() => t.uniform_(a, b, generator));
  return t;
}
export function zeros_(t: Tensor): Tensor {
  noGrad(() => t.zero_());
  return t;
}
export function ones_(t: Tensor): Tensor {
  noGrad(() => t.fill_(1));
  return t;
}
export function constant_(t: Tensor, v: number): Tensor {
  noGrad(() => t.fill_(v));
  return t;
}
/** Xavier/Glorot uniform for a [out, in, ...] weight. */
export function xavierUniform_(t: Tensor, gain = 1, generator?: Generator): Tensor {
  const s = t.shape;
  const receptive = s.slice(2).reduce((a, b) => a * b, 1);
  const fanIn = s[1] * receptive;
  const fanOut = s[0] * receptive;
  const bound = gain * Math.sqrt(6 / (fanIn + fanOut));
  return uniform_(t, -bound, bound, generator);
}
