// The options of a retrieval fine-tuning recipe (`recipe.options`): their defaults and checks, and
// the text length a model is run with.
import { checkRanges } from "../../pretrain/ranges.ts";
import type { SemVLPMode } from "../../models/semvlp.ts";
import type { RetrievalModel } from "../../methods/index.ts";
import type { RetrievalSplit } from "./data.ts";

export interface RetrievalOptions {
  /** SemVLP: score from h_CLS in single-stream mode or from o_IMG in two-stream mode. */
  mode: SemVLPMode;
  /** SemVLP: triplet-loss margin on sigmoid scores (UNITER: 0.2). */
  margin: number;
  /** SemVLP: in-batch negatives scored without gradients per positive and side (0 = every other example of the batch). */
  negPool: number;
  /** SemVLP: hardest negatives per positive and side trained on. */
  hardNegatives: number;
  /** Text length (default: 20 for SemVLP / LXMERT-S as in their pre-training, the model's maxTextLen for VLMo). */
  maxTextLen: number | null;
  /** Boxes per image (SemVLP / LXMERT-S). */
  maxBoxes: number;
  /** Pairs per forward when a fusion model scores a split; images per forward for VLMo. */
  evalBatchSize: number;
  /** The split evaluated at the end of fine-tuning (the returned metrics). */
  evalSplit: RetrievalSplit;
  /** Only the split's first N images in that evaluation (0 = all; a fusion model scores every pair, N x 5N forwards). */
  evalLimit: number;
  /** VLMo: re-rank each query's top k with the ITM head in the end-of-training evaluation (0 = off). */
  rerank: number;
}

export const RETRIEVAL_DEFAULTS: RetrievalOptions = { mode: "single", margin: 0.2, negPool: 0, hardNegatives: 1, maxTextLen: null, maxBoxes: 36, evalBatchSize: 500, evalSplit: "val", evalLimit: 0, rerank: 0 };

/** Checks `recipe.options` of a retrieval recipe; unknown keys and bad values are rejected naming the key. */
export function retrievalOptions(raw: Record<string, unknown> | undefined, where = "recipe.options"): RetrievalOptions {
  const o = { ...RETRIEVAL_DEFAULTS } as Record<string, unknown>;
  for (const [k, v] of Object.entries(raw ?? {})) {
    if (!(k in RETRIEVAL_DEFAULTS)) throw new Error(`${where}.${k}: unknown retrieval option (allowed: ${Object.keys(RETRIEVAL_DEFAULTS).join(", ")})`);
    o[k] = v;
  }
  const r = o as unknown as RetrievalOptions;
  if (r.mode !== "single" && r.mode !== "two") throw new Error(`${where}.mode: expected "single" or "two", got ${JSON.stringify(r.mode)}`);
  checkRanges({ ...o, maxTextLen: o.maxTextLen ?? undefined }, where, {
    // scores are sigmoids in [0, 1]: a margin above 1 can never be met
    margin: { min: 0, max: 1 },
    negPool: { int: true, min: 0, max: 1 << 16 },
    hardNegatives: { int: true, min: 1, max: 1 << 16 },
    maxTextLen: { int: true, min: 3, max: 512 },
    maxBoxes: { int: true, min: 1, max: 1024 },
    evalBatchSize: { int: true, min: 1, max: 1 << 20 },
    rerank: { int: true, min: 0, max: 1 << 16 },
    evalLimit: { int: true, min: 0, max: 1 << 30 },
  });
  if (!["train", "val", "test", "test_comp"].includes(r.evalSplit)) throw new Error(`${where}.evalSplit: expected train, val, test or test_comp, got ${JSON.stringify(r.evalSplit)}`);
  if (r.negPool > 0 && r.hardNegatives > r.negPool) throw new Error(`${where}.hardNegatives (${r.hardNegatives}) exceeds negPool (${r.negPool})`);
  return r;
}

/** The text length of a retrieval model: options.maxTextLen, else VLMo's maxTextLen, else 20 (SemVLP / LXMERT-S pre-training). */
export function textLenFor(rm: RetrievalModel, o: RetrievalOptions): number {
  return o.maxTextLen ?? (rm.kind === "dual" ? rm.model.config.maxTextLen : 20);
}
