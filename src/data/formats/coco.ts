// COCO captions (captions_train2014.json / captions_val2014.json):
// {info, licenses, images: [{id, file_name, height, width, ...}], annotations: [{id, image_id, caption}]}.

import {
  type Json, type ReadOptions, int, isObject, optional, parseRecords, readJson, str, topArray, withoutUndefined, writeJson,
  FieldError, relPath,
} from "./util.ts";

export interface CocoImage {
  id: number;
  file_name: string;
  height: number;
  width: number;
  coco_url?: string;
  flickr_url?: string;
  license?: number;
  date_captured?: string;
}

export interface CocoCaption { id: number; image_id: number; caption: string }

export interface CocoCaptions { info?: unknown; licenses?: unknown; images: CocoImage[]; annotations: CocoCaption[] }

const parseImage = (r: Json): CocoImage => withoutUndefined({
  id: int(r, "id"),
  file_name: relPath(r, "file_name"),
  height: int(r, "height"),
  width: int(r, "width"),
  coco_url: optional(r, "coco_url", str),
  flickr_url: optional(r, "flickr_url", str),
  license: optional(r, "license", int),
  date_captured: optional(r, "date_captured", str),
});

const label = (what: string) => (raw: unknown) =>
  isObject(raw) && (typeof raw.id === "number" || typeof raw.id === "string") ? `${what} id ${raw.id}` : what;

/** Record indices in errors count within `images` or `annotations`, as the id label says. */
export function readCocoCaptions(path: string, opts: ReadOptions = {}): CocoCaptions & { skipped: number } {
  const data = readJson(path);
  const images = parseRecords(path, topArray(path, data, "images"), parseImage, { ...opts, id: label("image") });
  const known = new Set(images.records.map((im) => im.id));
  const annotations = parseRecords(path, topArray(path, data, "annotations"), (r) => {
    const a = { id: int(r, "id"), image_id: int(r, "image_id"), caption: str(r, "caption") };
    if (!known.has(a.image_id)) throw new FieldError(`image_id ${a.image_id} is not in "images"`);
    return a;
  }, { ...opts, id: label("annotation") });
  const meta = isObject(data) ? withoutUndefined({ info: data.info, licenses: data.licenses }) : {};
  return { ...meta, images: images.records, annotations: annotations.records, skipped: images.skipped + annotations.skipped };
}

export function writeCocoCaptions(path: string, captions: CocoCaptions): void {
  writeJson(path, withoutUndefined({ info: captions.info, licenses: captions.licenses, images: captions.images, annotations: captions.annotations }));
}

/** Captions grouped by image id, in file order. */
export function captionsByImage(captions: CocoCaptions): Map<number, string[]> {
  const out = new Map<number, string[]>(captions.images.map((im) => [im.id, []]));
  for (const a of captions.annotations) out.get(a.image_id)?.push(a.caption);
  return out;
}
