// Data-parallel training on c10d: equivalence with one process, global ITC, failures, resume and
// the launcher. Workers are real processes on loopback (2 cores: one libtorch thread each).
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { zeros, liveTensors } from "../src/engine/index.ts";
import { assignBuckets } from "../src/engine/ddp.ts";
import { distConfigFromEnv, initDistributed, distBackends } from "../src/engine/dist.ts";
import { loadStateDictFile } from "../src/engine/checkpoint.ts";
import { launch, freePort } from "../src/cli/launch.ts";
import { train } from "../src/train/trainer.ts";
import { generateWorld } from "../src/data/synth/world.ts";
import { buildTiny, itcSetup, itcLoss, TRAIN_RUNS } from "./dist_worker.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-dist-"));
const repo = fileURLToPath(new URL("..", import.meta.url));
const ENV = { VLP_NUM_THREADS: "1", VLP_DIST_TIMEOUT: "20" };
let world = "";
before(async () => {
  world = join(root, "world");
  await generateWorld({ images: 48, seed: 5, out: world, size: 64, featDim: 32, boxes: 12 });
});

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

test("the addon has c10d with gloo", () => {
  assert.equal(distBackends().gloo, true);
});

test("bucket assignment: reverse order, first bucket small, one dtype per bucket", () => {
  const live = liveTensors();
  const ts = [zeros([256]), zeros([256]), zeros([10], { dtype: "float64" }), zeros([512]), zeros([64])];
  const { buckets, limits } = assignBuckets(ts, 2048, 1024);
  // float32 from the end: 64 (256 B) + 512 (2048 B) closes the 1 KB first bucket; then 256 + 256 floats
  assert.deepEqual(buckets, [[4, 3], [1, 0], [2]]);
  assert.deepEqual(limits, [1024, 2048, 2048]);
  ts.forEach((t) => t.dispose());
  assert.equal(liveTensors(), live);
});

test("torchrun environment: parsed, and wrong values named", () => {
  assert.equal(distConfigFromEnv({}), null);
  assert.equal(distConfigFromEnv({ WORLD_SIZE: "1" }), null);
  const c = distConfigFromEnv({ RANK: "3", WORLD_SIZE: "4", LOCAL_RANK: "1", MASTER_ADDR: "10.0.0.2", MASTER_PORT: "29501", VLP_DIST_TIMEOUT: "2.5" })!;
  assert.deepEqual([c.rank, c.world, c.localRank, c.masterAddr, c.masterPort, c.timeoutMs], [3, 4, 1, "10.0.0.2", 29501, 2500]);
  assert.throws(() => distConfigFromEnv({ WORLD_SIZE: "2", MASTER_PORT: "1" }), /RANK is not set/);
  assert.throws(() => distConfigFromEnv({ RANK: "2", WORLD_SIZE: "2", MASTER_PORT: "1" }), /RANK=2 is not below WORLD_SIZE=2/);
  assert.throws(() => distConfigFromEnv({ RANK: "0", WORLD_SIZE: "2" }), /MASTER_PORT/);
});

test("rendezvous: a rank that never joins is named, within the timeout", { timeout: 20_000 }, async () => {
  const port = await freePort();
  const t0 = Date.now();
  await assert.rejects(initDistributed({ rank: 0, world: 2, masterAddr: "127.0.0.1", masterPort: port, timeoutMs: 1500 }), new RegExp(`rank 1 did not join within 1.5 s at tcp://127.0.0.1:${port}`));
  assert.ok(Date.now() - t0 < 6000);
  // a rank with nobody hosting the rendezvous
  const free = await freePort();
  await assert.rejects(initDistributed({ rank: 1, world: 2, masterAddr: "127.0.0.1", masterPort: free, timeoutMs: 1000 }), /rank 1 could not reach rank 0's rendezvous at tcp:\/\/127.0.0.1:\d+ within 1 s/);
});

test("2 processes x batch B = 1 process x batch 2B (weights after 6 steps); 2-rank ITC = ITC over both halves; a hung peer times out", { timeout: 150_000 }, async () => {
  const out = join(root, "workers");
  const r = await launch({ nproc: 2, script: fileURLToPath(new URL("./dist_worker.ts", import.meta.url)), args: [out], env: { ...ENV, VLP_DIST_TIMEOUT: "6", VLP_DIST_JOIN_TIMEOUT: "60" }, log: () => {} });
  assert.equal(r.code, 0, r.failure);
  const res = [0, 1].map((k) => JSON.parse(readFileSync(join(out, `result-${k}.json`), "utf8")));

  // one process, global batch 16 (the workers: 8 each), same seeds, dropout-free model
  for (const [name, extra] of Object.entries(TRAIN_RUNS)) {
    const { model, stages } = buildTiny();
    await train(model, stages, { runDir: join(root, `single-${name}`), seed: 4, clip: 1, quiet: true, accumulate: extra.accumulate });
    const single = loadStateDictFile(join(root, `single-${name}`, "model.safetensors"));
    const dp = loadStateDictFile(join(out, name, "model.safetensors"));
    for (const [k, t] of single) {
      // float32 sums in another order (3e-8 measured: an ulp)
      const d = maxAbsDiff(t.toFloat32Array(), dp.get(k)!.toFloat32Array());
      assert.ok(d < 1e-6, `${name}: ${k} differs by ${d}`);
    }
    // the parameter no step uses kept its initial value in both
    const init = buildTiny().model.never.toFloat32Array();
    assert.deepEqual(Array.from(dp.get("never")!.toFloat32Array()), Array.from(init));
    // the data-parallel run moved the weights (the comparison is not vacuous)
    assert.ok(maxAbsDiff(dp.get("a.weight")!.toFloat32Array(), buildTiny().model.a.weight.toFloat32Array()) > 1e-3);
    const rows = readFileSync(join(out, name, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const singleRows = readFileSync(join(root, `single-${name}`, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    // metrics are averaged over the ranks: the mean of two half-batch MSEs = the full-batch MSE
    for (let i = 0; i < rows.length; i++) assert.ok(Math.abs(rows[i].loss - singleRows[i].loss) < 1e-5, `${name} step ${i + 1}: loss ${rows[i].loss} vs ${singleRows[i].loss}`);
  }

  // ITC: one process holding both halves
  const s = itcSetup();
  const loss = itcLoss(s);
  loss.backward();
  assert.ok(Math.abs(res[0].itcLoss - loss.item()) < 1e-6, `ITC loss ${res[0].itcLoss} vs ${loss.item()}`);
  for (const [n, p] of s.model.namedParameters()) {
    const ref = p.grad!.toArray();
    for (const k of [0, 1]) {
      const d = maxAbsDiff(res[k].itcGrads[n], ref);
      assert.ok(d < 1e-6 * Math.max(1, ...ref.map(Math.abs)), `ITC gradient of ${n} on rank ${k} differs by ${d}`);
    }
  }
  // without the gradient through the other ranks' features the gradients would not match (the test can fail)
  const naive = Math.max(...s.model.namedParameters().map(([n, p]) => maxAbsDiff(res[0].itcGradsNoGather[n], p.grad!.toArray())));
  assert.ok(naive > 1e-3, `gathering without gradients differs by only ${naive}`);

  // a peer that stops answering fails the collective after the 6 s timeout, with a message that says so
  assert.match(res[0].hang.error, /all_reduce\(sum\) failed on rank 0 of 2 \(group tcp:\/\/127\.0\.0\.1:\d+\).*did not answer within the 6 s timeout/);
  assert.ok(res[0].hang.seconds >= 5.5 && res[0].hang.seconds < 20, `timed out after ${res[0].hang.seconds} s`);
});

function vlp(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ["--import", "tsx", join(repo, "src/cli/vlp.ts"), ...args], { cwd: repo, env: { ...process.env, ...ENV, ...env } });
  let stderr = "";
  let stdout = "";
  child.stderr.on("data", (d) => (stderr += d));
  child.stdout.on("data", (d) => (stdout += d));
  const exit = new Promise<number>((resolve) => child.on("exit", (code, sig) => resolve(code ?? (sig ? 128 : 1))));
  return { child, exit, get stderr() { return stderr; }, get stdout() { return stdout; } };
}

function microRecipe(method: "semvlp" | "msp" | "vlmo", train: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  const model = method === "semvlp" ? { preset: "tiny", overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 32, numHiddenLayers: 2, crossLayerStart: 1 } }
    : method === "msp" ? { preset: "lxmertSTiny", overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 32, xLayers: 1 } }
    : { preset: "tiny", overrides: { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1 } };
  const file = join(root, `${method}-${Object.values(train).join("-")}.json`);
  writeFileSync(file, JSON.stringify({ method, model, data: { world }, train: { seed: 3, batchSize: 8, lr: 1e-3, warmup: 0.1, clip: 1, workers: 0, ...train }, ...extra }));
  return file;
}

test("killing one of two VLMo workers (global ITC + hard negatives) stops the other at once; --resume continues exactly from the last checkpoint", { timeout: 150_000 }, async () => {
  const recipe = microRecipe("vlmo", { steps: 8, checkpointEvery: 3 }, { vlmo: { order: ["image-text"] } });
  const dir = join(root, "vlmo-killed");
  const metrics = join(dir, "metrics.jsonl");
  const rowsOf = (text: string) => text.trim().split("\n").filter((l) => l).map((l) => JSON.parse(l)).filter((x) => x.source !== "val");
  const run = vlp(["pretrain", "--nproc", "2", "--recipe", recipe, "--out", dir, "--quiet"]);
  // kill rank 1 once step 4 is logged: ckpt-3 exists, and step 4 comes after it
  const deadline = Date.now() + 90_000;
  while (!(existsSync(metrics) && rowsOf(readFileSync(metrics, "utf8")).some((x) => x.step === 4)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const pid = Number(/vlp launch: ranks 0 \(pid \d+\), 1 \(pid (\d+)\)/.exec(run.stderr)?.[1]);
  assert.ok(pid > 0 && existsSync(join(dir, "ckpt-3")), `no checkpoint or pid: ${run.stderr}`);
  const t0 = Date.now();
  process.kill(pid, "SIGKILL");
  const code = await run.exit;
  const seconds = (Date.now() - t0) / 1000;
  assert.notEqual(code, 0);
  assert.ok(seconds < 20, `the launcher took ${seconds} s to stop (timeout 20 s)`);
  assert.match(run.stderr, new RegExp(`rank 1 \\(pid ${pid}\\) was killed by SIGKILL`));
  // rank 0 noticed by itself (it was not terminated by the launcher)
  assert.match(run.stderr, /failed on rank 0 of 2 .*a peer process exited or was killed/);
  assert.match(run.stderr, /rank 0 \(pid \d+\) exited with code 1/);
  assert.match(run.stderr, /Resume from the last checkpoint \(.*ckpt-3\) with: vlp pretrain --nproc 2 --resume/);
  assert.ok(!existsSync(join(dir, "model.safetensors")));
  const killed = rowsOf(readFileSync(metrics, "utf8")).filter((x) => x.step > 3);

  const resumed = vlp(["pretrain", "--nproc", "2", "--resume", dir]);
  assert.equal(await resumed.exit, 0, resumed.stderr);
  assert.match(resumed.stdout, /resuming from .*ckpt-3 /);
  const rows = rowsOf(readFileSync(metrics, "utf8"));
  assert.deepEqual(rows.map((x) => x.step), [1, 2, 3, 4, 5, 6, 7, 8]);
  // the steps after the checkpoint are trained again exactly as before the kill (weights, optimizer,
  // data position and every rank's masks restored): identical losses and metrics
  assert.ok(killed.length >= 1);
  for (const k of killed) {
    const again = rows.find((x) => x.step === k.step);
    for (const m of ["loss", "itc_loss", "itm_loss", "mlm_loss", "grad_norm"]) assert.equal(again[m], k[m], `step ${k.step} ${m}`);
  }
  assert.ok(existsSync(join(dir, "model.safetensors")));
});

test("--nproc 2 pre-trains SemVLP and MSP (LXMERT-S)", { timeout: 150_000 }, async () => {
  const runs = [
    vlp(["pretrain", "--nproc", "2", "--recipe", microRecipe("semvlp", { steps: 3 }), "--out", join(root, "semvlp-2"), "--quiet"]),
    vlp(["pretrain", "--nproc", "2", "--recipe", microRecipe("msp", { steps: 1 }), "--out", join(root, "msp-2"), "--quiet"]),
  ];
  for (const r of runs) assert.equal(await r.exit, 0, r.stderr);
  for (const [name, n] of [["semvlp-2", 3], ["msp-2", 3]] as const) {
    const rows = readFileSync(join(root, name, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((x) => x.source !== "val");
    assert.equal(rows.length, n, name);
    assert.ok(rows.every((x) => Number.isFinite(x.loss)), name);
    assert.ok(existsSync(join(root, name, "model.safetensors")));
  }
});
