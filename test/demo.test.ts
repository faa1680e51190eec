// `vlp demo` (the main job) run twice into the same runs folder: the second run starts its runs over
// (the trainer refuses to write a new run over an old one, see src/train/rundir.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";

const CLI = new URL("../src/cli/vlp.ts", import.meta.url).pathname;

test("demoBar: each method's row against the main job's bar (ITM >= 0.75, IR R@1 >= 5x chance, VQA >= +2 points)", async () => {
  const { demoBar, demoJobs } = await import("../src/cli/demo.ts");
  const row = { itm_acc: 0.75, zs_ir_r1: 0.049, zs_chance_r1: 0.01, vqa_acc: 0.515, vqa_acc_scratch: 0.495 };
  assert.deepEqual(demoBar(row).map((b) => b.met), [true, false, true]);
  assert.deepEqual(demoBar({ ...row, itm_acc: 0.7499, zs_ir_r1: 0.05, vqa_acc: 0.514 }).map((b) => b.met), [false, true, false]);
  assert.equal(demoBar(row)[2].value, "+2.0 points");
  // the pre-trainings first (the longest jobs), then the fine-tunings from scratch, then the baselines
  assert.deepEqual(demoJobs(["a", "b"], false), ["pretrain:a", "pretrain:b", "scratch:a", "scratch:b", "baselines"]);
  assert.deepEqual(demoJobs(["a"], true), ["pretrain:a"]);
});

test("vlp demo twice into one runs folder: the second replaces the first run instead of failing", () => {
  const root = mkdtempSync(join(tmpdir(), "vlp-demo-"));
  const args = ["--import", "tsx", CLI, "demo", "--images", "40", "--world", join(root, "world"), "--runs", join(root, "runs"), "--recipes", "semvlp-tiny",
    "--set", "train.steps=3", "--set", "train.checkpointEvery=2", "--set", "train.evalEvery=0", "--set", "train.workers=0", "--set", "train.batchSize=8", "--pretrain-only"];
  const env = { ...process.env, VLP_NUM_THREADS: "1" };
  const first = spawnSync(process.execPath, args, { env, encoding: "utf8" });
  assert.equal(first.status, 0, first.stderr.slice(-2000));
  assert.ok(existsSync(join(root, "runs", "semvlp-tiny", "ckpt-2")), "the first run wrote a checkpoint");
  // the run carries its config, as every vlp pretrain run does (loadRun reads it)
  assert.equal(JSON.parse(readFileSync(join(root, "runs", "semvlp-tiny", "config.json"), "utf8")).method, "semvlp");
  const second = spawnSync(process.execPath, args, { env, encoding: "utf8" });
  assert.equal(second.status, 0, second.stderr.slice(-2000));
  assert.match(second.stdout, /replacing the earlier run/);
  const steps = readFileSync(join(root, "runs", "semvlp-tiny", "metrics.jsonl"), "utf8").trim().split("\n").filter((l) => !l.includes('"source":"val"'));
  assert.equal(steps.length, 3, "one run's metrics, not two appended");
});

// The whole main job at toy size with two jobs at once (child processes): every method's summary row
// carries the keys as fractions, the baselines are there, each job left its log, and a job
// that fails makes the demo fail naming it.
test("vlp demo --jobs 2: summary.json from child jobs; a failing job fails the demo and names its log", () => {
  const root = mkdtempSync(join(tmpdir(), "vlp-demo-"));
  const runs = join(root, "runs");
  const small = ["--set", "train.steps=3", "--set", "train.evalEvery=0", "--set", "train.checkpointEvery=0", "--set", "train.workers=0", "--set", "train.batchSize=8",
    "--set", "vlmo.stages.image.steps=2", "--set", "vlmo.stages.text.steps=2", "--set", "vlmo.stages.image-text.steps=3",
    "--finetune-set", "train.steps=3", "--finetune-set", "train.batchSize=8", "--finetune-set", "train.workers=0"];
  const args = ["--import", "tsx", CLI, "demo", "--images", "120", "--world", join(root, "world"), "--runs", runs, "--recipes", "semvlp-tiny,vlmo-tiny", "--jobs", "2", ...small];
  const env = { ...process.env, VLP_NUM_THREADS: "2" };
  const r = spawnSync(process.execPath, args, { env, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr.slice(-2000) + r.stdout.slice(-2000));
  assert.match(r.stdout, /\[pretrain:vlmo-tiny\] done/);
  const summary = JSON.parse(readFileSync(join(runs, "summary.json"), "utf8")) as Record<string, Record<string, number>>;
  for (const name of ["semvlp-tiny", "vlmo-tiny"]) {
    for (const k of ["itm_acc", "itm_chance", "zs_ir_r1", "zs_ir_r10", "zs_tr_r1", "zs_chance_r1", "zs_chance_r10", "vqa_acc", "vqa_acc_scratch", "vqa_majority"]) {
      const v = summary[name][k];
      assert.ok(typeof v === "number" && v >= 0 && v <= 1, `${name}.${k} = ${v}`);
    }
  }
  const itc = summary["vlmo-tiny"].itc_i2t_acc;
  assert.ok(itc >= 0 && itc <= 1, `VLMo's held-out ITC accuracy ${itc}`);
  assert.equal(summary["semvlp-tiny"].itc_i2t_acc, undefined, "held-out ITC is VLMo's row only");
  assert.ok(summary.baseline_bow.itm_acc > 0 && summary.baseline_vqa.vqa_acc > 0);
  for (const job of ["pretrain-semvlp-tiny", "scratch-vlmo-tiny", "baselines"]) assert.ok(existsSync(join(runs, "jobs", `${job}.log`)), job);
  // the demo's per-recipe fine-tuning settings reach both fine-tunings of that recipe, and only them
  const ftTrain = (dir: string) => (JSON.parse(readFileSync(join(runs, dir, "finetune.json"), "utf8")) as { recipe: { train: { lr: number; headLrMult: number } } }).recipe.train;
  for (const dir of ["semvlp-tiny-vqa", "semvlp-tiny-vqa-scratch"]) assert.deepEqual([ftTrain(dir).lr, ftTrain(dir).headLrMult], [1e-4, 50], dir);
  for (const dir of ["vlmo-tiny-vqa", "vlmo-tiny-vqa-scratch"]) assert.deepEqual([ftTrain(dir).lr, ftTrain(dir).headLrMult], [1e-3, 1], dir);
  // a recipe that does not exist: its job fails, the others finish, the demo exits non-zero naming it
  const bad = spawnSync(process.execPath, [...args.slice(0, args.indexOf("--recipes")), "--recipes", "semvlp-tiny,no-such-recipe", "--jobs", "2", "--pretrain-only", ...small], { env, encoding: "utf8" });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /pretrain:no-such-recipe \(exit 1; log .*pretrain-no-such-recipe\.log\)/);
  assert.match(bad.stdout, /\[pretrain:semvlp-tiny\] done/);
});
