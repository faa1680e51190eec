// VLMo ITC probe (README "Where VLMo's ITC stops"): the dual encoder alone, trained with ITC on the
// world's train pairs (AdamW, warm-up 5% then linear decay, clip 1, batch 32), printing every 100
// steps the running train in-batch accuracy and the held-out one (7 val batches of 32; chance 1/32).
//   STEPS=600 SETS='model.overrides.patchSize=8;model.overrides.layerScaleInit=1' LR=1e-3 BOW=0 \
//     VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts
// INIT=FILE: start from a run's model.safetensors (the image-only stage's, say).
// SETS: recipe --set values over recipes/vlmo-small.json (world data/world-small); BOW=1 replaces the
// text transformer by the mean of its word embeddings (is the text side the limit?).
import { loadRecipe } from "../src/methods/index.ts";
import { buildVLMo } from "../src/pretrain/vlmo.ts";
import { Loader, toTensors, type HostBatch } from "../src/data/loader.ts";
import { tidy, noGrad, F, type Tensor } from "../src/engine/index.ts";
import { AdamW } from "../src/engine/optim.ts";
import { clipGradNorm } from "../src/engine/grad.ts";
import { maskedMean } from "../src/models/bert.ts";
import { computeItc } from "../src/objectives/losses.ts";
import { Conv2d, Sequential, Module, Linear } from "../src/engine/nn.ts";
import { tensor } from "../src/engine/index.ts";
import { loadStateDictFile } from "../src/engine/checkpoint.ts";
import { openRegions } from "../src/data/regions/index.ts";

const sets = ["data.world=data/world-small", ...(process.env.SETS ? process.env.SETS.split(";") : [])];
const steps = Number(process.env.STEPS ?? 400), lr = Number(process.env.LR ?? 1e-3), bow = process.env.BOW === "1";
const img = process.env.IMG ?? "vit";
const { model, stages } = buildVLMo(loadRecipe("recipes/vlmo-small.json", sets));
// INIT=RUN/model.safetensors: start from a run's weights (e.g. a long image-only stage 1)
if (process.env.INIT) model.loadStateDict(loadStateDictFile(process.env.INIT), { strict: false, where: process.env.INIT });
const h = model.config.hiddenSize, grid = model.transformer.patch_embed.gridSize;
class Relu extends Module {
  forward(x: Tensor): Tensor {
    return x.relu();
  }
}
// IMG=cnn: a 4-conv network, mean-pooled (is a pixel encoder of another kind off the plateau?);
// IMG=cnnmax: the same CNN max-pooled (does mean pooling dilute the small objects?);
// IMG=linear: the mean of the patch projections (the issue's linear baseline);
// IMG=stem: VLMo with a stride-2 conv stem in place of the patch projection (Xiao et al. 2021).
const convs = (out: number, n: number): Sequential => {
  const layers: Module[] = [];
  let c = 3;
  for (let i = 0; i < n; i++) {
    const o = i === n - 1 ? out : Math.min(32 << i, 128);
    layers.push(new Conv2d(c, o, 3, 2, 1), new Relu());
    c = o;
  }
  layers.pop();
  return new Sequential(...(layers as (Module & { forward(x: Tensor): Tensor })[]));
};
const extra: Sequential | null = img === "cnn" || img === "cnnmax" ? convs(h, 4) : img === "stem" ? convs(h, Math.log2(model.config.patchSize)) : null;
if (img === "stem") (model.transformer.patch_embed as unknown as { forward(x: Tensor): Tensor }).forward = (px: Tensor) => extra!.forward(px);
const imageItc = (px: Tensor): Tensor => {
  if (img === "region") return F.normalize(model.itc_image_proj!.forward(regionFc!.forward(px).relu().mean([1])), 2, -1);
  if (img === "cnnmax") return F.normalize(model.itc_image_proj!.forward(extra!.forward(px).flatten(2).amax([2])), 2, -1);
  if (img === "cnn") return F.normalize(model.itc_image_proj!.forward(extra!.forward(px).flatten(2).mean([2])), 2, -1);
  if (img === "linear") return F.normalize(model.itc_image_proj!.forward(model.transformer.patch_embed.forward(px).flatten(2).mean([2])), 2, -1);
  return model.inferImage(px, { vlBranch: false }).itc!;
};
void grid;
// IMG=region: the world's region features (36 boxes, features + box) through a per-box linear + ReLU,
// mean-pooled: the ceiling the captions allow when the image side sees the objects.
const regions = img === "region" ? await openRegions("data/world-small/features/obj36.tsv") : null;
const regionFc = img === "region" ? new Linear(regions!.get(regions!.ids()[0]).dim + 4, h) : null;
const regionInput = (files: string[]): Tensor => {
  const rs = files.map((f) => regions!.get(f.replace(/\.[a-z]+$/, "")));
  const n = rs[0].numBoxes, d = rs[0].dim;
  const data = new Float32Array(files.length * n * (d + 4));
  rs.forEach((r, k) => { for (let i = 0; i < n; i++) { data.set(r.features.subarray(i * d, (i + 1) * d), (k * n + i) * (d + 4)); data.set(r.normBoxes.subarray(i * 4, i * 4 + 4), (k * n + i) * (d + 4) + d); } });
  return tensor(data, { shape: [files.length, n, d + 4] });
};
const src = stages.find((s) => s.name === "image-text")!.sources[0];
const train = await Loader.create(src.data, { batchSize: 32, seed: 0, shuffle: true, dropLast: true, workers: 0 });
const val = await Loader.create(src.evalData!, { batchSize: 32, seed: 0, shuffle: false, dropLast: true, workers: 0 });
const valBatches: Record<string, Tensor>[] = [];
for (let i = 0; i < 7; i++) {
  const hb = await val.next();
  const b = toTensors(hb as HostBatch);
  if (regions) { b.pixels.dispose(); b.pixels = regionInput((hb.meta as { files: string[] }).files); }
  for (const t of Object.values(b)) t.keep();
  valBatches.push(b);
}

const textItc = (ids: Tensor, mask: Tensor): Tensor =>
  bow ? F.normalize(model.itc_text_proj!.forward(maskedMean(model.text_embeddings.word_embeddings.forward(ids), mask)), 2, -1) : model.inferText(ids, mask, { vlBranch: false }).itc!;
const itc = (b: Record<string, Tensor>) => computeItc(imageItc(b.pixels), textItc(b.input_ids, b.attention_mask), model.logit_scale!);

function evalVal(): [number, number] {
  model.eval();
  let i2t = 0, t2i = 0;
  noGrad(() => {
    for (const b of valBatches) tidy(() => {
      const m = itc(b).metrics;
      i2t += m.itc_i2t_acc.item();
      t2i += m.itc_t2i_acc.item();
    });
  });
  model.train();
  return [i2t / valBatches.length, t2i / valBatches.length];
}

const opt = new AdamW([...model.parameters(), ...(extra ? extra.parameters() : []), ...(regionFc ? regionFc.parameters() : [])], { lr, weightDecay: 0.01 });
const warmup = 0.05 * steps;
const t0 = Date.now();
let running = 0;
model.train();
for (let s = 1; s <= steps; s++) {
  const hb = await train.next();
  const b = toTensors(hb as HostBatch);
  if (regions) { b.pixels.dispose(); b.pixels = regionInput((hb.meta as { files: string[] }).files); }
  const m = tidy(() => {
    const out = itc(b);
    out.loss.backward();
    return out.metrics;
  });
  for (const t of Object.values(b)) t.dispose();
  opt.setLr(s <= warmup ? (lr * s) / warmup : (lr * (steps - s)) / (steps - warmup));
  clipGradNorm([...model.parameters(), ...(extra ? extra.parameters() : []), ...(regionFc ? regionFc.parameters() : [])], 1.0);
  noGrad(() => opt.step());
  opt.zeroGrad();
  running = 0.9 * running + 0.1 * m.itc_i2t_acc.item();
  if (s % 100 === 0) {
    const [vi, vt] = evalVal();
    console.log(`${process.env.SETS || "recipe"}${process.env.INIT ? ` init=${process.env.INIT}` : ""} img=${img}${bow ? " +bow text" : ""} step ${s}: train~${running.toFixed(3)} val i2t ${vi.toFixed(3)} t2i ${vt.toFixed(3)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
}
await train.close();
await val.close();
