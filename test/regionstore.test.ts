import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import v8 from "node:v8";
import vm from "node:vm";
import { fileURLToPath } from "node:url";
import { Obj36Writer, encodeObj36Row, readObj36Tsv, type Obj36Record } from "../src/data/formats/obj36.ts";
import {
  buildTsvIndex, tsvIndexPath, TsvRegionReader, RegionStore, RegionStoreWriter, convertTsvToStore,
  floatToHalf, halfToFloat, decodeHalfArray, gridRegions, gridCellFeatures, gridRegionFeatures, gridRegionsFromImage, fromObj36,
  type RegionFeatures, type RegionSource,
} from "../src/data/regions/index.ts";

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "obj36_small.tsv");

/** a temp dir removed when the test ends, pass or fail */
function tmpDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "regionstore-test-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function makeRecord(id: string, n: number, d: number, seed: number): Obj36Record {
  const r = rng(seed);
  const f32 = (len: number, scale: number, shift = 0) => Float32Array.from({ length: len }, () => Math.fround(r() * scale - shift));
  return {
    img_id: id, img_h: 400 + (seed % 7), img_w: 600 - (seed % 5), num_boxes: n,
    objects_id: Int32Array.from({ length: n }, () => Math.floor(r() * 1600)), objects_conf: f32(n, 1),
    attrs_id: Int32Array.from({ length: n }, () => Math.floor(r() * 400)), attrs_conf: f32(n, 1),
    boxes: f32(4 * n, 400), features: f32(n * d, 8, 2),
  };
}

/** a TSV with CRLF line endings (like the official files) and varying box counts */
function writeTsv(file: string, count: number, d: number): Obj36Record[] {
  const recs = Array.from({ length: count }, (_, i) => makeRecord(`img_${i}`, 1 + (i * 5) % 12, d, i + 1));
  fs.writeFileSync(file, recs.map((r) => encodeObj36Row(r) + "\r\n").join(""));
  return recs;
}

async function scanAll(file: string): Promise<Map<string, RegionFeatures>> {
  const m = new Map<string, RegionFeatures>();
  for await (const r of readObj36Tsv(file)) m.set(r.img_id, fromObj36(r));
  return m;
}

function shuffled<T>(a: T[], seed: number): T[] {
  const r = rng(seed);
  const b = a.slice();
  for (let i = b.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [b[i], b[j]] = [b[j], b[i]];
  }
  return b;
}

test("TSV offset index: locations, saved as <tsv>.idx.json, reused, rebuilt when the TSV changes", async (t) => {
  const dir = tmpDir(t);
  const tsv = path.join(dir, "small.tsv");
  fs.copyFileSync(FIXTURE, tsv);
  const index = await buildTsvIndex(tsv);
  assert.deepEqual([...index.keys()], ["COCO_val2014_000000000042", "COCO_val2014_000000000043", "COCO_val2014_000000000044"]);
  const text = fs.readFileSync(tsv, "latin1");
  for (const [id, e] of index) {
    const row = text.slice(e.offset, e.offset + e.length);
    assert.ok(row.startsWith(id + "\t"));
    assert.equal(text.slice(e.offset + e.length, e.offset + e.length + 2), "\r\n");
  }
  assert.equal(index.get("COCO_val2014_000000000043")!.line, 2);

  // reuse: a (deliberately fake) index with matching size+mtime is trusted as is
  const saved = JSON.parse(fs.readFileSync(tsvIndexPath(tsv), "utf8"));
  saved.ids[0] = "marker";
  fs.writeFileSync(tsvIndexPath(tsv), JSON.stringify(saved));
  assert.ok((await buildTsvIndex(tsv)).has("marker"));
  // a changed TSV invalidates it
  fs.appendFileSync(tsv, encodeObj36Row(makeRecord("extra", 2, 6, 3)) + "\r\n");
  const rebuilt = await buildTsvIndex(tsv);
  assert.ok(!rebuilt.has("marker"));
  assert.equal(rebuilt.get("extra")!.line, 4);
});

test("TSV index rejects duplicate img_ids naming both lines", async (t) => {
  const dir = tmpDir(t);
  const tsv = path.join(dir, "dup.tsv");
  const a = encodeObj36Row(makeRecord("same", 1, 2, 1));
  fs.writeFileSync(tsv, `${a}\n${encodeObj36Row(makeRecord("other", 1, 2, 2))}\n${a}\n`);
  await assert.rejects(buildTsvIndex(tsv), /dup\.tsv: line 3 \(img_id same\): duplicate img_id, first at line 1/);
});

test("TsvRegionReader positioned reads equal a full scan; errors name file, line and img_id", async (t) => {
  const dir = tmpDir(t);
  const tsv = path.join(dir, "feats.tsv");
  writeTsv(tsv, 40, 16);
  const full = await scanAll(tsv);
  const reader = await TsvRegionReader.open(tsv);
  assert.equal(reader.size, 40);
  assert.deepEqual(reader.ids(), [...full.keys()]);
  for (const id of shuffled(reader.ids(), 7)) assert.deepEqual(reader.get(id), full.get(id));
  assert.throws(() => reader.get("nope"), /feats\.tsv: no row with img_id "nope" \(40 rows indexed\)/);
  reader.close();

  // corrupt one row in place (same length, so the saved index still matches its size)
  const idx = await buildTsvIndex(tsv);
  const e = idx.get("img_5")!;
  const fd = fs.openSync(tsv, "r+");
  fs.writeSync(fd, Buffer.from("!!!!"), 0, 4, e.offset + e.length - 4);
  fs.closeSync(fd);
  const r2 = await TsvRegionReader.open(tsv);
  assert.throws(() => r2.get("img_5"), /feats\.tsv: line 6 \(img_id img_5\): field "features" is not valid base64/);
  r2.close();
});

test("float16 conversion: known encodings, round-to-nearest-even, exhaustive round trip", () => {
  const cases: [number, number][] = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00],
    [-Infinity, 0xfc00], [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001],
    [0.1, 0x2e66], [1 / 3, 0x3555], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [65519, 0x7bff],
  ];
  for (const [v, h] of cases) assert.equal(floatToHalf(v), h, `floatToHalf(${v})`);
  assert.equal(floatToHalf(NaN) & 0x7e00, 0x7e00);
  for (let h = 0; h < 65536; h++) {
    const f = halfToFloat(h);
    if (Number.isNaN(f)) {
      assert.ok((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0);
      continue;
    }
    assert.equal(floatToHalf(f), h, `half 0x${h.toString(16)}`);
  }
  assert.deepEqual(Array.from(decodeHalfArray(Uint16Array.from([0x3c00, 0xc000, 0x0001]))), [1, -2, 2 ** -24]);
});

test("vlp.regions: float32 store equals the TSV exactly, float16 within half precision", async (t) => {
  const dir = tmpDir(t);
  const tsv = path.join(dir, "feats.tsv");
  writeTsv(tsv, 30, 24);
  const full = await scanAll(tsv);
  const s32 = path.join(dir, "f32.vlp.regions");
  const s16 = path.join(dir, "f16.vlp.regions");
  const res32 = await convertTsvToStore(tsv, s32, { dtype: "float32" });
  const res16 = await convertTsvToStore(tsv, s16, { dtype: "float16" });
  assert.deepEqual([res32.count, res32.dim, res32.maxBoxes], [30, 24, 12]);
  // float16 saves exactly 2 bytes per feature slot (12 boxes x 24 dims per record); the headers differ by a digit or so
  const saved = res32.bytes - res16.bytes;
  assert.ok(saved >= 30 * 12 * 24 * 2 && saved < 30 * 12 * 24 * 2 + 16, `saved ${saved} bytes`);

  const a = RegionStore.open(s32);
  const b = RegionStore.open(s16);
  assert.deepEqual([a.dim, a.maxBoxes, a.dtype, b.dtype], [24, 12, "float32", "float16"]);
  assert.deepEqual(a.ids(), [...full.keys()]);
  const sources: RegionSource[] = [a, b];
  for (const id of shuffled(a.ids(), 3)) {
    const want = full.get(id)!;
    assert.deepEqual(a.get(id), want);
    const got = b.get(id);
    assert.deepEqual({ ...got, features: null }, { ...want, features: null });
    assert.equal(got.features.length, want.features.length);
    for (let i = 0; i < want.features.length; i++) {
      const w = want.features[i];
      const tol = Math.max(Math.abs(w) * 2 ** -11, 2 ** -25);
      assert.ok(Math.abs(got.features[i] - w) <= tol, `${id}[${i}]: ${got.features[i]} vs ${w}`);
    }
  }
  assert.throws(() => a.get("missing"), /f32\.vlp\.regions: no record for img_id "missing" \(30 records\)/);
  sources.forEach((s) => s.close());
  assert.throws(() => a.getAt(0), /store is closed/);
});

test("vlp.regions writer: partial boxes, missing labels, validation; damaged files are refused", async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "s.vlp.regions");
  const w = new RegionStoreWriter(file, { dim: 3, maxBoxes: 4 });
  w.add({ imgId: "x", imgH: 10, imgW: 20, numBoxes: 2, boxes: [0, 0, 10, 5, 2, 2, 20, 10], features: [1, 2, 3, 4, 5, 6] });
  w.add({ imgId: "empty", imgH: 1, imgW: 1, numBoxes: 0, boxes: [], features: [] });
  assert.throws(() => w.add({ imgId: "x", imgH: 1, imgW: 1, numBoxes: 0, boxes: [], features: [] }), /record 2 \(img_id x\): duplicate img_id/);
  assert.throws(() => w.add({ imgId: "y", imgH: 1, imgW: 1, numBoxes: 5, boxes: [], features: [] }), /numBoxes 5 not in \[0, 4\]/);
  assert.throws(() => w.add({ imgId: "y", imgH: 1, imgW: 1, numBoxes: 1, boxes: [0, 0, 1, 1], features: [1, 2] }),
    /img_id y\): features has 2 values, expected 3 for 1 boxes/);
  assert.ok(!fs.existsSync(file), "nothing at the final path before close");
  await w.close();
  const s = RegionStore.open(file);
  const x = s.get("x");
  assert.deepEqual(Array.from(x.objectsId), [-1, -1]);
  assert.deepEqual(Array.from(x.features), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(Array.from(x.normBoxes), [0, 0, 0.5, 0.5, 0.1, 0.2, 1, 1].map(Math.fround));
  assert.equal(s.get("empty").features.length, 0);
  s.close();

  const h = new RegionStoreWriter(path.join(dir, "h.vlp.regions"), { dim: 2, maxBoxes: 1, dtype: "float16" });
  assert.throws(() => h.add({ imgId: "big", imgH: 1, imgW: 1, numBoxes: 1, boxes: [0, 0, 1, 1], features: [1, 1e5] }),
    /img_id big\): feature 100000 \(box 0, dim 1\) overflows float16/);
  h.abort();

  const bytes = fs.readFileSync(file);
  const truncated = path.join(dir, "truncated.vlp.regions");
  fs.writeFileSync(truncated, bytes.subarray(0, bytes.length - 10));
  assert.throws(() => RegionStore.open(truncated), /truncated\.vlp\.regions: not a valid vlp\.regions store: bad trailer/);
  const notStore = path.join(dir, "other.bin");
  fs.writeFileSync(notStore, Buffer.alloc(200, 7));
  assert.throws(() => RegionStore.open(notStore), /other\.bin: not a valid vlp\.regions store: bad magic/);
});

test("vlp.regions: a NaN or infinite feature is refused by the writer and, in a damaged store, by get, naming record and img_id", async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "nan.vlp.regions");
  const w = new RegionStoreWriter(file, { dim: 3, maxBoxes: 2 });
  assert.throws(() => w.add({ imgId: "bad", imgH: 10, imgW: 10, numBoxes: 2, boxes: [0, 0, 1, 1, 0, 0, 2, 2], features: [1, 2, 3, 4, NaN, 6] }),
    /nan\.vlp\.regions: record 0 \(img_id bad\): features box 1 dim 1 is NaN/);
  assert.throws(() => w.add({ imgId: "bad", imgH: 10, imgW: 10, numBoxes: 1, boxes: [0, Infinity, 1, 1], features: [1, 2, 3] }),
    /record 0 \(img_id bad\): boxes box 0 coordinate 1 is Infinity/);
  w.add({ imgId: "a", imgH: 10, imgW: 10, numBoxes: 1, boxes: [0, 0, 1, 1], features: [1, 2, 3] });
  w.add({ imgId: "b", imgH: 10, imgW: 10, numBoxes: 2, boxes: [0, 0, 1, 1, 0, 0, 2, 2], features: [4, 5, 6, 7, 8.5, 9] });
  await w.close();
  // damage the store: 8.5 (box 1, dim 1 of "b") becomes NaN
  const bytes = fs.readFileSync(file);
  const at = bytes.indexOf(Buffer.from(new Float32Array([8.5]).buffer));
  assert.ok(at > 0);
  bytes.writeFloatLE(NaN, at);
  fs.writeFileSync(file, bytes);
  const s = RegionStore.open(file);
  t.after(() => s.close());
  assert.deepEqual(Array.from(s.get("a").features), [1, 2, 3]);
  assert.throws(() => s.get("b"), /nan\.vlp\.regions: record 1 \(img_id b\): features box 1 dim 1 is NaN/);
});

test("RegionStore.get over a ~200 MB store does not load the file (RSS growth well below its size)", async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "big.vlp.regions");
  const n = 680; // 36 boxes x 2048 float32 ≈ 295 KB per record
  const w = new RegionStoreWriter(file, { dim: 2048, maxBoxes: 36 });
  const feats = new Float32Array(36 * 2048);
  const boxes = new Float32Array(36 * 4).fill(1);
  for (let i = 0; i < n; i++) {
    feats.fill(i);
    feats[feats.length - 1] = -i;
    w.add({ imgId: `im${i}`, imgH: 480, imgW: 640, numBoxes: 36, boxes, features: feats });
  }
  await w.close();
  const size = fs.statSync(file).size;
  assert.ok(size > 200e6, `store is ${size} bytes`);

  // Each get allocates ~295 KB that becomes garbage; V8 frees it lazily, so the raw peak
  // includes tens of MB of garbage. With a collection every 20 reads the growth is what
  // the store actually retains.
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const store = RegionStore.open(file);
  const ids = shuffled(store.ids(), 11);
  const growth = (collect: boolean): number => {
    gc();
    const before = process.memoryUsage().rss;
    let peak = before;
    ids.forEach((id, k) => {
      const r = store.get(id);
      const i = Number(id.slice(2));
      assert.equal(r.features[5], i);
      assert.equal(r.features[r.features.length - 1], -i);
      if (collect && k % 20 === 19) gc();
      peak = Math.max(peak, process.memoryUsage().rss);
    });
    return peak - before;
  };
  const raw = growth(false);
  const retained = growth(true);
  store.close();
  const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
  assert.ok(retained < size / 10, `retained RSS growth ${mb(retained)} reading a ${mb(size)} store`);
  assert.ok(raw < size / 2, `raw RSS growth ${mb(raw)} reading a ${mb(size)} store`);
});

test("grid regions: cell boxes, no labels, and documented per-cell statistics", () => {
  const g = gridRegions(3, 10, 7);
  assert.equal(g.numBoxes, 9);
  assert.deepEqual(Array.from(g.boxes.subarray(0, 12)), [0, 0, 3, 2, 3, 0, 7, 2, 7, 0, 10, 2]);
  assert.deepEqual(Array.from(g.boxes.subarray(32, 36)), [7, 5, 10, 7]);
  assert.deepEqual(Array.from(g.objectsId), new Array(9).fill(-1));
  assert.equal(g.normBoxes[34], 1);

  // 4x2 RGB image, k=2 → 2x1-pixel cells. Left-top cell: pure red + pure blue; others grey.
  const W = 4, H = 2;
  const px = new Uint8Array(W * H * 3).fill(51); // 0.2 grey
  px.set([255, 0, 0, 0, 0, 255], 0);
  const dim = 14 + 3 * 2 + 1; // 2 histogram bins per channel and one padding zero
  const f = gridCellFeatures(px, W, H, { k: 2, dim });
  assert.equal(f.length, 4 * dim);
  const c0 = Array.from(f.subarray(0, dim));
  const lumaR = 0.299, lumaB = 0.114;
  const expected = [
    0.5, 0, 0.5, 0.5, 0, 0.5, 0, 0, 0, 1, 0, 1, // mean, std, min, max
    Math.abs(lumaB - lumaR), 0, // horizontal / vertical luma differences (cell is one row)
    0.5, 0.5, 1, 0, 0.5, 0.5, // R, G, B histograms (bins [0,0.5), [0.5,1])
    0,
  ];
  c0.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6, `feature ${i}: ${v} vs ${expected[i]}`));
  const c3 = Array.from(f.subarray(3 * dim, 4 * dim));
  assert.ok(Math.abs(c3[0] - 0.2) < 1e-6 && c3[3] === 0 && c3[14] === 1 && c3[15] === 0);

  const small = gridCellFeatures(px, W, H, { k: 2, dim: 5 });
  assert.deepEqual(Array.from(small.subarray(0, 5)).map((v) => +v.toFixed(6)), [0.5, 0, 0.5, 0.5, 0]);
  assert.throws(() => gridCellFeatures(px, W, H + 1, { k: 2, dim: 8 }), /24 bytes, expected 4x3x3 = 36/);

  const rf = gridRegionFeatures("raw_1", new Uint8Array(64 * 48 * 4), 64, 48, { channels: 4 });
  assert.deepEqual([rf.numBoxes, rf.dim, rf.features.length, rf.imgW, rf.imgH], [36, 2048, 36 * 2048, 64, 48]);
});

test("Obj36Writer output converts to a store identical to the reader's view", async (t) => {
  const dir = tmpDir(t);
  const tsv = path.join(dir, "w.tsv");
  const w = new Obj36Writer(tsv);
  const recs = [makeRecord("a", 36, 8, 1), makeRecord("b", 36, 8, 2)];
  recs.forEach((r) => w.write(r));
  await w.close();
  const out = path.join(dir, "w.vlp.regions");
  await convertTsvToStore(tsv, out);
  const s = RegionStore.open(out);
  recs.forEach((r) => assert.deepEqual(s.get(r.img_id), fromObj36(r)));
  s.close();
});

test("grid regions from an encoded image match the raw-pixel features", async () => {
  const { default: sharp } = await import("sharp");
  const W = 30, H = 20;
  const rgb = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) rgb.set([x * 8, y * 12, (x + y) % 2 ? 255 : 0], (y * W + x) * 3);
  }
  const png = await sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
  const fromPng = await gridRegionsFromImage("img.png", png, { k: 3, dim: 32 });
  const fromRaw = gridRegionFeatures("img.png", rgb, W, H, { k: 3, dim: 32 });
  assert.deepEqual(fromPng, fromRaw);
  assert.ok(fromRaw.features.some((v) => v > 0.3));
  await assert.rejects(gridRegionsFromImage("broken.jpg", new Uint8Array([1, 2, 3])), /image broken\.jpg: cannot decode \(3 bytes\)/);
});

test("TSV → store: a duplicate img_id names the TSV's path and line, and is skipped under skipInvalid", async (t) => {
  const dir = tmpDir(t);
  const tsv = path.join(dir, "dup.tsv");
  const rows = [makeRecord("a", 2, 4, 1), makeRecord("b", 3, 4, 2), makeRecord("a", 1, 4, 3)];
  fs.writeFileSync(tsv, rows.map((r) => encodeObj36Row(r) + "\r\n").join(""));
  const out = path.join(dir, "dup.regions");
  await assert.rejects(convertTsvToStore(tsv, out), (err: Error) => {
    assert.match(err.message, /dup\.tsv: line 3 \(img_id a\): duplicate img_id, first at line 1$/);
    assert.doesNotMatch(err.message, /dup\.regions/);
    return true;
  });
  assert.ok(!fs.existsSync(out), "no store left behind");
  assert.deepEqual(fs.readdirSync(dir), ["dup.tsv"], "no temporary file left behind");
  const skipped: Error[] = [];
  const res = await convertTsvToStore(tsv, out, { skipInvalid: true, onSkip: (e) => skipped.push(e) });
  assert.equal(res.count, 2);
  assert.deepEqual(skipped.map((e) => e.message), [`${tsv}: line 3 (img_id a): duplicate img_id, first at line 1`]);
  const s = RegionStore.open(out);
  assert.deepEqual(s.get("a"), fromObj36(rows[0]), "the first row is kept");
  s.close();
});

test("TSV → store under skipInvalid: a feature-dimension mismatch names the offending row, not the first", async (t) => {
  const dir = tmpDir(t);
  const tsv = path.join(dir, "dims.tsv");
  const rows = [makeRecord("r0", 2, 4, 1), makeRecord("r1", 2, 4, 2), makeRecord("odd", 5, 6, 3), makeRecord("r3", 1, 4, 4)];
  fs.writeFileSync(tsv, rows.map((r) => encodeObj36Row(r) + "\n").join(""));
  const out = path.join(dir, "dims.regions");
  await assert.rejects(convertTsvToStore(tsv, out), /dims\.tsv: line 3 \(img_id odd\): feature dim 6 differs from 4 \(the first row with boxes, line 1\)/);
  const skipped: string[] = [];
  const res = await convertTsvToStore(tsv, out, { skipInvalid: true, onSkip: (e) => skipped.push(e.message) });
  assert.deepEqual(skipped, [`${tsv}: line 3 (img_id odd): feature dim 6 differs from 4 (the first row with boxes, line 1)`]);
  assert.deepEqual([res.count, res.dim, res.maxBoxes], [3, 4, 2], "the skipped row's 5 boxes do not size the records");
});

test("TSV → store under skipInvalid: when the first row with boxes is the odd one, it is the row named and skipped", async (t) => {
  const dir = tmpDir(t);
  const tsv = path.join(dir, "firstodd.tsv");
  const rows = [makeRecord("odd", 5, 6, 1), makeRecord("r1", 2, 4, 2), makeRecord("r2", 3, 4, 3), makeRecord("r3", 1, 4, 4)];
  fs.writeFileSync(tsv, rows.map((r) => encodeObj36Row(r) + "\n").join(""));
  const out = path.join(dir, "firstodd.regions");
  const skipped: string[] = [];
  const res = await convertTsvToStore(tsv, out, { skipInvalid: true, onSkip: (e) => skipped.push(e.message) });
  assert.deepEqual(skipped, [`${tsv}: line 1 (img_id odd): feature dim 6 differs from 4 (the dimension of most rows with boxes (3), first at line 2)`]);
  assert.deepEqual([res.count, res.dim, res.maxBoxes], [3, 4, 3]);
  const s = RegionStore.open(out);
  assert.deepEqual(s.ids(), ["r1", "r2", "r3"]);
  s.close();
  // without skipInvalid the first mismatch stops the conversion, naming its line
  await assert.rejects(convertTsvToStore(tsv, out), /firstodd\.tsv: line 2 \(img_id r1\): feature dim 4 differs from 6 \(the first row with boxes, line 1\)/);
});

test("a 0-box row has the file's feature dimension in the TSV reader and in the store", async (t) => {
  const dir = tmpDir(t);
  const tsv = path.join(dir, "empty.tsv");
  const rows = [makeRecord("none", 0, 8, 1), makeRecord("some", 3, 8, 2)];
  fs.writeFileSync(tsv, rows.map((r) => encodeObj36Row(r) + "\n").join(""));
  const out = path.join(dir, "empty.regions");
  await convertTsvToStore(tsv, out);
  const store = RegionStore.open(out);
  const reader = await TsvRegionReader.open(tsv);
  assert.equal(reader.dim, 8);
  for (const id of ["none", "some"]) {
    const a = reader.get(id);
    const b = store.get(id);
    assert.equal(a.dim, 8, id);
    assert.deepEqual(a, b, id);
  }
  assert.equal(reader.get("none").features.length, 0);
  reader.close();
  store.close();
});
