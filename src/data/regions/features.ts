/**
 * The region-feature record every source yields (`RegionFeatures`), the interface of a source
 * (`RegionSource`), and the conversions shared by the sources: pixel boxes to the normalised boxes
 * LXMERT's box encoder takes, an obj36 TSV record to `RegionFeatures`.
 */
import { featureDim, type Obj36Record } from "../formats/obj36.ts";

export interface RegionFeatures {
  imgId: string;
  imgH: number;
  imgW: number;
  numBoxes: number;
  /** feature dimension D (features.length / numBoxes) */
  dim: number;
  /** numBoxes*4, pixels (x1, y1, x2, y2) */
  boxes: Float32Array;
  /** numBoxes*4, (x1/W, y1/H, x2/W, y2/H) as LXMERT feeds its box encoder */
  normBoxes: Float32Array;
  /** numBoxes*D */
  features: Float32Array;
  /** object class per box, -1 = no label */
  objectsId: Int32Array;
  objectsConf: Float32Array;
  /** attribute class per box, -1 = no label */
  attrsId: Int32Array;
  attrsConf: Float32Array;
}

export interface RegionSource {
  ids(): string[];
  get(imgId: string): RegionFeatures;
  /** Where an image's record is, for messages: "<file>: line 17 (img_id X)" or "<file>: record 3 (img_id X)". */
  where(imgId: string): string;
  close(): void;
}

export function normalizeBoxes(boxes: Float32Array, imgW: number, imgH: number): Float32Array {
  const out = new Float32Array(boxes.length);
  for (let i = 0; i < boxes.length; i += 4) {
    out[i] = boxes[i] / imgW;
    out[i + 1] = boxes[i + 1] / imgH;
    out[i + 2] = boxes[i + 2] / imgW;
    out[i + 3] = boxes[i + 3] / imgH;
  }
  return out;
}

/**
 * A TSV record as region features. `fileDim` is the file's feature dimension, given to a
 * 0-box row (whose own features say nothing about it) so that it reports the same `dim`
 * as the other rows and as a `RegionStore` made from the file.
 */
export function fromObj36(rec: Obj36Record, fileDim?: number): RegionFeatures {
  return {
    imgId: rec.img_id,
    imgH: rec.img_h,
    imgW: rec.img_w,
    numBoxes: rec.num_boxes,
    dim: rec.num_boxes === 0 ? fileDim ?? 0 : featureDim(rec),
    boxes: rec.boxes,
    normBoxes: normalizeBoxes(rec.boxes, rec.img_w, rec.img_h),
    features: rec.features,
    objectsId: rec.objects_id,
    objectsConf: rec.objects_conf,
    attrsId: rec.attrs_id,
    attrsConf: rec.attrs_conf,
  };
}
