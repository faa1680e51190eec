// The data preparation tools: `vlp data inspect`, `convert-regions`, `vqa-vocab` and `vlp features grid`,
// on small trees in the shipped layouts, written here.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { encodeObj36Row, type Obj36Record } from "../src/data/formats/obj36.ts";
import { RegionStore, TsvRegionReader, gridRegionsFromImage } from "../src/data/regions/index.ts";
import { inspectPath, type InspectReport } from "../src/data/inspect/index.ts";
import { nlvr2ToLxmert, readNlvr2Jsonl, writeLxmertNlvr2 } from "../src/data/formats/nlvr2.ts";
import { readAnswerVocab, writeLxmertVqa, writeVqaAnnotations, type VqaAnnotation } from "../src/data/formats/vqa.ts";
import { CaptionArrowWriter } from "../src/data/formats/arrow.ts";
import { WdsShardWriter } from "../src/data/formats/wds.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const TEXT_FIXTURES = path.join(ROOT, "test", "fixtures", "formats-text");

function tmpDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "data-tools-test-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `vlp ...` in a child process: exit code, stdout, stderr */
function vlp(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/vlp.ts"), ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      resolve({ code: err ? (err as { code?: number }).code ?? 1 : 0, stdout, stderr });
    });
  });
}

function record(id: string, n: number, d: number, seed: number): Obj36Record {
  const f = (len: number, k: number) => Float32Array.from({ length: len }, (_, i) => Math.fround(((i * 7 + seed * 13 + k) % 29) / 8 - 1));
  return {
    img_id: id, img_h: 480, img_w: 640, num_boxes: n,
    objects_id: Int32Array.from({ length: n }, (_, i) => (i + seed) % 1600), objects_conf: f(n, 1),
    attrs_id: Int32Array.from({ length: n }, (_, i) => (i * 3 + seed) % 400), attrs_conf: f(n, 2),
    boxes: Float32Array.from({ length: 4 * n }, (_, i) => 10 + i), features: f(n * d, 3),
  };
}

const writeTsv = (file: string, recs: Obj36Record[]) => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, recs.map((r) => encodeObj36Row(r) + "\r\n").join(""));
};

function annotation(qid: number, image: number, answer: string): VqaAnnotation {
  return {
    question_id: qid, image_id: image, question_type: "what", answer_type: "other", multiple_choice_answer: answer,
    answers: Array.from({ length: 10 }, (_, i) => ({ answer, answer_confidence: "yes", answer_id: i + 1 })),
  };
}

/** An LXMERT-style data/ tree plus COCO/Karpathy/VG files, an Arrow table and WebDataset shards. */
async function writeTree(root: string): Promise<void> {
  const d = path.join(root, "data");
  // features: line 3 repeats img_id a, line 4 has dim 6 instead of 4, line 5 has no boxes, line 6 is cut short
  const tsv = path.join(d, "mscoco_imgfeat/val2014_obj36.tsv");
  writeTsv(tsv, [record("a", 2, 4, 1), record("b", 3, 4, 2), record("a", 1, 4, 3), record("c", 2, 6, 4), record("e", 0, 4, 5)]);
  fs.appendFileSync(tsv, "broken\t480\r\n");
  writeLxmertVqa(path.join(d, "vqa/minival.json"), [
    { img_id: "COCO_val2014_000000000042", question_id: 420, sent: "What is it?", label: { cat: 1 } },
    { img_id: "COCO_val2014_000000000042", question_id: 420, sent: "Again?", label: { dog: 0.3 } },
  ]);
  const statements = readNlvr2Jsonl(path.join(TEXT_FIXTURES, "nlvr2_dev.json")).records;
  writeLxmertNlvr2(path.join(d, "nlvr2/valid.json"), nlvr2ToLxmert(statements.slice(0, 2)));
  writeLxmertNlvr2(path.join(d, "nlvr2/old.json"), nlvr2ToLxmert(statements.slice(0, 2)).map((s, i) => ({ ...s, uid: `nlvr2_dev_${i}` })));
  fs.copyFileSync(path.join(TEXT_FIXTURES, "mscoco_minival.json"), path.join(d, "lxmert_minival.json"));
  writeVqaAnnotations(path.join(root, "vqa/v2_mscoco_val2014_annotations.json"), [annotation(1, 9, "cat"), annotation(2, 9, "two")]);
  for (const f of ["captions_val2014.json", "dataset_coco.json", "region_descriptions.json", "objects.json", "attributes.json",
    "v2_OpenEnded_mscoco_train2014_questions.json", "testdev_balanced_questions.json", "lxmert_gqa_testdev.json"]) {
    fs.mkdirSync(path.join(root, "misc"), { recursive: true });
    fs.copyFileSync(path.join(TEXT_FIXTURES, f), path.join(root, "misc", f));
  }
  const png = await sharp({ create: { width: 8, height: 6, channels: 3, background: { r: 200, g: 10, b: 10 } } }).png().toBuffer();
  fs.mkdirSync(path.join(root, "arrow"));
  const cw = new CaptionArrowWriter(path.join(root, "arrow/coco_caption_karpathy_val.arrow"));
  await cw.write({ image: png, caption: ["a red square", "red"], image_id: "COCO_val2014_000000000042.jpg", split: "val" });
  await cw.write({ image: png, caption: ["another"], image_id: "COCO_val2014_000000000043.jpg", split: "val" });
  await cw.close();
  fs.mkdirSync(path.join(root, "shards"));
  for (const s of [0, 1]) {
    const w = new WdsShardWriter(path.join(root, `shards/cc3m-00000${s}.tar`));
    for (const k of [0, 1, 2]) await w.write({ key: `${s}${k}`, files: { jpg: png, txt: `caption ${s}${k}`, json: { url: `u${k}` } } });
    await w.close();
  }
}

test("vlp data inspect: detects every format in a tree, counts it, decodes a sample, and lists the problems", async (t) => {
  const root = tmpDir(t);
  await writeTree(root);
  const reports = await inspectPath(root);
  const by = new Map<string, InspectReport>(reports.map((r) => [path.relative(root, r.path), r]));
  const format = (rel: string) => by.get(rel)?.format;
  assert.deepEqual(
    Object.fromEntries([...by].map(([rel, r]) => [rel, r.format])),
    {
      "arrow/coco_caption_karpathy_val.arrow": "arrow-caption",
      "data/lxmert_minival.json": "lxmert-pretrain",
      "data/mscoco_imgfeat/val2014_obj36.tsv": "obj36-tsv",
      "data/nlvr2/old.json": "lxmert-nlvr2",
      "data/nlvr2/valid.json": "lxmert-nlvr2",
      "data/vqa/minival.json": "lxmert-vqa",
      "misc/attributes.json": "vg-attributes",
      "misc/captions_val2014.json": "coco-captions",
      "misc/dataset_coco.json": "karpathy",
      "misc/lxmert_gqa_testdev.json": "lxmert-gqa",
      "misc/objects.json": "vg-objects",
      "misc/region_descriptions.json": "vg-regions",
      "misc/testdev_balanced_questions.json": "gqa-questions",
      "misc/v2_OpenEnded_mscoco_train2014_questions.json": "vqa-questions",
      "shards (2 shards)": "webdataset",
      "vqa/v2_mscoco_val2014_annotations.json": "vqa-annotations",
    },
  );
  assert.equal(format("data/nlvr2/valid.json"), "lxmert-nlvr2");

  const tsv = by.get("data/mscoco_imgfeat/val2014_obj36.tsv")!;
  const tsvPath = path.join(root, "data/mscoco_imgfeat/val2014_obj36.tsv");
  assert.deepEqual(tsv.counts, { rows: 6, valid: 3, boxes: 5, zero_box_rows: 1, dim: 4, max_boxes: 3 });
  assert.deepEqual(tsv.problems, [
    `${tsvPath}: line 3 (img_id a): duplicate img_id, first at line 1`,
    `${tsvPath}: line 4 (img_id c): feature dim 6 differs from 4 (the first row with boxes, line 1)`,
    `${tsvPath}: line 6 (img_id broken): expected 10 tab-separated fields, got 2`,
  ], "in file order");
  assert.equal((tsv.sample as { imgId: string }).imgId, "a");
  assert.match((tsv.sample as { features: string }).features, /^Float32Array\(8\) \[/);

  const vqa = by.get("data/vqa/minival.json")!;
  assert.deepEqual(vqa.counts, { records: 2, questions: 2, images: 1, labelled: 2 });
  assert.deepEqual(vqa.problems, [`${path.join(root, "data/vqa/minival.json")}: record 1: duplicate id 420, first at record 0`]);
  assert.deepEqual(by.get("data/nlvr2/valid.json")!.problems, []);
  assert.deepEqual(by.get("data/nlvr2/old.json")!.problems, [`2 uids are not LXMERT's form nlvr2_<train|valid|test>_<i> (record 0: "nlvr2_dev_0")`]);

  const arrow = by.get("arrow/coco_caption_karpathy_val.arrow")!;
  assert.deepEqual(arrow.counts, { rows: 2, texts: 3 });
  assert.match(String((arrow.sample as { image: string }).image), /^<png, \d+ bytes>$/);
  const wds = by.get("shards (2 shards)")!;
  assert.deepEqual(wds.counts, { shards: 2, samples: 6, "files.jpg": 6, "files.txt": 6, "files.json": 6 });
  assert.deepEqual([(wds.sample as { txt: string }).txt, (wds.sample as { json: unknown }).json], ["caption 00", { url: "u0" }]);
  assert.deepEqual(by.get("vqa/v2_mscoco_val2014_annotations.json")!.counts, { records: 2, questions: 2, images: 1, answers: 20 });

  // a malformed record is counted and the first one quoted; a brace pattern reads the shards it names
  const badVqa = path.join(root, "bad.json");
  fs.writeFileSync(badVqa, JSON.stringify([{ img_id: "x", question_id: 1, sent: "s" }, { img_id: "y", question_id: 2 }]));
  const [bad] = await inspectPath(badVqa);
  assert.equal(bad.format, "lxmert-vqa");
  assert.deepEqual(bad.problems, [`1 malformed records skipped; first: ${badVqa}: record 1 (question_id 2): missing field "sent"`]);
  const [one] = await inspectPath(path.join(root, "shards/cc3m-{000000..000000}.tar"));
  assert.deepEqual([one.format, one.counts.samples], ["webdataset", 3]);
  fs.writeFileSync(path.join(root, "notes.json"), JSON.stringify({ hello: "world" }));
  assert.equal((await inspectPath(path.join(root, "notes.json")))[0].format, "unknown");
});

test("vlp data convert-regions: an atomic store equal to the TSV reader; duplicates stop it (path and line) or are skipped", async (t) => {
  const dir = tmpDir(t);
  const tsv = path.join(dir, "val2014_obj36.tsv");
  writeTsv(tsv, [record("a", 2, 4, 1), record("b", 3, 4, 2), record("e", 0, 4, 3)]);
  const out = path.join(dir, "val2014.regions");
  const ok = await vlp("data", "convert-regions", tsv, out);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /val2014\.regions: 3 images, dim 4, up to 3 boxes, float32, [\d.]+ MiB in [\d.]+ s\n$/);
  const store = RegionStore.open(out);
  const reader = await TsvRegionReader.open(tsv);
  for (const id of ["a", "b", "e"]) assert.deepEqual(store.get(id), reader.get(id), id);
  assert.equal(store.source, "obj36 TSV val2014_obj36.tsv");
  store.close();
  reader.close();

  const half = await vlp("data", "convert-regions", tsv, path.join(dir, "half.regions"), "--float16");
  assert.equal(half.code, 0, half.stderr);
  assert.equal(RegionStore.open(path.join(dir, "half.regions")).dtype, "float16");

  const dup = path.join(dir, "dup.tsv");
  writeTsv(dup, [record("a", 2, 4, 1), record("b", 3, 4, 2), record("a", 1, 4, 3)]);
  const failed = await vlp("data", "convert-regions", dup, path.join(dir, "dup.regions"));
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /dup\.tsv: line 3 \(img_id a\): duplicate img_id, first at line 1/);
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith("dup.regions")), [], "no store and no temporary file");
  const skipped = await vlp("data", "convert-regions", dup, path.join(dir, "dup.regions"), "--skip-invalid");
  assert.equal(skipped.code, 0, skipped.stderr);
  assert.match(skipped.stderr, /skipped: .*dup\.tsv: line 3 \(img_id a\): duplicate img_id/);
  assert.match(skipped.stdout, /2 images, .*\(1 rows skipped\)/);

  const usage = await vlp("data", "convert-regions", tsv);
  assert.equal(usage.code, 1);
  assert.match(usage.stderr, /expected IN\.tsv and OUT\.regions, got 1 paths/);
  const help = await vlp("data", "convert-regions", "--help");
  assert.match(help.stdout, /^usage: vlp data convert-regions IN\.tsv OUT\.regions/);
});

test("vlp data vqa-vocab: normalised multiple-choice answers given to at least --min-count questions, in first-seen order", async (t) => {
  const dir = tmpDir(t);
  // "Two" and "two" normalise to "2": 3 questions; "cat" 3 (over both files); "dog" 2 (below 3); "a  tree." -> "tree" 1
  const train = [annotation(1, 1, "Two"), annotation(2, 1, "cat"), annotation(3, 2, "dog"), annotation(4, 2, "two"), annotation(5, 3, "a  tree.")];
  const val = [annotation(6, 4, "cat"), annotation(7, 4, "2"), annotation(8, 5, "dog"), annotation(9, 5, "cat")];
  writeVqaAnnotations(path.join(dir, "v2_mscoco_train2014_annotations.json"), train);
  writeVqaAnnotations(path.join(dir, "v2_mscoco_val2014_annotations.json"), val);
  const out = path.join(dir, "vqa");
  const r = await vlp("data", "vqa-vocab", path.join(dir, "v2_mscoco_train2014_annotations.json"), path.join(dir, "v2_mscoco_val2014_annotations.json"), "--out", out, "--min-count", "3");
  assert.equal(r.code, 0, r.stderr);
  const vocab = readAnswerVocab(out);
  assert.deepEqual(vocab.label2ans, ["2", "cat"]);
  assert.deepEqual(vocab.ans2label, { 2: 0, cat: 1 });
  assert.match(r.stdout, /^9 questions from 2 files: 2 answers given to at least 3 questions \(the answer of 66\.7% of the questions\)/);
  const none = await vlp("data", "vqa-vocab", path.join(dir, "v2_mscoco_val2014_annotations.json"), "--out", out);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no answer is given to 9 or more of the 4 questions; lower --min-count/);
});

test("vlp features grid: a folder of images becomes a grid-feature store marked as the detector-free stand-in", async (t) => {
  const dir = tmpDir(t);
  const images = path.join(dir, "val2014");
  fs.mkdirSync(path.join(images, "more"), { recursive: true });
  const colours = [[255, 0, 0], [0, 200, 30], [10, 20, 250]];
  const files = ["COCO_val2014_000000000042.jpg", "COCO_val2014_000000000073.png", "more/extra.png"];
  for (const [i, f] of files.entries()) {
    const [r, g, b] = colours[i];
    const img = sharp({ create: { width: 24 + 8 * i, height: 18, channels: 3, background: { r, g, b } } });
    fs.writeFileSync(path.join(images, f), await (f.endsWith(".jpg") ? img.jpeg() : img.png()).toBuffer());
  }
  fs.writeFileSync(path.join(images, "README.txt"), "not an image");
  const out = path.join(dir, "val2014_grid.regions");
  const r = await vlp("features", "grid", "--images", images, "--out", out, "--k", "3", "--dim", "32");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /STAND-IN/);
  assert.match(r.stdout, /3 images, 9 grid boxes each, dim 32, float32 \(source "grid"\)/);
  const store = RegionStore.open(out);
  assert.deepEqual(store.ids(), ["COCO_val2014_000000000042", "COCO_val2014_000000000073", "more/extra"]);
  assert.equal(store.source, "grid");
  for (const [i, f] of files.entries()) {
    const want = await gridRegionsFromImage(store.ids()[i], fs.readFileSync(path.join(images, f)), { k: 3, dim: 32 });
    assert.deepEqual(store.get(store.ids()[i]), want, f);
  }
  store.close();
  const [report] = await inspectPath(out);
  assert.match(report.what, /grid features: a detector-free stand-in/);
  const text = await vlp("data", "inspect", out);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /format {3}vlp\.regions: .*float32; grid features/);
  assert.match(text.stdout, /counts {3}records 3, dim 32, max_boxes 9, bytes \d+\n {2}sample {3}\{"imgId":"COCO_val2014_000000000042"/);
  assert.match(text.stdout, /problems none$/m);
  const empty = path.join(dir, "empty");
  fs.mkdirSync(empty);
  const no = await vlp("features", "grid", "--images", empty, "--out", path.join(dir, "x.regions"));
  assert.equal(no.code, 1);
  assert.match(no.stderr, /--images .*empty: no \.png\/\.jpg\/\.jpeg\/\.webp files there/);
});
