// VLMo ITC probe (README "Where VLMo's ITC stops"): the dual encoder alone, trained with ITC on the
// world's train pairs (AdamW, warm-up 5% then linear decay, clip 1, batch 32), printing every 100
// steps the running train in-batch accuracy and the held-out one (7 val batches of 32; chance 1/32).
//   STEPS=600 SETS='model.overrides.patchSize=8;model.overrides.layerScaleInit=1' LR=1e-3 BOW=0 \
//     VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts
// SETS: recipe --set values over recipes/vlmo-small.json (world data/world-small); BOW=1 replaces the
// text transformer by the mean of its word embeddings (is the text side the limit?).
import { loadRecipe } from "../src/pretrain/recipe.ts";
import { buildVLMo } from "../src/pretrain/vlmo.ts";
import { Loader, toTensors } from "../src/data/loader.ts";
import { tidy, noGrad, F, type Tensor } from "../src/engine/index.ts";
import { AdamW } from "../src/engine/optim.ts";
import { clipGradNorm } from "../src/engine/grad.ts";
import { maskedMean } from "../src/models/bert.ts";
import { computeItc } from "../src/objectives/losses.ts";

const sets = ["data.world=data/world-small", ...(process.env.SETS ? process.env.SETS.split(";") : [])];
const steps = Number(process.env.STEPS ?? 400), lr = Number(process.env.LR ?? 1e-3), bow = process.env.BOW === "1";
const { model, stages } = buildVLMo(loadRecipe("recipes/vlmo-small.json", sets));
const src = stages.find((s) => s.name === "image-text")!.sources[0];
const train = await Loader.create(src.data, { batchSize: 32, seed: 0, shuffle: true, dropLast: true, workers: 0 });
const val = await Loader.create(src.evalData!, { batchSize: 32, seed: 0, shuffle: false, dropLast: true, workers: 0 });
const valBatches: Record<string, Tensor>[] = [];
for (let i = 0; i < 7; i++) {
  const b = toTensors(await val.next());
  for (const t of Object.values(b)) t.keep();
  valBatches.push(b);
}

const textItc = (ids: Tensor, mask: Tensor): Tensor =>
  bow ? F.normalize(model.itc_text_proj!.forward(maskedMean(model.text_embeddings.word_embeddings.forward(ids), mask)), 2, -1) : model.inferText(ids, mask, { vlBranch: false }).itc!;
const itc = (b: Record<string, Tensor>) => computeItc(model.inferImage(b.pixels, { vlBranch: false }).itc!, textItc(b.input_ids, b.attention_mask), model.logit_scale!);

function evalVal(): [number, number] {
  model.eval();
  let i2t = 0, t2i = 0;
  noGrad(() => {
    for (const b of valBatches) tidy(() => {
      const m = itc(b).metrics;
      i2t += m.itc_i2t_acc;
      t2i += m.itc_t2i_acc;
    });
  });
  model.train();
  return [i2t / valBatches.length, t2i / valBatches.length];
}

const opt = new AdamW(model.parameters(), { lr, weightDecay: 0.01 });
const warmup = 0.05 * steps;
const t0 = Date.now();
let running = 0;
model.train();
for (let s = 1; s <= steps; s++) {
  const b = toTensors(await train.next());
  const m = tidy(() => {
    const out = itc(b);
    out.loss.backward();
    return out.metrics;
  });
  for (const t of Object.values(b)) t.dispose();
  opt.setLr(s <= warmup ? (lr * s) / warmup : (lr * (steps - s)) / (steps - warmup));
  clipGradNorm(model.parameters(), 1.0);
  noGrad(() => opt.step());
  opt.zeroGrad();
  running = 0.9 * running + 0.1 * m.itc_i2t_acc;
  if (s % 100 === 0) {
    const [vi, vt] = evalVal();
    console.log(`${process.env.SETS || "recipe"}${bow ? " +bow text" : ""} step ${s}: train~${running.toFixed(3)} val i2t ${vi.toFixed(3)} t2i ${vt.toFixed(3)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
}
await train.close();
await val.close();
