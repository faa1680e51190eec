// VLMo's pre-training augmentation (the paper: "We apply RandAugment to the input images"; the official
// square_transform_randaug: RandomResizedCrop(scale 0.5-1), flip, RandomAugment(2, 7) with p = 0.5):
// the crop box's distribution, the flip, the builder's seeded views (train only, exact on resume), and
// the recipe key's checks.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomResizedCropBox, hflip, randAugment, augmentView, VLMO_PRETRAIN_AUGMENT } from "../src/vision/augment.ts";
import { Rng } from "../src/engine/rng.ts";
import { createBuilder } from "../src/pretrain/imagetext.ts";
import { pretrainAugment } from "../src/pretrain/vlmo.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { generateWorld } from "../src/data/synth/world.ts";
import type { RgbImage } from "../src/vision/image.ts";

let world = "";
before(async () => {
  world = join(mkdtempSync(join(tmpdir(), "vlp-aug-")), "world");
  await generateWorld({ images: 24, seed: 3, out: world, size: 64, featDim: 32, boxes: 12 });
});
after(() => rmSync(join(world, ".."), { recursive: true, force: true }));

test("randomResizedCropBox: inside the image, area fraction in scale, aspect ratio in range; centre crop when nothing fits", () => {
  const rng = new Rng(7);
  let minArea = 1, maxArea = 0;
  for (let i = 0; i < 2000; i++) {
    const b = randomResizedCropBox(128, 96, rng, [0.5, 1]);
    assert.ok(Number.isInteger(b.left) && Number.isInteger(b.top) && b.width > 0 && b.height > 0);
    assert.ok(b.left >= 0 && b.top >= 0 && b.left + b.width <= 128 && b.top + b.height <= 96, JSON.stringify(b));
    const area = (b.width * b.height) / (128 * 96);
    minArea = Math.min(minArea, area);
    maxArea = Math.max(maxArea, area);
    // rounding to whole pixels moves the fraction and the ratio slightly
    assert.ok(area > 0.48 && area <= 1, `area ${area}`);
    const r = b.width / b.height;
    if (b.width !== 128 || b.height !== 96) assert.ok(r > 0.73 && r < 1.37, `ratio ${r}`);
  }
  assert.ok(minArea < 0.55 && maxArea > 0.9, `draws span the scale range: ${minArea}..${maxArea}`);
  // a 1000 x 10 image: no 3/4..4/3 box of half its area fits, so the whole height, width cut to 4/3, centred
  assert.deepEqual(randomResizedCropBox(1000, 10, new Rng(1), [0.5, 1]), { left: 493, top: 0, width: 13, height: 10 });
});

test("hflip mirrors rows and is its own inverse", () => {
  const img: RgbImage = { data: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), width: 2, height: 2 };
  assert.deepEqual([...hflip(img).data], [4, 5, 6, 1, 2, 3, 10, 11, 12, 7, 8, 9]);
  assert.deepEqual([...hflip(hflip(img)).data], [...img.data]);
});

test("randAugment with p = 0 applies nothing; with p = 1 every drawn op applies", () => {
  const img: RgbImage = { data: Uint8Array.from({ length: 16 * 16 * 3 }, (_, i) => (i * 37) % 256), width: 16, height: 16 };
  assert.deepEqual([...randAugment(img, { seed: 3, p: 0, n: 4 }).data], [...img.data]);
  assert.notDeepEqual([...randAugment(img, { seed: 3, p: 1, ops: ["solarize"] }).data], [...img.data]);
});

test("augmentView: the size asked, deterministic in its generator, different views from different draws", async () => {
  const img: RgbImage = { data: Uint8Array.from({ length: 40 * 30 * 3 }, (_, i) => (i * 13) % 256), width: 40, height: 30 };
  const a = await augmentView(img, 16, VLMO_PRETRAIN_AUGMENT, new Rng(5));
  const b = await augmentView(img, 16, VLMO_PRETRAIN_AUGMENT, new Rng(5));
  const c = await augmentView(img, 16, VLMO_PRETRAIN_AUGMENT, new Rng(6));
  assert.equal(a.width, 16);
  assert.equal(a.height, 16);
  assert.deepEqual([...a.data], [...b.data]);
  assert.notDeepEqual([...a.data], [...c.data]);
});

test("the image-text builder augments train images only, seeded by (seed, step, example): a resumed step rebuilds the same batch", async () => {
  const base = { karpathy: join(world, "karpathy/dataset_synth.json"), images: join(world, "images"), mode: "pair" as const, imageSize: 32, maxTextLen: 16 };
  const plain = await createBuilder({ ...base, split: "train" });
  const aug = await createBuilder({ ...base, split: "train", augment: VLMO_PRETRAIN_AUGMENT, seed: 1 });
  const idx = [0, 1, 2, 3];
  const px = async (b: typeof plain, step: number) => [...((await b.build(idx, step)).arrays.pixels.data as Float32Array)];
  const p0 = await px(plain, 0);
  assert.deepEqual(await px(plain, 5), p0, "without augmentation a batch does not depend on the step");
  const a5 = await px(aug, 5);
  assert.notDeepEqual(a5, p0);
  assert.deepEqual(await px(aug, 5), a5, "the same step and examples give the same views");
  assert.notDeepEqual(await px(aug, 6), a5, "another step draws other views");
  const other = await createBuilder({ ...base, split: "train", augment: VLMO_PRETRAIN_AUGMENT, seed: 2 });
  assert.notDeepEqual(await px(other, 5), a5, "the run's seed enters the draw");
  const text = (await aug.build(idx, 5)).arrays.input_ids.data;
  assert.deepEqual([...(text as Int32Array | BigInt64Array)].map(Number), [...((await plain.build(idx, 5)).arrays.input_ids.data as Int32Array | BigInt64Array)].map(Number), "captions untouched");
  // held-out images are never augmented
  const valPlain = await createBuilder({ ...base, split: "val" });
  const valAug = await createBuilder({ ...base, split: "val", augment: VLMO_PRETRAIN_AUGMENT, seed: 1 });
  assert.deepEqual(await px(valAug, 5), await px(valPlain, 5));
});

test("recipe.vlmo.augment: true is the official transform, false none, an object overrides fields; bad values name the key", () => {
  assert.equal(pretrainAugment(true), VLMO_PRETRAIN_AUGMENT);
  assert.equal(pretrainAugment(undefined), VLMO_PRETRAIN_AUGMENT);
  assert.equal(pretrainAugment(false), null);
  const noFlip = pretrainAugment({ flip: false })!;
  assert.equal(noFlip.flip, false);
  assert.deepEqual(noFlip.scale, [0.5, 1]);
  assert.equal(noFlip.m, 7);
  assert.throws(() => pretrainAugment({ scale: [0.9, 0.2] }), /recipe\.vlmo\.augment\.scale/);
  const recipe = (augment: unknown) => validateRecipe({ method: "vlmo", model: { preset: "tiny" }, data: { world: "w" }, vlmo: { augment } });
  assert.ok(recipe({ flip: false, m: 5 }));
  assert.ok(recipe(false));
  assert.throws(() => recipe({ flop: true }), /recipe\.vlmo\.augment/);
  assert.throws(() => recipe({ ops: ["invert"] }), /recipe\.vlmo\.augment/);
  assert.throws(() => recipe({ m: 12 }), /recipe\.vlmo\.augment/);
  assert.throws(() => recipe("yes"), /recipe\.vlmo\.augment/);
});
