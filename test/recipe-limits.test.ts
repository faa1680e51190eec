// Recipes reject what cannot be right: numeric fields have ranges (pre-training, fine-tuning and
// task options), --set refuses prototype paths, and malformed QA labels in pre-training JSON are
// errors naming the file and record.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { applySets } from "../src/pretrain/recipe.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { validateFinetuneRecipe } from "../src/tasks/task.ts";
import { retrievalOptions } from "../src/tasks/retrieval.ts";
import { classifyOptions } from "../src/tasks/classify.ts";
import { VQA } from "../src/tasks/vqa.ts";
import { readPretrainExamples } from "../src/pretrain/examples.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-limits-"));
process.on("exit", () => rmSync(root, { recursive: true, force: true }));

const pre = (train: Record<string, unknown>, extra: Record<string, unknown> = {}) => validateRecipe({ method: "msp", model: { preset: "tiny" }, data: { world: "w" }, train, ...extra });
const ft = (train: Record<string, unknown>) => validateFinetuneRecipe({ task: "vqa", data: { world: "w" }, train });

test("every numeric train field has a range, in pre-training and fine-tuning recipes", () => {
  const bad: [string, unknown, RegExp][] = [
    ["clip", -1, /train\.clip: expected a number > 0 \(the gradient norm is clipped to it; <= 0 would zero or reverse the gradients\), got -1/],
    ["clip", 0, /train\.clip/],
    ["steps", 0, /train\.steps: expected an integer >= 1/],
    ["steps", 2.5, /train\.steps: expected an integer/],
    ["epochs", -1, /train\.epochs: expected a number > 0/],
    ["workers", 1000, /train\.workers: expected an integer >= 0 and <= \d+ \(loader threads; this machine has \d+ cores\), got 1000/],
    ["workers", -1, /train\.workers/],
    ["lr", 5, /train\.lr: expected a number > 0 and <= 1/],
    ["seed", -3, /train\.seed/],
    ["checkpointEvery", -2, /train\.checkpointEvery: expected an integer >= 0/],
    ["keepCheckpoints", 1.5, /train\.keepCheckpoints: expected an integer >= 0/],
    ["evalEvery", -1, /train\.evalEvery/],
    ["weightDecay", -0.1, /train\.weightDecay: expected a number >= 0 and <= 1/],
    ["accumulate", 0, /train\.accumulate/],
    ["batchSize", 1e9, /train\.batchSize/],
  ];
  for (const [k, v, re] of bad) {
    assert.throws(() => pre({ [k]: v }), re, `pretrain ${k}=${v}`);
    assert.throws(() => ft({ [k]: v }), re, `finetune ${k}=${v}`);
  }
  assert.equal(pre({ clip: 0.5, workers: 2, keepCheckpoints: 3 }).train.keepCheckpoints, 3);
  assert.equal(ft({ steps: 10, clip: 2 }).train.steps, 10);
});

test("method sections and task options have ranges too", () => {
  assert.throws(() => pre({}, { msp: { hardFraction: 1.5 } }), /recipe\.msp\.hardFraction: expected a number >= 0 and <= 1/);
  assert.throws(() => pre({}, { msp: { stages: { token: { steps: -5 } } } }), /recipe\.msp\.stages\.token\.steps: expected an integer >= 1/);
  assert.throws(() => pre({}, { msp: { stages: { token: { losses: { mlm: -1 } } } } }), /recipe\.msp\.stages\.token\.losses\.mlm: expected a number >= 0/);
  assert.throws(() => validateRecipe({ method: "semvlp", model: { preset: "tiny" }, data: { world: "w" }, semvlp: { singleRatio: 2 } }), /recipe\.semvlp\.singleRatio/);
  assert.throws(() => validateRecipe({ method: "semvlp", model: { preset: "tiny" }, data: { world: "w" }, semvlp: { losses: { itm: "x" } } }), /recipe\.semvlp\.losses\.itm: expected a number/);
  assert.throws(() => validateRecipe({ method: "vlmo", model: { preset: "tiny" }, data: { world: "w" }, vlmo: { stages: { text: { lr: -1 } } } }), /recipe\.vlmo\.stages\.text\.lr: expected a number > 0/);
  assert.throws(() => retrievalOptions({ margin: 3 }), /recipe\.options\.margin: expected a number >= 0 and <= 1/);
  assert.throws(() => retrievalOptions({ evalBatchSize: 1e9 }), /recipe\.options\.evalBatchSize/);
  assert.equal(retrievalOptions({ maxTextLen: null }).maxTextLen, null);
  assert.throws(() => classifyOptions(VQA, { maxTextLen: 100000 }), /recipe\.options\.maxTextLen: expected an integer > 2 and <= 512/);
  assert.throws(() => classifyOptions(VQA, { maxBoxes: 2 }), /recipe\.options\.maxBoxes/);
  for (const f of ["semvlp-paper", "msp-paper", "vlmo-paper"]) assert.ok(validateRecipe(JSON.parse(readFileSync(new URL(`../recipes/${f}.json`, import.meta.url), "utf8")), f));
});

test("--set refuses __proto__, constructor and prototype path parts", () => {
  for (const path of ["__proto__.polluted", "train.__proto__.x", "constructor.prototype.polluted", "model.constructor", "a..b"]) {
    const r: Record<string, unknown> = { train: {} };
    assert.throws(() => applySets(r, [`${path}=1`]), /--set .*: ("(__proto__|constructor|prototype)" is not a recipe key|empty key part)/, path);
  }
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  const r: Record<string, unknown> = {};
  applySets(r, ["train.lr=0.1"]);
  assert.deepEqual(r, { train: { lr: 0.1 } });
});

test("malformed QA labels in pre-training JSON are errors naming the file and record", () => {
  const file = join(root, "lxmert.json");
  const rec = (label: unknown) => [{ img_id: "a", sentf: { vqa: ["q?"] }, labelf: { vqa: [{ yes: 1 }] } }, { img_id: "b1", sentf: { vqa: ["what?"] }, labelf: { vqa: [label] } }];
  for (const [label, re] of [
    [{ yes: "0.9" }, /lxmert\.json: record 1 \(img_id b1\): labelf\.vqa\[0\]: the score of "yes" should be a number in \[0, 1\], got "0\.9"/],
    [{ no: -1 }, /record 1 \(img_id b1\): labelf\.vqa\[0\]: the score of "no" should be a number in \[0, 1\], got -1/],
    ["yes", /record 1 \(img_id b1\): labelf\.vqa\[0\]: expected an object of answer scores/],
  ] as [unknown, RegExp][]) {
    writeFileSync(file, JSON.stringify(rec(label)));
    assert.throws(() => readPretrainExamples(file), re);
  }
  writeFileSync(file, JSON.stringify(rec({ yes: 0.3, no: 1 })));
  assert.deepEqual(readPretrainExamples(file).map((e) => e.label), [{ yes: 1 }, { yes: 0.3, no: 1 }]);
});
