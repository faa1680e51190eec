// The search index: exact top-k against a brute-force reference, float16 storage, incremental
// adds (files and memory), recovery from a torn add, and `vlp index build` over a small world.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, statSync, appendFileSync, readFileSync, writeFileSync, mkdirSync, copyFileSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { VectorIndex } from "../src/serve/vindex.ts";
import { buildIndex, resolveCollection } from "../src/serve/build.ts";
import { loadServedModel, Inference, prepareImage } from "../src/serve/model.ts";
import { tensor, tidy, liveTensors, manualSeed } from "../src/engine/index.ts";
import { VLMoModel, vlmoConfig } from "../src/models/vlmo/index.ts";
import { saveStateDict } from "../src/engine/checkpoint.ts";
import { generateWorld } from "../src/data/synth/world.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-index-"));
const T = { timeout: 120_000 };

/** Deterministic unit vectors (a small LCG, independent of the engine). */
function unitRows(n: number, d: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  const a = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let j = 0; j < d; j++) norm += (a[i * d + j] = next()) ** 2;
    norm = Math.sqrt(norm);
    for (let j = 0; j < d; j++) a[i * d + j] /= norm;
  }
  return a;
}

/** Top-k by brute force in JS (float64 dot products). */
function bruteTopK(rows: Float32Array, q: Float32Array, d: number, k: number): { row: number; score: number }[] {
  const n = rows.length / d;
  const s = Array.from({ length: n }, (_, i) => {
    let x = 0;
    for (let j = 0; j < d; j++) x += rows[i * d + j] * q[j];
    return { row: i, score: x };
  });
  return s.sort((a, b) => b.score - a.score).slice(0, k);
}

test("exact top-k equals brute force, in one chunk and across chunks, for one and several queries", T, () => {
  const d = 24, n = 203;
  const rows = unitRows(n, d, 1);
  const idx = VectorIndex.create(join(root, "exact"), { checkpoint: "/x", model: "m", dim: d, dtype: "float32", imagesRoot: null });
  idx.add("image", rows, Array.from({ length: n }, (_, i) => `img${i}`));
  const part = idx.part("image")!;
  const queries = unitRows(3, d, 2);
  const live = liveTensors();
  for (const chunk of [1 << 17, 50, 7]) {
    for (const Q of [1, 3]) {
      const hits = tidy(() => part.search(tensor(queries.slice(0, Q * d), { shape: [Q, d] }), 10, chunk));
      for (let q = 0; q < Q; q++) {
        const want = bruteTopK(rows, queries.subarray(q * d, (q + 1) * d), d, 10);
        assert.deepEqual(hits[q].map((h) => h.row), want.map((w) => w.row), `chunk ${chunk}, query ${q}`);
        hits[q].forEach((h, i) => {
          assert.ok(Math.abs(h.score - want[i].score) < 1e-5);
          assert.equal(h.id, `img${h.row}`);
        });
      }
    }
  }
  // k larger than the index: everything, sorted
  const all = tidy(() => part.search(tensor(queries.slice(0, d), { shape: [1, d] }), 1000, 64))[0];
  assert.equal(all.length, n);
  assert.ok(all.every((h, i) => i === 0 || h.score <= all[i - 1].score));
  assert.equal(liveTensors(), live, "search frees its tensors");
  idx.dispose();
});

test("float16 storage: half the bytes, the same ranking up to float16 rounding; reopen reads what was written", T, () => {
  const d = 32, n = 500;
  const rows = unitRows(n, d, 3);
  for (const dtype of ["float32", "float16"] as const) {
    const dir = join(root, `dt-${dtype}`);
    const idx = VectorIndex.create(dir, { checkpoint: "/x", model: "m", dim: d, dtype, imagesRoot: null });
    idx.add("image", rows, Array.from({ length: n }, (_, i) => String(i)));
    assert.equal(statSync(join(dir, `image.${dtype === "float32" ? "f32" : "f16"}`)).size, n * d * (dtype === "float32" ? 4 : 2));
    assert.equal(idx.bytes >= n * d * (dtype === "float32" ? 4 : 2), true);
    idx.dispose();
    const again = VectorIndex.open(dir);
    const q = unitRows(1, d, 4);
    const hits = tidy(() => again.part("image")!.search(tensor(q, { shape: [1, d] }), 5))[0];
    const want = bruteTopK(rows, q, d, 5);
    assert.equal(hits[0].row, want[0].row, dtype);
    hits.forEach((h, i) => assert.ok(Math.abs(h.score - want[i].score) < (dtype === "float16" ? 2e-3 : 1e-6), `${dtype} score ${h.score} vs ${want[i].score}`));
    again.dispose();
  }
});

test("incremental add: appends on disk and in memory, rejects duplicate ids, recovers from a torn add", T, () => {
  const d = 8;
  const dir = join(root, "incr");
  const idx = VectorIndex.create(dir, { checkpoint: "/x", model: "m", dim: d, dtype: "float32", imagesRoot: null });
  const a = unitRows(10, d, 5), b = unitRows(6, d, 6);
  idx.add("text", a, Array.from({ length: 10 }, (_, i) => `a${i}`), Array.from({ length: 10 }, (_, i) => `caption a${i}`));
  idx.add("text", b, Array.from({ length: 6 }, (_, i) => `b${i}`), Array.from({ length: 6 }, (_, i) => `caption b${i}`));
  assert.throws(() => idx.add("text", b.slice(0, d), ["a3"], ["dup"]), /id "a3" is there already/);
  assert.throws(() => idx.add("text", unitRows(2, d, 9), ["z", "z"], ["1", "2"]), /id "z" is there already/);
  assert.throws(() => idx.add("../x", a, ["q"]), /bad part name/);
  assert.equal(idx.part("text")!.count, 16);
  idx.dispose();
  // a torn add: vector bytes and ids past the manifest's count (a crash before index.json was written)
  appendFileSync(join(dir, "text.f32"), Buffer.alloc(3 * d * 4, 7));
  const ids = JSON.parse(readFileSync(join(dir, "text.ids.json"), "utf8"));
  writeFileSync(join(dir, "text.ids.json"), JSON.stringify([...ids, "torn1", "torn2", "torn3"]));
  const re = VectorIndex.open(dir);
  const p = re.part("text")!;
  assert.equal(p.count, 16);
  assert.equal(p.has("torn1"), false);
  const q = b.slice(2 * d, 3 * d); // b2 itself
  const top = tidy(() => p.search(tensor(q, { shape: [1, d] }), 1))[0][0];
  assert.equal(top.id, "b2");
  assert.equal(top.text, "caption b2");
  assert.ok(Math.abs(top.score - 1) < 1e-5);
  re.add("text", unitRows(1, d, 11), ["c0"], ["caption c0"]);
  assert.equal(statSync(join(dir, "text.f32")).size, 17 * d * 4, "the torn tail was overwritten");
  re.dispose();
  const third = VectorIndex.open(dir);
  assert.deepEqual(third.part("text")!.ids.slice(-2), ["b5", "c0"]);
  third.dispose();
});

// ---- building from images with a checkpoint ----------------------------------------------------

let world = "";
let ckpt = "";
before(async () => {
  world = join(root, "world");
  await generateWorld({ images: 24, seed: 11, out: world, size: 64, featDim: 32, boxes: 8 });
  ckpt = join(root, "ckpt");
  mkdirSync(ckpt);
  manualSeed(4);
  const overrides = { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1 };
  const m = new VLMoModel(vlmoConfig("tiny", overrides));
  saveStateDict(join(ckpt, "model.safetensors"), m);
  writeFileSync(join(ckpt, "recipe.json"), JSON.stringify({ method: "vlmo", model: { preset: "tiny", overrides }, data: { world } }));
  m.dispose();
});

test("vlp index build: embeds a dataset's images and captions; a second run adds only the new ones", T, async () => {
  const served = await loadServedModel(ckpt);
  const out = join(root, "built");
  const testSplit = resolveCollection(world, { split: "test" });
  const all = resolveCollection(world);
  assert.ok(testSplit.images.length >= 1 && all.images.length > testSplit.images.length);
  const s1 = await buildIndex(served, testSplit, { out, batch: 4, flushEvery: 3 });
  assert.equal(s1.added.images, testSplit.images.length);
  assert.equal(s1.added.captions, testSplit.captions.length);
  const s2 = await buildIndex(served, all, { out, batch: 5 });
  assert.equal(s2.skipped.images, testSplit.images.length);
  assert.equal(s2.added.images, all.images.length - testSplit.images.length);
  assert.equal(s2.total.images, all.images.length);
  assert.equal(s2.total.captions, all.captions.length);
  // the stored vectors are the encoder's: an image's own vector is its nearest neighbour, score 1
  const idx = VectorIndex.open(out);
  const inf = new Inference(served);
  const id = all.images[all.images.length - 1];
  const px = await prepareImage(readFileSync(join(all.root, id)), inf.imageSize, "test");
  const e = inf.embedImages([px])[0];
  const hit = tidy(() => idx.part("image")!.search(tensor(e, { shape: [1, e.length] }), 1))[0][0];
  assert.equal(hit.id, id);
  assert.ok(Math.abs(hit.score - 1) < 1e-4, `self-similarity ${hit.score}`);
  // ids are unique and the captions keep their texts
  const textPart = idx.part("text")!;
  assert.equal(new Set(textPart.ids).size, textPart.count);
  assert.equal(textPart.texts![0].length > 0, true);
  idx.dispose();
  // a different dtype or checkpoint for the same folder is refused
  await assert.rejects(buildIndex(served, all, { out, dtype: "float16" }), /a float32 index, --dtype float16 asked/);
  served.model.dispose();
});

test("vlp index build (CLI) over a plain image folder, float16, with a progress line", T, () => {
  const folder = join(root, "folder", "sub");
  mkdirSync(folder, { recursive: true });
  const files = resolveCollection(world).images.slice(0, 5);
  for (const f of files) copyFileSync(join(world, "images", f), join(folder, f));
  writeFileSync(join(folder, "notes.txt"), "not an image");
  const out = join(root, "folder-index");
  const cli = new URL("../src/cli/vlp.ts", import.meta.url).pathname;
  const r = spawnSync(process.execPath, ["--import", "tsx", cli, "index", "build", "--checkpoint", ckpt, "--images", join(root, "folder"), "--out", out, "--dtype", "float16"], { encoding: "utf8", env: { ...process.env, VLP_NUM_THREADS: "1" }, timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /5 images \(5 added/);
  assert.match(r.stderr, /index images \[#+\] 5\/5/);
  const idx = VectorIndex.open(out);
  assert.deepEqual(idx.part("image")!.ids, files.map((f) => `sub/${f}`));
  assert.equal(idx.part("text"), undefined);
  assert.equal(statSync(join(out, "image.f16")).size, 5 * 32 * 2);
  idx.dispose();
  const bad = spawnSync(process.execPath, ["--import", "tsx", cli, "index", "build", "--checkpoint", join(root, "nope"), "--images", folder, "--out", out], { encoding: "utf8", timeout: 60_000 });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /nope: checkpoint directory not found/);
});

test("--images DIR stays inside DIR: links out of it and dangling links are skipped, links inside followed", () => {
  const dir = mkdtempSync(join(tmpdir(), "vlp-links-"));
  const outside = mkdtempSync(join(tmpdir(), "vlp-outside-"));
  writeFileSync(join(outside, "secret.png"), "x");
  mkdirSync(join(dir, "sub"));
  for (const f of ["a.png", "sub/c.jpg", "notes.txt"]) writeFileSync(join(dir, f), "x");
  symlinkSync(outside, join(dir, "etc")); // a folder outside
  symlinkSync(join(outside, "secret.png"), join(dir, "b.png")); // a file outside
  symlinkSync(join(dir, "gone.png"), join(dir, "dangling.png"));
  symlinkSync(join(dir, "sub"), join(dir, "inner")); // inside: followed
  assert.deepEqual(resolveCollection(dir).images, ["a.png", "inner/c.jpg", "sub/c.jpg"]);
  // a folder of nothing but links out of it has no images, and says so with the folder's name
  const only = mkdtempSync(join(tmpdir(), "vlp-only-"));
  symlinkSync(outside, join(only, "etc"));
  assert.throws(() => resolveCollection(only), new RegExp(`--images ${only}: no \\.png/`));
});
