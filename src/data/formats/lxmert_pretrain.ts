// LXMERT pre-training json (mscoco_train.json, vgnococo.json, ...): a list of
// {img_id, sentf: {source: [sentences]}, labelf: {source: [{answer: score}]}}.
// labelf[source][i] is the QA label of sentf[source][i] (QA sources: vqa, gqa, visual7w).

import {
  type Json, type ReadOptions, type ReadResult, FieldError, idLabel, isObject, obj, parseRecords, readJson, scoreMap, str,
  strList, topArray, writeJson,
} from "./util.ts";

export interface LxmertPretrainDatum {
  img_id: string;
  sentf: Record<string, string[]>;
  labelf: Record<string, Record<string, number>[]>;
}

const parseDatum = (r: Json): LxmertPretrainDatum => {
  const sentfRaw = obj(r, "sentf");
  const sentf: Record<string, string[]> = {};
  for (const source of Object.keys(sentfRaw)) sentf[source] = strList(sentfRaw, source);
  const labelfRaw = obj(r, "labelf");
  const labelf: Record<string, Record<string, number>[]> = {};
  for (const [source, labels] of Object.entries(labelfRaw)) {
    if (!Array.isArray(labels)) throw new FieldError(`field "labelf.${source}" should be a list`);
    labelf[source] = labels.map((l, i) => {
      if (!isObject(l)) throw new FieldError(`labelf.${source}[${i}] is not an object`);
      return scoreMap({ [`labelf.${source}[${i}]`]: l }, `labelf.${source}[${i}]`);
    });
    const sents = sentf[source];
    if (!sents || sents.length !== labels.length) {
      throw new FieldError(`labelf.${source} has ${labels.length} labels but sentf.${source} has ${sents?.length ?? 0} sentences`);
    }
  }
  return { img_id: str(r, "img_id"), sentf, labelf };
};

export function readLxmertPretrain(path: string, opts: ReadOptions = {}): ReadResult<LxmertPretrainDatum> {
  return parseRecords(path, topArray(path, readJson(path)), parseDatum, { ...opts, id: idLabel("img_id") });
}

export function writeLxmertPretrain(path: string, data: LxmertPretrainDatum[]): void {
  writeJson(path, data);
}
