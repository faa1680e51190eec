// The rankings dump of a retrieval evaluation (`vlp eval retrieval --dump`): the metrics, and per
// caption its image's rank and top-10 images, per image its rank and top-10 captions.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { topK } from "./ranking.ts";
import type { EvalSet } from "./data.ts";
import type { ScoreResult } from "./score.ts";
import type { EvaluateModelOptions, RetrievalResult } from "./evaluate.ts";

/** Rankings: per caption its image's rank and the top-10 images; per image its rank and the top-10 captions. */
export function writeDump(path: string, set: EvalSet, sc: ScoreResult, ir: ArrayLike<number>, tr: ArrayLike<number>, metrics: RetrievalResult, o: EvaluateModelOptions): void {
  const Ni = set.images.length;
  const Nt = set.captions.length;
  const t2i = sc.t2i ?? (() => {
    const t = new Float32Array(Ni * Nt);
    for (let i = 0; i < Ni; i++) for (let c = 0; c < Nt; c++) t[c * Ni + i] = sc.i2t[i * Nt + c];
    return t;
  })();
  const dump = {
    checkpoint: o.checkpoint ?? null,
    world: o.world ?? null,
    source: o.source?.json ?? null,
    split: o.split,
    // ranks are expected ranks: tied candidates in a uniformly random order (ranking.ts)
    tie_rule: "average",
    metrics,
    captions: set.captions.map((c, t) => ({ caption_id: c.id, text: c.text, image_id: set.images[c.image].id, rank: ir[t], top10: topK(t2i, Ni, t, 10).map((i) => set.images[i].id) })),
    images: set.images.map((im, i) => ({ image_id: im.id, caption_ids: im.captions.map((c) => c.id), rank: tr[i], top10: topK(sc.i2t, Nt, i, 10).map((t) => set.captions[t].id) })),
  };
  mkdirSync(dirname(resolve(path)), { recursive: true });
  writeFileSync(path, JSON.stringify(dump, null, 1));
}
