// Building an index: embed a collection of images (a folder, or a dataset's Karpathy split file
// with its captions) with a checkpoint's dual encoder and store the vectors. Incremental: ids
// already in the index are skipped, so re-running over a grown folder embeds only the new images.
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { readKarpathy, karpathySubset } from "../data/formats/karpathy.ts";
import { IMAGE_EXTS, listImages } from "../data/image_files.ts";
import { loadImageTensor, VLMO_NORM } from "../vision/image.ts";
import { Inference, type ServedModel } from "./model.ts";
import { VectorIndex, type IndexDType } from "./vindex.ts";

export { IMAGE_EXTS, listImages };

export interface Collection {
  /** Folder the image ids are relative to. */
  root: string;
  /** Image ids ("/"-separated paths under root). */
  images: string[];
  /** Captions (dataset input only): id "<image id>#<k>". */
  captions: { id: string; text: string }[];
}

/**
 * What `--images` names: a folder of images; a dataset folder (a synthetic world: karpathy/*.json
 * + images/); or a Karpathy split JSON (images under `imageRoot`, default `<json dir>/../images`).
 * `split` filters a dataset's images (train includes restval; "all" keeps every split).
 */
export function resolveCollection(input: string, o: { split?: "train" | "val" | "test" | "all"; imageRoot?: string; limit?: number } = {}): Collection {
  const p = resolve(input);
  if (!existsSync(p)) throw new Error(`--images ${input}: not found`);
  let json: string | null = null;
  let root: string;
  if (statSync(p).isFile()) {
    if (!p.endsWith(".json")) throw new Error(`--images ${input}: expected a folder of images, a dataset folder or a Karpathy split JSON`);
    json = p;
    root = resolve(o.imageRoot ?? join(dirname(p), "..", "images"));
  } else {
    const kdir = join(p, "karpathy");
    const found = existsSync(kdir) ? readdirSync(kdir).filter((f) => f.endsWith(".json")).sort() : [];
    if (found.length > 0) {
      json = join(kdir, found[0]);
      root = resolve(o.imageRoot ?? join(p, "images"));
    } else {
      root = p;
    }
  }
  if (!json) {
    const images = listImages(root).slice(0, o.limit ?? Infinity);
    if (images.length === 0) throw new Error(`--images ${input}: no .png/.jpg/.jpeg/.webp files there`);
    return { root, images, captions: [] };
  }
  if (!existsSync(root)) throw new Error(`${json}: image folder ${root} not found (give --image-root)`);
  const ds = readKarpathy(json);
  const split = o.split ?? "all";
  const chosen = (split === "all" ? ds.images : karpathySubset(ds.images, split)).slice(0, o.limit ?? Infinity);
  if (chosen.length === 0) throw new Error(`${json}: no images in split ${split}`);
  const images: string[] = [];
  const captions: Collection["captions"] = [];
  for (const im of chosen) {
    const id = [im.filepath, im.filename].filter(Boolean).join("/");
    images.push(id);
    im.sentences.forEach((s, k) => captions.push({ id: `${id}#${k}`, text: s.raw }));
  }
  return { root, images, captions };
}

export interface BuildOptions {
  out: string;
  dtype?: IndexDType;
  /** Images per forward pass (default 64); texts go 4x that. */
  batch?: number;
  /** Rows buffered before each write to the index (default 4096). */
  flushEvery?: number;
  captions?: boolean;
  onProgress?: (kind: "images" | "captions", done: number, total: number) => void;
}

export interface BuildSummary {
  added: { images: number; captions: number };
  skipped: { images: number; captions: number };
  total: { images: number; captions: number };
  seconds: { images: number; captions: number };
  dtype: IndexDType;
  dim: number;
}

/** Embed a collection into the index at `out` (created, or extended when it is there). */
export async function buildIndex(served: ServedModel, col: Collection, o: BuildOptions): Promise<BuildSummary> {
  const inf = new Inference(served);
  let index: VectorIndex;
  if (existsSync(join(o.out, "index.json"))) {
    index = VectorIndex.open(o.out);
    const m = index.manifest;
    if (resolve(m.checkpoint) !== served.dir) throw new Error(`${o.out}: an index of checkpoint ${m.checkpoint}; cannot add vectors of ${served.dir} (another --out, or the same checkpoint)`);
    if (m.imagesRoot && resolve(m.imagesRoot) !== col.root) throw new Error(`${o.out}: its images are under ${m.imagesRoot}, not ${col.root}`);
    if (o.dtype && o.dtype !== m.dtype) throw new Error(`${o.out}: a ${m.dtype} index, --dtype ${o.dtype} asked`);
  } else {
    index = VectorIndex.create(o.out, { checkpoint: served.dir, model: served.model.config.name, dim: inf.dim, dtype: o.dtype ?? "float32", imagesRoot: col.root });
  }
  const batch = o.batch ?? 64;
  const flushEvery = o.flushEvery ?? 4096;
  const S = inf.imageSize;
  const summary: BuildSummary = { added: { images: 0, captions: 0 }, skipped: { images: 0, captions: 0 }, total: { images: 0, captions: 0 }, seconds: { images: 0, captions: 0 }, dtype: index.dtype, dim: index.dim };
  try {
    // images: decode the next batch (sharp's threads) while the model embeds this one
    const imgPart = index.part("image");
    const todo = col.images.filter((id) => !imgPart?.has(id));
    summary.skipped.images = col.images.length - todo.length;
    let t0 = performance.now();
    const load = (ids: string[]) => Promise.all(ids.map((id) => loadImageTensor(join(col.root, ...id.split("/")), { mode: "square", size: S }, VLMO_NORM).then((c) => c.data)));
    let pending: { ids: string[]; rows: Float32Array[] } = { ids: [], rows: [] };
    const flush = (part: string, texts?: string[]) => {
      if (pending.ids.length === 0) return;
      const d = inf.dim;
      const flat = new Float32Array(pending.rows.length * d);
      pending.rows.forEach((r, i) => flat.set(r, i * d));
      index.add(part, flat, pending.ids, texts);
      pending = { ids: [], rows: [] };
    };
    o.onProgress?.("images", 0, todo.length);
    let next = todo.length > 0 ? load(todo.slice(0, batch)) : null;
    for (let i = 0; i < todo.length; i += batch) {
      const ids = todo.slice(i, i + batch);
      const px = await next!;
      next = i + batch < todo.length ? load(todo.slice(i + batch, i + 2 * batch)) : null;
      const emb = inf.embedImages(px);
      pending.ids.push(...ids);
      pending.rows.push(...emb);
      if (pending.ids.length >= flushEvery) flush("image");
      summary.added.images += ids.length;
      o.onProgress?.("images", summary.added.images, todo.length);
    }
    flush("image");
    summary.seconds.images = (performance.now() - t0) / 1000;
    summary.total.images = index.part("image")?.count ?? 0;

    // captions
    if (o.captions !== false && col.captions.length > 0) {
      t0 = performance.now();
      const txtPart = index.part("text");
      const caps = col.captions.filter((c) => !txtPart?.has(c.id));
      summary.skipped.captions = col.captions.length - caps.length;
      let texts: string[] = [];
      o.onProgress?.("captions", 0, caps.length);
      for (let i = 0; i < caps.length; i += batch * 4) {
        const chunk = caps.slice(i, i + batch * 4);
        const emb = inf.embedTexts(chunk.map((c) => c.text));
        pending.ids.push(...chunk.map((c) => c.id));
        pending.rows.push(...emb);
        texts.push(...chunk.map((c) => c.text));
        if (pending.ids.length >= flushEvery) {
          flush("text", texts);
          texts = [];
        }
        summary.added.captions += chunk.length;
        o.onProgress?.("captions", summary.added.captions, caps.length);
      }
      flush("text", texts);
      summary.seconds.captions = (performance.now() - t0) / 1000;
    }
    summary.total.captions = index.part("text")?.count ?? 0;
  } finally {
    index.dispose();
  }
  return summary;
}
