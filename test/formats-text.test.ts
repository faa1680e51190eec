import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  buildAnswerVocab, cocoImgId, normalizeVqaAnswer, processPunctuation, readAnswerVocab, readLxmertVqa, readVqaAnnotations,
  readVqaQuestions, toLxmertVqa, vqaLabel, vqaSoftScore, writeAnswerVocab, writeLxmertVqa, writeVqaAnnotations,
  writeVqaQuestions, type VqaAnnotation,
} from "../src/data/formats/vqa.ts";
import { gqaToLxmert, readGqaQuestions, readLxmertGqa, writeLxmertGqa } from "../src/data/formats/gqa.ts";
import {
  nlvr2ImageIds, nlvr2ToLxmert, readLxmertNlvr2, readNlvr2Jsonl, readNlvr2Predictions, writeLxmertNlvr2, writeNlvr2Jsonl,
  writeNlvr2Predictions,
} from "../src/data/formats/nlvr2.ts";
import { captionsByImage, readCocoCaptions, writeCocoCaptions } from "../src/data/formats/coco.ts";
import { karpathySubset, readKarpathy, writeKarpathy } from "../src/data/formats/karpathy.ts";
import {
  readVgAttributes, readVgImageData, readVgObjects, readVgRegionDescriptions, writeVgAttributes, writeVgObjects, writeVgRegionDescriptions,
} from "../src/data/formats/vg.ts";
import { vgLabelTable } from "../src/data/vg_labels.ts";
import { readLxmertPretrain, writeLxmertPretrain } from "../src/data/formats/lxmert_pretrain.ts";
import { readPretrainExamples } from "../src/pretrain/examples.ts";
import { readHardNegatives, writeHardNegatives } from "../src/data/formats/hardneg.ts";

const fixture = (name: string) => join(import.meta.dirname, "fixtures", "formats-text", name);
const tmp = () => mkdtempSync(join(tmpdir(), "vlpkit-formats-"));
/** A hand-written file in a temp dir (malformed inputs). */
function handWritten(name: string, text: string): string {
  const path = join(tmp(), name);
  writeFileSync(path, text);
  return path;
}
/** The error names the file, the record index and (when given) the record id. */
function assertRecordError(fn: () => unknown, file: string, record: number, id: string | null, detail: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e.message.includes(file), `names file: ${e.message}`);
    assert.ok(e.message.includes(`record ${record}`), `names record ${record}: ${e.message}`);
    if (id) assert.ok(e.message.includes(id), `names id ${id}: ${e.message}`);
    assert.match(e.message, detail);
    return true;
  });
}

// ---------------- VQA ----------------

test("VQA: official questions file", () => {
  const q = readVqaQuestions(fixture("v2_OpenEnded_mscoco_train2014_questions.json"));
  assert.equal(q.records.length, 4);
  assert.equal(q.skipped, 0);
  assert.equal(q.meta.data_subtype, "train2014");
  assert.deepEqual(q.records[1], { image_id: 458752, question: "What position is this man playing?", question_id: 458752001 });
});

test("VQA: official annotations file", () => {
  const a = readVqaAnnotations(fixture("v2_mscoco_train2014_annotations.json"));
  assert.equal(a.records.length, 4);
  assert.equal(a.records[3].answer_type, "number");
  assert.equal(a.records[3].answers.length, 10);
  assert.deepEqual(a.records[0].answers[6], { answer: "mesh", answer_confidence: "maybe", answer_id: 7 });
});

test("VQA: answer normalisation (official eval rules), cases worked by hand", () => {
  const cases: [string, string][] = [
    ["Yes!", "yes"], // "!" not next to a space -> space, then stripped
    ["two", "2"], ["Two", "2"], ["None", "0"], ["ten", "10"], // number words
    ["the net", "net"], ["an apple", "apple"], ["A dog.", "dog"], // articles, final period
    ["3.5", "3.5"], ["a.b", "ab"], ["Mr. Smith", "mr smith"], // periods before digits survive
    ["1,000", "1000"], ["2,000 (approx)", "2000 approx"], // digit,digit comma: all listed marks deleted
    ["black, white", "black white"], ["black,white", "black white"], // next to space: deleted; else: space
    ["t-shirt", "t shirt"], ["left - right", "left right"], ["(yes)", "yes"], ["hello?", "hello"],
    ["dont", "don't"], ["isnt", "isn't"], ["Whats", "what's"], ["yall", "y'all"], // contractions
    ["it's", "it's"], ["somebody'd", "somebodyd"], // apostrophe kept; the eval's reversed entry
    ["  Red   and  BLUE ", "red and blue"], ["2 people", "2 people"],
  ];
  for (const [raw, want] of cases) assert.equal(normalizeVqaAnswer(raw), want, JSON.stringify(raw));
  // The eval passes re.UNICODE (32) as the count of its period substitution.
  assert.equal(processPunctuation(".".repeat(40)), ".".repeat(8));
});

test("VQA: soft scores 0 / 0.3 / 0.6 / 0.9 / 1", () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 10].map(vqaSoftScore), [0, 0.3, 0.6, 0.9, 1, 1, 1]);
});

test("VQA: answer vocabulary by multiple_choice_answer frequency (distinct questions)", () => {
  const mk = (question_id: number, mc: string): VqaAnnotation => ({
    question_id, image_id: 1, question_type: "what", answer_type: "other", multiple_choice_answer: mc, answers: [],
  });
  const anns = [mk(1, "yes"), mk(2, "Yes!"), mk(3, "two"), mk(4, "yes"), mk(5, "2"), mk(6, "net"), mk(6, "net"), mk(7, "The Net."), mk(8, "2")];
  // yes: q1,2,4 (3); 2: q3,5,8 (3); net: q6,7 (2, the repeated q6 counts once)
  assert.deepEqual(buildAnswerVocab(anns, 3), { ans2label: { yes: 0, "2": 1 }, label2ans: ["yes", "2"] });
  assert.deepEqual(buildAnswerVocab(anns, 2).label2ans, ["yes", "2", "net"]);
  assert.deepEqual(buildAnswerVocab(anns).label2ans, [], "default threshold 9");
});

test("VQA: answer vocabulary files trainval_ans2label.json / trainval_label2ans.json", () => {
  const dir = tmp();
  const vocab = { ans2label: { yes: 0, no: 1, "2": 2 }, label2ans: ["yes", "no", "2"] };
  writeAnswerVocab(dir, vocab);
  assert.deepEqual(readdirSync(dir).sort(), ["trainval_ans2label.json", "trainval_label2ans.json"]);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, "trainval_label2ans.json"), "utf8")), ["yes", "no", "2"]);
  assert.deepEqual(readAnswerVocab(dir), vocab);
  writeFileSync(join(dir, "trainval_ans2label.json"), '{"yes": 0, "no": 2, "2": 1}');
  assert.throws(() => readAnswerVocab(dir), /trainval_label2ans\.json: label 1 \("no"\) does not map back/);
});

test("VQA: soft labels and conversion to LXMERT json", () => {
  const questions = readVqaQuestions(fixture("v2_OpenEnded_mscoco_train2014_questions.json")).records;
  const anns = readVqaAnnotations(fixture("v2_mscoco_train2014_annotations.json")).records;
  const ans2label = { net: 0, pitcher: 1, catcher: 2, orange: 3, "2": 4, "3": 5, mesh: 6 };
  // net x8, netting, mesh | pitcher x6 + "the pitcher" + "Pitcher!", catcher x2 | orange x9 | 2 x5 + two/Two, 3 x2, "2 people"
  assert.deepEqual(anns.map((a) => vqaLabel(a, ans2label)),
    [{ net: 1, mesh: 0.3 }, { pitcher: 1, catcher: 0.6 }, { orange: 1 }, { "2": 1, "3": 0.6 }]);
  assert.equal(cocoImgId("train2014", 9), "COCO_train2014_000000000009");
  const lx = toLxmertVqa(questions, anns, ans2label, "train2014");
  assert.deepEqual(lx[0], {
    answer_type: "other", img_id: "COCO_train2014_000000458752", label: { net: 1, mesh: 0.3 },
    question_id: 458752000, question_type: "what is this", sent: "What is this photo taken looking through?",
  });
  assert.deepEqual(Object.keys(lx[3]), ["answer_type", "img_id", "label", "question_id", "question_type", "sent"]);
  assert.deepEqual(toLxmertVqa(questions, undefined, ans2label, "test2015")[3],
    { img_id: "COCO_test2015_000000262146", question_id: 262146000, sent: "How many people are in the photo?" });
  assert.throws(() => toLxmertVqa(questions, anns.slice(0, 3), ans2label, "train2014"), /question_id 262146000 has no annotation/);
});

test("VQA: LXMERT json reader (with and without labels)", () => {
  const { records } = readLxmertVqa(fixture("lxmert_vqa_minival.json"));
  assert.equal(records.length, 4);
  assert.deepEqual(records[2].label, { "2": 0.9, "3": 0.6 });
  assert.deepEqual(records[3], { img_id: "COCO_test2015_000000262144", question_id: 262144000, sent: "Is the ball flying towards the batter?" });
});

test("VQA: writer -> reader round trips", () => {
  const dir = tmp();
  const q = readVqaQuestions(fixture("v2_OpenEnded_mscoco_train2014_questions.json"));
  writeVqaQuestions(join(dir, "q.json"), q.records, { data_subtype: "val2014" });
  const q2 = readVqaQuestions(join(dir, "q.json"));
  assert.deepEqual(q2.records, q.records);
  assert.equal(q2.meta.data_subtype, "val2014");
  const a = readVqaAnnotations(fixture("v2_mscoco_train2014_annotations.json")).records;
  writeVqaAnnotations(join(dir, "a.json"), a);
  assert.deepEqual(readVqaAnnotations(join(dir, "a.json")).records, a);
  const lx = readLxmertVqa(fixture("lxmert_vqa_minival.json")).records;
  writeLxmertVqa(join(dir, "lx.json"), lx);
  assert.deepEqual(readLxmertVqa(join(dir, "lx.json")).records, lx);
});

test("VQA: malformed records name file, record and question_id; skipInvalid counts them", () => {
  const path = fixture("bad_vqa_annotations.json");
  assertRecordError(() => readVqaAnnotations(path), "bad_vqa_annotations.json", 1, "question_id 393225001",
    /missing field "multiple_choice_answer"/);
  const res = readVqaAnnotations(path, { skipInvalid: true });
  assert.deepEqual(res.records.map((r) => r.question_id), [393225000]);
  assert.equal(res.skipped, 2);
  const bad = handWritten("vqa_train.json", '[{"img_id": "COCO_train2014_000000000009", "question_id": 9000, "sent": "Q?", "label": {"yes": "1"}}]');
  assertRecordError(() => readLxmertVqa(bad), "vqa_train.json", 0, "question_id 9000", /label\.yes" should be a number/);
  const badScore = handWritten("vqa_val.json", '[{"img_id": "x", "question_id": 1, "sent": "Q?", "label": {"yes": 1.5}}]');
  assertRecordError(() => readLxmertVqa(badScore), "vqa_val.json", 0, "question_id 1", /\[0, 1\]/);
  const noSent = handWritten("vqa_minival.json", '[{"img_id": "x", "question_id": 1, "sent": "ok"}, {"img_id": "y", "question_id": 42}]');
  assertRecordError(() => readLxmertVqa(noSent), "vqa_minival.json", 1, "question_id 42", /missing field "sent"/);
});

// ---------------- GQA ----------------

test("GQA: LXMERT json and official questions", () => {
  const lx = readLxmertGqa(fixture("lxmert_gqa_testdev.json")).records;
  assert.deepEqual(lx[1], { img_id: "n235859", label: { right: 1 }, question_id: "201640614", sent: "Which side is the tray on?" });
  const q = readGqaQuestions(fixture("testdev_balanced_questions.json")).records;
  assert.deepEqual(q.map((x) => x.qid), ["20968379", "201640614"]);
  assert.equal(q[0].fullAnswer, "Yes, the shorts are dark.");
  assert.deepEqual(q[0].types, { detailed: "verifyAttr", semantic: "attr", structural: "verify" });
  assert.deepEqual(gqaToLxmert(q)[1], lx[1]);
  const sub = readGqaQuestions(fixture("submission_all_questions.json")).records;
  assert.equal(sub[0].answer, undefined);
  assert.deepEqual(gqaToLxmert(sub)[0], { img_id: "n15740", question_id: "00000000", sent: "Is the sky dark?" });
});

test("GQA: round trip and malformed records", () => {
  const dir = tmp();
  const lx = readLxmertGqa(fixture("lxmert_gqa_testdev.json")).records;
  writeLxmertGqa(join(dir, "gqa.json"), lx);
  assert.deepEqual(readLxmertGqa(join(dir, "gqa.json")).records, lx);
  const bad = handWritten("gqa_train.json", '[{"img_id": "n1", "label": {"no": 1}, "question_id": 201307251, "sent": "Is it?"}]');
  assertRecordError(() => readLxmertGqa(bad), "gqa_train.json", 0, "question_id 201307251", /"question_id" should be a string, got number/);
  const badQ = handWritten("val_balanced_questions.json", '{"1": {"imageId": "n1", "question": "A?"}, "2": {"question": "B?"}}');
  assertRecordError(() => readGqaQuestions(badQ), "val_balanced_questions.json", 1, "question_id 2", /missing field "imageId"/);
  assert.equal(readGqaQuestions(badQ, { skipInvalid: true }).skipped, 1);
});

// ---------------- NLVR2 ----------------

test("NLVR2: official jsonl, image ids, LXMERT conversion", () => {
  const s = readNlvr2Jsonl(fixture("nlvr2_dev.json"));
  assert.equal(s.records.length, 3, "blank line ignored");
  assert.equal(s.records[1].label, "False");
  assert.equal(s.records[0].synset, "n02110185");
  assert.deepEqual(nlvr2ImageIds("train-10171-0-0"), { split: "train", img0: "train-10171-0-img0", img1: "train-10171-0-img1" });
  assert.deepEqual(nlvr2ImageIds("test1-0-1-0").img1, "test1-0-1-img1");
  const lx = nlvr2ToLxmert(s.records);
  assert.deepEqual(lx.slice(0, 2), readLxmertNlvr2(fixture("lxmert_nlvr2_valid.json")).records);
  // LXMERT's converter names dev.json "valid" and test1.json "test", indexing within each file
  assert.deepEqual(lx.map((d) => d.uid), ["nlvr2_valid_0", "nlvr2_valid_1", "nlvr2_test_0"]);
  const train = nlvr2ToLxmert(["train-10171-0-0", "train-10171-0-1"].map((identifier) => ({ identifier, sentence: "s", label: "True" as const })));
  assert.deepEqual(train.map((d) => d.uid), ["nlvr2_train_0", "nlvr2_train_1"]);
});

test("NLVR2: prediction CSV", () => {
  const p = readNlvr2Predictions(fixture("nlvr2_predict.csv")).records;
  assert.deepEqual(p, [
    { identifier: "dev-850-0-0", prediction: true }, { identifier: "dev-851-1-3", prediction: false }, { identifier: "test1-0-1-0", prediction: true },
  ]);
  const path = join(tmp(), "test.csv");
  writeNlvr2Predictions(path, p);
  assert.equal(readFileSync(path, "utf8"), readFileSync(fixture("nlvr2_predict.csv"), "utf8"));
  const bad = handWritten("predict.csv", "dev-850-0-0,True\ndev-851-1-3,maybe\n");
  assertRecordError(() => readNlvr2Predictions(bad), "predict.csv", 1, "dev-851-1-3", /identifier,True\|False/);
});

test("NLVR2: round trips and malformed records", () => {
  const dir = tmp();
  const s = readNlvr2Jsonl(fixture("nlvr2_dev.json")).records;
  writeNlvr2Jsonl(join(dir, "dev.json"), s);
  assert.deepEqual(readNlvr2Jsonl(join(dir, "dev.json")).records, s);
  const lx = nlvr2ToLxmert(s);
  writeLxmertNlvr2(join(dir, "valid.json"), lx);
  assert.deepEqual(readLxmertNlvr2(join(dir, "valid.json")).records, lx);

  const bad = fixture("bad_nlvr2_dev.json");
  assertRecordError(() => readNlvr2Jsonl(bad), "bad_nlvr2_dev.json", 1, "identifier dev-851-1-3", /"True" or "False", got "yes"/);
  const res = readNlvr2Jsonl(bad, { skipInvalid: true });
  assert.deepEqual(res.records.map((r) => r.identifier), ["dev-850-0-0", "dev-852-0-1"]);
  assert.equal(res.skipped, 2);
  const brokenLine = handWritten("train.json", '{"sentence": "A", "label": "True", "identifier": "train-1-0-0"}\n{"sentence": \n');
  assertRecordError(() => readNlvr2Jsonl(brokenLine), "train.json", 1, null, /line 2: invalid JSON/);
  const badLx = handWritten("nlvr2_train.json", '[{"identifier": "train-1-0-0", "img0": "a", "img1": "b", "label": 2, "sent": "s", "uid": "nlvr2_train_0"}]');
  assertRecordError(() => readLxmertNlvr2(badLx), "nlvr2_train.json", 0, "identifier train-1-0-0", /0 or 1, got 2/);
  const badId = handWritten("test1.json", '{"sentence": "A", "label": "True", "identifier": "test1-x"}\n');
  assertRecordError(() => readNlvr2Jsonl(badId), "test1.json", 0, "identifier test1-x", /<split>-<set>-<pair>-<sentence>/);
});

// ---------------- COCO / Karpathy ----------------

test("COCO captions: reader, grouping, round trip, malformed", () => {
  const c = readCocoCaptions(fixture("captions_val2014.json"));
  assert.equal(c.images.length, 2);
  assert.equal(c.annotations.length, 3);
  assert.equal(c.images[1].coco_url, "http://mscoco.org/images/522418");
  assert.deepEqual(captionsByImage(c).get(391895),
    ["A man with a red helmet on a small moped on a dirt road. ", "Man riding a motor bike on a dirt road on the countryside."]);
  const path = join(tmp(), "captions.json");
  writeCocoCaptions(path, c);
  const back = readCocoCaptions(path);
  assert.deepEqual([back.images, back.annotations, back.info], [c.images, c.annotations, c.info]);

  const bad = handWritten("captions_train2014.json", JSON.stringify({
    images: [{ id: 9, file_name: "COCO_train2014_000000000009.jpg", height: 480, width: 640 }],
    annotations: [{ id: 1, image_id: 9, caption: "a plate of food" }, { id: 48, image_id: 25, caption: "a giraffe" }],
  }));
  assertRecordError(() => readCocoCaptions(bad), "captions_train2014.json", 1, "annotation id 48", /image_id 25 is not in "images"/);
  assert.equal(readCocoCaptions(bad, { skipInvalid: true }).skipped, 1);
});

test("Karpathy splits: flickr30k and coco, subsets with restval", () => {
  const f = readKarpathy(fixture("dataset_flickr30k.json"));
  assert.equal(f.dataset, "flickr30k");
  assert.deepEqual(f.images[0].sentences[1].tokens, ["two", "young", "white", "males", "are", "outside", "near", "many", "bushes"]);
  assert.deepEqual(karpathySubset(f.images, "test").map((im) => im.filename), ["1000268201.jpg"]);
  const c = readKarpathy(fixture("dataset_coco.json"));
  assert.deepEqual(karpathySubset(c.images, "train").map((im) => im.cocoid), [522418, 57870], "train = restval + train");
  assert.deepEqual(karpathySubset(c.images, "val").map((im) => im.cocoid), [184613]);
  assert.equal(c.images[0].filepath, "val2014");
  const path = join(tmp(), "dataset.json");
  writeKarpathy(path, f);
  assert.deepEqual(readKarpathy(path), f);
});

test("Karpathy: malformed records", () => {
  const img = (split: string, sentids: number[]) => ({
    filename: "1000092795.jpg", imgid: 0, split, sentids, sentences: [{ raw: "A dog.", tokens: ["a", "dog"], imgid: 0, sentid: 0 }],
  });
  const badSplit = handWritten("dataset_flickr8k.json", JSON.stringify({ dataset: "flickr8k", images: [img("train", [0]), img("training", [0])] }));
  assertRecordError(() => readKarpathy(badSplit), "dataset_flickr8k.json", 1, "filename 1000092795.jpg", /"split" should be train, val, test or restval/);
  const badIds = handWritten("dataset_coco.json", JSON.stringify({ dataset: "coco", images: [img("val", [7])] }));
  assertRecordError(() => readKarpathy(badIds), "dataset_coco.json", 0, "filename", /do not match/);
  const badTokens = handWritten("dataset_f30k.json", JSON.stringify({
    dataset: "flickr30k", images: [{ ...img("val", [0]), sentences: [{ raw: "A dog.", tokens: "a dog", imgid: 0, sentid: 0 }] }],
  }));
  assertRecordError(() => readKarpathy(badTokens), "dataset_f30k.json", 0, null, /sentences\[0\]: field "tokens" should be a list/);
});

test("Karpathy and COCO: file names that leave the image folder are refused", () => {
  const img = (filename: string, filepath?: string) => ({
    filename, ...(filepath === undefined ? {} : { filepath }), imgid: 3, split: "train", sentids: [0],
    sentences: [{ raw: "A dog.", tokens: ["a", "dog"], imgid: 3, sentid: 0 }],
  });
  for (const [filename, filepath] of [["../../etc/passwd", undefined], ["a.jpg", "val2014/../../.."], ["/etc/passwd", undefined], ["..\\x.jpg", undefined]] as const) {
    const path = handWritten("dataset_coco.json", JSON.stringify({ dataset: "coco", images: [img("ok.jpg", "val2014"), img(filename, filepath)] }));
    const fieldName = filepath === undefined ? "filename" : "filepath";
    assertRecordError(() => readKarpathy(path), "dataset_coco.json", 1, null, new RegExp(`field "${fieldName}" should be a file name inside the image folder`));
    assert.equal(readKarpathy(path, { skipInvalid: true }).skipped, 1);
  }
  // dots inside a name are fine
  const dots = handWritten("dataset_coco.json", JSON.stringify({ dataset: "coco", images: [img("a..b.jpg", "val2014")] }));
  assert.equal(readKarpathy(dots).images[0].filename, "a..b.jpg");
  const coco = handWritten("captions_val2014.json", JSON.stringify({
    images: [{ id: 9, file_name: "../secret.jpg", height: 480, width: 640 }], annotations: [],
  }));
  assertRecordError(() => readCocoCaptions(coco), "captions_val2014.json", 0, "image id 9", /field "file_name" should be a file name inside the image folder \(no "\.\.", not absolute\), got "\.\.\/secret\.jpg"/);
});

// ---------------- Visual Genome ----------------

test("Visual Genome: region descriptions, objects, attributes", () => {
  const r = readVgRegionDescriptions(fixture("region_descriptions.json")).records;
  assert.deepEqual(r[0].regions[0], { region_id: 1382, image_id: 1, phrase: "the clock is green in colour", x: 421, y: 57, width: 82, height: 139 });
  const o = readVgObjects(fixture("objects.json")).records;
  assert.deepEqual(o[0].objects[1], { object_id: 1058534, x: 78, y: 308, w: 722, h: 290, names: ["sidewalk"], synsets: ["sidewalk.n.01"], merged_object_ids: [5046] });
  assert.equal(o[1].image_url, "https://cs.stanford.edu/people/rak248/VG_100K/2.jpg");
  const a = readVgAttributes(fixture("attributes.json")).records;
  assert.deepEqual(a[0].attributes[0].attributes, ["green", "tall"]);
  assert.deepEqual(a[0].attributes[1].attributes, [], "objects without attributes");
  assert.equal(a[1].attributes[0].synsets, undefined);

  const dir = tmp();
  writeVgRegionDescriptions(join(dir, "r.json"), r);
  writeVgObjects(join(dir, "o.json"), o);
  writeVgAttributes(join(dir, "a.json"), a);
  assert.deepEqual(readVgRegionDescriptions(join(dir, "r.json")).records, r);
  assert.deepEqual(readVgObjects(join(dir, "o.json")).records, o);
  assert.deepEqual(readVgAttributes(join(dir, "a.json")).records, a);
});

test("Visual Genome image labels: names then attributes by frequency, found by image file name or COCO id", () => {
  const d = readVgImageData(fixture("image_data.json")).records;
  assert.deepEqual(d[1], { image_id: 2, url: "https://cs.stanford.edu/people/rak248/VG_100K/2.jpg", width: 800, height: 600, coco_id: 391895, flickr_id: null });
  const t = vgLabelTable(join(import.meta.dirname, "fixtures", "formats-text"));
  // one of each: ties in name order
  assert.deepEqual(t.objects, ["clock", "sign", "street"]);
  assert.deepEqual(t.attributes, ["green", "tall", "white"]);
  assert.deepEqual(t.groups, { objects: [0, 3], attributes: [3, 6] });
  assert.deepEqual([...t.labelsOf("images/1.jpg")!], [1, 0, 1, 1, 1, 0]);
  assert.deepEqual([...t.labelsOf("val2014/COCO_val2014_000000391895.jpg")!], [0, 1, 0, 0, 0, 1]);
  assert.equal(t.labelsOf("3.jpg"), undefined);
  const few = vgLabelTable(join(import.meta.dirname, "fixtures", "formats-text"), { objects: 1, attributes: 2 });
  assert.equal(few.size, 3);
  assert.deepEqual([...few.labelsOf("2.jpg")!], [0, 0, 0], "labels beyond the limits are dropped");
  const bad = handWritten("image_data.json", JSON.stringify([{ image_id: 7, url: 3, width: 1, height: 1 }]));
  assertRecordError(() => readVgImageData(bad), "image_data.json", 0, "image_id 7", /field "url" should be a string, got number/);
});

test("Visual Genome: malformed records", () => {
  const region = (image_id: number, phrase?: string) => ({ region_id: 7, image_id, phrase, x: 1, y: 2, width: 3, height: 4 });
  const r = handWritten("region_descriptions.json", JSON.stringify([{ id: 1, regions: [region(1, "a")] }, { id: 2, regions: [region(2)] }]));
  assertRecordError(() => readVgRegionDescriptions(r), "region_descriptions.json", 1, "id 2", /regions\[0\]: missing field "phrase"/);
  const r2 = handWritten("region_descriptions.json", JSON.stringify([{ id: 3, regions: [region(4, "a")] }]));
  assertRecordError(() => readVgRegionDescriptions(r2), "region_descriptions.json", 0, "id 3", /image_id 4, expected 3/);
  const o = handWritten("objects.json", JSON.stringify([{ image_id: 5, objects: [{ object_id: 1, x: 0, y: 0, w: 1.5, h: 2, names: ["cat"], synsets: [] }] }]));
  assertRecordError(() => readVgObjects(o), "objects.json", 0, "image_id 5", /objects\[0\]: field "w" should be an integer, got 1.5/);
  const a = handWritten("attributes.json", JSON.stringify([{ image_id: 6, attributes: [{ object_id: 1, x: 0, y: 0, w: 1, h: 2, names: "cat" }] }]));
  assertRecordError(() => readVgAttributes(a), "attributes.json", 0, "image_id 6", /"names" should be a list/);
  assert.equal(readVgAttributes(a, { skipInvalid: true }).skipped, 1);
});

// ---------------- LXMERT pre-training / hard negatives ----------------

test("LXMERT pre-training json", () => {
  const d = readLxmertPretrain(fixture("mscoco_minival.json")).records;
  assert.equal(d.length, 2);
  assert.deepEqual(d[0].labelf.vqa[1], { "1": 0.9, "2": 0.3 });
  assert.equal(d[0].sentf.vqa[1], "How many plates are there?");
  assert.deepEqual(d[1].labelf, {});
  const path = join(tmp(), "pretrain.json");
  writeLxmertPretrain(path, d);
  assert.deepEqual(readLxmertPretrain(path).records, d);
  // the pre-training pipeline reads these files through the same parser: its examples are the records' sentences in order
  const flat = (keep?: string[]) => d.flatMap((r) => Object.entries(r.sentf).filter(([s]) => !keep || keep.includes(s)).flatMap(([source, sents]) => sents.map((text, k) => ({ imgId: r.img_id, text, source, label: r.labelf[source]?.[k] }))));
  assert.deepEqual(readPretrainExamples(path), flat());
  assert.deepEqual(readPretrainExamples(path, { sources: ["vqa"] }), flat(["vqa"]));
  const bad = handWritten("vgnococo.json", JSON.stringify([
    { img_id: "2345678", sentf: { vg: ["a red car"], gqa: ["Is the car red?"] }, labelf: { gqa: [{ yes: 1 }, { no: 1 }] } },
  ]));
  assertRecordError(() => readLxmertPretrain(bad), "vgnococo.json", 0, "img_id 2345678", /labelf\.gqa must be a list as long as sentf\.gqa \(2 labels, 1 sentences\)/);
  const badScore = handWritten("mscoco_train.json", JSON.stringify([{ img_id: "COCO_train2014_000000000009", sentf: { vqa: ["Q?"] }, labelf: { vqa: [{ yes: null }] } }]));
  assertRecordError(() => readLxmertPretrain(badScore), "mscoco_train.json", 0, "img_id COCO_train2014_000000000009", /labelf\.vqa\[0\]: the score of "yes" should be a number in \[0, 1\], got null/);
});

test("hard negatives: reader, round trip, index validation", () => {
  const hn = readHardNegatives(fixture("hard_negative.json"));
  assert.deepEqual(hn.train_hard_pool[2], [0, 3]);
  assert.equal(hn.train_image_list[3], 1000344755);
  const path = join(tmp(), "hard_negative.json");
  writeHardNegatives(path, hn);
  const back = readHardNegatives(path);
  assert.deepEqual([back.train_image_list, back.train_hard_pool], [hn.train_image_list, hn.train_hard_pool]);

  const bad = fixture("bad_hard_negative.json");
  assertRecordError(() => readHardNegatives(bad), "bad_hard_negative.json", 1, "image 10002456", /index 3 at position 0 is not an image index in \[0, 3\)/);
  const skipped = readHardNegatives(bad, { skipInvalid: true });
  assert.deepEqual(skipped.train_hard_pool, [[2, 1], [], [0, 1]], "bad row emptied, rows stay aligned");
  assert.equal(skipped.skipped, 1);
  assert.throws(() => writeHardNegatives(join(tmp(), "x.json"), { train_image_list: ["a", "b"], train_hard_pool: [[1], [-1]] }),
    /x\.json: record 1 \(image b\): index -1/);
  const short = handWritten("hn.json", '{"train_image_list": [1, 2], "train_hard_pool": [[1]]}');
  assert.throws(() => readHardNegatives(short), /hn\.json: train_hard_pool has 1 rows but train_image_list has 2/);
});

// ---------------- file-level errors ----------------

test("missing file, invalid JSON, wrong top-level shape name the path", () => {
  const missing = join(tmp(), "nowhere", "v2_mscoco_val2014_annotations.json");
  assert.throws(() => readVqaAnnotations(missing), (e: Error) => e.message === `${missing}: file not found`);
  assert.throws(() => readNlvr2Jsonl(missing), /file not found/);
  assert.throws(() => readAnswerVocab(join(tmp(), "none")), /trainval_ans2label\.json: file not found/);
  const broken = handWritten("captions_val2014.json", '{"images": [');
  assert.throws(() => readCocoCaptions(broken), (e: Error) => e.message.startsWith(`${broken}: invalid JSON`));
  const shape = handWritten("v2_OpenEnded_mscoco_val2014_questions.json", '{"question": []}');
  assert.throws(() => readVqaQuestions(shape), /v2_OpenEnded_mscoco_val2014_questions\.json: expected an object with a list "questions"/);
  const notList = handWritten("gqa_testdev.json", '{"img_id": "n1"}');
  assert.throws(() => readLxmertGqa(notList), /gqa_testdev\.json: expected a JSON array/);
  const notObj = handWritten("minival.json", '[{"img_id": "x", "question_id": 1, "sent": "Q"}, 17]');
  assertRecordError(() => readLxmertVqa(notObj), "minival.json", 1, null, /not a JSON object/);
});
