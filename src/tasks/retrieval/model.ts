// The retrieval model of a method (MethodDef.retrievalModel): fresh, or from a pre-training or
// retrieval fine-tuning run.
import { getMethod, loadRun, type ModelSpec, type RetrievalModel } from "../../methods/index.ts";
import type { RetrievalOptions } from "./options.ts";

/** The retrieval model of `method`: from a run directory (pre-training or retrieval fine-tuning), or freshly initialised. */
export async function buildRetrievalModel(method: string, spec: ModelSpec, from: string | null, o: RetrievalOptions): Promise<RetrievalModel> {
  const def = getMethod(method);
  if (!from) return def.retrievalModel(spec, o.mode);
  const { model, missing } = await loadRun(from, { build: (run) => def.retrievalModel(run.model, o.mode).model, allowMissing: def.retrievalOptional });
  return def.wrapRetrievalModel(model, missing);
}
