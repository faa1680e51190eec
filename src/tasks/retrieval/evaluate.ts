// Retrieval evaluation: score every pair of a split (score.ts), then R@1/5/10, median and mean rank
// in both directions (IR = caption -> image, TR = image -> captions; ranking.ts), and the rankings
// dump (dump.ts).
import { join } from "node:path";
import type { RetrievalModel } from "../../methods/index.ts";
import type { ProgressFactory } from "../../train/progress.ts";
import { retrievalMetrics, type RetrievalMetrics } from "./ranking.ts";
import { evalSet, readRetrievalSource, readRetrievalSplit, type RetrievalSource } from "./data.ts";
import { scoreAllPairs, scoreDual, type ScoreResult } from "./score.ts";
import { writeDump } from "./dump.ts";

export interface EvaluateModelOptions {
  /** A synthetic world (or `source`). */
  world?: string;
  split: string;
  /** A split of a data source (instead of the world's `split`). */
  source?: RetrievalSource;
  regions?: string | string[];
  limit?: number;
  batchSize: number;
  rerank: number;
  maxTextLen: number;
  maxBoxes: number;
  dump?: string;
  quiet?: boolean;
  progress?: ProgressFactory;
  /** Written into the dump. */
  checkpoint?: string;
}

export type RetrievalResult = RetrievalMetrics & { images: number; captions: number; score_seconds: number };

/** R@K, median and mean rank of a model on a split of a world (and the rankings dump). */
export async function evaluateRetrievalModel(rm: RetrievalModel, o: EvaluateModelOptions): Promise<RetrievalResult> {
  const set = evalSet(o.source ? readRetrievalSource(o.source) : readRetrievalSplit(o.world!, o.split), o.limit);
  if (set.images.length < 2) throw new Error(`retrieval ${o.split}: ${set.images.length} image(s); ranking needs at least 2`);
  let sc: ScoreResult;
  if (rm.kind === "fusion") {
    if (o.rerank > 0) throw new Error(`--rerank applies to dual encoders (VLMo); a ${rm.method} model already scores every pair with its ITM head`);
    const regions = o.regions ?? o.source?.regions ?? (o.source ? undefined : join(o.world!, "features", "obj36.tsv"));
    if (!regions) throw new Error(`${o.source!.json}: a ${rm.method} model needs region features (the source's regions key)`);
    sc = await scoreAllPairs(rm.model, set, { regions, maxTextLen: o.maxTextLen, maxBoxes: o.maxBoxes, batchSize: o.batchSize, quiet: o.quiet, progress: o.progress });
  } else {
    if (o.rerank > 0 && !rm.hasItm) throw new Error("--rerank: this VLMo model has no ITM head (itm_score)");
    sc = await scoreDual(rm.model, set, { world: o.world ?? "", images: o.source?.images, maxTextLen: o.maxTextLen, batchSize: o.batchSize, rerank: o.rerank, quiet: o.quiet, progress: o.progress });
  }
  const m = retrievalMetrics(sc.i2t, set.captionImage, set.images.length, { t2i: sc.t2i });
  const { irRanks, trRanks, ...metrics } = m;
  const result: RetrievalResult = { ...metrics, images: set.images.length, captions: set.captions.length, score_seconds: sc.seconds };
  if (o.dump) writeDump(o.dump, set, sc, irRanks, trRanks, result, o);
  return result;
}
