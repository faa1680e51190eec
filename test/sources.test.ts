// Recipes' data.sources: datasets named by format and path, checked with errors that name the key
// and the file, and fed end to end to the pre-training pipelines from fixture trees in the layouts
// the real datasets ship in (LXMERT's data/, a ViLT Arrow root, COCO + the Karpathy split), with
// the example recipes of recipes/real/ pointed at them by `--set data.root=<tree>`.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateWorld } from "../src/data/synth/world.ts";
import { type Recipe } from "../src/pretrain/recipe.ts";
import { validateRecipe, loadRecipe } from "../src/methods/index.ts";
import { recipeSources } from "../src/pretrain/sources.ts";
import { buildStrategy } from "../src/cli/pretrain.ts";
import { train } from "../src/train/trainer.ts";
import { manualSeed } from "../src/engine/index.ts";
import { createBuilder as createImageTextBuilder } from "../src/pretrain/imagetext.ts";
import { createBuilder as createRegionTextBuilder } from "../src/pretrain/builder.ts";
import { readLxmertPretrain } from "../src/data/formats/lxmert_pretrain.ts";
import { writeLxmertTree, writeCocoTree, writeArrowRoot } from "./fixtures/real_layouts.ts";
import { runVlp as vlp } from "./fixtures/cli.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-sources-"));
const world = join(root, "world");
/** One tree holding LXMERT's, COCO's and the Arrow root's data/ folders, as a checkout with all three would. */
const tree = join(root, "tree");
const FEAT = 16;
let sizes: { lxmert: { train: number; minival: number }; coco: { train: number; restval: number; val: number }; arrow: Record<string, number> };

before(async () => {
  await generateWorld({ images: 40, seed: 11, out: world, size: 48, featDim: FEAT, boxes: 8 });
  sizes = { lxmert: await writeLxmertTree(world, tree), coco: await writeCocoTree(world, tree), arrow: await writeArrowRoot(world, tree) };
});

const recipeFile = (name: string) => new URL(`../recipes/real/${name}.json`, import.meta.url).pathname;

// micro models: a few seconds per run on one thread
const MODEL = {
  semvlp: { preset: "tiny", overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 2, crossLayerStart: 1, visualFeatDim: FEAT } },
  msp: { preset: "lxmertSTiny", overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: FEAT, xLayers: 1 } },
  vlmo: { preset: "tiny", overrides: { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1, imageSize: 32, patchSize: 16 } },
};
const RUN_SETS = ["train.batchSize=4", "train.workers=0", "train.checkpointEvery=0", "train.evalEvery=0"];

/** A sources-only recipe object (not yet validated). */
function sourcesRecipe(method: "semvlp" | "msp" | "vlmo", sources: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { method, model: MODEL[method], data: { root: tree, sources }, train: { seed: 1, batchSize: 4, lr: 1e-3, steps: 2, workers: 0 }, ...extra };
}

const LXMERT_SOURCE = {
  name: "lxmert", format: "lxmert",
  json: ["data/lxmert/mscoco_train.json", "data/lxmert/mscoco_nominival.json", "data/lxmert/vgnococo.json"],
  regions: ["data/mscoco_imgfeat/train2014_obj36.tsv", "data/mscoco_imgfeat/val2014_obj36.tsv", "data/vg_gqa_imgfeat/vg_gqa_obj36.tsv"],
};

/** `vlp pretrain` of a recipes/real/ recipe on the fixture tree; the metrics rows it logged. */
async function pretrainReal(name: string, method: "semvlp" | "msp" | "vlmo", sets: string[]): Promise<{ rows: Record<string, number | string>[]; recipe: Recipe }> {
  const out = join(root, `run-${name}`);
  const all = [`data.root=${tree}`, `model=${JSON.stringify(MODEL[method])}`, ...RUN_SETS, ...sets];
  const r = await vlp(["pretrain", "--recipe", recipeFile(name), ...all.flatMap((s) => ["--set", s]), "--out", out, "--quiet"]);
  assert.equal(r.code, 0, `vlp pretrain ${name} failed:\n${r.err}`);
  const rows = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  return { rows, recipe: JSON.parse(readFileSync(join(out, "recipe.json"), "utf8")) };
}

const finite = (rows: Record<string, number | string>[], key: string) => rows.filter((r) => r[key] !== undefined).every((r) => Number.isFinite(r[key])) && rows.some((r) => r[key] !== undefined);

test("data.sources: a missing file, an unknown key or format and a bad value are errors naming the key (and the file)", () => {
  const v = (sources: unknown[], extra: Record<string, unknown> = {}) => validateRecipe(sourcesRecipe("semvlp", sources, extra));
  const missing = { ...LXMERT_SOURCE, name: "vg", regions: "data/mscoco_imgfeat/test2015_obj36.tsv" };
  assert.throws(() => v([LXMERT_SOURCE, missing]), new RegExp(`recipe\\.data\\.sources\\[1\\]\\.regions: no such file ${tree}/data/mscoco_imgfeat/test2015_obj36\\.tsv`));
  assert.throws(() => v([{ ...LXMERT_SOURCE, json: ["data/lxmert/mscoco_train.json", "data/lxmert/nope.json"] }]), /recipe\.data\.sources\[0\]\.json\[1\]: no such file .*data\/lxmert\/nope\.json/);
  assert.throws(() => v([{ ...LXMERT_SOURCE, images: "data/coco/images" }]), /sources\[0\]\.images: unknown key for format "lxmert"/);
  assert.throws(() => v([{ ...LXMERT_SOURCE, format: "lxmrt" }]), /sources\[0\]\.format: expected one of synth, lxmert, vg, karpathy, coco-captions, vilt-arrow, webdataset, vqa, gqa, nlvr2, got "lxmrt"/);
  assert.throws(() => v([LXMERT_SOURCE, LXMERT_SOURCE]), /sources\[1\]\.name: "lxmert" names an earlier source too/);
  assert.throws(() => v([{ ...LXMERT_SOURCE, weight: 0 }]), /sources\[0\]\.weight: expected a number > 0/);
  assert.throws(() => v([{ name: "c", format: "karpathy", json: "data/coco/dataset_coco.json" }]), /sources\[0\]\.images: required for format "karpathy"/);
  assert.throws(() => v([{ name: "c", format: "karpathy", json: "data/coco/dataset_coco.json", images: "data/coco/images", split: ["trian"] }]), /sources\[0\]\.split: unknown split "trian"/);
  assert.throws(() => v([{ name: "c", format: "karpathy", json: "data/coco/images", images: "data/coco/images" }]), /sources\[0\]\.json: .*data\/coco\/images is a folder, expected a file/);
  assert.throws(() => v([{ name: "a", format: "vilt-arrow", root: "data/arrow", tables: ["cc3m_*"] }]), /sources\[0\]\.tables\[0\]: no table cc3m_\*\.arrow in .*data\/arrow/);
  assert.throws(() => v([{ name: "a", format: "vilt-arrow", root: "data/arrow", tables: ["vg"], eval: { split: ["val"] } }]), /sources\[0\]\.eval\.split: unknown key/);
  assert.throws(() => v([LXMERT_SOURCE], { data: { world, sources: [LXMERT_SOURCE] } }), /recipe\.data\.world: not with data\.sources/);
  assert.throws(() => v([], { data: { root: tree, sources: [] } }), /recipe\.data\.sources: expected a non-empty list/);
  assert.throws(() => validateRecipe({ method: "semvlp", model: { preset: "tiny" }, data: {} }), /recipe\.data\.world: required \(or data\.sources\)/);
  // paths resolve against data.root; a checked recipe checks again to itself (a resumed run compares its data)
  const r = v([LXMERT_SOURCE]);
  assert.deepEqual(r.data.sources![0].json, LXMERT_SOURCE.json.map((p) => join(tree, p)));
  assert.deepEqual(validateRecipe(structuredClone(r)).data, r.data);
});

test("data.sources: a pipeline refuses a format it cannot read, naming the source", async () => {
  const coco = { name: "coco", format: "karpathy", json: "data/coco/dataset_coco.json", images: "data/coco/images" };
  await assert.rejects(buildStrategy(validateRecipe(sourcesRecipe("semvlp", [coco]))), /recipe\.data\.sources\[0\]\.format: "karpathy" does not feed semvlp \(it reads synth, lxmert\)/);
  await assert.rejects(buildStrategy(validateRecipe(sourcesRecipe("vlmo", [LXMERT_SOURCE]))), /sources\[0\]\.format: "lxmert" does not feed vlmo/);
  await assert.rejects(buildStrategy(validateRecipe(sourcesRecipe("semvlp", [LXMERT_SOURCE]))), /sources\[0\]\.answers: required while SemVLP's QA task is on/);
  await assert.rejects(buildStrategy(validateRecipe(sourcesRecipe("msp", [LXMERT_SOURCE], { msp: { order: ["sentence"] } }))), /sources\[0\]\.objectVocab: required by MSP/);
  await assert.rejects(buildStrategy(validateRecipe(sourcesRecipe("msp", [{ ...LXMERT_SOURCE, objectVocab: "data/genome/1600-400-20/objects_vocab.txt" }]))), /recipe\.msp\.order: no source feeds the token stage \(a synth source, or vg with objects\)/);
});

test("data.world is the shorthand of one synth source: the same run, loss for loss", async () => {
  const base = { method: "semvlp", model: MODEL.semvlp, train: { seed: 2, batchSize: 4, lr: 1e-3, steps: 3, workers: 0 }, semvlp: { qa: true } };
  const a = validateRecipe({ ...base, data: { world } });
  const b = validateRecipe({ ...base, data: { sources: [{ name: "synth", format: "synth", world }] } });
  assert.deepEqual(recipeSources(a.data), b.data.sources);
  const losses = async (r: Recipe, dir: string) => {
    manualSeed(r.train.seed);
    const { model, stages } = await buildStrategy(r);
    await train(model, stages, { runDir: join(root, dir), seed: r.train.seed, quiet: true, workers: 0 });
    return readFileSync(join(root, dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).map((x) => [x.source, x.loss]);
  };
  const la = await losses(a, "shorthand-world");
  assert.equal(la.length, 4); // 3 steps + the held-out evaluation
  assert.deepEqual(await losses(b, "shorthand-sources"), la);
});

test("lxmert: the union of LXMERT's JSON files and obj36 TSVs feeds the region-text builder", async () => {
  const r = validateRecipe(sourcesRecipe("semvlp", [{ ...LXMERT_SOURCE, text: ["mscoco", "vg"] }], { semvlp: { qa: false } }));
  const src = r.data.sources![0];
  const b = await createRegionTextBuilder({ examples: (src.json as string[]).map((path) => ({ path, sources: ["mscoco", "vg"] })), regions: src.regions!, maxTextLen: 12, maxBoxes: 8, seed: 0 });
  // every caption of the three files (the vgnococo ones under "vg"), each with its image's regions
  const captions = (src.json as string[]).flatMap((p) => readLxmertPretrain(p).records.flatMap((d) => [...(d.sentf.mscoco ?? []), ...(d.sentf.vg ?? [])]));
  assert.equal(b.length, captions.length);
  assert.ok(readLxmertPretrain(join(tree, "data/lxmert/vgnococo.json")).records.every((d) => d.sentf.vg && !d.sentf.mscoco), "precondition: vgnococo has VG captions only");
  const batch = await b.build(Array.from({ length: b.length }, (_, i) => i), 0);
  assert.deepEqual(batch.arrays.feats.shape, [b.length, 8, FEAT]);
  assert.equal(new Set((batch.meta as { imgIds: string[] }).imgIds).size, sizes.lxmert.train);
});

test("SemVLP over LXMERT's data/ tree (recipes/real/semvlp-lxmert.json): captions + QA, held out on minival", async () => {
  const { rows, recipe } = await pretrainReal("semvlp-lxmert", "semvlp", ["train.steps=3"]);
  assert.equal(recipe.data.sources![0].answers, join(tree, "data/vqa/trainval_ans2label.json"));
  const steps = rows.filter((x) => x.source !== "val");
  assert.equal(steps.length, 3);
  for (const k of ["mlm_loss", "itm_loss", "qa_loss"]) assert.ok(finite(steps, k), k);
  const val = rows.find((x) => x.source === "val");
  assert.ok(val && Number.isFinite(val.val_loss), "a held-out evaluation on mscoco_minival");
});

test("MSP over LXMERT's data/ tree and Visual Genome (recipes/real/msp-lxmert.json): tokens and phrases from VG, sentences from LXMERT", async () => {
  const { rows } = await pretrainReal("msp-lxmert", "msp", ['msp.stages={"token":{"steps":2},"phrase":{"steps":2},"sentence":{"steps":2}}']);
  const steps = rows.filter((x) => x.source !== "val");
  assert.deepEqual(steps.map((x) => x.source), ["token", "token", "phrase", "phrase", "sentence", "sentence"]);
  assert.ok(finite(steps, "ifrs_loss") && finite(steps, "titp_loss"), "token (IFRS) and phrase (TITP) objectives");
  for (const k of ["tits_loss", "itm_loss", "mlm_loss"]) assert.ok(finite(steps, k), k);
  // VG has no held-out split here: only the sentence stage (LXMERT's minival) is evaluated
  assert.deepEqual(rows.filter((x) => x.source === "val").map((x) => x.stage), ["sentence"]);
});

test("vg: region descriptions and objects become MSP's phrase and token texts, keyed by VG image id", async () => {
  const r = validateRecipe(sourcesRecipe("msp", [{ name: "vg", format: "vg", regionDescriptions: "data/vg/region_descriptions.json", objects: "data/vg/objects.json", regions: "data/vg_gqa_imgfeat/vg_gqa_obj36.tsv" }]));
  const src = r.data.sources![0];
  const vg = JSON.parse(readFileSync(src.regionDescriptions!, "utf8")) as { id: number; regions: { phrase: string }[] }[];
  const phrases = await createRegionTextBuilder({ examples: [{ path: src.regionDescriptions!, granularity: "phrase", format: "vg-phrases" }], regions: src.regions!, maxTextLen: 64, maxBoxes: 8, seed: 0 });
  assert.equal(phrases.length, vg.filter((im) => im.regions.length > 0).length);
  const b = await phrases.build([0], 0);
  assert.deepEqual((b.meta as { imgIds: string[] }).imgIds, [String(vg[0].id)]);
  assert.deepEqual(b.arrays.feats.shape, [1, 8, FEAT]);
  // a vg source has no sentences, and a stage without data is refused naming the order
  await assert.rejects(buildStrategy(r), /recipe\.msp\.order: no source feeds the sentence stage/);
  assert.throws(() => validateRecipe(sourcesRecipe("msp", [{ name: "vg", format: "vg", regions: "data/vg_gqa_imgfeat/vg_gqa_obj36.tsv" }])), /sources\[0\]: a vg source needs regionDescriptions/);
  await assert.rejects(buildStrategy(validateRecipe(sourcesRecipe("semvlp", [src]))), /"vg" does not feed semvlp/);
});

test("VLMo over a ViLT Arrow root (recipes/real/vlmo-vilt-arrow.json): four sources by weight, held out on the val tables", async () => {
  assert.ok(sizes.arrow.sbu_0 > 0 && sizes.arrow.sbu_1 > 0 && sizes.arrow.vg > 0 && sizes.arrow.gcc_val_0 > 0, "precondition: every table has rows");
  const stages = '{"image":{"steps":1},"text":{"steps":1},"image-text":{"steps":4}}';
  const { rows } = await pretrainReal("vlmo-vilt-arrow", "vlmo", [`vlmo.stages=${stages}`]);
  assert.deepEqual(rows.filter((x) => x.source !== "val").map((x) => x.source), ["image", "text", "image-text", "image-text", "image-text", "image-text"]);
  const val = rows.filter((x) => x.source === "val").at(-1)!;
  // the held-out tables of coco and gcc are evaluated; vg and sbu have none
  assert.ok(Number.isFinite(val["val_image-text/coco_itc_loss"]) && Number.isFinite(val["val_image-text/gcc_itc_loss"]), JSON.stringify(Object.keys(val)));
  assert.equal(val["val_image-text/sbu_itc_loss"], undefined);
});

test("VLMo over COCO + the Karpathy split (recipes/real/vlmo-coco-karpathy.json): train + restval from train2014/val2014", async () => {
  const r = loadRecipe(recipeFile("vlmo-coco-karpathy"), [`data.root=${tree}`, `model=${JSON.stringify(MODEL.vlmo)}`]);
  const src = r.data.sources![0];
  const builder = await createImageTextBuilder({ input: { format: "karpathy", json: src.json as string, images: src.images!, splits: src.split! }, split: "train", mode: "image", imageSize: 32, maxTextLen: 12 });
  assert.equal(builder.length, sizes.coco.train + sizes.coco.restval);
  const batch = await builder.build(Array.from({ length: builder.length }, (_, i) => i), 0);
  assert.deepEqual(batch.arrays.pixels.shape, [builder.length, 3, 32, 32]);
  // train from train2014, restval from val2014, each file as Karpathy's filepath + filename name it
  const files = (batch.meta as { files: string[] }).files;
  assert.equal(files.filter((f) => /^train2014\/COCO_train2014_\d{12}\.jpg$/.test(f)).length, sizes.coco.train);
  assert.equal(files.filter((f) => /^val2014\/COCO_val2014_\d{12}\.jpg$/.test(f)).length, sizes.coco.restval);
  const { rows } = await pretrainReal("vlmo-coco-karpathy", "vlmo", ['vlmo.order=["image-text"]', 'vlmo.stages={"image-text":{"steps":3}}']);
  const steps = rows.filter((x) => x.source !== "val");
  assert.equal(steps.length, 3);
  for (const k of ["itc_loss", "itm_loss", "mlm_loss"]) assert.ok(finite(steps, k), k);
  assert.ok(rows.some((x) => x.source === "val" && Number.isFinite(x.val_itc_loss)), "held out on the Karpathy val split");
});

test("VLMo over COCO's caption annotations (coco-captions) mixed with a Karpathy source by weight", async () => {
  const captions = { name: "coco-captions", format: "coco-captions", json: "data/coco/annotations/captions_train2014.json", images: "data/coco/images/train2014", weight: 3, eval: { json: "data/coco/annotations/captions_val2014.json", images: "data/coco/images/val2014" } };
  const karpathy = { name: "karpathy", format: "karpathy", json: "data/coco/dataset_coco.json", images: "data/coco/images", text: "tokens" };
  const path = join(root, "vlmo-coco-captions.json");
  writeFileSync(path, JSON.stringify(sourcesRecipe("vlmo", [captions, karpathy], { vlmo: { order: ["image-text"], stages: { "image-text": { steps: 8 } } } })));
  const out = join(root, "run-coco-captions");
  const r = await vlp(["pretrain", "--recipe", path, "--out", out, "--quiet"]);
  assert.equal(r.code, 0, r.err);
  const rows = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(rows.filter((x) => x.source !== "val").length, 8);
  const val = rows.find((x) => x.source === "val")!;
  assert.ok(Number.isFinite(val["val_image-text/coco-captions_itc_loss"]) && Number.isFinite(val["val_image-text/karpathy_itc_loss"]));
  // a bad file named in the recipe stops the run before any step, naming the key and file
  rmSync(out, { recursive: true });
  const bad = await vlp(["pretrain", "--recipe", path, "--set", "data.sources.0.images=data/coco/images/test2015", "--out", out, "--quiet"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /data\.sources\[0\]\.images: no such folder .*data\/coco\/images\/test2015/);
});
