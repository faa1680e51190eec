// The JSON dataset files `vlp data inspect` recognises: each format says how to tell it
// from its parsed content, which reader validates it, how its records are identified
// (for duplicate checks) and what to count.

import { readCocoCaptions } from "../formats/coco.ts";
import { readGqaQuestions, readLxmertGqa } from "../formats/gqa.ts";
import { readHardNegatives } from "../formats/hardneg.ts";
import { readKarpathy } from "../formats/karpathy.ts";
import { readLxmertPretrain } from "../formats/lxmert_pretrain.ts";
import { readLxmertNlvr2, readNlvr2Jsonl } from "../formats/nlvr2.ts";
import { isObject, type Json, type ReadOptions } from "../formats/util.ts";
import { readVgAttributes, readVgObjects, readVgRegionDescriptions } from "../formats/vg.ts";
import { readLxmertVqa, readVqaAnnotations, readVqaQuestions } from "../formats/vqa.ts";

export interface JsonFormat {
  name: string;
  /** what the file is, with the names it ships under */
  what: string;
  /** does the parsed content (or, for jsonl, its first record) look like this format? */
  match: (data: unknown, jsonl: boolean) => boolean;
  /** the format's reader: records (or one entry per image) and the number of malformed ones skipped */
  read: (path: string, opts: ReadOptions, data: unknown) => { records: unknown[]; skipped: number };
  /** a record's identity; two records with the same one are reported */
  id?: (rec: Json) => string;
  /** counts besides "records" */
  counts?: (records: Json[]) => Record<string, number>;
  /** further problems found across records */
  check?: (records: Json[]) => string[];
}

const first = (data: unknown): unknown => (Array.isArray(data) ? data[0] : undefined);
const has = (o: unknown, ...keys: string[]): o is Json => isObject(o) && keys.every((k) => k in o);
const listField = (data: unknown, key: string): unknown[] | undefined =>
  isObject(data) && Array.isArray(data[key]) ? (data[key] as unknown[]) : undefined;
const distinct = (records: Json[], key: string) => new Set(records.map((r) => r[key])).size;
const sum = (records: Json[], f: (r: Json) => number) => records.reduce((s, r) => s + f(r), 0);
const len = (v: unknown) => (Array.isArray(v) ? v.length : 0);

/** LXMERT's converted NLVR2 files (train.json, valid.json, test.json) name uids nlvr2_<split>_<i>. */
const LXMERT_NLVR2_UID = /^nlvr2_(train|valid|test)_\d+$/;

function checkNlvr2Uids(records: Json[]): string[] {
  const bad = records.map((r, i) => ({ uid: String(r.uid), i })).filter(({ uid }) => !LXMERT_NLVR2_UID.test(uid));
  if (bad.length === 0) return [];
  return [`${bad.length} uids are not LXMERT's form nlvr2_<train|valid|test>_<i> (record ${bad[0].i}: "${bad[0].uid}")`];
}

/** LXMERT's VQA or GQA json: a list of {img_id, sent, question_id, label?}. */
function lxmertQaFormat(name: string, what: string, read: JsonFormat["read"], idType: "number" | "string"): JsonFormat {
  return {
    name,
    what: `LXMERT's ${what}`,
    match: (d) => has(first(d), "img_id", "sent", "question_id") && typeof (first(d) as Json).question_id === idType,
    read,
    id: (r) => String(r.question_id),
    counts: (rs) => ({ questions: rs.length, images: distinct(rs, "img_id"), labelled: rs.filter((r) => r.label !== undefined).length }),
  };
}

/** A Visual Genome file: a list of images, each with its id field and a list of `listKey` items. */
function vgFormat(name: string, what: string, read: JsonFormat["read"], idKey: string, listKey: string, counted: string): JsonFormat {
  return {
    name,
    what: `Visual Genome ${what}`,
    match: (d) => has(first(d), listKey, idKey),
    read,
    id: (r) => String(r[idKey]),
    counts: (rs) => ({ images: rs.length, [counted]: sum(rs, (r) => len(r[listKey])) }),
  };
}

export const JSON_FORMATS: JsonFormat[] = [
  {
    name: "lxmert-pretrain",
    what: "LXMERT pre-training json (data/lxmert/mscoco_train.json, vgnococo.json, ...)",
    match: (d) => has(first(d), "img_id", "sentf"),
    read: readLxmertPretrain,
    id: (r) => String(r.img_id),
    counts: (rs) => {
      const out: Record<string, number> = { images: rs.length };
      for (const r of rs) {
        for (const [source, sents] of Object.entries(r.sentf as Record<string, string[]>)) out[`sentences.${source}`] = (out[`sentences.${source}`] ?? 0) + sents.length;
      }
      return out;
    },
  },
  {
    name: "lxmert-nlvr2",
    what: "LXMERT's NLVR2 json (data/nlvr2/train.json, valid.json, test.json)",
    match: (d) => has(first(d), "img0", "img1", "uid"),
    read: readLxmertNlvr2,
    id: (r) => String(r.uid),
    counts: (rs) => ({ statements: rs.length, true: rs.filter((r) => r.label === 1).length }),
    check: checkNlvr2Uids,
  },
  // LXMERT's VQA question ids are numbers, its GQA ones strings
  lxmertQaFormat("lxmert-vqa", "VQA json (data/vqa/train.json, nominival.json, minival.json, test.json)", readLxmertVqa, "number"),
  lxmertQaFormat("lxmert-gqa", "GQA json (data/gqa/train.json, valid.json, testdev.json, submit.json)", readLxmertGqa, "string"),
  {
    name: "nlvr2-jsonl",
    what: "official NLVR2 statements, one JSON object a line (nlvr2/data/train.json, dev.json, test1.json)",
    match: (d, jsonl) => jsonl && has(d, "identifier", "sentence"),
    read: readNlvr2Jsonl,
    id: (r) => String(r.identifier),
    counts: (rs) => ({ statements: rs.length, true: rs.filter((r) => r.label === "True").length }),
  },
  {
    name: "vqa-questions",
    what: "VQA v2 questions (v2_OpenEnded_mscoco_<split>_questions.json)",
    match: (d) => has(listField(d, "questions")?.[0], "question_id", "question"),
    read: readVqaQuestions,
    id: (r) => String(r.question_id),
    counts: (rs) => ({ questions: rs.length, images: distinct(rs, "image_id") }),
  },
  {
    name: "vqa-annotations",
    what: "VQA v2 annotations (v2_mscoco_<split>_annotations.json)",
    match: (d) => has(listField(d, "annotations")?.[0], "question_id", "answers"),
    read: readVqaAnnotations,
    id: (r) => String(r.question_id),
    counts: (rs) => ({ questions: rs.length, images: distinct(rs, "image_id"), answers: sum(rs, (r) => len(r.answers)) }),
  },
  {
    name: "coco-captions",
    what: "COCO captions (annotations/captions_<split>2014.json)",
    match: (d) => has(listField(d, "annotations")?.[0], "caption") && listField(d, "images") !== undefined,
    read: (path, opts) => {
      const c = readCocoCaptions(path, opts);
      const byImage = new Map<number, number>();
      for (const a of c.annotations) byImage.set(a.image_id, (byImage.get(a.image_id) ?? 0) + 1);
      return { records: c.images.map((im) => ({ ...im, captions: byImage.get(im.id) ?? 0 })), skipped: c.skipped };
    },
    id: (r) => String(r.id),
    counts: (rs) => ({ images: rs.length, captions: sum(rs, (r) => r.captions as number), uncaptioned: rs.filter((r) => r.captions === 0).length }),
  },
  {
    name: "karpathy",
    what: "Karpathy split (dataset_coco.json, dataset_flickr30k.json)",
    match: (d) => has(d, "images", "dataset"),
    read: (path, opts) => {
      const k = readKarpathy(path, opts);
      return { records: k.images, skipped: k.skipped };
    },
    id: (r) => String(r.imgid),
    counts: (rs) => {
      const out: Record<string, number> = { images: rs.length, sentences: sum(rs, (r) => len(r.sentences)) };
      for (const r of rs) out[`split.${r.split}`] = (out[`split.${r.split}`] ?? 0) + 1;
      return out;
    },
  },
  {
    name: "gqa-questions",
    what: "official GQA questions ({qid: {imageId, question, answer, ...}}, e.g. testdev_balanced_questions.json)",
    match: (d) => isObject(d) && has(Object.values(d)[0], "imageId", "question"),
    read: readGqaQuestions,
    id: (r) => String(r.qid),
    counts: (rs) => ({ questions: rs.length, images: distinct(rs, "imageId"), answered: rs.filter((r) => r.answer !== undefined).length }),
  },
  vgFormat("vg-regions", "region descriptions (region_descriptions.json)", readVgRegionDescriptions, "id", "regions", "regions"),
  vgFormat("vg-objects", "objects (objects.json)", readVgObjects, "image_id", "objects", "objects"),
  vgFormat("vg-attributes", "attributes (attributes.json)", readVgAttributes, "image_id", "attributes", "objects"),
  {
    name: "hard-negatives",
    what: "hard negative pool ({train_image_list, train_hard_pool})",
    match: (d) => has(d, "train_image_list", "train_hard_pool"),
    read: (path, opts) => {
      const h = readHardNegatives(path, opts);
      return { records: h.train_image_list.map((id, i) => ({ id, pool: h.train_hard_pool[i] })), skipped: h.skipped };
    },
    id: (r) => String(r.id),
    counts: (rs) => ({ images: rs.length, empty_pools: rs.filter((r) => len(r.pool) === 0).length }),
  },
  {
    name: "answer-vocab",
    what: "answer vocabulary, answer → label (data/vqa/trainval_ans2label.json)",
    match: (d) => isObject(d) && Object.keys(d).length > 0 && Object.values(d).every((v) => Number.isInteger(v)),
    read: (_path, _opts, data) => ({ records: Object.entries(data as Json).map(([answer, label]) => ({ answer, label })), skipped: 0 }),
    id: (r) => `label ${r.label}`,
    counts: (rs) => ({ answers: rs.length }),
    check: (rs) => {
      const outside = rs.filter((r) => (r.label as number) < 0 || (r.label as number) >= rs.length);
      return outside.length === 0 ? [] : [`${outside.length} labels outside [0, ${rs.length}) (answer "${outside[0].answer}": ${outside[0].label})`];
    },
  },
  {
    name: "answer-labels",
    what: "answer vocabulary, label → answer (data/vqa/trainval_label2ans.json)",
    match: (d) => Array.isArray(d) && d.length > 0 && d.every((v) => typeof v === "string"),
    read: (_path, _opts, data) => ({ records: (data as string[]).map((answer, label) => ({ answer, label })), skipped: 0 }),
    id: (r) => `answer "${r.answer}"`,
    counts: (rs) => ({ answers: rs.length }),
  },
];
