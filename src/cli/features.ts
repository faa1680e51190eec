/**
 * `vlp features grid --images DIR --out F.regions`: detector-free region features for a folder
 * of images, so that a region-based model (LXMERT-S, SemVLP, MSP) runs on new images. A STAND-IN
 * until a detector exists: k×k grid cells with hand-made colour statistics (gridRegionsFromImage
 * in src/data/regions/grid.ts), not Faster R-CNN regions; the store's header says source "grid".
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { gridRegionsFromImage, RegionStoreWriter } from "../data/regions/index.ts";
import { listImages } from "../data/image_files.ts";
import { ProgressBar } from "./progress.ts";
import { positiveInt } from "./data.ts";

const USAGE = `usage: vlp features grid --images DIR --out F.regions [--k 6] [--dim 2048] [--float16] [--limit N] [--quiet]

Region features without a detector: each image is cut into a k×k grid (6×6 = 36 boxes, like obj36)
and each cell described by colour statistics and histograms (dim values). A stand-in until a
detector exists: a model trained on detector features will not transfer to these.
  --images   a folder of .png/.jpg/.jpeg/.webp images (4 levels deep); img_id = the path under
             DIR without its extension (LXMERT's convention: COCO_val2014_000000000042)
  --out      the vlp.regions store (written to <out>.tmp-<pid>, renamed when complete)
  --float16  store features as float16`;

export async function main(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "--help" || sub === "-h") {
    console.log(USAGE);
    return;
  }
  if (sub !== "grid") throw new Error(`unknown features command "${sub}" (expected: grid)\n${USAGE}`);
  const { values } = parseArgs({
    args: rest,
    options: {
      images: { type: "string" },
      out: { type: "string" },
      k: { type: "string", default: "6" },
      dim: { type: "string", default: "2048" },
      float16: { type: "boolean", default: false },
      limit: { type: "string" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  for (const k of ["images", "out"] as const) if (!values[k]) throw new Error(`--${k} is required\n${USAGE}`);
  const k = positiveInt(values.k!, "--k");
  const dim = positiveInt(values.dim!, "--dim");
  const limit = values.limit === undefined ? Infinity : positiveInt(values.limit, "--limit");
  await writeGridFeatures(values.images!, values.out!, { k, dim, float16: values.float16, limit, quiet: values.quiet });
}

export async function writeGridFeatures(
  dir: string, out: string,
  opts: { k: number; dim: number; float16?: boolean; limit?: number; quiet?: boolean },
): Promise<{ count: number; seconds: number }> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`--images ${dir}: not a folder`);
  const files = listImages(dir).slice(0, opts.limit ?? Infinity);
  if (files.length === 0) throw new Error(`--images ${dir}: no .png/.jpg/.jpeg/.webp files there`);
  const ids = new Map<string, string>();
  for (const f of files) {
    const id = f.slice(0, f.length - path.extname(f).length);
    const prev = ids.get(id);
    if (prev !== undefined) throw new Error(`${dir}: ${prev} and ${f} would both be img_id ${id}`);
    ids.set(id, f);
  }
  const log = (s: string) => {
    if (!opts.quiet) process.stderr.write(`${s}\n`);
  };
  log(`features grid: ${files.length} images, ${opts.k}x${opts.k} cells, dim ${opts.dim}: a detector-free STAND-IN (colour statistics per cell), not detector regions`);
  const t0 = performance.now();
  const writer = new RegionStoreWriter(out, { dim: opts.dim, maxBoxes: opts.k * opts.k, dtype: opts.float16 ? "float16" : "float32", source: "grid" });
  const bar = opts.quiet ? null : new ProgressBar(files.length, { label: "features grid" });
  try {
    for (const [id, f] of ids) {
      const file = path.join(dir, ...f.split("/"));
      writer.add(await gridRegionsFromImage(id, fs.readFileSync(file), { k: opts.k, dim: opts.dim }));
      bar?.tick();
    }
    await writer.close();
  } catch (err) {
    writer.abort();
    throw err;
  }
  bar?.finish();
  const seconds = (performance.now() - t0) / 1000;
  console.log(`${out}: ${writer.count} images, ${opts.k * opts.k} grid boxes each, dim ${opts.dim}, ${writer.dtype} (source "grid") in ${seconds.toFixed(1)} s`);
  return { count: writer.count, seconds };
}
