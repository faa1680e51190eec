// No lost runs: a run folder is never silently reused, prefetched batches cannot kill a finished
// run, metrics.jsonl is replaced atomically on resume, checkpoints are verified by sha256 (the
// previous one is used when the newest is corrupt), stale temp files and old checkpoints are
// pruned, and a resume with changed settings is recorded or refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Linear, manualSeed, setNumThreads, type Tensor } from "../src/engine/index.ts";
import { checkpointDir, latestCheckpoint, loadCheckpoint } from "../src/engine/checkpoint.ts";
import { train, type Stage, type TrainOptions } from "../src/train/trainer.ts";
import { LOCK_FILE, lockRunDir } from "../src/train/rundir.ts";

setNumThreads(1);
const repo = fileURLToPath(new URL("..", import.meta.url));
const root = mkdtempSync(join(tmpdir(), "vlp-runs-"));
process.on("exit", () => rmSync(root, { recursive: true, force: true }));
const BUILDER = new URL("./fixtures/loader_builder.ts", import.meta.url).href;

/** A linear model and stages of a few steps each on the fixture builder (item i is [i, i*i]). */
function setup(o: { stages?: number[]; failFrom?: number; lr?: number } = {}) {
  manualSeed(1);
  const model = new Linear(2, 1);
  const stages: Stage[] = (o.stages ?? [4]).map((steps, k) => ({
    name: `s${k}`,
    steps,
    lr: o.lr ?? 1e-3,
    warmup: 0,
    sources: [{
      name: `src${k}`,
      batchSize: 4,
      data: { module: BUILDER, args: { n: 40, failFrom: o.failFrom } },
      step: (b: Record<string, Tensor>) => {
        const loss = model.forward(b.x.div(40)).square().mean();
        return { loss, metrics: { out: loss.item() * 2 } };
      },
    }],
  }));
  return { model, stages };
}
const opts = (runDir: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({ runDir, seed: 7, quiet: true, workers: 0, ...extra });
const rows = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
const ckpts = (dir: string) => readdirSync(dir).filter((n) => n.startsWith("ckpt-")).sort();

function vlp(args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", "src/cli/vlp.ts", ...args], { cwd: repo, encoding: "utf8", env: { ...process.env, VLP_NUM_THREADS: "1" } });
  return { code: r.status, err: r.stderr };
}

test("vlp pretrain/finetune --out on an existing run refuse, naming the folder, --resume and --overwrite", () => {
  const dir = join(root, "existing");
  mkdirSync(join(dir, "ckpt-4"), { recursive: true });
  writeFileSync(join(dir, "metrics.jsonl"), '{"step":1}\n');
  writeFileSync(join(dir, "recipe.json"), "{}");
  const recipe = join(root, "r.json");
  writeFileSync(recipe, JSON.stringify({ method: "semvlp", model: { preset: "tiny" }, data: { world: join(root, "no-world") }, train: { steps: 2 } }));
  const pre = vlp(["pretrain", "--recipe", recipe, "--out", dir, "--quiet"]);
  assert.notEqual(pre.code, 0);
  assert.match(pre.err, new RegExp(`--out ${dir}: this folder already holds a run \\(ckpt-4, metrics.jsonl, recipe.json\\); continue it with --resume ${dir}, or start over with --overwrite`));
  const ft = join(root, "ft.json");
  writeFileSync(ft, JSON.stringify({ task: "vqa", method: "semvlp", model: { preset: "tiny" }, data: { world: join(root, "no-world") } }));
  const fin = vlp(["finetune", "vqa", "--recipe", ft, "--scratch", "--out", dir, "--quiet"]);
  assert.notEqual(fin.code, 0);
  assert.match(fin.err, /already holds a run .*continue it with --resume \(with --out .*\), or start over with --overwrite/);
  assert.equal(readFileSync(join(dir, "metrics.jsonl"), "utf8"), '{"step":1}\n', "the old run is untouched");
  assert.equal(readFileSync(join(dir, "recipe.json"), "utf8"), "{}");
  // --overwrite removes the old run first (here the recipe then fails on its missing world: nothing of the old run is left)
  const over = vlp(["pretrain", "--recipe", recipe, "--out", dir, "--overwrite", "--quiet"]);
  assert.ok(!existsSync(join(dir, "ckpt-4")) && !existsSync(join(dir, "metrics.jsonl")), over.err);
  assert.match(vlp(["pretrain", "--resume", dir, "--overwrite", "--recipe", recipe]).err, /--resume and --overwrite exclude each other/);
});

test("one writer per run: --resume of a run another live process writes is refused; a dead writer's lock is taken over", async () => {
  const dir = join(root, "locked");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "recipe.json"), JSON.stringify({ method: "semvlp", model: { preset: "tiny" }, data: { world: join(root, "no-world") }, train: { steps: 2 } }));
  // a live process (a sleeping child) holds the lock
  const { spawn } = await import("node:child_process");
  const holder = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
  try {
    writeFileSync(join(dir, LOCK_FILE), `${holder.pid}\n`);
    const r = vlp(["pretrain", "--resume", dir, "--quiet"]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, new RegExp(`${dir}: another vlp process \\(pid ${holder.pid}\\) is writing this run`));
    const f = vlp(["finetune", "vqa", "--recipe", "recipes/finetune/vqa-tiny.json", "--scratch", "--out", dir, "--resume", "--quiet"]);
    assert.match(f.err, /another vlp process .* is writing this run/);
    const over = vlp(["pretrain", "--recipe", join(dir, "recipe.json"), "--out", dir, "--overwrite", "--quiet"]);
    assert.match(over.err, /another vlp process .* is writing this run; --overwrite would remove it/);
    assert.ok(existsSync(join(dir, "recipe.json")), "--overwrite leaves a run another process writes alone");
    assert.equal(readFileSync(join(dir, LOCK_FILE), "utf8").trim(), String(holder.pid), "the holder's lock is left alone");
  } finally {
    holder.kill();
  }
  await new Promise((res) => holder.once("exit", res));
  // its process gone, the lock is stale: taken over, and removed when the taker exits (here: the missing world fails the run)
  const r = vlp(["pretrain", "--resume", dir, "--quiet"]);
  assert.doesNotMatch(r.err, /another vlp process/);
  assert.ok(!existsSync(join(dir, LOCK_FILE)), "the lock is released at exit");
  // in-process: taking it twice is fine for the same process, and the lock names this pid
  lockRunDir(dir);
  lockRunDir(dir);
  assert.equal(readFileSync(join(dir, LOCK_FILE), "utf8").trim(), String(process.pid));
});

test("train() refuses a folder holding checkpoints unless resuming", async () => {
  const dir = join(root, "twice");
  const a = setup();
  await train(a.model, a.stages, opts(dir, { checkpointEvery: 2 }));
  const b = setup();
  await assert.rejects(train(b.model, b.stages, opts(dir)), /already holds a run \(ckpt-2, ckpt-4, metrics.jsonl\)/);
  assert.equal(rows(dir).length, 4, "metrics.jsonl kept");
});

test("a malformed batch the loader prefetched but never used does not kill a finished run", async () => {
  const dir = join(root, "prefetch");
  let unhandled: unknown = null;
  const onUnhandled = (e: unknown) => (unhandled = e);
  process.on("unhandledRejection", onUnhandled);
  try {
    // 4 steps use batches 0-3; batches 4 and 5 are built ahead by the worker and fail
    const { model, stages } = setup({ failFrom: 4 });
    await train(model, stages, opts(dir, { workers: 1 }));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(unhandled, null, `unhandled rejection: ${unhandled}`);
    assert.ok(existsSync(join(dir, "model.safetensors")));
    // a failing batch that is consumed is still an error, naming it
    const { model: m2, stages: s2 } = setup({ failFrom: 2 });
    await assert.rejects(train(m2, s2, opts(join(root, "prefetch-2"), { workers: 1 })), /malformed record in batch 2/);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("resume: metrics.jsonl is replaced by rename, and the summary covers the whole run", async () => {
  const full = setup({ stages: [3, 5] });
  const whole = await train(full.model, full.stages, opts(join(root, "whole")));
  const dir = join(root, "resumed");
  const a = setup({ stages: [3, 5] });
  await train(a.model, a.stages, opts(dir, { checkpointEvery: 1, stopAfter: 5 }));
  writeFileSync(join(dir, "metrics.jsonl"), readFileSync(join(dir, "metrics.jsonl"), "utf8") + '{"step":6,"sta'); // a line cut by the kill
  const inode = statSync(join(dir, "metrics.jsonl")).ino;
  const b = setup({ stages: [3, 5] });
  const summary = await train(b.model, b.stages, opts(dir, { checkpointEvery: 1, resume: true }));
  assert.notEqual(statSync(join(dir, "metrics.jsonl")).ino, inode, "rewritten into a new file, then renamed over the old one");
  assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith(".tmp")), []);
  assert.deepEqual(rows(dir).map((r) => r.step), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(Object.keys(summary), ["s0", "s1"]);
  assert.deepEqual(summary, whole, "the same summary as the uninterrupted run");
});

test("checkpoints carry a sha256 per file: a corrupt newest one is skipped for the previous good one, with a warning", async () => {
  const dir = join(root, "corrupt");
  const a = setup({ stages: [6] });
  await train(a.model, a.stages, opts(dir, { checkpointEvery: 2, stopAfter: 4 }));
  const manifest = JSON.parse(readFileSync(join(checkpointDir(dir, 4), "trainer.json"), "utf8"));
  assert.match(manifest.sha256["model.safetensors"], /^[0-9a-f]{64}$/);
  // flip one byte of the newest checkpoint's weights (same size: the old size check passes)
  const file = join(checkpointDir(dir, 4), "model.safetensors");
  const bytes = readFileSync(file);
  bytes[bytes.length - 1] ^= 0xff;
  writeFileSync(file, bytes);
  const warned: string[] = [];
  assert.equal(latestCheckpoint(dir, { onCorrupt: (_d, why) => warned.push(why) }), checkpointDir(dir, 2));
  assert.match(warned[0], /ckpt-4\/model.safetensors: sha256 .* does not match the manifest/);
  assert.throws(() => loadCheckpoint(checkpointDir(dir, 4), { model: new Linear(2, 1) }), /no complete checkpoint at .*ckpt-4; .*sha256/);
  // a resume falls back to ckpt-2 and trains steps 3-6 again
  const b = setup({ stages: [6] });
  const warn = console.warn;
  const seen: string[] = [];
  console.warn = (s: string) => seen.push(s);
  try {
    await train(b.model, b.stages, opts(dir, { checkpointEvery: 2, resume: true }));
  } finally {
    console.warn = warn;
  }
  assert.ok(seen.some((s) => /corrupt checkpoint skipped: .*ckpt-4/.test(s)), seen.join("\n"));
  assert.deepEqual(rows(dir).map((r) => r.step), [1, 2, 3, 4, 5, 6]);
});

test("stale temp files of dead writers are removed; train.keepCheckpoints keeps the newest N", async () => {
  const dir = join(root, "prune");
  mkdirSync(join(dir, "ckpt-3.tmp-999999"), { recursive: true });
  writeFileSync(join(dir, ".metrics.jsonl.999999.0123456789ab.tmp"), "x");
  const a = setup({ stages: [6] });
  await train(a.model, a.stages, opts(dir, { checkpointEvery: 1, keepCheckpoints: 2 }));
  assert.deepEqual(ckpts(dir), ["ckpt-5", "ckpt-6"]);
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes("tmp")), []);
  const b = setup({ stages: [6] });
  await train(b.model, b.stages, opts(join(root, "keep-all"), { checkpointEvery: 2 }));
  assert.deepEqual(ckpts(join(root, "keep-all")), ["ckpt-2", "ckpt-4", "ckpt-6"], "default: keep all");
});

test("--resume with changed settings: a new lr is recorded with a warning; fewer steps than done, a new seed or new stages are refused", async () => {
  const dir = join(root, "changed");
  const a = setup({ stages: [6] });
  await train(a.model, a.stages, opts(dir, { checkpointEvery: 2, stopAfter: 4 }));
  const short = setup({ stages: [3] });
  await assert.rejects(train(short.model, short.stages, opts(dir, { resume: true })), /stage s0 now has 3 steps, but its checkpoint .*ckpt-4 is at step 4/);
  const seed = setup({ stages: [6] });
  await assert.rejects(train(seed.model, seed.stages, opts(dir, { resume: true, seed: 8 })), /seed 7, the recipe now gives 8/);
  const two = setup({ stages: [6, 2] });
  await assert.rejects(train(two.model, two.stages, opts(dir, { resume: true })), /stages s0, the recipe now gives s0 -> s1/);
  const lr = setup({ stages: [6], lr: 5e-4 });
  const warn = console.warn;
  const seen: string[] = [];
  console.warn = (s: string) => seen.push(s);
  try {
    await train(lr.model, lr.stages, opts(dir, { resume: true }));
  } finally {
    console.warn = warn;
  }
  assert.match(seen.join("\n"), /changed settings: stages\.0\.lr 0\.001 -> 0\.0005/);
  const changes = readFileSync(join(dir, "changes.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(changes.map((c) => [c.step, c.changes]), [[4, { "stages.0.lr": [1e-3, 5e-4] }]]);
  assert.ok(existsSync(join(dir, "model.safetensors")));
});
