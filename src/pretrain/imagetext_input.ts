// The images and captions VLMo's image-text builder reads, from the layouts they ship in: a
// Karpathy split file + image root (COCO's dataset_coco.json, Flickr30k's, the synthetic world's),
// COCO caption annotations + image root, ViLT/VLMo Arrow caption tables (images embedded), or
// WebDataset tar shards (streamed: see imagetext_stream.ts). Parsing is the readers'
// (src/data/formats); this module only picks the split, the text and the example order.
//
// Memory: Karpathy and COCO files are JSON read whole (as their readers do). Arrow tables are
// never held: an example is a (row, caption) pair in two typed arrays (8 bytes a caption), its
// caption and image are read from the table when a batch is built (the reader caches the text
// buffers of two record batches), so a pass over a 20,000-image table holds what a 2,000-image one does.
import { join, basename } from "node:path";
import { readKarpathy, type KarpathyImage } from "../data/formats/karpathy.ts";
import { readCocoCaptions, captionsByImage } from "../data/formats/coco.ts";
import { CaptionArrowReader } from "../data/formats/arrow.ts";
import { interleaveByImage } from "./examples.ts";

/** Where a builder's images and captions are (plain data: it crosses to the loader's worker threads). */
export type ImageTextInput =
  | { format: "karpathy"; json: string; images: string; splits: string[]; text?: "raw" | "tokens" }
  | { format: "coco-captions"; json: string; images: string }
  | { format: "vilt-arrow"; tables: string[] }
  | WebDatasetInput;

/**
 * WebDataset shards (uncompressed tar; names already brace-expanded), streamed a shard at a time
 * (`streamImageText`): `text` is the caption file's extension (its lines are the captions; a
 * `.json` extension reads the "caption" field, or "captions" list), `image` the image extensions
 * tried in order, `shuffleBuffer` the size of the seeded shuffle buffer (0: file order).
 */
export interface WebDatasetInput {
  format: "webdataset";
  shards: string[];
  text: string;
  image: string[];
  shuffleBuffer: number;
}

/** One image with its captions; `image()` gives the encoded image, a file path or the bytes of an Arrow row. */
export interface ImageTextItem {
  /** Unique within the input: the file (relative to the image root) or `<table>.arrow#<row>`. */
  key: string;
  captions: string[];
  image(): string | Uint8Array;
}

/**
 * A builder's examples, by index: one per image ("image") or one per caption ("caption"); in file
 * order, or "interleaved" (a held-out split in caption-major order: interleaveByImage).
 */
export interface ImageTextExamples {
  readonly length: number;
  /** The image's key (file or `<table>.arrow#<row>`). */
  key(i: number): string;
  /** The caption ("" for an image example). */
  text(i: number): string;
  /** The encoded image: a file path or bytes. */
  image(i: number): string | Uint8Array;
}

/** The image path of a Karpathy entry: COCO's carry the folder in `filepath` (train2014/val2014). */
function karpathyPath(root: string, im: KarpathyImage): string {
  return join(root, im.filepath ?? "", im.filename);
}

function karpathyItems(a: Extract<ImageTextInput, { format: "karpathy" }>): ImageTextItem[] {
  const images = readKarpathy(a.json).images.filter((im) => a.splits.includes(im.split));
  return images.map((im) => ({
    key: join(im.filepath ?? "", im.filename),
    captions: im.sentences.map((s) => (a.text === "tokens" ? s.tokens.join(" ") : s.raw)),
    image: () => karpathyPath(a.images, im),
  }));
}

function cocoItems(a: Extract<ImageTextInput, { format: "coco-captions" }>): ImageTextItem[] {
  const coco = readCocoCaptions(a.json);
  const captions = captionsByImage(coco);
  return coco.images.map((im) => ({ key: im.file_name, captions: captions.get(im.id) ?? [], image: () => join(a.images, im.file_name) }));
}

/** Examples over items held in memory (Karpathy, COCO). */
function itemExamples(items: ImageTextItem[], per: "image" | "caption", order: "file" | "interleaved"): ImageTextExamples {
  const ex = per === "image"
    ? items.map((item) => ({ item, text: "" }))
    : items.flatMap((item) => item.captions.map((text) => ({ item, text })));
  const list = per === "caption" && order === "interleaved" ? interleaveByImage(ex, (e) => e.item.key) : ex;
  return { length: list.length, key: (i) => list[i].item.key, text: (i) => list[i].text, image: (i) => list[i].item.image() };
}

/**
 * Examples of Arrow caption tables: (row, caption) pairs in typed arrays over open readers; the
 * caption counts are read once (text columns only), captions and images on demand.
 */
function arrowExamples(a: Extract<ImageTextInput, { format: "vilt-arrow" }>, per: "image" | "caption", order: "file" | "interleaved"): ImageTextExamples {
  // the readers stay open for the builder's life: rows are read from them on demand
  const readers = a.tables.map((path) => CaptionArrowReader.open(path));
  const starts = new Int32Array(readers.length + 1);
  readers.forEach((r, t) => (starts[t + 1] = starts[t] + r.numRows));
  const rows = starts[readers.length];
  const counts = new Int32Array(rows);
  for (let t = 0, g = 0; t < readers.length; t++) for (let i = 0; i < readers[t].numRows; i++) counts[g++] = per === "image" ? 1 : readers[t].row(i).caption.length;
  let total = 0;
  for (let g = 0; g < rows; g++) total += counts[g];
  const rowOf = new Int32Array(total);
  const capOf = new Int32Array(total);
  let k = 0;
  const push = (g: number, c: number) => {
    rowOf[k] = g;
    capOf[k++] = c;
  };
  if (order === "file" || per === "image") {
    for (let g = 0; g < rows; g++) for (let c = 0; c < counts[g]; c++) push(g, c);
  } else {
    // interleaveByImage over rows (each row its own image): round r takes caption (r + row) mod count of every row with more than r
    let max = 0;
    for (let g = 0; g < rows; g++) max = Math.max(max, counts[g]);
    for (let r = 0; r < max; r++) for (let g = 0; g < rows; g++) if (r < counts[g]) push(g, (r + g) % counts[g]);
  }
  const locate = (g: number): [CaptionArrowReader, number, string] => {
    let t = 0;
    while (starts[t + 1] <= g) t++;
    return [readers[t], g - starts[t], a.tables[t]];
  };
  return {
    length: total,
    key: (i) => {
      const [, row, path] = locate(rowOf[i]);
      return `${basename(path)}#${row}`;
    },
    text: (i) => {
      if (per === "image") return "";
      const [r, row] = locate(rowOf[i]);
      return r.row(row).caption[capOf[i]];
    },
    image: (i) => {
      const [r, row] = locate(rowOf[i]);
      return r.image(row);
    },
  };
}

/** The items of a Karpathy or COCO input, in file order. */
export function readImageText(a: ImageTextInput): ImageTextItem[] {
  if (a.format === "karpathy") return karpathyItems(a);
  if (a.format === "coco-captions") return cocoItems(a);
  throw new Error(`readImageText: ${a.format} inputs are read by index (imageTextExamples) or streamed`);
}

/** The examples of an input by index; an input with none is an error naming its files. WebDataset inputs are streamed instead. */
export function imageTextExamples(a: ImageTextInput, per: "image" | "caption", order: "file" | "interleaved"): ImageTextExamples {
  if (a.format === "webdataset") throw new Error("imageTextExamples: a webdataset input is streamed (streamImageText)");
  const ex = a.format === "vilt-arrow" ? arrowExamples(a, per, order) : itemExamples(readImageText(a), per, order);
  if (ex.length === 0) {
    const what = a.format === "karpathy" ? `${a.json}: no images in split ${a.splits.join(" + ")}` : a.format === "coco-captions" ? `${a.json}: no images` : `${a.tables.join(", ")}: no rows`;
    throw new Error(what);
  }
  return ex;
}
