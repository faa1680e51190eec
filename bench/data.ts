/**
 * Region-feature random-access benchmark.
 *
 *   node --import tsx bench/data.ts [--images 10000] [--reads 10000] [--keep]
 *
 * Writes vlp.regions stores of 1k and N (default 10k) images, 36 boxes x 2048-d,
 * float16 and float32, plus a 1k-image obj36 TSV for comparison, in a temp dir.
 * Each store is then read in a fresh child process (so peak RSS is per store):
 * `--reads` random-order `get`s, timing samples/s and sampling RSS. Files were just
 * written, so reads are mostly served from the page cache (not controlled: nothing is
 * dropped or pinned); page-cache pages are not part of the process RSS. The load
 * average is printed because other processes on the machine change the numbers a lot.
 *
 *   node --import tsx bench/data.ts --streams [--images 20000] [--world DIR] [--keep]
 *
 * Streaming sources instead: a ViLT/VLMo caption Arrow table and WebDataset shards
 * (1,000 samples each) of 2k and N (default 20k) images, each passed over once in a
 * fresh child process, printing peak RSS and the ratio of peak RSS at N to 2k. Two
 * passes per source: the reader alone (CaptionArrowReader / WdsReader: every row's text
 * and image bytes touched) and VLMo's image-text pipeline (the `vilt-arrow` and
 * `webdataset` inputs of src/pretrain/imagetext.ts building batches of 32 image-caption
 * pairs at 48 px, every image decoded and resized; the shards streamed in a seeded order
 * through a 1,000-sample shuffle buffer, as the loader streams them). The images and
 * captions are those of a synthetic world (`--world`, written by `vlp data synth`, image i
 * of the world for sample i, in a cycle if the world is smaller) or, without it, 6 KB of
 * random bytes each (then only the reader passes run).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Obj36Writer } from "../src/data/formats/obj36.ts";
import { CaptionArrowReader, CaptionArrowWriter } from "../src/data/formats/arrow.ts";
import { WdsReader, WdsShardedWriter } from "../src/data/formats/wds.ts";
import { readKarpathy } from "../src/data/formats/karpathy.ts";
import { createBuilder as createImageTextBuilder } from "../src/pretrain/imagetext.ts";
import type { ImageTextInput } from "../src/pretrain/imagetext_input.ts";
import { listImages } from "../src/data/image_files.ts";
import {
  RegionStore, RegionStoreWriter, TsvRegionReader, buildTsvIndex, type FeatureDtype, type RegionSource,
} from "../src/data/regions/index.ts";

const BOXES = 36;
const DIM = 2048;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const MB = (b: number) => b / 2 ** 20;

// ---------------------------------------------------------------- child: read one source

interface ReadResult {
  reads: number;
  seconds: number;
  rssOpenMB: number;
  rssPeakMB: number;
  maxRssMB: number;
  checksum: number;
}

async function childRead(kind: string, file: string, reads: number): Promise<void> {
  const source: RegionSource = kind === "tsv" ? await TsvRegionReader.open(file) : RegionStore.open(file);
  const ids = source.ids();
  const rand = rng(1234);
  const order = Array.from({ length: reads }, () => ids[Math.floor(rand() * ids.length)]);
  const rssOpen = process.memoryUsage().rss;
  let peak = rssOpen;
  let checksum = 0;
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < order.length; k++) {
    const r = source.get(order[k]);
    checksum += r.features[k % r.features.length] + r.numBoxes;
    if ((k & 63) === 0) peak = Math.max(peak, process.memoryUsage().rss);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  peak = Math.max(peak, process.memoryUsage().rss);
  source.close();
  const out: ReadResult = {
    reads, seconds, rssOpenMB: MB(rssOpen), rssPeakMB: MB(peak),
    maxRssMB: process.resourceUsage().maxRSS / 1024, checksum,
  };
  process.stdout.write(JSON.stringify(out));
}

// ---------------------------------------------------------------- parent: generate + report

async function writeStore(file: string, images: number, dtype: FeatureDtype): Promise<number> {
  const rand = rng(99);
  const base = Float32Array.from({ length: BOXES * DIM }, () => (rand() < 0.6 ? 0 : rand() * 8)); // ReLU-like
  const feats = new Float32Array(BOXES * DIM);
  const boxes = Float32Array.from({ length: BOXES * 4 }, (_, i) => (i % 4 < 2 ? 10 + i : 300 + i));
  const objects = Int32Array.from({ length: BOXES }, (_, i) => i * 40);
  const conf = new Float32Array(BOXES).fill(0.5);
  const w = new RegionStoreWriter(file, { dim: DIM, maxBoxes: BOXES, dtype });
  const t0 = Date.now();
  for (let i = 0; i < images; i++) {
    const shift = (i % 97) * 0.01;
    for (let j = 0; j < feats.length; j++) feats[j] = base[j] + shift;
    w.add({
      imgId: `COCO_train2014_${String(i).padStart(12, "0")}`, imgH: 480, imgW: 640, numBoxes: BOXES,
      boxes, features: feats, objectsId: objects, objectsConf: conf, attrsId: objects, attrsConf: conf,
    });
  }
  await w.close();
  return (Date.now() - t0) / 1000;
}

async function writeTsv(file: string, images: number): Promise<number> {
  const rand = rng(7);
  const t0 = Date.now();
  const w = new Obj36Writer(file);
  const features = Float32Array.from({ length: BOXES * DIM }, () => (rand() < 0.6 ? 0 : rand() * 8));
  for (let i = 0; i < images; i++) {
    w.write({
      img_id: `COCO_train2014_${String(i).padStart(12, "0")}`, img_h: 480, img_w: 640, num_boxes: BOXES,
      objects_id: new Int32Array(BOXES), objects_conf: new Float32Array(BOXES), attrs_id: new Int32Array(BOXES),
      attrs_conf: new Float32Array(BOXES), boxes: new Float32Array(BOXES * 4).fill(1), features,
    });
  }
  await w.close();
  await buildTsvIndex(file);
  return (Date.now() - t0) / 1000;
}

function runChild(kind: string, file: string, reads: number): ReadResult {
  const self = fileURLToPath(import.meta.url);
  const out = execFileSync(process.execPath, [...process.execArgv, self, "--child", kind, file, String(reads)], {
    encoding: "utf8", maxBuffer: 1 << 20,
  });
  return JSON.parse(out) as ReadResult;
}

async function main(): Promise<void> {
  const images = arg("images", 10000);
  const reads = arg("reads", 10000);
  const keep = process.argv.includes("--keep");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vlp-bench-data-"));
  console.log(`# region store benchmark (${BOXES} boxes x ${DIM}-d, ${reads} random reads per source)`);
  console.log(`temp dir ${dir}; ${os.cpus().length} CPUs, ${(os.totalmem() / 2 ** 30).toFixed(0)} GB RAM, node ${process.version}`);
  console.log(`load average at start: ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}\n`);

  const rows: { source: string; images: number; dtype: string; file: string; size: number; write: number; r: ReadResult }[] = [];
  try {
    for (const dtype of ["float16", "float32"] as FeatureDtype[]) {
      for (const n of [1000, images]) {
        const file = path.join(dir, `regions-${n}-${dtype}.vlp.regions`);
        process.stderr.write(`writing ${path.basename(file)} ... `);
        const write = await writeStore(file, n, dtype);
        const size = fs.statSync(file).size;
        process.stderr.write(`${MB(size).toFixed(0)} MB in ${write.toFixed(1)} s; reading ... `);
        const r = runChild("store", file, reads);
        process.stderr.write("done\n");
        rows.push({ source: "vlp.regions", images: n, dtype, file, size, write, r });
      }
    }
    const tsv = path.join(dir, "obj36-1000.tsv");
    process.stderr.write("writing obj36-1000.tsv + index ... ");
    const write = await writeTsv(tsv, 1000);
    const size = fs.statSync(tsv).size;
    process.stderr.write(`${MB(size).toFixed(0)} MB in ${write.toFixed(1)} s; reading ... `);
    const r = runChild("tsv", tsv, Math.min(reads, 2000));
    process.stderr.write("done\n\n");
    rows.push({ source: "obj36 TSV + offset index", images: 1000, dtype: "float32 (base64)", file: tsv, size, write, r });
  } finally {
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  }

  console.log("| source | images | features | file MB | write s | reads | samples/s | feature MB/s | RSS after open MB | peak RSS while reading MB | growth MB |");
  console.log("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const { source, images: n, dtype, size, write, r } of rows) {
    const sps = r.reads / r.seconds;
    const featMBs = (sps * BOXES * DIM * 4) / 2 ** 20;
    console.log(`| ${source} | ${n} | ${dtype} | ${MB(size).toFixed(0)} | ${write.toFixed(1)} | ${r.reads} | ${sps.toFixed(0)} | ${featMBs.toFixed(0)} | ${r.rssOpenMB.toFixed(0)} | ${r.rssPeakMB.toFixed(0)} | ${(r.rssPeakMB - r.rssOpenMB).toFixed(0)} |`);
  }
  for (const dtype of ["float16", "float32"]) {
    const [small, large] = rows.filter((x) => x.source === "vlp.regions" && x.dtype === dtype);
    console.log(`\n${dtype}: store ${(large.size / small.size).toFixed(1)}x larger ` +
      `(${MB(small.size).toFixed(0)} → ${MB(large.size).toFixed(0)} MB), peak RSS ${small.r.rssPeakMB.toFixed(0)} → ${large.r.rssPeakMB.toFixed(0)} MB ` +
      `(${(large.r.rssPeakMB / small.r.rssPeakMB).toFixed(2)}x)`);
  }
  console.log(`\nload average at end: ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  console.log("Files were just written (page cache not controlled); peak RSS sampled every 64 reads in a fresh child process per source.");
}

// ---------------------------------------------------------------- streaming sources (--streams)

interface PassResult {
  items: number;
  seconds: number;
  rssOpenMB: number;
  rssPeakMB: number;
  bytes: number;
}

/** One pass over an Arrow caption table or a brace pattern of shards, RSS sampled every 64 items. */
async function childPass(kind: string, target: string): Promise<void> {
  let peak = 0;
  let items = 0;
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  let rssOpen = process.memoryUsage().rss;
  const seen = (n: number) => {
    bytes += n;
    if ((++items & 63) === 0) peak = Math.max(peak, process.memoryUsage().rss);
  };
  if (kind === "arrow-vlmo" || kind === "wds-vlmo") {
    // VLMo's pipeline: the builder the loader runs, batches of 32 pairs, every image decoded
    const input: ImageTextInput = kind === "arrow-vlmo" ? { format: "vilt-arrow", tables: [target] }
      : { format: "webdataset", shards: expandShardList(target), text: "txt", image: ["png", "jpg"], shuffleBuffer: 1000 };
    const b = await createImageTextBuilder({ input, split: "train", mode: "pair", imageSize: 48, maxTextLen: 40 });
    const B = 32;
    const length = b.length; // a webdataset input counts its samples here (a header scan of the shards)
    rssOpen = process.memoryUsage().rss;
    const build = async (indices: number[], items?: unknown[]) => {
      const batch = await b.build(indices, indices[0], items);
      for (let k = 0; k < indices.length; k++) seen(0);
      bytes += batch.arrays.pixels.data.byteLength;
    };
    if (b.stream) {
      let items: unknown[] = [];
      let at = 0;
      const it = b.stream(0, { seed: 1, shuffle: true, rank: 0, world: 1 });
      for (let r = it.next(); !r.done; r = it.next()) {
        items.push(r.value);
        if (items.length === B) {
          await build(items.map((_, k) => at + k), items);
          at += B;
          items = [];
        }
      }
    } else {
      for (let i = 0; i + B <= length; i += B) await build(Array.from({ length: B }, (_, k) => i + k));
    }
  } else if (kind === "arrow") {
    const r = CaptionArrowReader.open(target);
    for (let i = 0; i < r.numRows; i++) seen(r.row(i).caption.join(" ").length + r.image(i).length);
    r.close();
  } else {
    for await (const s of new WdsReader(target)) seen((s.files.png ?? s.files.jpg).length + s.files.txt.length);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const out: PassResult = { items, seconds, rssOpenMB: MB(rssOpen), rssPeakMB: MB(Math.max(peak, process.memoryUsage().rss)), bytes };
  process.stdout.write(JSON.stringify(out));
}

/** "dir/shard-{000000..000019}.tar" → the names (the bench's own patterns: one numeric range). */
function expandShardList(pattern: string): string[] {
  const m = /\{(\d+)\.\.(\d+)\}/.exec(pattern)!;
  const out: string[] = [];
  for (let i = Number(m[1]); i <= Number(m[2]); i++) out.push(pattern.replace(m[0], String(i).padStart(m[1].length, "0")));
  return out;
}

interface Samples {
  image(i: number): Uint8Array;
  captions(i: number): string[];
}

/** Image i and its captions: the world's i-th image (in a cycle) and its Karpathy captions, or random bytes. */
function sampleSource(world: string | null): Samples {
  if (world) {
    const root = path.join(world, "images");
    const byFile = new Map(readKarpathy(path.join(world, "karpathy/dataset_synth.json")).images.map((im) => [im.filename, im.sentences.map((s) => s.raw)]));
    const files = listImages(root);
    if (files.length === 0) throw new Error(`${root}: no images`);
    return {
      image: (i) => fs.readFileSync(path.join(root, files[i % files.length])),
      captions: (i) => byFile.get(files[i % files.length]) ?? [`image ${i}`],
    };
  }
  const rand = rng(5);
  const pool = Array.from({ length: 64 }, () => Uint8Array.from({ length: 6144 }, () => Math.floor(rand() * 256)));
  return {
    image: (i) => pool[i % pool.length],
    captions: (i) => [`image ${i}: a small red ball left of a blue box.`, `the ${i % 7} shapes on a grey background`, `caption ${i} three`],
  };
}

async function writeStreams(dir: string, n: number, src: Samples): Promise<{ arrow: string; shards: string }> {
  const arrow = path.join(dir, `gcc_train_${n}.arrow`);
  const aw = new CaptionArrowWriter(arrow);
  const ww = new WdsShardedWriter(path.join(dir, `wds-${n}`, "shard-%06d.tar"), { maxCount: 1000 });
  for (let i = 0; i < n; i++) {
    const image = src.image(i);
    const captions = src.captions(i);
    await aw.write({ image, caption: captions, image_id: `img_${i}`, split: "train" });
    await ww.write({ key: `img_${String(i).padStart(8, "0")}`, files: { png: image, txt: captions.join("\n") } });
  }
  await aw.close();
  await ww.close();
  const last = String(ww.shards.length - 1).padStart(6, "0");
  return { arrow, shards: path.join(dir, `wds-${n}`, `shard-{000000..${last}}.tar`) };
}

function runPass(kind: string, target: string): PassResult {
  const self = fileURLToPath(import.meta.url);
  const out = execFileSync(process.execPath, [...process.execArgv, self, "--child-pass", kind, target], { encoding: "utf8", maxBuffer: 1 << 20 });
  return JSON.parse(out) as PassResult;
}

async function mainStreams(): Promise<void> {
  const images = arg("images", 20000);
  const wi = process.argv.indexOf("--world");
  const world = wi >= 0 ? process.argv[wi + 1] : null;
  const keep = process.argv.includes("--keep");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vlp-bench-streams-"));
  console.log(`# streaming sources: one pass over a caption Arrow table and WebDataset shards (1,000 samples a shard)`);
  console.log(`temp dir ${dir}; images ${world ? `and captions from the world ${world}` : "6 KB random bytes"}`);
  console.log(`CPU: ${os.cpus()[0]?.model ?? "unknown"} x ${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GB RAM, node ${process.version}`);
  console.log(`load average at start: ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}\n`);
  const src = sampleSource(world);
  const rows: { kind: string; n: number; size: number; r: PassResult }[] = [];
  try {
    for (const n of [2000, images]) {
      process.stderr.write(`writing ${n} images as Arrow + shards ... `);
      const { arrow, shards } = await writeStreams(dir, n, src);
      const shardDir = path.dirname(shards);
      const size = fs.readdirSync(shardDir).reduce((t, f) => t + fs.statSync(path.join(shardDir, f)).size, 0);
      const arrowSize = fs.statSync(arrow).size;
      process.stderr.write("readers ... ");
      rows.push({ kind: "Arrow reader (CaptionArrowReader)", n, size: arrowSize, r: runPass("arrow", arrow) });
      rows.push({ kind: "WebDataset reader (WdsReader)", n, size, r: runPass("wds", shards) });
      if (world) {
        process.stderr.write("VLMo pipeline ... ");
        rows.push({ kind: "VLMo vilt-arrow input (batches decoded)", n, size: arrowSize, r: runPass("arrow-vlmo", arrow) });
        rows.push({ kind: "VLMo webdataset input (streamed, batches decoded)", n, size, r: runPass("wds-vlmo", shards) });
      }
      process.stderr.write("done\n");
    }
  } finally {
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log("| source | images | file(s) MB | samples/s | RSS after open MB | peak RSS MB |");
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const { kind, n, size, r } of rows) {
    console.log(`| ${kind} | ${n} | ${MB(size).toFixed(0)} | ${(r.items / r.seconds).toFixed(0)} | ${r.rssOpenMB.toFixed(0)} | ${r.rssPeakMB.toFixed(0)} |`);
  }
  for (const kind of new Set(rows.map((x) => x.kind))) {
    const [small, large] = rows.filter((x) => x.kind === kind);
    console.log(`\n${kind}: ${(large.size / small.size).toFixed(1)}x the data, peak RSS ${small.r.rssPeakMB.toFixed(0)} → ${large.r.rssPeakMB.toFixed(0)} MB ` +
      `(ratio ${large.n} / ${small.n} images: ${(large.r.rssPeakMB / small.r.rssPeakMB).toFixed(2)})`);
  }
  console.log(`\nload average at end: ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
}

if (process.argv[2] === "--child") {
  await childRead(process.argv[3], process.argv[4], Number(process.argv[5]));
} else if (process.argv[2] === "--child-pass") {
  await childPass(process.argv[3], process.argv[4]);
} else if (process.argv.includes("--streams")) {
  await mainStreams();
} else {
  await main();
}

