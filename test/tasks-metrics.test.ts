// Task metrics on hand-computed cases, the balanced GQA split, and the official dump formats.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { accuracy, normalizePrediction, softScore, vqaAccuracy, vqaMetrics, writeGqaResults, writeNlvr2Results, writeVqaResults, type VqaPrediction } from "../src/tasks/metrics.ts";
import { balancedSubset, questionType, type TaskExample } from "../src/tasks/data.ts";
import { readNlvr2Predictions } from "../src/data/formats/nlvr2.ts";
import { classifyOptions } from "../src/tasks/classify.ts";
import { loadFinetuneRecipe } from "../src/tasks/task.ts";
import { VQA } from "../src/tasks/vqa.ts";
import { GQA } from "../src/tasks/gqa.ts";
import { NLVR2 } from "../src/tasks/nlvr2.ts";
import type { VqaAnnotation } from "../src/data/formats/vqa.ts";

const close = (a: number, b: number, msg?: string) => assert.ok(Math.abs(a - b) < 1e-12, `${msg ?? ""} ${a} != ${b}`);

test("VQA accuracy: min(1, matches/3) averaged over the 10 leave-one-out annotator subsets", () => {
  // 4 x "red", 2 x "blue", 3 x "green", 1 x "pink"
  const gts = ["red", "red", "red", "red", "blue", "blue", "green", "green", "green", "pink"];
  // red: leaving out a "red" leaves 3 matches (1), leaving out another leaves 4 (1) -> 1
  close(vqaAccuracy("red", gts), 1, "red");
  // blue: 2 subsets without a "blue" hold 1 match (1/3), 8 subsets hold 2 (2/3) -> (2/3 + 16/3) / 10 = 0.6
  close(vqaAccuracy("blue", gts), 0.6, "blue");
  // green: 3 subsets with 2 matches (2/3), 7 with 3 (1) -> (2 + 7) / 10 = 0.9
  close(vqaAccuracy("green", gts), 0.9, "green");
  // pink: 1 subset with 0 matches, 9 with 1 (1/3) -> 0.3
  close(vqaAccuracy("pink", gts), 0.3, "pink");
  close(vqaAccuracy("gray", gts), 0, "gray");
  // an unequal split: 3 x "yes" and 7 x "no": yes scores (3 * 2/3 + 7 * 1) / 10
  close(vqaAccuracy("yes", ["yes", "yes", "yes", "no", "no", "no", "no", "no", "no", "no"]), 0.9);
  // when the annotators disagree, the prediction is normalised like the official eval (number words, articles, punctuation)
  close(vqaAccuracy("Two.", [...Array(9).fill("2"), "3"]), 1, "Two. (annotators disagree: normalised)");
  close(vqaAccuracy("a ball", [...Array(5).fill("ball"), ...Array(5).fill("box")]), 1, "a ball");
  assert.equal(normalizePrediction(" The Red\tball! "), "red ball");
  // when they disagree both sides are normalised ("t-shirt" -> "t shirt"); unanimous answers and the
  // prediction are compared as they are (the current official code)
  close(vqaAccuracy("t-shirt", ["t-shirt", "t-shirt", "t-shirt", "shirt", "shirt", "shirt", "shirt", "shirt", "shirt", "shirt"]), 0.9);
  close(vqaAccuracy("t-shirt", Array(10).fill("t-shirt")), 1, "unanimous answers: neither side is normalised");
  assert.throws(() => vqaAccuracy("a", []), /no annotator answers/);
});

test("VQA metrics: official when the annotations cover every question, soft score otherwise", () => {
  const ann = (qid: number, type: string, answers: string[]): VqaAnnotation => ({
    question_id: qid, image_id: 1, question_type: "what", answer_type: type, multiple_choice_answer: answers[0],
    answers: answers.map((answer, i) => ({ answer, answer_confidence: "yes", answer_id: i + 1 })),
  });
  const annotations = new Map<number | string, VqaAnnotation>([
    [1, ann(1, "yes/no", [...Array(8).fill("yes"), "no", "no"])],
    [2, ann(2, "number", [...Array(2).fill("3"), ...Array(8).fill("2")])],
  ]);
  const preds: VqaPrediction[] = [
    { question_id: 1, answer: "no", label: { yes: 1, no: 0.6 } }, // official 0.6
    { question_id: 2, answer: "2", label: { "2": 1, "3": 0.6 } }, // official 1
  ];
  const m = vqaMetrics(preds, annotations);
  close(m.vqa_acc, 0.8);
  close(m.vqa_soft, 0.8);
  assert.equal(m.official, 1);
  close(m.vqa_acc_yesno, 0.6);
  close(m.vqa_acc_number, 1);
  assert.equal(m.n, 2);
  // without annotations the soft score stands in
  const soft = vqaMetrics(preds.map((p) => ({ ...p, question_id: Number(p.question_id) + 10 })));
  assert.equal(soft.official, 0);
  close(soft.vqa_acc, 0.8);
  assert.equal(softScore("blue", { red: 1 }), 0);
  assert.deepEqual(vqaMetrics([{ question_id: 9, answer: "x" }]), { n: 1 });
});

test("accuracy (NLVR2, GQA) on hand-computed cases", () => {
  close(accuracy([1, 0, 1, 1], [1, 1, 1, 0]), 0.5);
  close(accuracy(["yes", "no", "red"], ["yes", "no", "red"]), 1);
  assert.equal(accuracy([], []), 0);
  assert.throws(() => accuracy([1], [1, 0]), /1 predictions for 2 labels/);
});

test("GQA balanced split: per question type, each answer at most ratio x the next rarer one", () => {
  const ex = (text: string, ans: string, i: number): TaskExample => ({ id: String(i), imgIds: ["img"], text, scores: { [ans]: 1 } });
  const data: TaskExample[] = [];
  for (let i = 0; i < 40; i++) data.push(ex("Do the ball and box have the same color?", "no", data.length));
  for (let i = 0; i < 10; i++) data.push(ex("Do the ring and star have the same color?", "yes", data.length));
  for (let i = 0; i < 12; i++) data.push(ex("How many balls are there?", "2", data.length));
  for (let i = 0; i < 3; i++) data.push(ex("How many stars are there?", "7", data.length));
  assert.equal(questionType("Do the ball and box...?"), "do the");
  const keep = balancedSubset(data, { ratio: 1.5, minTail: 5, seed: 0 });
  const count = (t: string, a: string) => keep.filter((i) => questionType(data[i].text) === t && data[i].scores![a]).length;
  assert.equal(count("do the", "yes"), 10);
  assert.equal(count("do the", "no"), 15); // capped at 1.5 x 10
  assert.equal(count("how many", "7"), 3); // below minTail: kept whole, bounds nothing
  assert.equal(count("how many", "2"), 12);
  assert.deepEqual(keep, [...keep].sort((a, b) => a - b));
  // seeded: same seed, same subset; another seed, another subset of the capped answer
  assert.deepEqual(balancedSubset(data, { ratio: 1.5, minTail: 5, seed: 0 }), keep);
  assert.notDeepEqual(balancedSubset(data, { ratio: 1.5, minTail: 5, seed: 1 }), keep);
});

test("results files: VQA [{question_id, answer}], GQA [{questionId, prediction}], NLVR2 CSV", () => {
  const dir = mkdtempSync(join(tmpdir(), "vlp-dumps-"));
  writeVqaResults(join(dir, "vqa.json"), [{ question_id: 12, answer: "yes" }, { question_id: 13, answer: "2" }]);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, "vqa.json"), "utf8")), [{ question_id: 12, answer: "yes" }, { question_id: 13, answer: "2" }]);
  writeGqaResults(join(dir, "gqa.json"), [{ question_id: "201", answer: "no" }]);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, "gqa.json"), "utf8")), [{ questionId: "201", prediction: "no" }]);
  writeNlvr2Results(join(dir, "sub", "nlvr2.csv"), [{ identifier: "test-1-0-0", prediction: true }, { identifier: "test-1-0-1", prediction: false }]);
  assert.equal(readFileSync(join(dir, "sub", "nlvr2.csv"), "utf8"), "test-1-0-0,True\ntest-1-0-1,False\n");
  assert.equal(readNlvr2Predictions(join(dir, "sub", "nlvr2.csv")).records.length, 2);
});

test("task options: defaults, unknown keys and bad values named", () => {
  assert.deepEqual(classifyOptions(VQA, undefined), { mode: "single", maxBoxes: 36, answerHead: "random" });
  assert.equal(classifyOptions(VQA, { mode: "best" }).mode, "best");
  assert.throws(() => classifyOptions(VQA, { mdoe: "two" }), /recipe\.options\.mdoe: unknown key for vqa/);
  assert.throws(() => classifyOptions(VQA, { mode: "both" }), /recipe\.options\.mode: expected "single", "two" or "best"/);
  assert.throws(() => classifyOptions(VQA, { stages: ["all"] }), /recipe\.options\.stages: unknown key for vqa/);
  assert.deepEqual(classifyOptions(GQA, {}).stages, ["all", "balanced"]);
  assert.throws(() => classifyOptions(GQA, { maxTextLen: 1.5 }), /recipe\.options\.maxTextLen: expected an integer > 2/);
});

test("the fine-tuning recipes validate (contract and task options)", () => {
  const tasks = { vqa: VQA, gqa: GQA, nlvr2: NLVR2 };
  const names = ["vqa-tiny", "gqa-tiny", "nlvr2-tiny", "vqa-semvlp", "vqa-msp", "vqa-vlmo", "gqa-semvlp", "gqa-msp", "nlvr2-semvlp", "nlvr2-msp", "nlvr2-vlmo"];
  for (const name of names) {
    const r = loadFinetuneRecipe(new URL(`../recipes/finetune/${name}.json`, import.meta.url).pathname);
    assert.equal(r.task, name.split("-")[0], name);
    classifyOptions(tasks[r.task as keyof typeof tasks], r.options);
  }
  // the papers' settings
  const semvlp = loadFinetuneRecipe(new URL("../recipes/finetune/vqa-semvlp.json", import.meta.url).pathname);
  assert.deepEqual([semvlp.train.batchSize, semvlp.train.lr, semvlp.train.epochs, semvlp.options?.mode], [32, 5e-5, 3, "best"]);
  const msp = loadFinetuneRecipe(new URL("../recipes/finetune/vqa-msp.json", import.meta.url).pathname);
  assert.deepEqual([msp.train.batchSize, msp.train.lr, msp.train.epochs], [32, 5e-5, 6]);
  const gqa = loadFinetuneRecipe(new URL("../recipes/finetune/gqa-semvlp.json", import.meta.url).pathname);
  assert.deepEqual([gqa.train.epochs, gqa.options?.stages, gqa.options?.balanced], [2, ["all", "balanced"], { epochs: 2, lr: 5e-6 }]);
});

test("VQA accuracy follows the current official vqaEval.py per question (the 2021 fix), not the 2017 one", () => {
  // annotators all agree: neither side is normalised, the prediction must equal their answer
  close(vqaAccuracy("t-shirt", Array(10).fill("t-shirt")), 1);
  close(vqaAccuracy("Two.", Array(10).fill("2")), 0, "no number words or punctuation when the annotators agree");
  close(vqaAccuracy("  2\n", Array(10).fill("2")), 1, "but the ends are stripped and newlines become spaces");
  // annotators disagree: their answers get the full normalisation too (case, number words, articles)
  close(vqaAccuracy("2", ["Two", "two", "2", ...Array(7).fill("3")]), (3 * (2 / 3) + 7) / 10);
  close(vqaAccuracy("ball", ["a ball", "the ball", "Ball", ...Array(7).fill("box")]), 0.9);
  close(vqaAccuracy("dont", ["dont", "don't", ...Array(8).fill("no")]), 0.6, "contractions restored on both sides");
  // annotators who differ only by white space at the ends agree once cleaned
  close(vqaAccuracy("yes", [" yes", "yes\n", ...Array(8).fill("yes")]), 1);
  close(vqaAccuracy("Yes", [" yes", "yes\t", ...Array(8).fill("yes")]), 0, "agreeing annotators: case is not folded");
});

test("a VQA results file must answer exactly the annotated questions, as the official code requires", () => {
  const ann = (qid: number): VqaAnnotation => ({ question_id: qid, image_id: 1, question_type: "what", answer_type: "other", multiple_choice_answer: "red", answers: Array.from({ length: 10 }, (_, i) => ({ answer: "red", answer_confidence: "yes", answer_id: i + 1 })) });
  const annotations = new Map<number | string, VqaAnnotation>([1, 2, 3].map((q) => [q, ann(q)]));
  const p = (...ids: number[]) => ids.map((question_id) => ({ question_id, answer: "red" }));
  assert.equal(vqaMetrics(p(1, 2, 3), annotations, { where: "res.json" }).vqa_acc, 1);
  assert.throws(() => vqaMetrics(p(1, 2), annotations, { where: "res.json" }), /res\.json: the results do not correspond to the annotations: 1 \(e\.g\. 3\) annotated question ids without a prediction/);
  assert.throws(() => vqaMetrics(p(1, 2, 3, 9), annotations, { where: "res.json" }), /1 \(e\.g\. 9\) predicted question ids not in the annotations/);
  assert.throws(() => vqaMetrics(p(1, 2, 3, 3), annotations), /1 \(e\.g\. 3\) question ids answered more than once/);
  // --limit N evaluates the first N questions: the others may be missing, but nothing may be added
  assert.equal(vqaMetrics(p(1, 2), annotations, { subset: true }).n, 2);
  assert.throws(() => vqaMetrics(p(1, 9), annotations, { subset: true }), /not in the annotations/);
});
