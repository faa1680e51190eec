// LXMERT pre-training json (mscoco_train.json, vgnococo.json, ...): a list of
// {img_id, sentf: {source: [sentences]}, labelf: {source: [{answer: score}]}}.
// labelf[source][i] is the QA label of sentf[source][i] (QA sources: vqa, gqa, visual7w), answer ->
// soft score in [0, 1]. The one parser of these files: `vlp data inspect` and the pre-training
// pipeline (src/pretrain/examples.ts) both read them through parseLxmertPretrainDatum.

import { type Json, type ReadOptions, type ReadResult, FieldError, isObject, parseRecords, readJson, topArray, writeJson } from "./util.ts";

export interface LxmertPretrainDatum {
  img_id: string;
  sentf: Record<string, string[]>;
  labelf: Record<string, Record<string, number>[]>;
}

/**
 * A QA label: answer -> soft score in [0, 1] (VQA's min(1, annotators / 3), GQA's 1). A string or
 * negative score would silently switch the QA loss off for the example, so it is an error naming
 * the answer.
 */
function checkLabel(l: unknown, where: string): Record<string, number> {
  if (!isObject(l)) throw new FieldError(`${where}: expected an object of answer scores, got ${JSON.stringify(l)}`);
  for (const [ans, v] of Object.entries(l)) {
    if (typeof v !== "number" || !(v >= 0 && v <= 1)) throw new FieldError(`${where}: the score of ${JSON.stringify(ans)} should be a number in [0, 1], got ${JSON.stringify(v)}`);
  }
  return l as Record<string, number>;
}

/**
 * One record, checked: img_id a string, sentf an object of sentence lists, labelf (optional: {} when
 * absent) an object of label lists, each as long as its source's sentences. `sources` keeps only
 * those sentence sources (the others are neither checked nor returned), as the pre-training
 * pipeline reads them (src/pretrain/examples.ts).
 */
export function parseLxmertPretrainDatum(r: Json, o: { sources?: string[] } = {}): LxmertPretrainDatum {
  if (typeof r.img_id !== "string") throw new FieldError(`missing string field "img_id"`);
  if (!isObject(r.sentf)) throw new FieldError(r.sentf === undefined || r.sentf === null ? `missing "sentf"` : `field "sentf" should be an object of sentence lists`);
  if (r.labelf !== undefined && !isObject(r.labelf)) throw new FieldError(`field "labelf" should be an object of label lists`);
  const labelfRaw = (r.labelf ?? {}) as Json;
  const keep = (source: string) => !o.sources || o.sources.includes(source);
  const sentf: Record<string, string[]> = {};
  const labelf: Record<string, Record<string, number>[]> = {};
  for (const [source, sents] of Object.entries(r.sentf)) {
    if (!keep(source)) continue;
    if (!Array.isArray(sents)) throw new FieldError(`sentf.${source} must be a list`);
    const labels = labelfRaw[source];
    if (labels !== undefined && (!Array.isArray(labels) || labels.length !== sents.length)) {
      throw new FieldError(`labelf.${source} must be a list as long as sentf.${source}${Array.isArray(labels) ? ` (${labels.length} labels, ${sents.length} sentences)` : ""}`);
    }
    sents.forEach((x, k) => {
      if (typeof x !== "string") throw new FieldError(`sentf.${source}[${k}] is not a string`);
      if (labels) checkLabel(labels[k], `labelf.${source}[${k}]`);
    });
    sentf[source] = sents as string[];
    if (labels) labelf[source] = labels as Record<string, number>[];
  }
  for (const [source, labels] of Object.entries(labelfRaw)) {
    if (keep(source) && !(source in sentf)) throw new FieldError(`labelf.${source} has ${Array.isArray(labels) ? labels.length : 0} labels but sentf has no ${source} sentences`);
  }
  return { img_id: r.img_id, sentf, labelf };
}

/** How a record names itself in errors: `img_id <id>` when it has a non-empty one. */
export const lxmertPretrainId = (raw: unknown): string | undefined => (isObject(raw) && raw.img_id ? `img_id ${String(raw.img_id)}` : undefined);

export function readLxmertPretrain(path: string, opts: ReadOptions = {}): ReadResult<LxmertPretrainDatum> {
  return parseRecords(path, topArray(path, readJson(path)), (r) => parseLxmertPretrainDatum(r), { ...opts, id: lxmertPretrainId });
}

export function writeLxmertPretrain(path: string, data: LxmertPretrainDatum[]): void {
  writeJson(path, data);
}
