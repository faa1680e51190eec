// Where a split of a retrieval recipe's data is: a data source's split (tasks/sources.ts) or a
// synthetic world's Karpathy split with its region file.
import type { FinetuneRecipe } from "../task.ts";
import { retrievalSource, taskSource } from "../sources.ts";
import { readRetrievalSource, readRetrievalSplit, type RetrievalSource, type RetrievalSplit } from "./data.ts";

/** Where a split of a recipe's data is: a source's split, or a world (a synth source: its world and region file) and the split's name. */
export function retrievalData(data: FinetuneRecipe["data"], split: string): { source: RetrievalSource } | { world: string; split: RetrievalSplit; regions?: string | string[] } {
  const source = retrievalSource(data, split);
  if (source) return { source };
  const synth = taskSource("retrieval", data).source;
  return { world: synth.world!, split: split as RetrievalSplit, regions: synth.regions };
}

/** Images of a split of a recipe's data (0 when it has none). */
export function splitSize(data: FinetuneRecipe["data"], split: string): number {
  try {
    const d = retrievalData(data, split);
    return "source" in d ? readRetrievalSource(d.source).length : readRetrievalSplit(d.world, split).length;
  } catch {
    return 0;
  }
}
