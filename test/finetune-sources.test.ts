// Fine-tuning recipes name their data as sources (vqa, gqa, nlvr2, karpathy, coco-captions), checked
// with errors that name the key and the file, and `vlp finetune` / `vlp eval` run end to end on
// fixture trees in the layouts the datasets ship in (LXMERT's data/ tree, VQA v2's and NLVR2's
// official files, COCO + Karpathy), the example recipes of recipes/real/ pointed at them by
// `--set data.root=<tree>`; a run pre-trained on data.sources fine-tunes.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateWorld } from "../src/data/synth/world.ts";
import { validateFinetuneRecipe } from "../src/tasks/task.ts";
import { readTaskExamples } from "../src/tasks/data.ts";
import { readRunInfo } from "../src/methods/index.ts";
import { writeLxmertTree, writeCocoTree, writeTaskTree, writeCocoFeatures, writeArrowRoot, writeArrowTaskTables } from "./fixtures/real_layouts.ts";
import { runVlp as vlp } from "./fixtures/cli.ts";
import { VqaArrowReader } from "../src/data/formats/arrow.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-ft-sources-"));
const world = join(root, "world");
/** LXMERT's task files (data/vqa, data/gqa, data/nlvr2 + features) and the official VQA v2 / NLVR2 files. */
const tree = join(root, "tree");
/**
 * LXMERT's pre-training files: a tree of their own, as the fixture names its images differently for
 * pre-training (the world's img_ids) and the tasks (COCO's and NLVR2's names).
 */
const pretree = join(root, "pretree");
/** COCO + Karpathy with LXMERT's COCO features named by file stem. */
const coco = join(root, "coco");
/** A ViLT/VLMo Arrow root: vqav2_*, nlvr2_* and coco_caption_karpathy_* tables (images in the rows). */
const arrowRoot = join(root, "arrow");
const FEAT = 16;
let counts: Record<string, number>;
let arrowCounts: Record<string, number>;

before(async () => {
  await generateWorld({ images: 36, seed: 5, out: world, size: 48, featDim: FEAT, boxes: 6, arrow: true });
  await writeLxmertTree(world, pretree);
  counts = await writeTaskTree(world, tree);
  await writeCocoTree(world, coco);
  await writeCocoFeatures(world, coco);
  arrowCounts = { ...(await writeArrowRoot(world, arrowRoot)), ...(await writeArrowTaskTables(world, arrowRoot)) };
});

const recipeFile = (name: string) => new URL(`../recipes/real/${name}.json`, import.meta.url).pathname;

// micro models: a few seconds per run on one thread
const MODEL = {
  semvlp: { preset: "tiny", overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 2, crossLayerStart: 1, visualFeatDim: FEAT } },
  msp: { preset: "lxmertSTiny", overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: FEAT, xLayers: 1 } },
  vlmo: { preset: "tiny", overrides: { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1, imageSize: 32, patchSize: 16, maxTextLen: 16 } },
};
const FT_SETS = ["train.batchSize=8", "train.workers=0", "train.checkpointEvery=0", "train.evalEvery=0", "train.steps=2", "train.lr=0.001"];

const sets = (xs: string[]) => xs.flatMap((s) => ["--set", s]);

/** `vlp finetune <task> --scratch` of a recipe (a recipes/real/ name or a path) on `dataRoot`; the metrics it returned. */
async function finetune(task: string, recipe: string, method: keyof typeof MODEL, dataRoot: string, extra: string[] = [], from?: string): Promise<{ out: string; metrics: Record<string, number> }> {
  const out = join(root, `ft-${task}-${recipe.replace(/\W/g, "_").slice(-40)}`);
  const path = recipe.endsWith(".json") ? recipe : recipeFile(recipe);
  const all = [`data.root=${dataRoot}`, ...(from ? [] : [`method=${method}`, `model=${JSON.stringify(MODEL[method])}`]), ...FT_SETS, ...extra];
  const r = await vlp(["finetune", task, "--recipe", path, ...(from ? ["--from", from] : ["--scratch"]), ...sets(all), "--out", out, "--quiet", "--overwrite"]);
  assert.equal(r.code, 0, `vlp finetune ${task} ${recipe} failed:\n${r.err}`);
  return { out, metrics: JSON.parse(readFileSync(join(out, "eval.json"), "utf8")) };
}

async function evaluate(task: string, run: string, split: string): Promise<Record<string, number>> {
  const r = await vlp(["eval", task, "--checkpoint", run, "--split", split, "--quiet"]);
  assert.equal(r.code, 0, `vlp eval ${task} --split ${split} failed:\n${r.err}`);
  return JSON.parse(r.out);
}

const VQA_LXMERT = {
  name: "vqa", format: "vqa", json: "data/vqa/train.json", regions: ["data/mscoco_imgfeat/train2014_obj36.tsv", "data/mscoco_imgfeat/val2014_obj36.tsv"],
  answers: "data/vqa/trainval_ans2label.json", eval: { json: "data/vqa/minival.json" },
};

function ftRecipe(task: string, sources: unknown[], extra: Record<string, unknown> = {}) {
  return { task, method: "semvlp", model: MODEL.semvlp, data: { root: tree, sources }, train: { steps: 2, workers: 0 }, ...extra };
}

test("fine-tuning data.sources: a missing file, an unknown key, a format the task does not read and a missing split are errors naming the key", () => {
  const v = (task: string, sources: unknown[], extra: Record<string, unknown> = {}) => validateFinetuneRecipe(ftRecipe(task, sources, extra));
  assert.throws(() => v("vqa", [{ ...VQA_LXMERT, json: ["data/vqa/train.json", "data/vqa/valid.json"] }]), new RegExp(`recipe\\.data\\.sources\\[0\\]\\.json\\[1\\]: no such file ${tree}/data/vqa/valid\\.json`));
  assert.throws(() => v("vqa", [{ ...VQA_LXMERT, jsonl: "data/nlvr2/train.json" }]), /sources\[0\]\.jsonl: unknown key for format "vqa"/);
  assert.throws(() => v("vqa", [{ ...VQA_LXMERT, answers: undefined }]), /sources\[0\]\.answers: required for format "vqa"/);
  assert.throws(() => v("vqa", [{ ...VQA_LXMERT, json: undefined }]), /sources\[0\]: a vqa source needs json .* or questions/);
  assert.throws(() => v("vqa", [{ ...VQA_LXMERT, json: undefined, questions: ["data/vqa/v2_OpenEnded_mscoco_train2014_questions.json"], annotations: ["data/vqa/v2_mscoco_train2014_annotations.json", "data/vqa/v2_mscoco_val2014_annotations.json"] }]), /sources\[0\]\.annotations: 2 file\(s\) for 1 question file\(s\)/);
  assert.throws(() => v("vqa", [{ ...VQA_LXMERT, eval: { json: "data/vqa/minival.json", answers: "x" } }]), /sources\[0\]\.eval\.answers: unknown key \(the held-out split of format "vqa" takes/);
  assert.throws(() => v("gqa", [VQA_LXMERT]), /recipe\.data\.sources\[0\]\.format: "vqa" does not feed gqa fine-tuning \(it reads synth, gqa\)/);
  assert.throws(() => v("vqa", [VQA_LXMERT, { ...VQA_LXMERT, name: "vqa2" }]), /fine-tuning reads one source, got 2/);
  assert.throws(() => v("vqa", [VQA_LXMERT], { data: { world, sources: [VQA_LXMERT] } }), /data\.world: not with data\.sources/);
  assert.throws(() => validateFinetuneRecipe({ task: "vqa", data: {} }), /data\.world: required .*or data\.sources/);
  assert.throws(() => v("nlvr2", [{ name: "n", format: "nlvr2", json: "data/nlvr2/train.json", jsonl: "nlvr/nlvr2/data/train.json" }]), /sources\[0\]\.jsonl: not with json/);
  // paths resolve against data.root
  const r = v("vqa", [VQA_LXMERT]);
  assert.equal(r.data.sources![0].answers, join(tree, "data/vqa/trainval_ans2label.json"));
});

test("the fixture trees hold the files as the real ones name them (LXMERT's NLVR2 uids, VQA v2's img_ids)", () => {
  const nlvr2 = JSON.parse(readFileSync(join(tree, "data/nlvr2/valid.json"), "utf8")) as { uid: string; identifier: string; img0: string }[];
  assert.ok(nlvr2.length > 0);
  assert.deepEqual(nlvr2.slice(0, 2).map((d) => d.uid), ["nlvr2_valid_0", "nlvr2_valid_1"]);
  assert.match(nlvr2[0].identifier, /^dev-\d+-\d+-\d+$/);
  assert.match(nlvr2[0].img0, /^dev-\d+-\d+-img0$/);
  // VQA v2's questions are joined with their annotations into LXMERT's records (img_id from data_subtype)
  const v2 = readTaskExamples("vqa", { kind: "vqa-v2", questions: join(tree, "data/vqa/v2_OpenEnded_mscoco_val2014_questions.json"), annotations: join(tree, "data/vqa/v2_mscoco_val2014_annotations.json"), answers: join(tree, "data/vqa/trainval_ans2label.json") });
  const lx = ["nominival", "minival"].flatMap((f) => readTaskExamples("vqa", join(tree, `data/vqa/${f}.json`)));
  assert.ok(counts["vqa/nominival"] > 0 && counts["vqa/minival"] > 0);
  assert.equal(v2.length, counts["vqa/nominival"] + counts["vqa/minival"]);
  assert.deepEqual(v2.map((e) => [e.id, e.imgIds[0]]), lx.map((e) => [e.id, e.imgIds[0]]));
  assert.match(v2[0].imgIds[0], /^COCO_val2014_\d{12}$/);
  // the soft scores agree where LXMERT's records kept an answer of the vocabulary
  assert.deepEqual(v2.map((e) => e.scores), lx.map((e) => e.scores));
});

test("VQA over LXMERT's data/ tree (recipes/real/vqa-lxmert.json) from a run pre-trained on data.sources (recipes/real/semvlp-lxmert.json); vlp eval on minival and test", async () => {
  const pre = join(root, "pre-semvlp");
  const p = await vlp(["pretrain", "--recipe", recipeFile("semvlp-lxmert"), ...sets([`data.root=${pretree}`, `model=${JSON.stringify(MODEL.semvlp)}`, "train.batchSize=4", "train.workers=0", "train.steps=2", "train.checkpointEvery=0"]), "--out", pre, "--quiet"]);
  assert.equal(p.code, 0, p.err);
  // the run's recipe has no world: the model comes from its model section, the QA answers from its lxmert source
  const info = readRunInfo(pre);
  assert.equal(info.world, undefined);
  assert.equal(info.answers, join(pretree, "data/vqa/trainval_ans2label.json"));
  const { out, metrics } = await finetune("vqa", "vqa-lxmert", "semvlp", tree, ['options={"mode":"single","answerHead":"pretrained","maxBoxes":6,"maxTextLen":16}'], pre);
  assert.equal(metrics.n, counts["vqa/minival"]);
  assert.equal(metrics.official, 0, "LXMERT's json has soft scores only");
  assert.ok(metrics.vqa_acc >= 0 && metrics.vqa_acc <= 1);
  const val = await evaluate("vqa", out, "val");
  assert.equal(val.vqa_acc, metrics.vqa_acc);
  const t = await evaluate("vqa", out, "test");
  assert.equal(t.n, counts["vqa/test"]);
  assert.equal(t.vqa_acc, undefined, "test.json has no labels");
});

test("VQA from VQA v2's questions + annotations with VLMo on COCO images: the official accuracy on val2014", async () => {
  const path = join(root, "vqa-v2-vlmo.json");
  writeFileSync(path, JSON.stringify({
    task: "vqa", method: "vlmo", model: MODEL.vlmo,
    data: { sources: [{
      name: "vqa", format: "vqa", questions: "data/vqa/v2_OpenEnded_mscoco_train2014_questions.json", annotations: "data/vqa/v2_mscoco_train2014_annotations.json",
      answers: "data/vqa/trainval_ans2label.json", images: "data/mscoco",
      eval: { questions: "data/vqa/v2_OpenEnded_mscoco_val2014_questions.json", annotations: "data/vqa/v2_mscoco_val2014_annotations.json" },
      test: { questions: "data/vqa/v2_OpenEnded_mscoco_test2015_questions.json" },
    }] },
    train: { seed: 1 },
  }));
  const { out, metrics } = await finetune("vqa", path, "vlmo", tree);
  assert.equal(metrics.official, 1, "scored against v2_mscoco_val2014_annotations.json");
  assert.equal(metrics.n, counts["vqa/v2_val2014"]);
  const t = await evaluate("vqa", out, "test");
  assert.equal(t.n, counts["vqa/test"]);
  // a question without its annotation is an error naming both files
  const ann = JSON.parse(readFileSync(join(tree, "data/vqa/v2_mscoco_val2014_annotations.json"), "utf8"));
  const cut = join(root, "v2_cut_annotations.json");
  writeFileSync(cut, JSON.stringify({ ...ann, annotations: ann.annotations.slice(1) }));
  assert.throws(() => readTaskExamples("vqa", { kind: "vqa-v2", questions: join(tree, "data/vqa/v2_OpenEnded_mscoco_val2014_questions.json"), annotations: cut, answers: join(tree, "data/vqa/trainval_ans2label.json") }), new RegExp(`${cut}: no annotation for question_id ${ann.annotations[0].question_id} of .*v2_OpenEnded_mscoco_val2014_questions\\.json`));
});

test("GQA over LXMERT's data/ tree (recipes/real/gqa-lxmert.json): LXMERT-S, stages all -> balanced; testdev with its own features", async () => {
  const { out, metrics } = await finetune("gqa", "gqa-lxmert", "msp", tree, ['options={"stages":["all","balanced"],"balanced":{"steps":1},"maxBoxes":6,"maxTextLen":16}']);
  assert.equal(metrics.n, counts["gqa/valid"]);
  assert.ok(metrics.acc >= 0 && metrics.acc <= 1);
  const rows = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual([...new Set(rows.filter((x) => x.source !== "val").map((x) => x.stage))], ["all", "balanced"]);
  const t = await evaluate("gqa", out, "test");
  assert.equal(t.n, counts["gqa/testdev"]);
});

test("NLVR2 over LXMERT's data/ tree (recipes/real/nlvr2-lxmert.json): valid.json with its features; an absent split names its key", async () => {
  const { out, metrics } = await finetune("nlvr2", "nlvr2-lxmert", "semvlp", tree, ['options={"mode":"single","maxBoxes":6,"maxTextLen":16}']);
  assert.equal(metrics.n, counts["nlvr2/valid"]);
  assert.ok(metrics.acc >= 0 && metrics.acc <= 1);
  const t = await evaluate("nlvr2", out, "test");
  assert.equal(t.n, counts["nlvr2/test"]);
  const bad = await vlp(["eval", "nlvr2", "--checkpoint", out, "--split", "test_comp", "--quiet"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /split "test_comp": a data source has train, val \(its eval keys\) and test/);
});

test("NLVR2 from the official statements and images with VLMo (recipes/real/nlvr2-vlmo-official.json)", async () => {
  const { out, metrics } = await finetune("nlvr2", "nlvr2-vlmo-official", "vlmo", tree);
  assert.equal(metrics.n, counts["nlvr2/valid"]);
  const t = await evaluate("nlvr2", out, "test");
  assert.equal(t.n, counts["nlvr2/test"]);
  // an image missing from the folder is named before any step
  const r = await vlp(["finetune", "nlvr2", "--recipe", recipeFile("nlvr2-vlmo-official"), "--scratch", ...sets([`data.root=${tree}`, `model=${JSON.stringify(MODEL.vlmo)}`, ...FT_SETS, "data.sources.0.images=nlvr/nlvr2/images/dev"]), "--out", join(root, "ft-missing"), "--quiet"]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /nlvr\/nlvr2\/images\/dev: no image file named train-\d+-\d+-img[01]\.<png\|jpg\|\.\.\.>/);
});

test("retrieval over COCO + Karpathy (recipes/real/retrieval-coco-karpathy.json): SemVLP on LXMERT's COCO features, vlp eval on test", async () => {
  const { out, metrics } = await finetune("retrieval", "retrieval-coco-karpathy", "semvlp", coco, ['options={"maxBoxes":6,"maxTextLen":16,"evalBatchSize":200}']);
  const ds = JSON.parse(readFileSync(join(coco, "data/coco/dataset_coco.json"), "utf8")) as { images: { split: string }[] };
  assert.equal(metrics.images, ds.images.filter((im) => im.split === "val").length);
  for (const k of ["ir_r1", "tr_r1"]) assert.ok(metrics[k] >= 0 && metrics[k] <= 1, k);
  const t = await evaluate("retrieval", out, "test");
  assert.equal(t.images, ds.images.filter((im) => im.split === "test").length);
});

test("retrieval from COCO's caption annotations with VLMo on the images (coco-captions)", async () => {
  const path = join(root, "retrieval-coco-captions.json");
  writeFileSync(path, JSON.stringify({
    task: "retrieval", data: { sources: [{
      name: "coco", format: "coco-captions", json: "data/coco/annotations/captions_train2014.json", images: "data/coco/images/train2014",
      eval: { json: "data/coco/annotations/captions_val2014.json", images: "data/coco/images/val2014" },
    }] },
    train: { seed: 1 },
  }));
  const { metrics } = await finetune("retrieval", path, "vlmo", coco);
  const val = JSON.parse(readFileSync(join(coco, "data/coco/annotations/captions_val2014.json"), "utf8")) as { images: unknown[] };
  assert.equal(metrics.images, val.images.length);
  assert.ok(Number.isFinite(metrics.ir_r1));
});

test("VQA over a ViLT Arrow root (recipes/real/vlmo-finetune-arrow-vqa.json): vqav2_* tables, the tables' own answer vocabulary, vlp eval on rest_val and test", async () => {
  const { out, metrics } = await finetune("vqa", "vlmo-finetune-arrow-vqa", "vlmo", arrowRoot);
  assert.equal(metrics.n, arrowCounts.vqav2_rest_val);
  assert.ok(metrics.vqa_acc >= 0 && metrics.vqa_acc <= 1);
  // the vocabulary is the tables': label l answers what answer_labels says it does
  const labels = readRunInfo(out).labels!;
  const r = VqaArrowReader.open(join(arrowRoot, "data/arrow/vqav2_train.arrow"));
  const row = r.row(0);
  r.close();
  row.answer_labels.forEach((ls, k) => ls.forEach((l, j) => assert.equal(labels[l], row.answers[k][j])));
  const val = await evaluate("vqa", out, "val");
  assert.equal(val.vqa_acc, metrics.vqa_acc);
  const t = await evaluate("vqa", out, "test");
  assert.equal(t.n, arrowCounts.vqav2_test);
  // a table of another kind is an error naming it
  const bad = await vlp(["finetune", "vqa", "--recipe", recipeFile("vlmo-finetune-arrow-vqa"), "--scratch", ...sets([`data.root=${arrowRoot}`, `model=${JSON.stringify(MODEL.vlmo)}`, ...FT_SETS, 'data.sources.0.tables=["nlvr2_train"]']), "--out", join(root, "ft-bad-arrow"), "--quiet"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /nlvr2_train\.arrow: not a VQA table: no column "image"/);
});

test("NLVR2 over a ViLT Arrow root (recipes/real/vlmo-finetune-arrow-nlvr2.json): nlvr2_{train,dev,test1} image pairs read from the rows", async () => {
  const { out, metrics } = await finetune("nlvr2", "vlmo-finetune-arrow-nlvr2", "vlmo", arrowRoot);
  assert.equal(metrics.n, arrowCounts.nlvr2_dev);
  assert.ok(metrics.acc >= 0 && metrics.acc <= 1);
  const t = await evaluate("nlvr2", out, "test");
  assert.equal(t.n, arrowCounts.nlvr2_test1);
});

test("retrieval over a ViLT Arrow root (recipes/real/vlmo-finetune-arrow-retrieval.json): coco_caption_karpathy_* tables, vlp eval on test", async () => {
  const { out, metrics } = await finetune("retrieval", "vlmo-finetune-arrow-retrieval", "vlmo", arrowRoot, ['options={"evalSplit":"val","rerank":0,"evalBatchSize":200}']);
  assert.equal(metrics.images, arrowCounts.coco_caption_karpathy_val);
  assert.ok(Number.isFinite(metrics.ir_r1) && Number.isFinite(metrics.tr_r1));
  const t = await evaluate("retrieval", out, "test");
  assert.equal(t.images, arrowCounts.coco_caption_karpathy_test);
});
