// The training step path reads nothing to the host between logged rows (each read is a
// synchronisation point on an accelerator): hostReads() (src/engine/tensor.ts) counts item(),
// data() and GPU-to-CPU copies, and a run's steps between two rows must add none. And a row of
// `logEvery` steps holds the means of the rows one-step logging writes.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateWorld } from "../src/data/synth/world.ts";
import type { Recipe } from "../src/pretrain/recipe.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { buildStrategy } from "../src/cli/pretrain.ts";
import { train } from "../src/train/trainer.ts";
import { hostReads, manualSeed } from "../src/engine/index.ts";

let world = "";
const root = mkdtempSync(join(tmpdir(), "vlp-host-reads-"));
before(async () => {
  world = join(root, "world");
  await generateWorld({ images: 48, seed: 5, out: world, size: 64, featDim: 32, boxes: 12 });
});

const MICRO_BERT = { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 32 };
const STEPS = 6;

function recipe(method: Recipe["method"], extra: Record<string, unknown> = {}): Recipe {
  return validateRecipe({
    method,
    model: method === "semvlp" ? { preset: "tiny", overrides: { ...MICRO_BERT, numHiddenLayers: 2, crossLayerStart: 1 } }
      : method === "msp" ? { preset: "lxmertSTiny", overrides: { ...MICRO_BERT, xLayers: 1 } }
      : { preset: "tiny", overrides: { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1 } },
    data: { world },
    train: { seed: 3, batchSize: 6, lr: 1e-3, warmup: 0.1, steps: STEPS, clip: 1, workers: 0 },
    ...extra,
  });
}

/** Trains `r` with the given logging interval; returns the host reads of each step, by stage (a step's reads end at its progress update). */
async function readsPerStep(r: Recipe, dir: string, logEvery: number): Promise<Record<string, number[]>> {
  manualSeed(r.train.seed);
  const { model, stages } = await buildStrategy(r);
  const out: Record<string, number[]> = {};
  try {
    await train(model, stages, {
      runDir: join(root, dir), seed: r.train.seed, clip: r.train.clip, workers: 0, logEvery,
      progress: (_total, stage) => {
        let last = hostReads();
        const reads: number[] = (out[stage] = []);
        return {
          update(done: number) {
            if (done === 0) return;
            const now = hostReads();
            reads.push(now - last);
            last = now;
          },
          finish() {},
        };
      },
    });
  } finally {
    model.dispose();
  }
  return out;
}

const methods: [string, Recipe["method"], Record<string, unknown>][] = [
  ["SemVLP (single- and two-stream steps)", "semvlp", {}],
  ["MSP (token: IFRS shuffling; sentence: ITM, topics, ITC)", "msp", { msp: { order: ["token", "sentence"], itc: 1 } }],
  ["VLMo (image, text with trimmed padding and whole-word masks, image-text with hard negatives)", "vlmo", {}],
];

for (const [name, method, extra] of methods) {
  test(`${name}: no host read between logged rows`, { timeout: 180_000 }, async () => {
    const byStage = await readsPerStep(recipe(method, extra), `reads-${method}`, 1000);
    assert.ok(Object.keys(byStage).length > 0, "progress was reported");
    for (const [stage, reads] of Object.entries(byStage)) {
      assert.equal(reads.length, STEPS, `${stage}: one update per step`);
      // the first step pays for the stage's setup, the last for its one row (and the evaluation after it)
      const middle = reads.slice(1, -1);
      assert.deepEqual(middle, middle.map(() => 0), `${stage}: host reads of steps 2..${STEPS - 1}: ${reads.join(", ")}`);
      assert.ok(reads[STEPS - 1] >= 1, `${stage}: the row at the stage's end is read`);
    }
  });
}

test("a row of logEvery steps holds the means of the one-step rows (loss, gradient norm, each metric)", { timeout: 180_000 }, async () => {
  const r = recipe("semvlp");
  const rows = async (logEvery: number) => {
    await readsPerStep(r, `every-${logEvery}`, logEvery);
    return readFileSync(join(root, `every-${logEvery}`, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>).filter((x) => x.source !== "val");
  };
  const one = await rows(1);
  const four = await rows(4);
  assert.equal(one.length, STEPS);
  // steps 1-4, then 5-6 (the stage's end)
  assert.deepEqual(four.map((x) => x.step), [4, 6]);
  const spans = [one.slice(0, 4), one.slice(4)];
  four.forEach((row, i) => {
    for (const [k, v] of Object.entries(row)) {
      if (["step", "stage", "stage_step", "source", "lr", "time"].includes(k)) continue;
      const measured = spans[i].map((x) => x[k]).filter((x): x is number => typeof x === "number");
      const mean = measured.reduce((a, b) => a + b, 0) / measured.length;
      assert.ok(Math.abs((v as number) - mean) <= 1e-6 * Math.max(1, Math.abs(mean)), `${k} at step ${row.step}: ${v} vs the mean of the one-step rows ${mean}`);
    }
    assert.equal(row.lr, spans[i].at(-1)!.lr, "lr: the last step's");
  });
});
