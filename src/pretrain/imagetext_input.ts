// The images and captions VLMo's image-text builder reads, from the layouts they ship in: a
// Karpathy split file + image root (COCO's dataset_coco.json, Flickr30k's, the synthetic world's),
// COCO caption annotations + image root, or ViLT/VLMo Arrow caption tables (images embedded).
// Parsing is the readers' (src/data/formats); this module only picks the split and the text.
import { join, basename } from "node:path";
import { readKarpathy, type KarpathyImage } from "../data/formats/karpathy.ts";
import { readCocoCaptions, captionsByImage } from "../data/formats/coco.ts";
import { CaptionArrowReader } from "../data/formats/arrow.ts";

/** Where a builder's images and captions are (plain data: it crosses to the loader's worker threads). */
export type ImageTextInput =
  | { format: "karpathy"; json: string; images: string; splits: string[]; text?: "raw" | "tokens" }
  | { format: "coco-captions"; json: string; images: string }
  | { format: "vilt-arrow"; tables: string[] };

/** One image with its captions; `image()` gives the encoded image, a file path or the bytes of an Arrow row. */
export interface ImageTextItem {
  /** Unique within the input: the file (relative to the image root) or `<table>.arrow#<row>`. */
  key: string;
  captions: string[];
  image(): string | Uint8Array;
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

function arrowItems(a: Extract<ImageTextInput, { format: "vilt-arrow" }>): ImageTextItem[] {
  return a.tables.flatMap((path) => {
    // the reader stays open for the builder's life: images are read from it on demand
    const reader = CaptionArrowReader.open(path);
    const items: ImageTextItem[] = [];
    for (let i = 0; i < reader.numRows; i++) {
      const row = i;
      items.push({ key: `${basename(path)}#${row}`, captions: reader.row(row).caption, image: () => reader.image(row) });
    }
    return items;
  });
}

/** The items of an input, in file order; an input with none is an error naming its files. */
export function readImageText(a: ImageTextInput): ImageTextItem[] {
  const items = a.format === "karpathy" ? karpathyItems(a) : a.format === "coco-captions" ? cocoItems(a) : arrowItems(a);
  if (items.length === 0) {
    const what = a.format === "karpathy" ? `${a.json}: no images in split ${a.splits.join(" + ")}` : a.format === "coco-captions" ? `${a.json}: no images` : `${a.tables.join(", ")}: no rows`;
    throw new Error(what);
  }
  return items;
}
