// The options of a retrieval fine-tuning recipe (`recipe.options`): their defaults and checks, and
// the text length a model is run with.
import { Type, check, choice, num, type Filled, type Static } from "../../pretrain/schema.ts";
import type { RetrievalModel } from "../../methods/index.ts";

/** The schema of a retrieval recipe's `options`, with their defaults. */
export const RETRIEVAL_OPTIONS = Type.Object({
  mode: Type.Optional(choice(["single", "two"], { default: "single", description: "SemVLP: score from h_CLS in single-stream mode or from o_IMG in two-stream mode" })),
  // scores are sigmoids in [0, 1]: a margin above 1 can never be met
  margin: Type.Optional(num({ min: 0, max: 1 }, { default: 0.2, description: "SemVLP: triplet-loss margin on sigmoid scores (UNITER: 0.2)" })),
  negPool: Type.Optional(num({ int: true, min: 0, max: 1 << 16 }, { default: 0, description: "SemVLP: in-batch negatives scored without gradients per positive and side (0 = every other example of the batch)" })),
  hardNegatives: Type.Optional(num({ int: true, min: 1, max: 1 << 16 }, { default: 1, description: "SemVLP: hardest negatives per positive and side trained on" })),
  maxTextLen: Type.Optional(Type.Union([num({ int: true, min: 3, max: 512 }), Type.Null()], { default: null, description: "text length (default: 20 for SemVLP / LXMERT-S as in their pre-training, the model's maxTextLen for VLMo)" })),
  maxBoxes: Type.Optional(num({ int: true, min: 1, max: 1024 }, { default: 36, description: "boxes per image (SemVLP / LXMERT-S)" })),
  evalBatchSize: Type.Optional(num({ int: true, min: 1, max: 1 << 20 }, { default: 500, description: "pairs per forward when a fusion model scores a split; images per forward for VLMo" })),
  evalSplit: Type.Optional(choice(["train", "val", "test", "test_comp"], { default: "val", description: "the split evaluated at the end of fine-tuning (the returned metrics)" })),
  evalLimit: Type.Optional(num({ int: true, min: 0, max: 1 << 30 }, { default: 0, description: "only the split's first N images in that evaluation (0 = all; a fusion model scores every pair, N x 5N forwards)" })),
  rerank: Type.Optional(num({ int: true, min: 0, max: 1 << 16 }, { default: 0, description: "VLMo: re-rank each query's top k with the ITM head in the end-of-training evaluation (0 = off)" })),
}, { additionalProperties: false, description: "retrieval options" });

export type RetrievalOptions = Filled<Static<typeof RETRIEVAL_OPTIONS>, keyof Static<typeof RETRIEVAL_OPTIONS>>;

/** Checks `recipe.options` of a retrieval recipe (defaults filled in); unknown keys and bad values are rejected naming the key. */
export function retrievalOptions(raw: Record<string, unknown> | undefined, where = "recipe.options"): RetrievalOptions {
  const r = check(RETRIEVAL_OPTIONS, structuredClone(raw ?? {}), where, { unknownKey: "unknown retrieval option" }) as RetrievalOptions;
  if (r.negPool > 0 && r.hardNegatives > r.negPool) throw new Error(`${where}.hardNegatives (${r.hardNegatives}) exceeds negPool (${r.negPool})`);
  return r;
}

/** Every retrieval option at its default. */
export const RETRIEVAL_DEFAULTS: RetrievalOptions = retrievalOptions({});

/** The text length of a retrieval model: options.maxTextLen, else VLMo's maxTextLen, else 20 (SemVLP / LXMERT-S pre-training). */
export function textLenFor(rm: RetrievalModel, o: RetrievalOptions): number {
  return o.maxTextLen ?? (rm.kind === "dual" ? rm.model.config.maxTextLen : 20);
}
