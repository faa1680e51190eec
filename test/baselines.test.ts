// The baselines of src/baselines on a freshly generated small world: the bow baseline learns held-out
// ITM above chance, the VQA baseline answers above the majority answer, and `vlp baseline` writes a
// metrics.json with every key (NLVR2's too).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateWorld } from "../src/data/synth/world.ts";
import { main } from "../src/cli/baseline.ts";
import { itmPairs, itmAccuracy, bestThreshold, subMatrix, zeroShotMetrics } from "../src/baselines/common.ts";
import { evalSet } from "../src/tasks/retrieval/data.ts";
import { readTaskExamples } from "../src/tasks/data.ts";
import { vqaMetrics } from "../src/tasks/metrics.ts";
import { readVqaAnnotations } from "../src/data/formats/vqa.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-baselines-"));
const world = join(root, "world");
const worldReady = generateWorld({ images: 300, seed: 11, out: world, size: 64 });

const FRACTIONS = ["itm_acc", "itm_chance", "itm_acc_val", "itm_chance_val"];
const ZS = ["ir_r1", "ir_r5", "ir_r10", "tr_r1", "tr_r5", "tr_r10", "chance_r1", "chance_r5", "chance_r10", "chance_tr_r1", "chance_tr_r5", "chance_tr_r10", "r_mean", "chance_r_mean"].map((k) => `zs_${k}`);

function readMetrics(dir: string): Record<string, number> {
  return JSON.parse(readFileSync(join(dir, "metrics.json"), "utf8"));
}

function checkFractions(m: Record<string, number>, keys: string[]): void {
  for (const k of keys) {
    assert.equal(typeof m[k], "number", `${k} missing`);
    assert.ok(m[k] >= 0 && m[k] <= 1, `${k} = ${m[k]} is not in [0, 1]`);
  }
  for (const k of Object.keys(m)) if (k !== "steps" && k !== "seconds") assert.ok(m[k] >= 0 && m[k] <= 1, `${k} = ${m[k]} is not in [0, 1]`);
  assert.ok(m.seconds > 0);
}

test("bow baseline: held-out ITM above chance, metrics.json complete", { timeout: 120_000 }, async () => {
  await worldReady;
  const out = join(root, "bow");
  await main(["bow", "--world", world, "--steps", "600", "--seed", "0", "--out", out, "--quiet"]);
  const m = readMetrics(out);
  checkFractions(m, [...FRACTIONS, ...ZS]);
  assert.equal(m.steps, 600);
  assert.equal(m.itm_chance, 0.5);
  // held-out captions of val and test (15 images each here), each with its image and a random other one
  assert.ok((m.itm_acc + m.itm_acc_val) / 2 > 0.58, `held-out ITM ${m.itm_acc} (test) / ${m.itm_acc_val} (val) is not above chance 0.5 by a margin`);
  assert.ok(m.zs_ir_r10 > m.zs_chance_r10, `IR R@10 ${m.zs_ir_r10} <= chance ${m.zs_chance_r10}`);
});

test("linear baseline: metrics.json complete", { timeout: 120_000 }, async () => {
  await worldReady;
  const out = join(root, "linear");
  await main(["linear", "--world", world, "--steps", "100", "--seed", "0", "--out", out, "--quiet"]);
  const m = readMetrics(out);
  checkFractions(m, ZS);
  assert.equal(m.steps, 100);
  // --preset small: VLMo-small's 64-px images in 16-px patches (the floor for recipes/vlmo-small.json)
  const logs: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => logs.push(a.join(" "));
  try {
    await main(["linear", "--world", world, "--steps", "5", "--preset", "small", "--out", join(root, "linear-small"), "--quiet"]);
  } finally {
    console.log = log;
  }
  assert.match(logs.join("\n"), /linear: 64 px \/ 16 px patches \(VLMo small\)/);
  await assert.rejects(main(["linear", "--world", world, "--preset", "huge"]), /--preset: expected one of .*tiny.*got "huge"/);
});

test("ITM pairs are balanced and fixed; the threshold search and the sub-matrix are exact", () => {
  const images = [0, 1, 2].map((i) => ({ id: `i${i}`, file: `i${i}.png`, captions: [0, 1].map((c) => ({ id: i * 2 + c, text: `c${i}${c}` })) }));
  const set = evalSet(images);
  const p = itmPairs(set);
  assert.equal(p.caption.length, 12);
  assert.equal(p.matched.reduce((a, b) => a + b, 0), 6);
  for (let k = 0; k < 12; k++) assert.equal(p.image[k] === set.captions[p.caption[k]].image, p.matched[k] === 1);
  assert.deepEqual(itmPairs(set).image, p.image);
  // a perfect scorer: own image 1, other 0 (shifted by 5: the threshold search recovers it)
  const i2t = new Float32Array(3 * 6);
  set.captions.forEach((c, t) => (i2t[c.image * 6 + t] = 1));
  const shifted = i2t.map((x) => x + 5);
  assert.equal(itmAccuracy(i2t, 6, p, 0.5), 1);
  assert.equal(itmAccuracy(shifted, 6, p, 0), 0.5);
  assert.equal(itmAccuracy(shifted, 6, p, bestThreshold(shifted, 6, p)), 1);
  const zs = zeroShotMetrics("zs_", i2t, set);
  assert.equal(zs.zs_ir_r1, 1);
  assert.equal(zs.zs_tr_r1, 1);
  assert.ok(Math.abs(zs.zs_chance_r1 - 1 / 3) < 1e-12);
  const sub = subMatrix(i2t, set, 2);
  assert.equal(sub.set.captions.length, 4);
  assert.deepEqual(Array.from(sub.i2t), [1, 1, 0, 0, 0, 0, 1, 1]);
});

test("vqa baseline: official VQA accuracy on val/test/test_comp, above the majority answer", { timeout: 120_000 }, async () => {
  await worldReady;
  const out = join(root, "vqa");
  await main(["vqa", "--world", world, "--steps", "400", "--seed", "0", "--out", out, "--quiet"]);
  const m = readMetrics(out);
  checkFractions(m, ["vqa_acc", "vqa_acc_val", "vqa_acc_test_comp", "vqa_acc_yesno", "vqa_acc_number", "vqa_acc_other"]);
  assert.equal(m.steps, 400);
  // the most frequent train answer given to every test question, scored by the same official metric
  const train = readTaskExamples("vqa", join(world, "lxmert", "vqa_train.json"));
  const counts = new Map<string, number>();
  for (const e of train) for (const [a, s] of Object.entries(e.scores ?? {})) if (s === 1) counts.set(a, (counts.get(a) ?? 0) + 1);
  const majority = [...counts].sort((a, b) => b[1] - a[1])[0][0];
  const test = readTaskExamples("vqa", join(world, "lxmert", "vqa_test.json"));
  const annotations = new Map(readVqaAnnotations(join(world, "vqa", "v2_synth_test_annotations.json")).records.map((a) => [a.question_id, a] as const));
  const constant = vqaMetrics(test.map((e) => ({ question_id: e.id, answer: majority })), annotations).vqa_acc;
  assert.ok(m.vqa_acc > constant + 0.15, `VQA accuracy ${m.vqa_acc} is not above always "${majority}" (${constant}) by a margin`);
});

test("nlvr2 baseline: accuracy on val/test/test_comp, metrics.json complete", { timeout: 120_000 }, async () => {
  await worldReady;
  const out = join(root, "nlvr2");
  await main(["nlvr2", "--world", world, "--steps", "50", "--seed", "0", "--out", out, "--quiet"]);
  const m = readMetrics(out);
  checkFractions(m, ["nlvr2_acc", "nlvr2_acc_val", "nlvr2_acc_test_comp"]);
  assert.equal(m.steps, 50);
  await assert.rejects(main(["nlvr2", "--world", world, "--loss", "itc"]), /bow\/linear options/);
});

test("nlvr2 baseline with the count read-out: the model holds the count parameters and the CLI trains it; --count refused elsewhere", { timeout: 120_000 }, async () => {
  await worldReady;
  const { QuestionAttention } = await import("../src/baselines/question_attention.ts");
  const m = new QuestionAttention(50, 10, 16, 2, 2, true);
  const names = [...m.namedParameters()].map(([n]) => n);
  for (const n of ["countQuery.weight", "countBias", "countEmb.weight"]) assert.ok(names.includes(n), `${n} in ${names.join(", ")}`);
  assert.equal(m.out1.weight.size(1), (1 + 2 * 2) * 16);
  const out = join(root, "nlvr2-count");
  await main(["nlvr2", "--world", world, "--steps", "30", "--seed", "0", "--out", out, "--quiet", "--count"]);
  checkFractions(readMetrics(out), ["nlvr2_acc", "nlvr2_acc_val", "nlvr2_acc_test_comp"]);
  await assert.rejects(main(["bow", "--world", world, "--count"]), /--count is a vqa\/nlvr2 option/);
});
