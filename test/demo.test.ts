// `vlp demo` (the main job) run twice into the same runs folder: the second run starts its runs over
// (the trainer refuses to write a new run over an old one, see src/train/rundir.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";

const CLI = new URL("../src/cli/vlp.ts", import.meta.url).pathname;

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
