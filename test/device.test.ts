// `--device cpu|cuda|cuda:N` and `train.device`: the flag and the recipe key are checked for their
// form, a device this build cannot use fails every command with an error naming the flag, `--device
// cpu` trains exactly what no flag trains, and a CPU checkpoint is saved and resumed exactly (and
// written as before: no CUDA RNG state).
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { parseDevice, placeDevice, deviceProblem, backendForDevice, type CudaInfo } from "../src/engine/device.ts";
import { type Recipe } from "../src/pretrain/recipe.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { validateFinetuneRecipe } from "../src/tasks/task.ts";
import { generateWorld } from "../src/data/synth/world.ts";
import { buildStrategy } from "../src/cli/pretrain.ts";
import { precisionFlag } from "../src/cli/device.ts";
import { train } from "../src/train/trainer.ts";
import { buildInfo, manualSeed } from "../src/engine/index.ts";
import { readSafetensors } from "../src/engine/serialize/safetensors.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-device-"));
const world = join(root, "world");
const CLI = new URL("../src/cli/vlp.ts", import.meta.url).pathname;
const cli = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", CLI, ...args], { encoding: "utf8", env: { ...process.env, VLP_NUM_THREADS: "1" }, timeout: 120_000 });

before(async () => {
  await generateWorld({ images: 32, seed: 4, out: world, size: 64, featDim: 32, boxes: 12 });
});

function recipe(train: Record<string, unknown> = {}): Recipe {
  return validateRecipe({
    method: "semvlp",
    model: { preset: "tiny", overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 32, numHiddenLayers: 2, crossLayerStart: 1 } },
    data: { world },
    train: { seed: 7, batchSize: 8, lr: 1e-3, warmup: 0.1, steps: 6, clip: 1, workers: 0, ...train },
  });
}

test("device strings: cpu, cuda, cuda:N; anything else is refused naming where it came from", () => {
  for (const d of ["cpu", "cuda", "cuda:0", "cuda:3"]) assert.equal(parseDevice(d, "--device"), d);
  for (const d of ["gpu", "cuda:", "cpu:0", "cuda:x", "CUDA", ""]) assert.throws(() => parseDevice(d, "--device"), new RegExp(`--device: expected "cpu", "cuda" or "cuda:N", got ${JSON.stringify(JSON.stringify(d)).slice(1, -1)}`));
  assert.throws(() => parseDevice(3, "recipe.train.device"), /recipe\.train\.device: expected .* got 3/);
  assert.deepEqual([placeDevice("cuda"), placeDevice("cuda", 2), placeDevice("cuda:1", 2), placeDevice("cpu", 2)], ["cuda:0", "cuda:2", "cuda:1", "cpu"]);
  assert.deepEqual([backendForDevice("cpu"), backendForDevice("cuda:1")], ["gloo", "nccl"]);
});

test("whether a build can use a device: no CUDA compiled in, CUDA without a GPU, an index past the GPUs", () => {
  const cpuOnly: CudaInfo = { torchVersion: "1.13.0", cuda: false, cudaAvailable: false, cudaDeviceCount: 0 };
  assert.equal(deviceProblem("cpu", cpuOnly, "--device cpu"), null);
  assert.match(deviceProblem("cuda", cpuOnly, "--device cuda")!, /^--device cuda: this libtorch build has no CUDA \(libtorch 1\.13\.0, CPU only: torch\.cuda\.is_available\(\) is false\); build the addon against a CUDA PyTorch: `LIBTORCH=auto make setup`/);
  assert.match(deviceProblem("cuda", { ...cpuOnly, cuda: true }, "--device cuda")!, /the addon has CUDA but no GPU is visible/);
  const two: CudaInfo = { torchVersion: "2.5.1", cuda: true, cudaAvailable: true, cudaDeviceCount: 2 };
  assert.equal(deviceProblem("cuda:1", two, "--device cuda:1"), null);
  assert.equal(deviceProblem("cuda:2", two, "--device cuda:2"), "--device cuda:2: there is no cuda:2 (2 CUDA devices visible: cuda:0..cuda:1)");
});

test("recipes: train.device is checked; fp16 is refused on the CPU and accepted for CUDA", () => {
  assert.equal(recipe().train.device, "cpu");
  assert.equal(recipe({ device: "cuda:1" }).train.device, "cuda:1");
  assert.throws(() => recipe({ device: "gpu" }), /recipe\.train\.device: expected "cpu", "cuda" or "cuda:N", got "gpu"/);
  assert.throws(() => recipe({ device: 0 }), /recipe\.train\.device: expected a string, got 0/);
  assert.throws(() => recipe({ precision: "fp16" }), /recipe\.train\.precision: precision "fp16" needs a CUDA device/);
  assert.equal(recipe({ precision: "fp16", device: "cuda" }).train.precision, "fp16");
  const ft = (t: Record<string, unknown>) => validateFinetuneRecipe({ task: "vqa", data: { world }, train: t });
  assert.equal(ft({}).train.device, "cpu");
  assert.equal(ft({ device: "cuda", precision: "fp16" }).train.device, "cuda");
  assert.throws(() => ft({ device: "tpu" }), /recipe\.train\.device: expected "cpu", "cuda" or "cuda:N", got "tpu"/);
  assert.throws(() => ft({ precision: "fp16" }), /recipe\.train\.precision: precision "fp16" needs a CUDA device/);
});

test("--device cuda without CUDA: pretrain, finetune, eval, serve and index build fail at once naming the flag", (t) => {
  if (buildInfo().cudaAvailable) {
    t.skip("this machine has CUDA");
    return;
  }
  const file = join(root, "recipe.json");
  writeFileSync(file, JSON.stringify(recipe()));
  const ftFile = join(root, "vqa.json");
  writeFileSync(ftFile, JSON.stringify({ task: "vqa", method: "semvlp", model: recipe().model, data: { world } }));
  const runs: [string, string[]][] = [
    ["pretrain", ["pretrain", "--recipe", file, "--out", join(root, "never"), "--device", "cuda"]],
    ["finetune", ["finetune", "vqa", "--recipe", ftFile, "--scratch", "--out", join(root, "never-ft"), "--device", "cuda"]],
    ["eval", ["eval", "vqa", "--checkpoint", join(root, "none"), "--device", "cuda"]],
    ["serve", ["serve", "--checkpoint", join(root, "none"), "--device", "cuda"]],
    ["index", ["index", "build", "--checkpoint", join(root, "none"), "--images", world, "--out", join(root, "idx"), "--device", "cuda"]],
  ];
  for (const [cmd, args] of runs) {
    const r = cli(...args);
    assert.equal(r.status, 1, `${cmd}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^vlp ${cmd}: --device cuda: this libtorch build has no CUDA \\(libtorch [0-9.]+, CPU only: torch\\.cuda\\.is_available\\(\\) is false\\); build the addon against a CUDA PyTorch`), `${cmd}: ${r.stderr}`);
  }
  const bad = cli("pretrain", "--recipe", file, "--device", "gpu");
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /vlp pretrain: --device: expected "cpu", "cuda" or "cuda:N", got "gpu"/);
  // the recipe's own train.device is named as the recipe key
  const cudaRecipe = join(root, "cuda-recipe.json");
  writeFileSync(cudaRecipe, JSON.stringify({ ...recipe(), train: { ...recipe().train, device: "cuda:1" } }));
  const fromRecipe = cli("pretrain", "--recipe", cudaRecipe, "--out", join(root, "never2"));
  assert.match(fromRecipe.stderr, /vlp pretrain: recipe\.train\.device "cuda:1": this libtorch build has no CUDA/);
});

test("--device cpu trains exactly what no flag trains (weights, metrics and the recipe written)", () => {
  const file = join(root, "same.json");
  writeFileSync(file, JSON.stringify(recipe({ steps: 4 })));
  const a = cli("pretrain", "--recipe", file, "--out", join(root, "no-flag"), "--quiet");
  const b = cli("pretrain", "--recipe", file, "--out", join(root, "cpu-flag"), "--quiet", "--device", "cpu");
  assert.equal(a.status, 0, a.stderr);
  assert.equal(b.status, 0, b.stderr);
  const read = (dir: string, f: string) => readFileSync(join(root, dir, f));
  assert.ok(read("no-flag", "model.safetensors").equals(read("cpu-flag", "model.safetensors")), "weights differ");
  const metrics = (dir: string) => read(dir, "metrics.jsonl").toString().replace(/"time":\d+/g, "");
  assert.equal(metrics("cpu-flag"), metrics("no-flag"));
  assert.equal(read("cpu-flag", "recipe.json").toString(), read("no-flag", "recipe.json").toString());
  assert.equal(JSON.parse(read("cpu-flag", "recipe.json").toString()).train.device, "cpu");
});

test("device cpu: a checkpoint saved mid-run and resumed gives the uninterrupted run's weights; its RNG file holds the CPU states only", async () => {
  const r = recipe({ steps: 6 });
  const run = async (dir: string, extra: Partial<Parameters<typeof train>[2]>) => {
    manualSeed(r.train.seed);
    const { model, stages } = await buildStrategy(r);
    await train(model, stages, { runDir: join(root, dir), seed: r.train.seed, clip: 1, quiet: true, workers: 0, device: "cpu", checkpointEvery: 3, ...extra });
    model.dispose();
  };
  await run("whole", {});
  await run("cut", { stopAfter: 3 });
  await run("cut", { resume: true });
  const w = (dir: string) => readFileSync(join(root, dir, "model.safetensors"));
  assert.ok(w("whole").equals(w("cut")), "the resumed run's weights differ from the uninterrupted run's");
  assert.deepEqual([...readSafetensors(join(root, "cut", "ckpt-3", "rng.safetensors")).tensors.keys()].sort(), ["default", "generator.trainer"]);
});

test("--precision (vlp eval, vlp index build): fp32 is no autocast, bf16 anywhere, fp16 on CUDA only; errors name the flag", () => {
  assert.equal(precisionFlag(undefined, "cpu"), null);
  assert.equal(precisionFlag("fp32", "cpu"), null);
  assert.equal(precisionFlag("bf16", "cpu"), "bfloat16");
  assert.equal(precisionFlag("fp16", "cuda:0"), "float16");
  assert.throws(() => precisionFlag("fp16", "cpu"), /^Error: --precision fp16: .*CUDA/);
  assert.throws(() => precisionFlag("bf17", "cpu"), /--precision: expected fp32, bf16, fp16, got "bf17"/);
});
