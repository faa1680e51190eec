/**
 * Hard-negative pools (ViLBERT/LXMERT-S `hard_negative` file): for each train image, the
 * images whose object sets are most similar. Similarity = 2 x shared (colour, category)
 * combinations + shared categories (multiset overlap) - difference in object count.
 */
import { CATEGORIES, COLORS, type Category, type Color } from "./catalog.ts";

export interface ObjectSet {
  categories: Category[];
  colors: Color[];
}

const NC = CATEGORIES.length;

/**
 * pool[i] = [i, then the k most similar other images] (indices into `sets`; index 0 is the
 * image itself, as in ViLBERT's file). Candidates are the images sharing at least two
 * (colour, category) combinations with image i if there are k of them, else at least one,
 * else all images. Ties go to the lower index.
 */
export function hardNegativePools(sets: ObjectSet[], k: number): number[][] {
  const n = sets.length;
  const kk = Math.min(k, n - 1);
  // Per image: dense category counts, distinct categories, object count, distinct combinations.
  const cats = new Uint8Array(n * NC);
  const catStart = new Int32Array(n + 1);
  const catIds: number[] = [];
  const sizes = new Int32Array(n);
  const comboIds: number[][] = [];
  const postings = new Map<number, number[]>();
  sets.forEach((s, i) => {
    const ids = new Set<number>();
    s.categories.forEach((c, j) => {
      const ci = CATEGORIES.indexOf(c);
      cats[i * NC + ci]++;
      ids.add(ci * COLORS.length + COLORS.indexOf(s.colors[j]));
    });
    sizes[i] = s.categories.length;
    catIds.push(...new Set(s.categories.map((c) => CATEGORIES.indexOf(c))));
    catStart[i + 1] = catIds.length;
    comboIds.push([...ids]);
    for (const b of ids) {
      if (!postings.has(b)) postings.set(b, []);
      postings.get(b)!.push(i);
    }
  });
  const catFlat = Int32Array.from(catIds);
  const shared = new Int32Array(n); // combinations shared with the current image
  const cand = new Int32Array(n);
  const bestJ = new Int32Array(kk);
  const bestS = new Int32Array(kk);
  const pools: number[][] = [];
  for (let i = 0; i < n; i++) {
    let nc = 0;
    let twice = 0;
    for (const b of comboIds[i]) {
      for (const j of postings.get(b)!) {
        if (j === i) continue;
        const c = shared[j]++;
        if (c === 0) cand[nc++] = j;
        else if (c === 1) twice++;
      }
    }
    const minShared = twice >= kk ? 2 : nc >= kk ? 1 : 0; // 0: too few candidates, use every image
    const m = minShared === 0 ? n : nc;
    let filled = 0;
    for (let t = 0; t < m; t++) {
      const j = minShared === 0 ? t : cand[t];
      if (j === i || shared[j] < minShared) continue;
      let s = 2 * shared[j] - Math.abs(sizes[i] - sizes[j]);
      for (let q = catStart[j]; q < catStart[j + 1]; q++) {
        const a = cats[i * NC + catFlat[q]];
        const b = cats[j * NC + catFlat[q]];
        s += a < b ? a : b;
      }
      // Insert into the sorted top-k (higher score first, then lower index).
      if (filled === kk && (s < bestS[kk - 1] || (s === bestS[kk - 1] && j > bestJ[kk - 1]))) continue;
      let p = filled < kk ? filled++ : kk - 1;
      while (p > 0 && (s > bestS[p - 1] || (s === bestS[p - 1] && j < bestJ[p - 1]))) {
        bestS[p] = bestS[p - 1];
        bestJ[p] = bestJ[p - 1];
        p--;
      }
      bestS[p] = s;
      bestJ[p] = j;
    }
    for (let t = 0; t < nc; t++) shared[cand[t]] = 0;
    pools.push([i, ...bestJ.subarray(0, filled)]);
  }
  return pools;
}

/**
 * The object sets of a world's images, read back from its Visual Genome attributes file
 * (`vg/attributes.json`: each object's first name is its category, its colour is the attribute
 * that names one), keyed by image id (the file stem, e.g. `synth_00000012`). The world writes the
 * ground truth there for every split, so held-out images get pools by the same rule as train ones.
 */
export function objectSetsFromVg(images: { image_id: number; url?: string }[], attributes: { image_id: number; attributes: { names: string[]; attributes: string[] }[] }[], file = "vg/attributes.json"): Map<string, ObjectSet> {
  const stem = new Map(images.map((im) => [im.image_id, (im.url ?? "").replace(/^.*\//, "").replace(/\.[^.]+$/, "")]));
  const out = new Map<string, ObjectSet>();
  for (const im of attributes) {
    const id = stem.get(im.image_id);
    if (!id) throw new Error(`${file}: image_id ${im.image_id} is not in vg/image_data.json`);
    const set: ObjectSet = { categories: [], colors: [] };
    im.attributes.forEach((o, j) => {
      const cat = o.names[0] as Category;
      const col = o.attributes.find((a) => (COLORS as readonly string[]).includes(a)) as Color | undefined;
      if (!CATEGORIES.includes(cat) || !col) throw new Error(`${file}: image ${im.image_id}, object ${j}: not a synthetic-world object (names ${JSON.stringify(o.names)}, attributes ${JSON.stringify(o.attributes)})`);
      set.categories.push(cat);
      set.colors.push(col);
    });
    out.set(id, set);
  }
  return out;
}
