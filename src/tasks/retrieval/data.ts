// Retrieval data: the Karpathy split of a world (images, 5 captions each), the fine-tuning batch
// builder (a loader module: `createBuilder`) and host-side helpers for evaluation (captions
// tokenised once, region features or pixels of a block of images).
//
// Training examples are one per caption (image, caption) of the split. What a batch holds:
//   kind "regions" (SemVLP, LXMERT-S): the caption's tokens and its image's detected regions;
//   kind "pixels"  (VLMo): the caption's tokens and its image's pixels (square resize, mean = std = 0.5);
//   fourWay (LXMERT-S, ViLBERT-style): per example also a random other image (`neg_*` regions), a
//     caption of a hard-negative image from the hard-negative pool file (`hard_*` tokens) and a
//     caption of a random other image (`rand_*` tokens); the step pairs them into
//     (caption, image) (caption, random image) (hard caption, image) (random caption, image).
// Every random choice comes from a PRNG seeded by (seed, step), so a batch is the same wherever
// (main thread or loader worker) and whenever (resume) it is built.
import { join } from "node:path";
import { existsSync } from "node:fs";
import type { BatchBuilder, HostArray, HostArrays } from "../../data/loader.ts";
import type { RetrievalBatch, RetrievalMeta } from "../../data/batches.ts";
import { readKarpathy, karpathySubset } from "../../data/formats/karpathy.ts";
import { readCocoCaptions } from "../../data/formats/coco.ts";
import { readHardNegatives } from "../../data/formats/hardneg.ts";
import type { RegionSource } from "../../data/regions/index.ts";
import { openRegions } from "../../data/regions/index.ts";
import { BertTokenizer } from "../../text/tokenizer.ts";
import { arrowImages, arrowRef, encodeTexts, isArrowRef, regionArrays } from "../data.ts";
import { CaptionArrowReader } from "../../data/formats/arrow.ts";
import { stepRng } from "../../engine/rng.ts";
import { otherIndex } from "../../objectives/sampling.ts";
import { loadImageTensor, VLMO_NORM } from "../../vision/image.ts";

export const RETRIEVAL_DATA_MODULE = new URL("./data.ts", import.meta.url).href;

export interface RetrievalCaption {
  /** Karpathy `sentid`. */
  id: number;
  text: string;
}
export interface RetrievalImage {
  /** The img_id of the region store (file stem, e.g. synth_00000012). */
  id: string;
  file: string;
  captions: RetrievalCaption[];
}

export const RETRIEVAL_SPLITS = ["train", "val", "test", "test_comp"] as const;
export type RetrievalSplit = (typeof RETRIEVAL_SPLITS)[number];

/**
 * The images (with their captions) of a split of a world; `test_comp` reads karpathy/dataset_synth_comp.json.
 * `karpathy`: another Karpathy file of the folder (relative to it), e.g. `karpathy/dataset_emoji.json`.
 */
export function readRetrievalSplit(world: string, split: string, karpathy?: string): RetrievalImage[] {
  if (!(RETRIEVAL_SPLITS as readonly string[]).includes(split)) throw new Error(`retrieval split "${split}": expected one of ${RETRIEVAL_SPLITS.join(", ")}`);
  if (karpathy && split === "test_comp") throw new Error(`retrieval split "test_comp": only the synthetic world has one (not ${karpathy})`);
  const file = join(world, karpathy ?? join("karpathy", split === "test_comp" ? "dataset_synth_comp.json" : "dataset_synth.json"));
  if (!existsSync(file)) throw new Error(`${file}: not found (is ${world} a world written by \`vlp data synth\`?)`);
  const subset = split === "test_comp" ? "test" : (split as "train" | "val" | "test");
  const images = karpathySubset(readKarpathy(file).images, subset).filter((im) => im.sentences.length > 0);
  if (images.length === 0) throw new Error(`${file}: no ${split} images with captions`);
  return images.map((im) => ({
    id: im.filename.replace(/\.[^.]+$/, ""),
    file: im.filepath ? join(im.filepath, im.filename) : im.filename,
    captions: im.sentences.map((s) => ({ id: s.sentid, text: s.raw })),
  }));
}

/**
 * One split of a retrieval source as it ships (src/tasks/sources.ts resolves it from a recipe): a
 * Karpathy split file (images under `images` at Karpathy's filepath/filename, the splits to read) or
 * COCO caption annotations (images at `file_name` under `images`), with region features and a
 * hard-negative pool for the region models; or ViLT/VLMo Arrow caption tables, whose rows hold the
 * images (a RetrievalImage's `file` is then the row's reference `<table>.arrow#<row>`, read by
 * pixelArray when a batch needs it; `images` is the tables' folder).
 */
export interface RetrievalSource {
  format: "karpathy" | "coco-captions" | "vilt-arrow";
  /** karpathy / coco-captions: the annotation file; vilt-arrow: the tables' paths joined by ", " (messages). */
  json: string;
  /** vilt-arrow: ViLT's coco_caption_karpathy_<split>.arrow tables (a row: an image and its captions). */
  tables?: string[];
  images: string;
  /** karpathy: the split names to read (train + restval for training, val, test). */
  splits?: string[];
  /** karpathy: "tokens" trains on the tokens joined by spaces instead of the raw sentence. */
  text?: "tokens";
  regions?: string | string[];
  hardNegatives?: string;
}

/** The images (with captions) of a source's split; img_id is the file name's stem, as in LXMERT's feature files. */
export function readRetrievalSource(s: RetrievalSource): RetrievalImage[] {
  const stem = (f: string) => f.slice(f.lastIndexOf("/") + 1).replace(/\.[^.]+$/, "");
  let images: RetrievalImage[];
  if (s.format === "vilt-arrow") {
    images = [];
    let sentid = 0;
    for (const table of s.tables!) {
      const r = CaptionArrowReader.open(table);
      try {
        for (let i = 0; i < r.numRows; i++) {
          const row = r.row(i);
          // a caption id for the dumps: the captions' running number over the tables (the tables keep no sentid)
          const captions = row.caption.map((text) => ({ id: sentid++, text }));
          if (captions.length > 0) images.push({ id: stem(String(row.image_id)), file: arrowRef(table, i), captions });
        }
      } finally {
        r.close();
      }
    }
    if (images.length === 0) throw new Error(`${s.json}: no images with captions`);
  } else if (s.format === "karpathy") {
    const splits = s.splits ?? ["train"];
    images = readKarpathy(s.json).images.filter((im) => splits.includes(im.split) && im.sentences.length > 0).map((im) => ({
      id: stem(im.filename),
      file: im.filepath ? join(im.filepath, im.filename) : im.filename,
      captions: im.sentences.map((x) => ({ id: x.sentid, text: s.text === "tokens" ? x.tokens.join(" ") : x.raw })),
    }));
    if (images.length === 0) throw new Error(`${s.json}: no images with captions in split ${splits.join(" + ")}`);
  } else {
    const coco = readCocoCaptions(s.json);
    const byImage = new Map<number, RetrievalCaption[]>();
    for (const a of coco.annotations) {
      if (!byImage.has(a.image_id)) byImage.set(a.image_id, []);
      byImage.get(a.image_id)!.push({ id: a.id, text: a.caption });
    }
    images = coco.images.filter((im) => byImage.has(im.id)).map((im) => ({ id: stem(im.file_name), file: im.file_name, captions: byImage.get(im.id)! }));
    if (images.length === 0) throw new Error(`${s.json}: no images with captions`);
  }
  const seen = new Set<string>();
  for (const im of images) {
    if (seen.has(im.id)) throw new Error(`${s.json}: two images named ${im.id} (the img_id of the region features is the file name's stem)`);
    seen.add(im.id);
  }
  return images;
}

/** Captions flattened in image order, with the caption -> image index map the metrics need. */
export interface EvalSet {
  images: RetrievalImage[];
  captions: (RetrievalCaption & { image: number })[];
  captionImage: Int32Array;
}

/** The evaluation set of a split; `limit` keeps the first N images (and all their captions). */
export function evalSet(images: RetrievalImage[], limit?: number): EvalSet {
  const kept = limit ? images.slice(0, limit) : images;
  const captions = kept.flatMap((im, i) => im.captions.map((c) => ({ ...c, image: i })));
  return { images: kept, captions, captionImage: Int32Array.from(captions, (c) => c.image) };
}

// ---- host arrays ---------------------------------------------------------------------------------

let arrow: ReturnType<typeof arrowImages> | undefined;

/**
 * Pixels [n, 3, S, S] of image files (square resize, VLMo's normalisation); a file that is an Arrow
 * row reference (`<table>.arrow#<row>`) is the row's image, read from the table (kept open).
 */
export async function pixelArray(imagesDir: string, files: string[], size: number): Promise<HostArray> {
  const data = new Float32Array(files.length * 3 * size * size);
  const load = (f: string) => {
    if (!isArrowRef(f)) return loadImageTensor(join(imagesDir, f), { mode: "square", size }, VLMO_NORM);
    arrow ??= arrowImages();
    return loadImageTensor(arrow.bytes(f), { mode: "square", size }, VLMO_NORM, arrow.name(f));
  };
  const loaded = await Promise.all(files.map(load));
  loaded.forEach((img, k) => data.set(img.data, k * 3 * size * size));
  return { data, shape: [files.length, 3, size, size], dtype: "float32" };
}

/** Host arrays renamed with a prefix ("neg_", "hard_", "rand_"), keys typed as the batch names them. */
function prefixed<P extends string, T extends { [K in keyof T]: HostArray }>(prefix: P, arrays: T): { [K in keyof T & string as `${P}${K}`]: HostArray } {
  return Object.fromEntries(Object.entries(arrays as Record<string, HostArray>).map(([k, v]) => [`${prefix}${k}`, v])) as { [K in keyof T & string as `${P}${K}`]: HostArray };
}

// ---- the fine-tuning batch builder -----------------------------------------------------------------

export interface RetrievalDataArgs {
  /** A synthetic world and its split (or `source`). */
  world?: string;
  split?: RetrievalSplit;
  /** A split of a data source (instead of world + split). */
  source?: RetrievalSource;
  kind: "regions" | "pixels";
  maxTextLen: number;
  seed: number;
  /** regions: obj36 TSV or `.regions` store (default <world>/features/obj36.tsv). */
  regions?: string | string[];
  maxBoxes?: number;
  /** pixels: side of the square input. */
  imageSize?: number;
  /** LXMERT-S four pairs per example; `hardPool` is the hard-negative file (default <world>/hardneg/hard_negative.json). */
  fourWay?: { hardPool?: string };
}

const rngFor = (seed: number, step: number) => stepRng(seed, step, 0x5bd1e995);

export type { RetrievalBatch, RetrievalMeta };

export async function createBuilder(a: RetrievalDataArgs): Promise<BatchBuilder<RetrievalBatch, RetrievalMeta>> {
  const images = a.source ? readRetrievalSource(a.source) : readRetrievalSplit(a.world!, a.split!);
  const imageRoot = a.source ? a.source.images : join(a.world!, "images");
  const regionPath = a.regions ?? a.source?.regions ?? join(a.world ?? "", "features", "obj36.tsv");
  // caption-major order (every image's first caption, then every image's second, ...): consecutive
  // examples show different images, so in-order (evaluation) batches have no repeated image
  const examples: { image: number; text: string }[] = [];
  const most = Math.max(...images.map((im) => im.captions.length));
  for (let c = 0; c < most; c++) images.forEach((im, i) => c < im.captions.length && examples.push({ image: i, text: im.captions[c].text }));
  const tok = BertTokenizer.load();
  const L = a.maxTextLen;
  let regions: RegionSource | null = null;
  if (a.kind === "regions") {
    if (a.source && !a.regions && !a.source.regions) throw new Error(`${a.source.json}: region features are needed (the source's regions key)`);
    regions = await openRegions(regionPath);
    const known = new Set(regions.ids());
    const missing = images.find((im) => !known.has(im.id));
    if (missing) throw new Error(`${[regionPath].flat().join(", ")}: no regions for img_id ${missing.id}`);
  }
  if (a.fourWay && images.length < 2) throw new Error(`retrieval ${a.split ?? a.source!.json}: the four-pair construction needs at least 2 images`);
  // hard-negative pool: image index -> indices of its hard negatives within this split (itself excluded)
  let hard: number[][] | null = null;
  if (a.fourWay) {
    const file = a.fourWay.hardPool ?? (a.source ? a.source.hardNegatives : join(a.world!, "hardneg", "hard_negative.json"));
    // a source without a pool: every "hard" negative is a random other image
    const hn = file ? readHardNegatives(file) : { train_image_list: [], train_hard_pool: [] };
    const byId = new Map(images.map((im, i) => [im.id, i]));
    const rows = new Map(hn.train_image_list.map((id, r) => [String(id), hn.train_hard_pool[r]]));
    hard = images.map((im, i) => (rows.get(im.id) ?? [])
      .map((j) => byId.get(String(hn.train_image_list[j])))
      .filter((j): j is number => j !== undefined && j !== i));
  }
  const maxBoxes = a.maxBoxes ?? 36;
  return {
    length: examples.length,
    async build(indices: number[], step: number) {
      const rng = rngFor(a.seed, step);
      const exs = indices.map((i) => examples[i]);
      const imgIdx = exs.map((e) => e.image);
      const arrays: HostArrays<RetrievalBatch> = {
        ...encodeTexts(tok, exs.map((e) => e.text), L),
        img_index: { data: BigInt64Array.from(imgIdx, BigInt), shape: [exs.length], dtype: "int64" },
      };
      const meta: RetrievalMeta = { imgIds: imgIdx.map((i) => images[i].id) };
      if (a.kind === "regions") Object.assign(arrays, regionArrays(regions!, imgIdx.map((i) => images[i].id), maxBoxes));
      else arrays.pixels = await pixelArray(imageRoot, imgIdx.map((i) => images[i].file), a.imageSize ?? 224);
      if (hard) {
        const pick = (i: number) => images[i].captions[rng.int(images[i].captions.length)].text;
        const negImg = imgIdx.map((i) => otherIndex(rng, images.length, i));
        const hardImg = imgIdx.map((i) => (hard![i].length ? hard![i][rng.int(hard![i].length)] : otherIndex(rng, images.length, i)));
        const randCapImg = imgIdx.map((i) => otherIndex(rng, images.length, i));
        Object.assign(arrays, prefixed("neg_", regionArrays(regions!, negImg.map((i) => images[i].id), maxBoxes)));
        Object.assign(arrays, prefixed("hard_", encodeTexts(tok, hardImg.map(pick), L)));
        Object.assign(arrays, prefixed("rand_", encodeTexts(tok, randCapImg.map(pick), L)));
        Object.assign(meta, {
          negImgIds: negImg.map((i) => images[i].id),
          hardImgIds: hardImg.map((i) => images[i].id),
          hardFromPool: imgIdx.map((i) => hard![i].length > 0),
          randCapImgIds: randCapImg.map((i) => images[i].id),
        });
      }
      return { arrays, meta };
    },
  };
}
