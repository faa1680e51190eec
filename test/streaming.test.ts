// Streamed sources: WebDataset shards read by position (a header scan a shard at a time, a seeded
// shuffle buffer of sample locations, files read per batch), the loader's resumable position in a
// stream, a `webdataset` VLMo source run by `vlp pretrain` and resumed after SIGKILL to the same
// bytes, and the memory bound of the Arrow and WebDataset inputs (no reader loads a file whole).
import { test, before } from "node:test";
import assert from "node:assert/strict";
import fs, { mkdtempSync, readFileSync, writeFileSync, existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { generateWorld } from "../src/data/synth/world.ts";
import {
  readWds, scanShard, streamRefs, countSamples, WdsRefReader, WdsShardWriter, WdsShardedWriter, WdsError, type WdsSample,
} from "../src/data/formats/wds.ts";
import { CaptionArrowWriter } from "../src/data/formats/arrow.ts";
import { Loader } from "../src/data/loader.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { sourcesFor, REGION_TEXT_FORMATS, IMAGE_TEXT_FORMATS } from "../src/pretrain/sources.ts";
import { imageTextExamples } from "../src/pretrain/imagetext_input.ts";
import { interleaveByImage } from "../src/pretrain/examples.ts";
import { createBuilder } from "../src/pretrain/imagetext.ts";
import { writeWdsShards } from "./fixtures/real_layouts.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-streaming-"));
const world = join(root, "world");
const tree = join(root, "tree");
let sizes: Awaited<ReturnType<typeof writeWdsShards>>;

before(async () => {
  await generateWorld({ images: 40, seed: 5, out: world, size: 48, featDim: 16, boxes: 8 });
  sizes = await writeWdsShards(world, tree, 8);
});

const trainShards = () => `data/cc3m/train/{00000..${String(sizes.train.shards - 1).padStart(5, "0")}}.tar`;
const abs = (p: string) => join(tree, p);

test("scanShard finds each sample's files by position: the same samples and bytes as the streaming tar reader", async () => {
  const dir = join(root, "scan");
  mkdirSync(dir, { recursive: true });
  const w = new WdsShardWriter(join(dir, "a.tar"));
  // a long key (ustar prefix / pax path), an empty file, a multi-dot extension, a folder in the key
  const long = `${"deep/".repeat(30)}sample`;
  await w.write({ key: "x/000", files: { jpg: new Uint8Array([1, 2, 3]), txt: "a red ball", "seg.png": new Uint8Array(1000).fill(7) } });
  await w.write({ key: long, files: { jpg: new Uint8Array(513).fill(9), txt: "" } });
  await w.write({ key: "x/002", files: { jpg: new Uint8Array([4]), json: { caption: "c" } } });
  await w.close();
  const file = join(dir, "a.tar");
  const refs = [...scanShard(file)];
  const samples: WdsSample[] = [];
  for await (const s of readWds(file)) samples.push(s);
  assert.deepEqual(refs.map((r) => r.key), samples.map((s) => s.key));
  const files = new WdsRefReader();
  refs.forEach((r, k) => {
    assert.deepEqual(Object.keys(r.files).sort(), Object.keys(samples[k].files).sort());
    for (const ext of Object.keys(r.files)) assert.deepEqual(Buffer.from(files.read(r, ext)), Buffer.from(samples[k].files[ext]), `${r.key}.${ext}`);
  });
  assert.deepEqual(Buffer.from(files.read(refs[2], "png;jpg")), Buffer.from([4]), "alternatives: the first present");
  files.close();
  // errors name the shard and the sample: a missing required file, a corrupt header, a truncated file
  assert.throws(() => [...scanShard(file, { required: ["txt"] })], (e: Error) => e instanceof WdsError && /a\.tar: sample "x\/002": incomplete: missing "txt"/.test(e.message));
  const bytes = readFileSync(file);
  const bad = Buffer.from(bytes);
  bad[1024 + 5] ^= 0xff; // inside the second entry's header (the first file is 3 bytes: one data block)
  writeFileSync(join(dir, "bad.tar"), bad);
  assert.throws(() => [...scanShard(join(dir, "bad.tar"))], /bad\.tar: .*corrupt tar: bad header checksum at byte 1024/);
  writeFileSync(join(dir, "short.tar"), bytes.subarray(0, 1024 + 512 + 5));
  assert.throws(() => [...scanShard(join(dir, "short.tar"))], /short\.tar: sample "x\/000": truncated tar: entry at byte 1024 needs 10 bytes/);
  assert.throws(() => [...scanShard(join(dir, "a.tar.gz"))], /gzipped shard cannot be streamed by position/);
});

test("streamRefs: an epoch is a seeded permutation of every sample, other per epoch, rank strides disjoint, a function of (seed, epoch) alone", () => {
  const shards = Array.from({ length: sizes.train.shards }, (_, s) => abs(`data/cc3m/train/${String(s).padStart(5, "0")}.tar`));
  const keys = (o: Parameters<typeof streamRefs>[1]) => [...streamRefs(shards, o)].map((r) => r.key);
  const n = countSamples(shards);
  assert.equal(n, sizes.train.samples);
  const plain = keys({ shuffle: false, seed: 1, epoch: 0 });
  assert.deepEqual(plain, [...plain].sort(), "no shuffle: the shards' order");
  const e0 = keys({ shuffle: true, seed: 1, epoch: 0, buffer: 6 });
  assert.deepEqual([...e0].sort(), plain, "every sample once");
  assert.notDeepEqual(e0, plain);
  assert.deepEqual(keys({ shuffle: true, seed: 1, epoch: 0, buffer: 6 }), e0, "the same sequence again");
  assert.notDeepEqual(keys({ shuffle: true, seed: 1, epoch: 1, buffer: 6 }), e0, "another epoch, another order");
  const r0 = keys({ shuffle: true, seed: 1, epoch: 0, buffer: 6, rank: 0, world: 2 });
  const r1 = keys({ shuffle: true, seed: 1, epoch: 0, buffer: 6, rank: 1, world: 2 });
  assert.deepEqual(r0, e0.filter((_, i) => i % 2 === 0));
  assert.deepEqual(r1, e0.filter((_, i) => i % 2 === 1));
});

test("Loader over a streamed builder: epochs of whole batches, and a seek to any position gives the batches an uninterrupted pass gives", async () => {
  const shards = Array.from({ length: sizes.train.shards }, (_, s) => abs(`data/cc3m/train/${String(s).padStart(5, "0")}.tar`));
  const spec = { module: new URL("./fixtures/wds_key_builder.ts", import.meta.url).href, args: { shards, buffer: 5 } };
  const make = (workers: number) => Loader.create(spec, { batchSize: 3, seed: 4, workers, prefetch: 2 });
  const a = await make(0);
  const per = a.batchesPerEpoch();
  assert.equal(per, Math.floor(sizes.train.samples / 3));
  const all: string[][] = [];
  for (let k = 0; k < 2 * per + 2; k++) all.push((await a.next()).meta.keys as string[]);
  const epoch0 = all.slice(0, per).flat();
  assert.equal(new Set(epoch0).size, epoch0.length, "no sample twice in an epoch");
  assert.notDeepEqual(all.slice(per, 2 * per).flat(), epoch0, "epoch 1 in another order");
  for (const [at, workers] of [[{ epoch: 0, batch: 2 }, 0], [{ epoch: 1, batch: 0 }, 0], [{ epoch: 1, batch: per - 1 }, 1], [{ epoch: 0, batch: 1 }, 1]] as const) {
    const b = await make(workers);
    b.seek(at);
    const got = [(await b.next()).meta.keys, (await b.next()).meta.keys, (await b.next()).meta.keys];
    await b.close();
    const k = at.epoch * per + at.batch;
    assert.deepEqual(got, all.slice(k, k + 3), `resumed at ${JSON.stringify(at)} (workers ${workers})`);
  }
  await a.close();
});

test("Arrow examples are (row, caption) pairs read on demand: the same order as the in-memory items, held-out interleaved", async () => {
  const file = join(root, "captions.arrow");
  const w = new CaptionArrowWriter(file, { batchRows: 3 });
  const png = readFileSync(join(world, "images", fs.readdirSync(join(world, "images"))[0]));
  const rows = Array.from({ length: 8 }, (_, i) => Array.from({ length: 1 + (i % 3) }, (_, c) => `row ${i} caption ${c}`));
  for (const [i, caption] of rows.entries()) await w.write({ image: png, caption, image_id: `im${i}`, split: "train" });
  await w.close();
  const flat = rows.flatMap((cs, i) => cs.map((text) => ({ key: `captions.arrow#${i}`, text })));
  for (const [order, expected] of [["file", flat], ["interleaved", interleaveByImage(flat, (e) => e.key)]] as const) {
    const ex = imageTextExamples({ format: "vilt-arrow", tables: [file] }, "caption", order);
    assert.deepEqual(Array.from({ length: ex.length }, (_, i) => ({ key: ex.key(i), text: ex.text(i) })), expected, order);
  }
  const images = imageTextExamples({ format: "vilt-arrow", tables: [file, file] }, "image", "file");
  assert.equal(images.length, 16);
  assert.deepEqual(Buffer.from(images.image(11) as Uint8Array), png);
});

// micro VLMo: a few seconds per run on one thread
const MODEL = { preset: "tiny", overrides: { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1, imageSize: 32, patchSize: 16 } };

function wdsRecipe(extra: { steps: number; sets?: Record<string, unknown>; source?: Record<string, unknown> }): Record<string, unknown> {
  return {
    method: "vlmo", model: MODEL,
    data: { root: tree, sources: [{ name: "cc3m", format: "webdataset", shards: trainShards(), shuffleBuffer: 6, eval: { shards: "data/cc3m/val/{00000..00000}.tar" }, ...extra.source }] },
    train: { seed: 2, batchSize: 4, lr: 1e-3, steps: extra.steps, workers: 0, evalEvery: 0, checkpointEvery: 0, ...extra.sets },
    vlmo: { order: ["image", "image-text"], stages: { image: { steps: 2 }, "image-text": { steps: extra.steps } } },
  };
}

function vlp(args: string[]): { proc: ReturnType<typeof spawn>; done: Promise<{ code: number; err: string }> } {
  const proc = spawn(process.execPath, ["--import", "tsx", new URL("../src/cli/vlp.ts", import.meta.url).pathname, ...args], { env: { ...process.env, VLP_NUM_THREADS: "1" }, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  proc.stderr!.on("data", (d) => (err += d));
  return { proc, done: new Promise((res) => proc.on("exit", (code) => res({ code: code ?? -1, err }))) };
}

test("data.sources: a webdataset source is checked (brace patterns expanded, every shard there, gzip refused) and feeds VLMo only", () => {
  const ok = validateRecipe(wdsRecipe({ steps: 2 }));
  const s = ok.data.sources![0];
  assert.equal(s.shards, abs(trainShards()), "a pattern resolved against data.root, kept a pattern");
  assert.throws(() => validateRecipe(wdsRecipe({ steps: 2, source: { shards: "data/cc3m/train/{00000..00099}.tar" } })), /recipe\.data\.sources\[0\]\.shards: no such file .*00005\.tar/);
  assert.throws(() => validateRecipe(wdsRecipe({ steps: 2, source: { shuffleBuffer: -1 } })), /sources\[0\]\.shuffleBuffer: expected a whole number >= 0/);
  assert.throws(() => validateRecipe(wdsRecipe({ steps: 2, source: { tables: ["x"] } })), /sources\[0\]\.tables: unknown key for format "webdataset"/);
  writeFileSync(abs("data/cc3m/x.tar.gz"), "");
  assert.throws(() => validateRecipe(wdsRecipe({ steps: 2, source: { shards: "data/cc3m/x.tar.gz" } })), /x\.tar\.gz is gzipped/);
  assert.throws(() => sourcesFor(ok.data, "semvlp", REGION_TEXT_FORMATS), /sources\[0\]\.format: "webdataset" does not feed semvlp/);
  assert.doesNotThrow(() => sourcesFor(ok.data, "vlmo", IMAGE_TEXT_FORMATS));
});

test("vlp pretrain: VLMo over webdataset shards (img2dataset layout) for a few steps, held out on the val shards", async () => {
  const file = join(root, "wds-recipe.json");
  writeFileSync(file, JSON.stringify(wdsRecipe({ steps: 3, sets: { evalEvery: 3, workers: 1 } })));
  const out = join(root, "run-wds");
  const r = vlp(["pretrain", "--recipe", file, "--out", out, "--quiet"]);
  const { code, err } = await r.done;
  assert.equal(code, 0, err);
  const rows = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const steps = rows.filter((x) => x.source !== "val");
  assert.deepEqual(steps.map((x) => x.stage), ["image", "image", "image-text", "image-text", "image-text"]);
  for (const k of ["itc_loss", "itm_loss", "mlm_loss"]) assert.ok(Number.isFinite(steps.at(-1)[k]), k);
  assert.ok(Number.isFinite(steps[0].mim_loss));
  assert.ok(rows.some((x) => x.source === "val" && Number.isFinite(x.val_itc_loss)), "evaluated on the val shards");
  // the batches are the shards' samples: one image + caption each, by key
  const b = await createBuilder({ input: { format: "webdataset", shards: [abs("data/cc3m/val/00000.tar")], text: "json", image: ["jpg"], shuffleBuffer: 0 }, split: "val", mode: "pair", imageSize: 32, maxTextLen: 12 });
  const refs = [...streamRefs([abs("data/cc3m/val/00000.tar")], { shuffle: false, seed: 0, epoch: 0 })];
  const batch = await b.build([0, 1], 0, refs.slice(0, 2));
  assert.deepEqual(batch.meta.files, ["00000.tar#000000000", "00000.tar#000000001"]);
  assert.deepEqual(batch.arrays.pixels.shape, [2, 3, 32, 32]);
  assert.equal(b.length, sizes.val.samples);
});

test("a webdataset run killed with SIGKILL and resumed reaches byte-identical weights (the stream's position restored mid-epoch)", async () => {
  // 20 train samples, batches of 4: 5 a epoch; 12 steps cross two epoch ends; the shuffle buffer (6) spans shards
  const file = join(root, "wds-resume.json");
  writeFileSync(file, JSON.stringify(wdsRecipe({ steps: 12, sets: { checkpointEvery: 2, workers: 1 } })));
  const a = vlp(["pretrain", "--recipe", file, "--out", join(root, "wds-a"), "--quiet"]);
  assert.equal((await a.done).code, 0);
  const b = vlp(["pretrain", "--recipe", file, "--out", join(root, "wds-b"), "--quiet"]);
  await new Promise<void>((res) => {
    const t = setInterval(() => {
      if (["ckpt-6", "ckpt-8"].some((c) => existsSync(join(root, "wds-b", c, "trainer.json")))) {
        clearInterval(t);
        b.proc.kill("SIGKILL");
        res();
      }
    }, 20);
  });
  await b.done;
  assert.ok(!existsSync(join(root, "wds-b", "model.safetensors")), "the run was killed before it finished");
  const c = vlp(["pretrain", "--resume", join(root, "wds-b"), "--quiet"]);
  const rc = await c.done;
  assert.equal(rc.code, 0, rc.err);
  const wa = readFileSync(join(root, "wds-a", "model.safetensors"));
  const wb = readFileSync(join(root, "wds-b", "model.safetensors"));
  assert.ok(wa.equals(wb), "resumed weights differ from the uninterrupted run");
});

/** Runs `fn` with fs's read calls counted: the largest single read, and whether a whole-file API was used. */
async function watchReads(fn: () => Promise<void> | void): Promise<{ maxRead: number; whole: string[] }> {
  const orig = { readSync: fs.readSync, readFileSync: fs.readFileSync, createReadStream: fs.createReadStream };
  let maxRead = 0;
  const whole: string[] = [];
  const f = fs as unknown as Record<string, unknown>;
  f.readSync = (...args: unknown[]) => {
    const len = typeof args[2] === "number" && typeof args[3] === "number" ? args[3] : (args[1] as Uint8Array).byteLength;
    maxRead = Math.max(maxRead, len);
    return (orig.readSync as (...a: unknown[]) => number)(...args);
  };
  f.readFileSync = (...args: unknown[]) => {
    whole.push(String(args[0]));
    return (orig.readFileSync as (...a: unknown[]) => unknown)(...args);
  };
  f.createReadStream = (...args: unknown[]) => {
    whole.push(String(args[0]));
    return (orig.createReadStream as (...a: unknown[]) => unknown)(...args);
  };
  try {
    await fn();
  } finally {
    Object.assign(f, orig);
  }
  return { maxRead, whole };
}

test("memory: a pass over 64 MB of shards and of an Arrow table reads no file whole; RSS grows by far less than the data", async () => {
  const dir = join(root, "big");
  mkdirSync(dir, { recursive: true });
  const IMAGE = 256 * 1024;
  const N = 256; // 64 MB of image bytes in each format
  const png = readFileSync(join(world, "images", fs.readdirSync(join(world, "images"))[0]));
  // a valid PNG padded with trailing bytes to IMAGE: decoders stop at IEND
  const image = Buffer.concat([png, Buffer.alloc(IMAGE - png.length, 1)]);
  const ww = new WdsShardedWriter(join(dir, "s-%03d.tar"), { maxCount: 64 });
  const aw = new CaptionArrowWriter(join(dir, "big.arrow"), { batchRows: 32 });
  for (let i = 0; i < N; i++) {
    await ww.write({ key: String(i).padStart(6, "0"), files: { png: image, txt: `caption ${i}` } });
    await aw.write({ image, caption: [`caption ${i}`, `another ${i}`], image_id: String(i), split: "train" });
  }
  await ww.close();
  await aw.close();
  const shardFiles = ww.shards;
  const shardBytes = shardFiles.reduce((t, f) => t + fs.statSync(f).size, 0);
  assert.ok(shardBytes > 64 * 2 ** 20);
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const sample = () => (peak = Math.max(peak, process.memoryUsage().rss));
  // WebDataset: the pipeline's builder over a streamed epoch, every image decoded
  const wds = await watchReads(async () => {
    const b = await createBuilder({ input: { format: "webdataset", shards: shardFiles, text: "txt", image: ["png"], shuffleBuffer: 16 }, split: "train", mode: "pair", imageSize: 16, maxTextLen: 8 });
    assert.equal(b.length, N);
    const it = b.stream!(0, { seed: 1, shuffle: true, rank: 0, world: 1 });
    let batch: unknown[] = [];
    let at = 0;
    for (let r = it.next(); !r.done; r = it.next()) {
      batch.push(r.value);
      if (batch.length === 16) {
        await b.build(batch.map((_, k) => at + k), at, batch);
        at += batch.length;
        batch = [];
        sample();
      }
    }
    assert.equal(at, N);
  });
  assert.deepEqual(wds.whole, [], "no shard read whole");
  assert.ok(wds.maxRead <= IMAGE, `largest read ${wds.maxRead} bytes: one file at most`);
  // Arrow: the same through the table (text buffers of a record batch, images per row)
  const arrow = await watchReads(async () => {
    const b = await createBuilder({ input: { format: "vilt-arrow", tables: [join(dir, "big.arrow")] }, split: "train", mode: "pair", imageSize: 16, maxTextLen: 8 });
    assert.equal(b.length, 2 * N);
    for (let i = 0; i < b.length; i += 16) {
      await b.build(Array.from({ length: 16 }, (_, k) => i + k), i);
      sample();
    }
  });
  assert.deepEqual(arrow.whole, [], "no table read whole");
  assert.ok(arrow.maxRead <= IMAGE, `largest read ${arrow.maxRead} bytes: one image at most`);
  const growth = (peak - rss0) / 2 ** 20;
  assert.ok(growth < 40, `RSS grew by ${growth.toFixed(0)} MB over two passes of 64 MB each`);
});

test("vlp data synth --wds writes shards of the world (wds/<split>/*.tar) that recipes/real/vlmo-webdataset.json trains on with vlp pretrain", async () => {
  const synth = join(root, "synth-wds");
  const s = vlp(["data", "synth", "--images", "40", "--seed", "3", "--size", "48", "--feat-dim", "8", "--boxes", "4", "--wds", "--out", synth]);
  const sr = await s.done;
  assert.equal(sr.code, 0, sr.err);
  // every train / val image is one sample, its captions the lines of its .txt
  const meta = JSON.parse(readFileSync(join(synth, "meta.json"), "utf8")) as { splits: Record<string, number> };
  const all = async (shards: string[]) => {
    const xs: WdsSample[] = [];
    for await (const x of readWds(shards.map((f) => join(synth, f)))) xs.push(x);
    return xs;
  };
  const train = await all([0, 1, 2, 3].map((k) => `wds/train/0000${k}.tar`));
  assert.equal(train.length, meta.splits.train);
  assert.equal((await all(["wds/val/00000.tar"])).length, meta.splits.val);
  const first = train[0];
  assert.match(first.key, /^synth_\d+$/);
  assert.equal(new TextDecoder().decode(first.files.txt).split("\n").length, 5);
  const out = join(root, "run-synth-wds");
  const sets = [`data.root=${synth}`, `model=${JSON.stringify(MODEL)}`, "train.batchSize=4", "train.workers=0", "train.checkpointEvery=0", "train.evalEvery=3", 'vlmo.order=["image","image-text"]', 'vlmo.stages={"image":{"steps":1},"image-text":{"steps":2}}'];
  const r = vlp(["pretrain", "--recipe", new URL("../recipes/real/vlmo-webdataset.json", import.meta.url).pathname, ...sets.flatMap((x) => ["--set", x]), "--out", out, "--quiet"]);
  const { code, err } = await r.done;
  assert.equal(code, 0, err);
  const rows = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(rows.filter((x) => x.source !== "val").map((x) => x.stage), ["image", "image-text", "image-text"]);
  assert.ok(rows.some((x) => x.source === "val" && Number.isFinite(x.val_itc_loss)), "evaluated on wds/val/00000.tar");
});
