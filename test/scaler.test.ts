// Dynamic loss scaling (float16 training on CUDA): the scaler's rule, and the trainer with it on. On the
// CPU it runs in float32, where scaling by a power of two is exact: the weights must equal a run
// without it; a step whose gradients overflow is skipped and the scale halved; resume keeps the scale.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GradScaler } from "../src/engine/scaler.ts";
import { Linear } from "../src/engine/nn.ts";
import { manualSeed, randn, tensor } from "../src/engine/index.ts";
import { generateWorld } from "../src/data/synth/world.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { buildStrategy } from "../src/cli/pretrain.ts";
import { train } from "../src/train/trainer.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-scaler-"));
const world = join(root, "world");
before(async () => {
  await generateWorld({ images: 32, seed: 2, out: world, size: 64, featDim: 32, boxes: 12 });
});

test("GradScaler: unscaled gradients equal unscaled training's exactly; overflow skips and halves; good runs double", () => {
  manualSeed(0);
  const lin = new Linear(8, 4);
  const x = randn([16, 8]);
  lin.forward(x).pow(2).mean().backward();
  const plain = lin.parameters().map((p) => p.grad!.toArray());
  lin.zeroGrad();
  const s = new GradScaler({ growthInterval: 3 });
  s.scaleLoss(lin.forward(x).pow(2).mean()).backward();
  assert.ok(lin.parameters()[0].grad!.abs().max().item() > 1000, "the gradients were scaled");
  assert.equal(s.unscale(lin.parameters()), true);
  assert.deepEqual(lin.parameters().map((p) => p.grad!.toArray()), plain);
  s.update(true);
  lin.parameters()[1].grad!.copy_(tensor([1, Infinity, 0, 0]));
  const before = lin.parameters()[0].grad!.toArray();
  assert.equal(s.unscale(lin.parameters()), false);
  assert.deepEqual(lin.parameters()[0].grad!.toArray(), before, "gradients are left alone when the step is skipped");
  s.update(false);
  assert.deepEqual(s.stateDict(), { scale: 2 ** 15, goodSteps: 0 });
  for (let i = 0; i < 3; i++) s.update(true);
  assert.deepEqual(s.stateDict(), { scale: 2 ** 16, goodSteps: 0 });
  const t = new GradScaler();
  t.loadStateDict({ scale: 8, goodSteps: 5 });
  assert.deepEqual(t.stateDict(), { scale: 8, goodSteps: 5 });
});

const recipe = () => validateRecipe({
  method: "semvlp",
  model: { preset: "tiny", overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 32, numHiddenLayers: 2, crossLayerStart: 1 } },
  data: { world },
  train: { seed: 4, batchSize: 8, lr: 1e-3, warmup: 0.1, steps: 5, clip: 1, workers: 0 },
});

async function run(dir: string, o: Partial<Parameters<typeof train>[2]> & { overflowAt?: number } = {}) {
  const r = recipe();
  manualSeed(r.train.seed);
  const { model, stages } = await buildStrategy(r);
  if (o.overflowAt !== undefined) {
    // a finite loss whose gradient overflows float32 once scaled by 2^16 (1e34 x 65536 > 3.4e38)
    const step = stages[0].sources[0].step;
    const p = model.parameters()[0];
    stages[0].sources[0].step = (b, m, ctx) => {
      const out = step(b, m, ctx);
      return ctx.step === o.overflowAt ? { ...out, loss: out.loss.add(p.sum().mul(1e34)) } : out;
    };
  }
  await train(model, stages, { runDir: join(root, dir), seed: r.train.seed, clip: 1, quiet: true, workers: 0, checkpointEvery: 2, ...o });
  model.dispose();
  const rows = readFileSync(join(root, dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((x) => x.source !== "val");
  const file = join(root, dir, "model.safetensors");
  return { weights: o.stopAfter ? Buffer.alloc(0) : readFileSync(file), rows };
}

test("the trainer with loss scaling: float32 weights unchanged; an overflowing step skipped, the scale halved; resume keeps the scale", async () => {
  const plain = await run("plain");
  const scaled = await run("scaled", { lossScaling: true });
  assert.ok(scaled.weights.equals(plain.weights), "loss scaling changed float32 training");
  assert.deepEqual(scaled.rows.map((x) => [x.loss_scale, x.skipped]), Array(5).fill([2 ** 16, 0]));
  assert.equal(plain.rows[0].loss_scale, undefined);
  const over = await run("overflow", { lossScaling: true, overflowAt: 3 });
  assert.deepEqual(over.rows.map((x) => [x.loss_scale, x.skipped]), [[2 ** 16, 0], [2 ** 16, 0], [2 ** 16, 1], [2 ** 15, 0], [2 ** 15, 0]]);
  assert.ok(!over.weights.equals(plain.weights));
  // cut after the skipped step's checkpoint (step 4), resumed: the halved scale comes back with it
  await run("cut", { lossScaling: true, overflowAt: 3, stopAfter: 4 });
  const resumed = await run("cut", { lossScaling: true, overflowAt: 3, resume: true });
  assert.ok(resumed.weights.equals(over.weights), "the resumed run differs");
  assert.deepEqual(resumed.rows.at(-1)!.loss_scale, 2 ** 15);
});
