// Official VLMo checkpoints (microsoft/unilm `vlmo/`): vlpkit's parameter names are the official
// ones (index.ts lists them), so a checkpoint loads by name once the few differences are mapped.
import { Tensor, cat, fromBytes, tidy, type DType } from "../../engine/index.ts";
import { loadPthStateDict } from "../../engine/serialize/pth.ts";
import type { VLMoModel } from "./model.ts";

/** Keys of official checkpoints that are not parameters of this model (index buffers), dropped on load. */
const OFFICIAL_BUFFERS = [
  "text_embeddings.position_ids", // registered persistent by transformers < 4.31
  "text_embeddings.token_type_ids",
  "relative_position_index",
  "text_relative_position_index",
  "text_imag_relative_position_index",
];

/**
 * Maps an official VLMo state_dict onto this model's names. Our names are the official ones, so
 * the map is the identity except for: a DeepSpeed "module." prefix (stripped); the index buffers of
 * OFFICIAL_BUFFERS (dropped: we rebuild them); and, for a model with an NLVR2 head loading a
 * 2-row `token_type_embeddings.weight` (a pre-trained checkpoint), the third row copied from the
 * image row, as the official fine-tuning does.
 */
export function convertOfficialStateDict(sd: Map<string, Tensor>, model: VLMoModel): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k0, t] of sd) {
    const k = k0.startsWith("module.") ? k0.slice("module.".length) : k0;
    if (OFFICIAL_BUFFERS.includes(k)) continue;
    out.set(k, t);
  }
  const tt = out.get("token_type_embeddings.weight");
  const rows = model.config.numTokenTypes;
  if (tt && tt.size(0) === 2 && rows === 3) {
    out.set("token_type_embeddings.weight", cat([tt, tt.narrow(0, 1, 1)], 0));
  }
  return out;
}

/** Reads a torch.save'd official VLMo checkpoint (.pth/.ckpt) and loads it strictly (after convertOfficialStateDict). */
export function loadOfficialCheckpoint(model: VLMoModel, path: string, opts: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
  return tidy(() => {
    const raw = loadPthStateDict(path);
    const sd = new Map<string, Tensor>();
    for (const [k, r] of raw) sd.set(k, fromBytes(r.data, r.dtype as DType, r.shape));
    return model.loadStateDict(convertOfficialStateDict(sd, model), { strict: opts.strict ?? true, where: `VLMo checkpoint ${path}` });
  });
}
