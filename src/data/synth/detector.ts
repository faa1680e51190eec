/**
 * A simulated object detector producing LXMERT "obj36" records: real objects first
 * (jittered visible boxes, labels/attributes with confusion noise, confidences falling
 * with occlusion), then duplicate, part and background boxes up to a fixed count.
 * Features come from the pixels of each box only (see features.ts).
 */
import {
  ATTRIBUTE_VOCAB, BACKGROUND_LABEL, CATEGORY_CONFUSIONS, COLOR_CONFUSIONS, OBJECT_VOCAB,
  nearestColor, type Category, type Color,
} from "./catalog.ts";
import { detectorCode, luminance, pixelRect, regionFeatures } from "./features.ts";
import { BG_ID, type Rendered } from "./render.ts";
import { Rng } from "../../engine/rng.ts";
import type { Scene } from "./scene.ts";
import type { Obj36Record } from "../formats/obj36.ts";

export type BoxSource = "object" | "duplicate" | "part" | "background";

export interface Detection {
  label: number;
  labelConf: number;
  attr: number;
  attrConf: number;
  box: [number, number, number, number];
  source: BoxSource;
  /** Scene object the box mostly covers, -1 for background. */
  object: number;
}

export interface DetectorOptions {
  boxes: number;
  featDim: number;
  /**
   * Extra feature values after the `featDim` pixel features: the detector's code of its class and
   * attribute predictions (see detectorCode). 0: pixel features only.
   */
  codeDim?: number;
  /** The generator of the code's noise (kept apart so the boxes and labels do not depend on codeDim). */
  codeRng?: Rng;
  /** Base probability of a wrong category label on a real object. */
  labelNoise?: number;
}

const clamp = (v: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, v));

function noisyCategory(rng: Rng, cat: Category, p: number): number {
  const c = rng.chance(p) ? rng.pick(CATEGORY_CONFUSIONS[cat]) : cat;
  return OBJECT_VOCAB.indexOf(c);
}

function noisyColor(rng: Rng, color: Color, p: number): number {
  const c = rng.chance(p) ? rng.pick(COLOR_CONFUSIONS[color]) : color;
  return ATTRIBUTE_VOCAB.indexOf(c);
}

function jitterBox(rng: Rng, b: readonly number[], amount: number, W: number, H: number): [number, number, number, number] {
  const w = b[2] - b[0];
  const h = b[3] - b[1];
  const x1 = clamp(b[0] + rng.normal() * amount * w, 0, W - 2);
  const y1 = clamp(b[1] + rng.normal() * amount * h, 0, H - 2);
  const x2 = clamp(b[2] + rng.normal() * amount * w, x1 + 2, W);
  const y2 = clamp(b[3] + rng.normal() * amount * h, y1 + 2, H);
  return [x1, y1, x2, y2];
}

/** Which object covers most of the box, its share of the box's pixels, and the box's mean colour. */
function dominantObject(r: Rendered, box: readonly number[]): [number, number, [number, number, number]] {
  const [x0, y0, x1, y1] = pixelRect(box, r.width, r.height);
  const step = Math.max(1, Math.floor(Math.sqrt(((x1 - x0) * (y1 - y0)) / 256)));
  const counts = new Int32Array(256);
  let m0 = 0, m1 = 0, m2 = 0;
  let n = 0;
  let best = BG_ID;
  for (let y = y0; y < y1; y += step) {
    for (let x = x0; x < x1; x += step) {
      const p = y * r.width + x;
      const id = r.ids[p];
      if (++counts[id] > counts[best]) best = id;
      m0 += r.rgb[p * 3];
      m1 += r.rgb[p * 3 + 1];
      m2 += r.rgb[p * 3 + 2];
      n++;
    }
  }
  return [best, counts[best] / n, [m0 / n, m1 / n, m2 / n]];
}

function realDetections(scene: Scene, r: Rendered, rng: Rng, noise: number): Detection[] {
  const out: Detection[] = [];
  scene.objects.forEach((o, k) => {
    const vis = r.visible[k] / Math.max(1, r.drawn[k]);
    if (r.visible[k] < 12 || vis < 0.15) return; // missed by the detector
    const pConfuse = noise + 0.15 * (1 - vis);
    const label = noisyCategory(rng, o.category, pConfuse);
    const attr = noisyColor(rng, o.color, noise * 0.7);
    const right = OBJECT_VOCAB[label] === o.category;
    const base = clamp(0.55 + 0.4 * vis + 0.05 * rng.normal(), 0.3, 0.999);
    out.push({
      label, labelConf: right ? base : base * rng.range(0.45, 0.75),
      attr, attrConf: clamp(0.5 + 0.4 * vis + 0.08 * rng.normal(), 0.2, 0.999) * (ATTRIBUTE_VOCAB[attr] === o.color ? 1 : 0.6),
      box: jitterBox(rng, r.visibleBox[k], 0.05, r.width, r.height), source: "object", object: k,
    });
  });
  return out.sort((a, b) => b.labelConf - a.labelConf);
}

function extraDetection(scene: Scene, r: Rendered, rng: Rng, real: Detection[]): Detection {
  const W = r.width;
  const H = r.height;
  const roll = rng.next();
  let box: [number, number, number, number];
  let source: BoxSource;
  if (real.length > 0 && roll < 0.65) {
    const b = r.visibleBox[rng.pick(real).object];
    if (roll < 0.4) {
      source = "duplicate";
      box = jitterBox(rng, b, 0.18, W, H);
    } else {
      source = "part";
      const w = (b[2] - b[0]) * rng.range(0.35, 0.7);
      const h = (b[3] - b[1]) * rng.range(0.35, 0.7);
      const x = b[0] + rng.next() * (b[2] - b[0] - w);
      const y = b[1] + rng.next() * (b[3] - b[1] - h);
      box = [x, y, Math.max(x + 2, x + w), Math.max(y + 2, y + h)];
    }
  } else {
    source = "background";
    const w = W * rng.range(0.15, 0.5);
    const h = H * rng.range(0.15, 0.5);
    const x = rng.next() * (W - w);
    const y = rng.next() * (H - h);
    box = [x, y, x + w, y + h];
  }
  const [id, share, mean] = dominantObject(r, box);
  const confScale = source === "duplicate" ? 0.6 : source === "part" ? 0.45 : 0.3;
  if (id === BG_ID || share < 0.3) {
    return {
      label: BACKGROUND_LABEL, labelConf: rng.range(0.3, 1) * confScale,
      attr: ATTRIBUTE_VOCAB.indexOf(nearestColor(mean[0], mean[1], mean[2])), attrConf: rng.range(0.1, 0.4),
      box, source, object: -1,
    };
  }
  const o = scene.objects[id];
  return {
    label: noisyCategory(rng, o.category, 0.15), labelConf: rng.range(0.4, 1) * confScale * (0.5 + share / 2),
    attr: noisyColor(rng, o.color, 0.1), attrConf: rng.range(0.3, 0.8) * confScale,
    box, source, object: id,
  };
}

export function detect(scene: Scene, r: Rendered, rng: Rng, imgId: string, opts: DetectorOptions): { record: Obj36Record; detections: Detection[] } {
  const n = opts.boxes;
  const real = realDetections(scene, r, rng, opts.labelNoise ?? 0.06).slice(0, n);
  const extras: Detection[] = [];
  while (real.length + extras.length < n) extras.push(extraDetection(scene, r, rng, real));
  extras.sort((a, b) => b.labelConf - a.labelConf);
  const dets = [...real, ...extras];
  const record: Obj36Record = {
    img_id: imgId, img_h: r.height, img_w: r.width, num_boxes: n,
    objects_id: Int32Array.from(dets, (d) => d.label),
    objects_conf: Float32Array.from(dets, (d) => d.labelConf),
    attrs_id: Int32Array.from(dets, (d) => d.attr),
    attrs_conf: Float32Array.from(dets, (d) => d.attrConf),
    boxes: Float32Array.from(dets.flatMap((d) => d.box)),
    features: new Float32Array(n * (opts.featDim + (opts.codeDim ?? 0))),
  };
  const dim = opts.featDim + (opts.codeDim ?? 0);
  // Features from the stored (float32) boxes, so that a reader can recompute them exactly.
  const lum = luminance(r.rgb, r.width, r.height);
  for (let i = 0; i < n; i++) {
    const box = record.boxes.subarray(i * 4, i * 4 + 4);
    regionFeatures(r.rgb, r.width, r.height, box, opts.featDim, record.features, i * dim, lum);
    if (opts.codeDim) {
      const d = dets[i];
      detectorCode(d.label, d.labelConf, d.attr, d.attrConf, OBJECT_VOCAB.length, ATTRIBUTE_VOCAB.length, opts.codeDim, opts.codeRng ?? rng, record.features, i * dim + opts.featDim);
    }
  }
  return { record, detections: dets };
}
