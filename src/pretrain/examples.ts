// Pre-training examples (image id + text + optional QA label) read from the datasets' own files:
// LXMERT's pre-training JSON ({img_id, sentf: {source: [sents]}, labelf: {source: [{ans: score}]}})
// (parsed by src/data/formats/lxmert_pretrain.ts, the reader `vlp data inspect` uses) and the MSP
// per-granularity lists ({img_id, sents: [...]}) written by the synthetic world.
import { readFileSync, existsSync } from "node:fs";
import { parseLxmertPretrainDatum, lxmertPretrainId } from "../data/formats/lxmert_pretrain.ts";
import { FieldError, parseRecords } from "../data/formats/util.ts";

export interface PretrainExample {
  imgId: string;
  text: string;
  /** Source of the sentence ("mscoco", "vqa", "token", "phrase", ...). */
  source: string;
  /** Soft answer scores when the sentence is a question with a label. */
  label?: Record<string, number>;
}

function readJson(path: string): unknown {
  if (!existsSync(path)) throw new Error(`${path}: file not found`);
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`);
  }
}

/**
 * Examples reordered so that consecutive ones come from different images, and each round mixes the
 * kinds of text: round r takes from the j-th image its text number (r + j) mod n (n = its number of
 * texts), so every text appears once. For held-out sets, which are read unshuffled and of which
 * evaluation reads the first batches only:
 * - in file order a batch of 32 held ~6 images five times over, and an in-batch ITC accuracy could
 *   not pass ~1/5 whatever the model (an image cannot tell its own captions apart);
 * - taking every image's first text first (session 5's order) filled the first batches with one
 *   kind of caption (the world's first caption names the count and the background colour), so the
 *   held-out metrics measured that kind alone.
 */
export function interleaveByImage<T>(examples: T[], image: (e: T) => string): T[] {
  const groups = new Map<string, T[]>();
  for (const e of examples) {
    const k = image(e);
    const g = groups.get(k);
    if (g) g.push(e);
    else groups.set(k, [e]);
  }
  const out: T[] = [];
  const lists = [...groups.values()];
  for (let r = 0; out.length < examples.length; r++) lists.forEach((g, j) => { if (r < g.length) out.push(g[(r + j) % g.length]); });
  return out;
}

/**
 * Examples of one file. `sources` keeps only those sentence sources (e.g. ["mscoco"] for captions
 * only, or ["mscoco", "vqa", "gqa"] for LXMERT's captions + QA); MSP lists are sourced by `granularity`.
 */
export function readPretrainExamples(path: string, o: { sources?: string[]; granularity?: string } = {}): PretrainExample[] {
  const data = readJson(path);
  if (!Array.isArray(data)) throw new Error(`${path}: expected a JSON list of records`);
  const out: PretrainExample[] = [];
  // LXMERT's records are parsed by the format's reader; the synthetic world's MSP lists ({img_id, sents}) here
  parseRecords(path, data, (rec) => {
    if (Array.isArray(rec.sents)) {
      if (typeof rec.img_id !== "string") throw new FieldError(`missing string field "img_id"`);
      for (const s of rec.sents) {
        if (typeof s !== "string") throw new FieldError(`"sents" must hold strings`);
        out.push({ imgId: rec.img_id, text: s, source: o.granularity ?? "text" });
      }
      return;
    }
    if (typeof rec.img_id === "string" && (typeof rec.sentf !== "object" || rec.sentf === null)) throw new FieldError(`missing "sentf" (or "sents")`);
    const d = parseLxmertPretrainDatum(rec, { sources: o.sources });
    for (const [source, sents] of Object.entries(d.sentf)) {
      const labels = d.labelf[source];
      sents.forEach((text, k) => out.push({ imgId: d.img_id, text, source, label: labels ? labels[k] : undefined }));
    }
  }, { id: lxmertPretrainId });
  if (out.length === 0) throw new Error(`${path}: no examples${o.sources ? ` for sources ${o.sources.join(", ")}` : ""}`);
  return out;
}
