// Can the cross-modal objectives learn at all? Checks of what a run needs for ITM/ITC to leave chance:
// the ITM labels and negative share of the batch builders, and that the pooled output of the models
// reads both modalities (in SemVLP's single and two-stream modes) with gradients reaching both inputs.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateWorld } from "../src/data/synth/world.ts";
import { createBuilder, type RegionTextBatch } from "../src/pretrain/builder.ts";
import { readPretrainExamples } from "../src/pretrain/examples.ts";
import { readHardNegatives } from "../src/data/formats/hardneg.ts";
import { toTensors } from "../src/data/loader.ts";
import { createBuilder as createImageTextBuilder } from "../src/pretrain/imagetext.ts";
import { readKarpathy, karpathySubset } from "../src/data/formats/karpathy.ts";
import { SemVLPForPreTraining, semvlpConfig } from "../src/models/semvlp.ts";
import { manualSeed, noGrad, tidy, type Tensor } from "../src/engine/index.ts";

let world = "";
before(async () => {
  world = join(mkdtempSync(join(tmpdir(), "vlp-learn-")), "world");
  await generateWorld({ images: 48, seed: 5, out: world, size: 64, featDim: 32, boxes: 12 });
});

test("ITM_HS builder: the hard pool's own image is never drawn as a negative, val images (no pool) get random ones; matched labels follow the images", async () => {
  const hardPool = join(world, "hardneg/hard_negative.json");
  // the world's pools list the image itself first (ViLBERT layout): the builder must skip it
  const hn = readHardNegatives(hardPool);
  assert.ok(hn.train_hard_pool.every((row, i) => row.includes(i)), "precondition: pools contain the image itself");
  for (const split of ["train", "val"]) {
  const path = join(world, `msp/sentence_${split}.json`);
  const b = await createBuilder({ examples: [{ path, granularity: "sentence" }], regions: join(world, "features/obj36.tsv"), maxTextLen: 16, maxBoxes: 12, seed: 1, itm: { prob: 1, hardPool } });
  const ex = readPretrainExamples(path, { granularity: "sentence" });
  let pairs = 0;
  for (let start = 0, step = 0; start < b.length; start += 16, step++) {
    const idx = Array.from({ length: Math.min(16, b.length - start) }, (_, k) => start + k);
    const h = await b.build(idx, step);
    const matched = h.arrays.matched.data as Uint8Array;
    const imgs = h.meta.imgIds as string[];
    idx.forEach((i, k) => {
      assert.equal(matched[k], imgs[k] === ex[i].imgId ? 1 : 0);
      assert.equal(matched[k], 0, `example ${i} (${ex[i].imgId}) was paired with its own image although p = 1`);
    });
    pairs += idx.length;
  }
  // val images have no pool (the file covers train images): their negatives are random images, never their own
  assert.ok(pairs > (split === "train" ? 100 : 5), `${split}: ${pairs} pairs`);
  }
});

test("VLMo held-out pairs: an unshuffled val batch holds distinct images (caption-major), train keeps every caption", async () => {
  const args = { karpathy: join(world, "karpathy/dataset_synth.json"), images: join(world, "images"), mode: "pair" as const, imageSize: 32, maxTextLen: 16 };
  const val = await createImageTextBuilder({ ...args, split: "val" });
  const images = karpathySubset(readKarpathy(args.karpathy).images, "val").length;
  assert.ok(images >= 2, "precondition: the world has several val images");
  const first = await val.build(Array.from({ length: images }, (_, k) => k), 0);
  const files = first.meta.files as string[];
  assert.equal(new Set(files).size, images, `val batch repeats an image: ${files.join(", ")}`);
  // ... and mixes the kinds of caption: the world's caption k of every image is of one kind (k = 0
  // names the count and background), so the first batches must not hold caption 0 alone
  const karpathy = readKarpathy(args.karpathy).images;
  const captionIndex = (file: string, text: string) => karpathy.find((im) => im.filename === file)!.sentences.findIndex((s) => s.raw === text);
  const firstTexts = (first.meta.texts ?? []) as string[];
  assert.equal(firstTexts.length, images, "the builder reports its texts");
  const kinds = new Set(files.map((f, k) => captionIndex(f, firstTexts[k])));
  assert.ok(kinds.size >= Math.min(3, images), `the first held-out batch holds caption positions ${[...kinds].join(", ")} only`);
  // the same pairs as before, only reordered: as many examples as captions
  const train = await createImageTextBuilder({ ...args, split: "train" });
  const head = (await train.build([0, 1], 0)).meta.files as string[];
  assert.equal(head[0], head[1], "train stays image-major (its loader shuffles)");
  assert.ok(val.length >= 2 * images);
  // the region-text builder of SemVLP/MSP: the same order for its held-out specs
  const spec = { examples: [{ path: join(world, "lxmert/mscoco_val.json") }], regions: join(world, "features/obj36.tsv"), maxTextLen: 16, maxBoxes: 12, seed: 1 };
  const rt = await createBuilder({ ...spec, interleave: true });
  const valImages = new Set(readPretrainExamples(spec.examples[0].path).map((e) => e.imgId)).size;
  const ids = (await rt.build(Array.from({ length: valImages }, (_, k) => k), 0)).meta.imgIds as string[];
  assert.equal(new Set(ids).size, valImages, `region-text val batch repeats an image: ${ids.join(", ")}`);
  assert.equal(rt.length, (await createBuilder(spec)).length);
});

test("SemVLP: the pooled output (ITM input) reads both the image and the text in both modes, and ITM gradients reach both inputs", () => {
  manualSeed(0);
  const model = new SemVLPForPreTraining(semvlpConfig("tiny", { visualFeatDim: 32, numQaLabels: 4, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 }));
  return createBuilder({ examples: [{ path: join(world, "lxmert/mscoco_train.json"), sources: ["mscoco"] }], regions: join(world, "features/obj36.tsv"), maxTextLen: 16, maxBoxes: 12, seed: 0, itm: { prob: 0.5 } })
    .then(async (builder) => {
      const host = await builder.build([0, 7, 14, 21, 28, 35, 42, 49], 0);
      for (const mode of ["single", "two"] as const) {
        tidy(() => {
          const b = toTensors(host);
          const fwd = (x: RegionTextBatch) => model.bert.forward({ inputIds: x.input_ids, attentionMask: x.attention_mask, visualFeats: x.feats, visualPos: x.boxes, visualAttentionMask: x.region_valid }, mode).pooledOutput;
          const roll = (t: Tensor) => t.roll(1, 0);
          const rel = (a: Tensor, c: Tensor) => a.sub(c).norm().item() / a.norm().item();
          noGrad(() => {
            const p = fwd(b);
            const img = rel(p, fwd({ ...b, feats: roll(b.feats), boxes: roll(b.boxes), region_valid: roll(b.region_valid) }));
            const txt = rel(p, fwd({ ...b, input_ids: roll(b.input_ids), attention_mask: roll(b.attention_mask) }));
            // padding regions must not matter
            assert.ok(img > 1e-3, `${mode}: pooled output ignores the image (relative change ${img})`);
            assert.ok(txt > 1e-4, `${mode}: pooled output ignores the text (relative change ${txt})`);
          });
          const logits = model.cls.seq_relationship.forward(fwd(b));
          logits.select(1, 1).sub(logits.select(1, 0)).square().sum().backward();
          const gv = model.bert.encoder.visn_fc.visn_fc.weight.grad;
          const gw = model.bert.embeddings.word_embeddings.weight.grad;
          assert.ok(gv && gv.norm().item() > 0, `${mode}: no ITM gradient reaches the region encoder`);
          assert.ok(gw && gw.norm().item() > 0, `${mode}: no ITM gradient reaches the word embeddings`);
        });
        model.zeroGrad();
      }
    });
});
