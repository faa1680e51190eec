import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import {
  IMAGENET_NORM, VLMO_NORM, ImageCache, decodeImage, encodeJpeg, encodePng, patchify, resizeImage, resizedSize, toChw,
  type ChwImage, type RgbImage,
} from "../src/vision/image.ts";
import { AUG_OPS, affine, applyOp, randAugment } from "../src/vision/augment.ts";
import { Rng } from "../src/engine/rng.ts";

const rgb = (w: number, h: number, px: number[]): RgbImage => ({ data: Uint8Array.from(px), width: w, height: h });

/** A 32x32 test pattern with gradients and edges, so that every op has something to change. */
function pattern(): RgbImage {
  const W = 32;
  const data = new Uint8Array(W * W * 3);
  for (let y = 0; y < W; y++) {
    for (let x = 0; x < W; x++) {
      const o = (y * W + x) * 3;
      data[o] = 40 + x * 5;
      data[o + 1] = 30 + y * 6;
      data[o + 2] = (x + y) % 4 < 2 ? 200 : 60;
    }
  }
  return { data, width: W, height: W };
}

test("encodePng/decodeImage round-trip exact RGB values", async () => {
  const img = rgb(2, 2, [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]);
  const png = await encodePng(img.data, 2, 2);
  assert.deepEqual([...png.subarray(1, 4)].map((c) => String.fromCharCode(c)).join(""), "PNG");
  const back = await decodeImage(png, "mem.png");
  assert.equal(back.width, 2);
  assert.equal(back.height, 2);
  assert.deepEqual([...back.data], [...img.data]);
});

test("decodeImage: JPEG (lossy), SVG and grayscale PNG all give 3-channel RGB", async () => {
  const flat = new Uint8Array(8 * 8 * 3).fill(0);
  for (let i = 0; i < flat.length; i += 3) [flat[i], flat[i + 1], flat[i + 2]] = [200, 100, 50];
  const jpg = await decodeImage(await encodeJpeg(flat, 8, 8, 95), "mem.jpg");
  assert.equal(jpg.data.length, 8 * 8 * 3);
  for (let i = 0; i < jpg.data.length; i++) assert.ok(Math.abs(jpg.data[i] - flat[i]) <= 4, `jpeg pixel byte ${i}`);

  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="2"><rect width="4" height="2" fill="#ff0000"/></svg>');
  const s = await decodeImage(svg, "red.svg");
  assert.deepEqual([s.width, s.height], [4, 2]);
  assert.deepEqual([...s.data.subarray(0, 3)], [255, 0, 0]);

  const gray = await sharp(Buffer.from([0, 128, 255, 7]), { raw: { width: 2, height: 2, channels: 1 } }).png().toBuffer();
  const g = await decodeImage(gray, "gray.png");
  assert.deepEqual([...g.data], [0, 0, 0, 128, 128, 128, 255, 255, 255, 7, 7, 7]);
});

test("missing and corrupt images throw errors naming the file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vlp-img-"));
  try {
    const missing = join(dir, "img", "abc.jpg");
    await assert.rejects(decodeImage(missing), (e: Error) => e.message.startsWith(`${missing}: cannot read image`));
    const bad = join(dir, "bad.png");
    writeFileSync(bad, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, 7)]));
    await assert.rejects(decodeImage(bad), (e: Error) => e.message.startsWith(`${bad}: cannot decode image (`));
    const text = join(dir, "notes.jpg");
    writeFileSync(text, "not an image at all");
    await assert.rejects(decodeImage(text), (e: Error) => e.message.startsWith(`${text}: cannot decode image (`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("resize: nearest upsampling duplicates pixels; shorter-side sizes keep aspect", async () => {
  const img = rgb(2, 2, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const up = await resizeImage(img, { mode: "square", size: 4, kernel: "nearest" });
  assert.deepEqual([up.width, up.height], [4, 4]);
  const at = (x: number, y: number) => [...up.data.subarray((y * 4 + x) * 3, (y * 4 + x) * 3 + 3)];
  assert.deepEqual(at(0, 0), [1, 2, 3]);
  assert.deepEqual(at(1, 1), [1, 2, 3]);
  assert.deepEqual(at(3, 0), [4, 5, 6]);
  assert.deepEqual(at(0, 3), [7, 8, 9]);
  assert.deepEqual(at(2, 2), [10, 11, 12]);

  assert.deepEqual(resizedSize(640, 480, { mode: "shorter", size: 384 }), [512, 384]);
  assert.deepEqual(resizedSize(1000, 200, { mode: "shorter", size: 384, maxLonger: 640 }), [640, 128]);
  assert.deepEqual(resizedSize(30, 50, { mode: "square", size: 224 }), [224, 224]);
  const wide = await resizeImage(rgb(4, 2, new Array(24).fill(90)), { mode: "shorter", size: 4 });
  assert.deepEqual([wide.width, wide.height], [8, 4]);
  assert.ok(wide.data.every((v) => v === 90), "a flat image stays flat");
});

test("toChw normalises into channel planes", () => {
  const img = rgb(2, 1, [0, 128, 255, 255, 0, 51]);
  const v = toChw(img, VLMO_NORM);
  assert.deepEqual([v.channels, v.height, v.width], [3, 1, 2]);
  const expect = [-1, 1, 128 / 127.5 - 1, -1, 1, 51 / 127.5 - 1]; // R plane, G plane, B plane
  expect.forEach((e, i) => assert.ok(Math.abs(v.data[i] - e) < 1e-6, `value ${i}: ${v.data[i]} vs ${e}`));
  const n = toChw(img, IMAGENET_NORM);
  assert.ok(Math.abs(n.data[0] - (0 - 0.485) / 0.229) < 1e-6);
  assert.ok(Math.abs(n.data[5] - (0.2 - 0.406) / 0.225) < 1e-6);
});

test("patchify: row-major patches, (c, y, x) inside a patch, equal to a strided conv", () => {
  const C = 3, H = 4, W = 6, P = 2;
  const img: ChwImage = { data: Float32Array.from({ length: C * H * W }, (_, i) => i), channels: C, height: H, width: W };
  const p = patchify(img, P);
  assert.deepEqual([p.numPatches, p.patchDim, p.gridH, p.gridW], [6, 12, 2, 3]);
  // patch (row 0, col 1): x = 2..3, y = 0..1, per channel plane of 24 values.
  assert.deepEqual([...p.data.subarray(12, 24)], [2, 3, 8, 9, 26, 27, 32, 33, 50, 51, 56, 57]);
  // patch (row 1, col 0) is the 4th.
  assert.deepEqual([...p.data.subarray(36, 40)], [12, 13, 18, 19]);

  const rng = new Rng(3);
  const weight = Float32Array.from({ length: C * P * P }, () => rng.normal());
  for (let gy = 0; gy < 2; gy++) {
    for (let gx = 0; gx < 3; gx++) {
      let conv = 0;
      for (let c = 0; c < C; c++) for (let y = 0; y < P; y++) for (let x = 0; x < P; x++) {
        conv += weight[(c * P + y) * P + x] * img.data[(c * H + gy * P + y) * W + gx * P + x];
      }
      const row = p.data.subarray((gy * 3 + gx) * 12, (gy * 3 + gx + 1) * 12);
      const dot = row.reduce((s, v, i) => s + v * weight[i], 0);
      assert.ok(Math.abs(conv - dot) < 1e-3);
    }
  }
  assert.throws(() => patchify(img, 4), /not divisible by patch 4/);
});

test("randAugment is deterministic by seed and changes pixels", () => {
  const img = pattern();
  const a = randAugment(img, { n: 2, m: 9, seed: 11 });
  const b = randAugment(img, { n: 2, m: 9, seed: 11 });
  assert.deepEqual([...a.data], [...b.data]);
  const outputs = new Set(Array.from({ length: 8 }, (_, s) => Buffer.from(randAugment(img, { n: 2, m: 9, seed: s }).data).toString("hex")));
  assert.ok(outputs.size >= 6, `different seeds give different images (${outputs.size} distinct of 8)`);
  assert.ok(outputs.size > 0 && [...outputs].some((h) => h !== Buffer.from(img.data).toString("hex")));
  assert.throws(() => randAugment(img, {}), /seed/);
});

test("every augmentation op except identity changes the test pattern at magnitude 9", () => {
  const img = pattern();
  for (const op of AUG_OPS) {
    const out = applyOp(img, op, 9, new Rng(5));
    assert.equal(out.data.length, img.data.length);
    const changed = out.data.some((v, i) => v !== img.data[i]);
    assert.equal(changed, op !== "identity", `${op} ${changed ? "changed" : "did not change"} pixels`);
  }
});

test("augmentation ops by hand: solarize, posterize, magnitude 0, integer translation", () => {
  const img = rgb(2, 1, [0, 100, 255, 0x37, 200, 7]);
  assert.deepEqual([...applyOp(img, "solarize", 10, new Rng(1)).data], [255, 155, 0, 255 - 0x37, 55, 248]);
  assert.deepEqual([...applyOp(img, "posterize", 10, new Rng(1)).data], [0, 96, 240, 0x30, 192, 0]);
  for (const op of ["brightness", "contrast", "color", "solarize", "posterize", "rotate", "translate"] as const) {
    assert.deepEqual([...applyOp(img, op, 0, new Rng(1)).data], [...img.data], `${op} at magnitude 0`);
  }
  const shifted = affine(rgb(3, 1, [10, 10, 10, 20, 20, 20, 30, 30, 30]), [1, 0, -1, 0, 1, 0]);
  assert.deepEqual([...shifted.data], [128, 128, 128, 10, 10, 10, 20, 20, 20]);
});

test("a decompression bomb is refused from its header wherever images are decoded", async () => {
  const { pngBomb } = await import("./fixtures/hostile.ts");
  const { loadImageTensor, MAX_IMAGE_PIXELS } = await import("../src/vision/image.ts");
  const { gridRegionsFromImage } = await import("../src/data/regions/index.ts");
  const bomb = pngBomb(16000, 16000); // ~31 KB; 768 MB as RGB
  assert.ok(bomb.length < 64_000);
  const dir = mkdtempSync(join(tmpdir(), "bomb-"));
  try {
    const path = join(dir, "bomb.png");
    writeFileSync(path, bomb);
    const r0 = process.memoryUsage().rss;
    // training and `vlp index build` decode with loadImageTensor; region extraction with gridRegionsFromImage
    await assert.rejects(loadImageTensor(path, { mode: "square", size: 32 }), /bomb\.png: cannot decode image \(16000x16000 pixels, more than the 16777216 \(4096x4096\) decoded\)/);
    await assert.rejects(gridRegionsFromImage("img7", bomb), /image img7: cannot decode .*16000x16000 pixels, more than/);
    const grew = process.memoryUsage().rss - r0;
    assert.ok(grew < 200e6, `rss grew ${grew} bytes`);
    // an image at the cap still decodes (from its header the same code path)
    assert.equal(MAX_IMAGE_PIXELS, 4096 * 4096);
    const edge = await decodeImage(pngBomb(4096, 4096), "edge.png");
    assert.equal(edge.width * edge.height, MAX_IMAGE_PIXELS);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("ImageCache: a hit returns the image decoded once, not a new decode; images past the byte budget are decoded each time", async () => {
  const a = pattern(), b = rgb(2, 2, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const cache = new ImageCache(a.data.byteLength + 4);
  let loads = 0;
  const load = (img: RgbImage) => async () => { loads++; return { data: img.data.slice(), width: img.width, height: img.height }; };
  const first = await cache.get("a", load(a));
  const again = await cache.get("a", load(a));
  assert.equal(loads, 1, "the second get is a hit");
  assert.deepEqual([...again.data], [...a.data]);
  assert.deepEqual([...first.data], [...a.data]);
  assert.equal(cache.bytes, a.data.byteLength);
  // b does not fit in what is left: decoded, returned, not kept
  assert.deepEqual([...(await cache.get("b", load(b))).data], [...b.data]);
  await cache.get("b", load(b));
  assert.equal(loads, 3, "an image over the budget is loaded each time");
  assert.equal(cache.size, 1);
  assert.equal(cache.bytes, a.data.byteLength);
  // one image asked for twice at once (a batch with two of its captions): one load, its bytes counted once
  const both = new ImageCache(10 * a.data.byteLength);
  loads = 0;
  const [x, y] = await Promise.all([both.get("a", load(a)), both.get("a", load(a))]);
  assert.equal(loads, 1);
  assert.deepEqual([...x.data], [...y.data]);
  assert.equal(both.bytes, a.data.byteLength);
  assert.equal(both.size, 1);
  // a failed load is not kept: the next get loads again
  await assert.rejects(both.get("c", async () => { throw new Error("c.png: cannot decode image"); }), /c\.png/);
  assert.deepEqual([...(await both.get("c", load(b))).data], [...b.data]);
});
