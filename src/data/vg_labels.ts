// Visual Genome's object names and attributes as image labels: the supervision of the Faster R-CNN
// (bottom-up attention: 1,600 object classes, 400 attribute classes) whose region features LXMERT,
// LXMERT-S and SemVLP read. VLMo's image-only stage can learn them from pixels (recipe
// vlmo.imageTask "vg-labels", src/pretrain/vlmo.ts) where it has no BEiT weights to start from.
// An image's labels are multi-hot over the most frequent names then the most frequent attributes.

import { basename, join } from "node:path";
import { readVgAttributes, readVgImageData } from "./formats/vg.ts";

export interface VgLabelTable {
  /** Object names, most frequent first (ties by name); labels [0, objects.length). */
  objects: string[];
  /** Attributes, most frequent first; labels [objects.length, objects.length + attributes.length). */
  attributes: string[];
  /** The label groups' column ranges [start, end): objects, then attributes. */
  groups: { objects: [number, number]; attributes: [number, number] };
  /** objects.length + attributes.length. */
  size: number;
  /** The multi-hot labels of an image file (as a batch names it: a path or file name), or undefined when Visual Genome does not have it. */
  labelsOf(file: string): Float32Array | undefined;
}

/** The labels' vocabulary sizes of bottom-up attention's detector (Anderson et al. 2018). */
export const VG_LABEL_LIMITS = { objects: 1600, attributes: 400 };

const byCount = (counts: Map<string, number>, limit: number): string[] =>
  [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).slice(0, limit).map(([k]) => k);

/**
 * The label table of a Visual Genome folder (`attributes.json`, `image_data.json`). An image file is
 * found by the file name of its image_data `url` (Visual Genome's own images, the synthetic world),
 * or by its `coco_id` as the trailing number of a COCO file name (COCO_train2014_000000391895.jpg).
 */
export function vgLabelTable(dir: string, limits = VG_LABEL_LIMITS): VgLabelTable {
  const attrFile = join(dir, "attributes.json");
  const images = readVgAttributes(attrFile).records;
  const data = readVgImageData(join(dir, "image_data.json")).records;
  // each image's object names (an object's first) and attributes, normalised, and their counts
  const norm = (x: string) => x.trim().toLowerCase();
  const objCount = new Map<string, number>(), attrCount = new Map<string, number>();
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  const named = images.map((im) => {
    const names = im.attributes.filter((o) => o.names.length).map((o) => norm(o.names[0]));
    const attrs = im.attributes.flatMap((o) => o.attributes.map(norm));
    names.forEach((k) => bump(objCount, k));
    attrs.forEach((k) => bump(attrCount, k));
    return { id: im.image_id, names, attrs };
  });
  const objects = byCount(objCount, limits.objects), attributes = byCount(attrCount, limits.attributes);
  if (!objects.length) throw new Error(`${attrFile}: no object names to learn (${images.length} images)`);
  const O = objects.length, size = O + attributes.length;
  const objIdx = new Map(objects.map((k, i) => [k, i])), attrIdx = new Map(attributes.map((k, i) => [k, O + i]));
  // each image's label columns, sparse (Visual Genome: 108k images, 2,000 labels)
  const labels = new Map(named.map(({ id, names, attrs }) => {
    const on = new Set([...names.map((k) => objIdx.get(k)), ...attrs.map((k) => attrIdx.get(k))].filter((j) => j !== undefined));
    return [id, Int32Array.from(on)];
  }));
  const byFile = new Map<string, number>(), byCoco = new Map<number, number>();
  for (const d of data) {
    byFile.set(basename(d.url), d.image_id);
    if (typeof d.coco_id === "number") byCoco.set(d.coco_id, d.image_id);
  }
  return {
    objects, attributes, size, groups: { objects: [0, O], attributes: [O, size] },
    labelsOf(file) {
      const name = basename(file);
      let id = byFile.get(name);
      if (id === undefined) {
        const m = /(\d+)\.[A-Za-z]+$/.exec(name);
        if (m) id = byCoco.get(Number(m[1]));
      }
      const on = id === undefined ? undefined : labels.get(id);
      if (!on) return undefined;
      const y = new Float32Array(size);
      for (const j of on) y[j] = 1;
      return y;
    },
  };
}
