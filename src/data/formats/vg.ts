// Visual Genome (v1.2 / v1.4 json): region_descriptions.json, objects.json, attributes.json, image_data.json.
// Boxes are pixels: regions use x, y, width, height; objects use x, y, w, h.

import {
  type Json, type ReadOptions, type ReadResult, FieldError, idLabel, int, intList, nested, optional, parseRecords,
  readJson, str, strList, topArray, withoutUndefined, writeJson,
} from "./util.ts";

export interface VgRegion { region_id: number; image_id: number; phrase: string; x: number; y: number; width: number; height: number }
export interface VgRegionImage { id: number; regions: VgRegion[] }

export interface VgObject {
  object_id: number;
  x: number;
  y: number;
  w: number;
  h: number;
  names: string[];
  synsets: string[];
  merged_object_ids?: number[];
}
export interface VgObjectsImage { image_id: number; image_url?: string; objects: VgObject[] }

/** attributes.json: objects may lack "attributes" (read as []) and "synsets". */
export interface VgAttributedObject { object_id: number; x: number; y: number; w: number; h: number; names: string[]; attributes: string[]; synsets?: string[] }
export interface VgAttributesImage { image_id: number; attributes: VgAttributedObject[] }

/** image_data.json: each image's id, address and size; `coco_id` / `flickr_id` null for the images of neither. */
export interface VgImageData { image_id: number; url: string; width: number; height: number; coco_id?: number | null; flickr_id?: number | null }

const box = (r: Json) => ({ x: int(r, "x"), y: int(r, "y"), w: int(r, "w"), h: int(r, "h") });

const parseRegion = (r: Json): VgRegion => ({
  region_id: int(r, "region_id"), image_id: int(r, "image_id"), phrase: str(r, "phrase"),
  x: int(r, "x"), y: int(r, "y"), width: int(r, "width"), height: int(r, "height"),
});

const parseObject = (r: Json): VgObject => withoutUndefined({
  object_id: int(r, "object_id"), ...box(r), names: strList(r, "names"), synsets: strList(r, "synsets"),
  merged_object_ids: optional(r, "merged_object_ids", intList),
});

const parseAttributed = (r: Json): VgAttributedObject => withoutUndefined({
  object_id: int(r, "object_id"), ...box(r), names: strList(r, "names"),
  attributes: optional(r, "attributes", strList) ?? [], synsets: optional(r, "synsets", strList),
});

export function readVgRegionDescriptions(path: string, opts: ReadOptions = {}): ReadResult<VgRegionImage> {
  return parseRecords(path, topArray(path, readJson(path)), (r) => {
    const img = { id: int(r, "id"), regions: nested(r, "regions", parseRegion) };
    const wrong = img.regions.find((g) => g.image_id !== img.id);
    if (wrong) throw new FieldError(`region ${wrong.region_id} has image_id ${wrong.image_id}, expected ${img.id}`);
    return img;
  }, { ...opts, id: idLabel("id") });
}

export function readVgObjects(path: string, opts: ReadOptions = {}): ReadResult<VgObjectsImage> {
  return parseRecords(path, topArray(path, readJson(path)), (r) => withoutUndefined({
    image_id: int(r, "image_id"), image_url: optional(r, "image_url", str), objects: nested(r, "objects", parseObject),
  }), { ...opts, id: idLabel("image_id") });
}

export function readVgAttributes(path: string, opts: ReadOptions = {}): ReadResult<VgAttributesImage> {
  return parseRecords(path, topArray(path, readJson(path)), (r) => ({
    image_id: int(r, "image_id"), attributes: nested(r, "attributes", parseAttributed),
  }), { ...opts, id: idLabel("image_id") });
}

const nullableInt = (r: Json, name: string): number | null => (r[name] === null ? null : int(r, name));

export function readVgImageData(path: string, opts: ReadOptions = {}): ReadResult<VgImageData> {
  return parseRecords(path, topArray(path, readJson(path)), (r) => withoutUndefined({
    // the v1.0 release names the id "id", later ones "image_id"
    image_id: int(r, "image_id" in r ? "image_id" : "id"), url: str(r, "url"), width: int(r, "width"), height: int(r, "height"),
    coco_id: optional(r, "coco_id", nullableInt), flickr_id: optional(r, "flickr_id", nullableInt),
  }), { ...opts, id: idLabel("image_id", "id") });
}

export const writeVgRegionDescriptions = (path: string, images: VgRegionImage[]): void => writeJson(path, images);
export const writeVgObjects = (path: string, images: VgObjectsImage[]): void => writeJson(path, images);
export const writeVgAttributes = (path: string, images: VgAttributesImage[]): void => writeJson(path, images);
