// Karpathy split files (dataset_coco.json / dataset_flickr30k.json):
// {images: [{filename, filepath?, imgid, split, sentids, sentences: [{raw, tokens, imgid, sentid}], cocoid?}], dataset}.

import {
  type Json, type ReadOptions, FieldError, int, intList, nested, optional, parseRecords, readJson, str, strList, topArray,
  topObject, withoutUndefined, writeJson, idLabel, relPath,
} from "./util.ts";

export type KarpathySplit = "train" | "val" | "test" | "restval";
const SPLITS: ReadonlySet<string> = new Set(["train", "val", "test", "restval"]);

export interface KarpathySentence { raw: string; tokens: string[]; imgid: number; sentid: number }

export interface KarpathyImage {
  filename: string;
  filepath?: string;
  imgid: number;
  split: KarpathySplit;
  sentids: number[];
  sentences: KarpathySentence[];
  cocoid?: number;
}

export interface KarpathyDataset { dataset: string; images: KarpathyImage[] }

const parseSentence = (r: Json): KarpathySentence => ({
  raw: str(r, "raw"), tokens: strList(r, "tokens"), imgid: int(r, "imgid"), sentid: int(r, "sentid"),
});

const parseImage = (r: Json): KarpathyImage => {
  const split = str(r, "split");
  if (!SPLITS.has(split)) throw new FieldError(`field "split" should be train, val, test or restval, got "${split}"`);
  const img = withoutUndefined({
    filename: relPath(r, "filename"),
    filepath: optional(r, "filepath", relPath),
    imgid: int(r, "imgid"),
    split: split as KarpathySplit,
    sentids: intList(r, "sentids"),
    sentences: nested(r, "sentences", parseSentence),
    cocoid: optional(r, "cocoid", int),
  });
  if (img.sentids.length !== img.sentences.length || img.sentences.some((s, i) => s.sentid !== img.sentids[i])) {
    throw new FieldError(`"sentids" ${JSON.stringify(img.sentids)} do not match the sentences' sentid values`);
  }
  return img;
};

export function readKarpathy(path: string, opts: ReadOptions = {}): KarpathyDataset & { skipped: number } {
  const data = topObject(path, readJson(path));
  const dataset = data.dataset;
  if (typeof dataset !== "string") throw new Error(`${path}: missing top-level string "dataset"`);
  const res = parseRecords(path, topArray(path, data, "images"), parseImage, { ...opts, id: idLabel("filename", "imgid") });
  return { dataset, images: res.records, skipped: res.skipped };
}

export function writeKarpathy(path: string, ds: KarpathyDataset): void {
  writeJson(path, { images: ds.images, dataset: ds.dataset });
}

/** The standard subsets: train = train + restval (COCO's 113k), val, test. */
export function karpathySubset(images: KarpathyImage[], subset: "train" | "val" | "test"): KarpathyImage[] {
  return images.filter((im) => im.split === subset || (subset === "train" && im.split === "restval"));
}
