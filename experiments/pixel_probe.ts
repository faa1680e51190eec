// Can a pixel encoder see the world's objects at all? A supervised probe beside the ITC probe
// (experiments/itc_probe.ts): the same 4-layer stride-2 CNN on the same 64-px images, trained with
// binary cross-entropy to name what each image holds (its shapes, its objects' colours, and the
// colour-shape pairs, from the world's Visual Genome attributes), no captions. Prints every 300 steps
// the held-out precision@k (k = the image's number of true labels) of each label group, beside the
// precision of a random ranking. If this learns and ITC does not, captions are the weak signal; if
// this does not learn either, the pixels are.
//   STEPS=1500 POOL=mean|max SIZE=64 INIT=default|kaiming ARCH=cnn|deep|stem|vlmo LR=1e-3 WORLD=data/world-small VLP_NUM_THREADS=1 node --import tsx experiments/pixel_probe.ts
// (ARCH=deep: two convs a stage with channel norms, ~8x the compute; measured in session 14 with
// SIZE=128: neither the deeper network nor the larger input learns the shapes in 900-1,500 steps.
// ARCH=stem: VLMo's convolutional stem, the `PatchEmbed` with patchStem "conv" that the model runs
// (3x3 convolutions at full resolution, GroupNorm, ReLU, 2x2 max pooling; 16-px patches): it learns
// the shapes, session 15, where every strided network here memorises the training images)
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tidy, noGrad, F, tensor, randn, manualSeed, type Tensor } from "../src/engine/index.ts";
import { AdamW } from "../src/engine/optim.ts";
import { clipGradNorm } from "../src/engine/grad.ts";
import { Conv2d, LayerNorm, Linear, Module, Sequential } from "../src/engine/nn.ts";
import { loadImageTensor } from "../src/vision/image.ts";
import { Rng } from "../src/engine/rng.ts";
import { PatchEmbed } from "../src/models/vlmo/embeddings.ts";
import { VLMoForPretraining } from "../src/models/vlmo/pretraining.ts";
import { vlmoConfig } from "../src/models/vlmo/config.ts";
import { computeImageLabels } from "../src/objectives/losses.ts";

const world = process.env.WORLD ?? "data/world-small";
const steps = Number(process.env.STEPS ?? 1500), size = Number(process.env.SIZE ?? 64), pool = process.env.POOL ?? "mean";
manualSeed(0);
type Obj = { names: string[]; attributes: string[] };
const attrs = JSON.parse(readFileSync(join(world, "vg/attributes.json"), "utf8")) as { image_id: number; attributes: Obj[] }[];
const SIZES = new Set(["small", "medium", "large"]), TEXTURES = new Set(["solid", "striped", "dotted", "outlined", "noisy"]);
const colourOf = (o: Obj) => o.attributes.find((a) => !SIZES.has(a) && !TEXTURES.has(a)) ?? "?";
const shapes = [...new Set(attrs.flatMap((a) => a.attributes.map((o) => o.names[0])))].sort();
const colours = [...new Set(attrs.flatMap((a) => a.attributes.map(colourOf)))].sort();
const pairs = shapes.flatMap((s) => colours.map((c) => `${c} ${s}`));
const groups = { shape: [0, shapes.length], colour: [shapes.length, shapes.length + colours.length], pair: [shapes.length + colours.length, shapes.length + colours.length + pairs.length] } as const;
const L = groups.pair[1];
const labelsOf = new Map<number, Float32Array>();
for (const a of attrs) {
  const y = new Float32Array(L);
  for (const o of a.attributes) {
    y[shapes.indexOf(o.names[0])] = 1;
    y[shapes.length + colours.indexOf(colourOf(o))] = 1;
    y[groups.pair[0] + pairs.indexOf(`${colourOf(o)} ${o.names[0]}`)] = 1;
  }
  labelsOf.set(a.image_id, y);
}
const karpathy = JSON.parse(readFileSync(join(world, "karpathy/dataset_synth.json"), "utf8")) as { images: { filename: string; split: string; cocoid: number }[] };
async function load(split: (s: string) => boolean): Promise<{ x: Float32Array[]; y: Float32Array[] }> {
  const im = karpathy.images.filter((i) => split(i.split));
  const x = await Promise.all(im.map(async (i) => (await loadImageTensor(join(world, "images", i.filename), { mode: "square", size })).data));
  return { x, y: im.map((i) => labelsOf.get(i.cocoid)!) };
}
const train = await load((s) => s === "train" || s === "restval");
const held = await load((s) => s === "val" || s === "test");
console.log(`${shapes.length} shapes, ${colours.length} colours, ${pairs.length} pairs; ${train.x.length} train / ${held.x.length} held-out images at ${size} px, pool ${pool}`);
// DUMP=DIR: write the same tensors for experiments/pixel_probe_torch.py (PyTorch on identical inputs) and stop
if (process.env.DUMP) {
  const dir = process.env.DUMP;
  mkdirSync(dir, { recursive: true });
  const cat32 = (a: Float32Array[]) => Buffer.concat(a.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)));
  writeFileSync(join(dir, "x.f32"), cat32([...train.x, ...held.x]));
  writeFileSync(join(dir, "y.f32"), cat32([...train.y, ...held.y]));
  writeFileSync(join(dir, "meta.json"), JSON.stringify({ size, labels: L, groups, train: train.x.length, held: held.x.length }));
  console.log(`wrote ${dir}/x.f32, y.f32, meta.json`);
  process.exit(0);
}

class Relu extends Module {
  forward(x: Tensor): Tensor {
    return x.relu();
  }
}
/** LayerNorm over the channels of an NCHW map (a GroupNorm with one group per pixel). */
class ChannelNorm extends Module {
  readonly ln: LayerNorm;
  constructor(c: number) {
    super();
    this.ln = this.module("ln", new LayerNorm(c));
  }
  forward(x: Tensor): Tensor {
    return this.ln.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2]);
  }
}
const h = 64;
// ARCH=deep: two 3x3 convs a stage (the first keeps the resolution), each followed by a channel norm
const deep = (cs: number[]) => new Sequential(...cs.flatMap((c, i) => [new Conv2d(i === 0 ? 3 : cs[i - 1], c, 3, 1, 1), new ChannelNorm(c), new Relu(), new Conv2d(c, c, 3, 2, 1), ...(i < cs.length - 1 ? [new ChannelNorm(c), new Relu()] : [])]));
// ARCH=vlmo: VLMo-tiny's whole image side (the conv stem, then the 4-layer transformer, as the
// model's image-only stage with imageTask vg-labels runs it: src/models/vlmo/pretraining.ts
// labelLogits), its label head over the max of the patch tokens; POOL and the head below unused
const vlmo = process.env.ARCH === "vlmo" ? new VLMoForPretraining(vlmoConfig("tiny", { imageSize: size, patchSize: 16, patchStem: "conv" }), "pixels", L) : null;
const cnn = process.env.ARCH === "stem" ? new PatchEmbed(size, 16, 3, h, "conv")
  : process.env.ARCH === "deep" ? deep([32, 64, 128, h])
  : new Sequential(new Conv2d(3, 32, 3, 2, 1), new Relu(), new Conv2d(32, 64, 3, 2, 1), new Relu(), new Conv2d(64, 128, 3, 2, 1), new Relu(), new Conv2d(128, h, 3, 2, 1));
const head = new Linear(h, L);
// INIT=kaiming: He-normal conv weights (std sqrt(2 / fan_in)) in place of PyTorch's default, which
// shrinks a ReLU stack's activations ~6x in variance per layer
if (process.env.INIT === "kaiming") noGrad(() => {
  for (const [name, p] of cnn.namedParameters()) if (name.endsWith("weight") && p.shape.length === 4) p.copy_(randn(p.shape).mul(Math.sqrt(2 / (p.shape[1] * p.shape[2] * p.shape[3]))));
});
const forward = (px: Tensor): Tensor => {
  if (vlmo) return vlmo.labelLogits(px);
  const f = cnn.forward(px).flatten(2);
  return head.forward(pool === "max" ? f.amax([2]) : f.mean([2]));
};
const batchOf = (set: { x: Float32Array[]; y: Float32Array[] }, idx: number[]): [Tensor, Tensor] => {
  const px = new Float32Array(idx.length * 3 * size * size), y = new Float32Array(idx.length * L);
  idx.forEach((i, k) => { px.set(set.x[i], k * 3 * size * size); y.set(set.y[i], k * L); });
  return [tensor(px, { shape: [idx.length, 3, size, size] }), tensor(y, { shape: [idx.length, L] })];
};

function evaluate(): string {
  const scores: number[][] = [];
  noGrad(() => {
    for (let s = 0; s < held.x.length; s += 100) tidy(() => {
      const [px] = batchOf(held, Array.from({ length: Math.min(100, held.x.length - s) }, (_, k) => s + k));
      const n = px.size(0), flat = forward(px).toArray();
      for (let r = 0; r < n; r++) scores.push(flat.slice(r * L, (r + 1) * L));
    });
  });
  return Object.entries(groups).map(([name, [lo, hi]]) => {
    let prec = 0, chance = 0;
    held.y.forEach((y, i) => {
      const idx = Array.from({ length: hi - lo }, (_, j) => lo + j);
      const k = idx.filter((j) => y[j] === 1).length;
      const top = idx.sort((a, b) => scores[i][b] - scores[i][a]).slice(0, k);
      prec += top.filter((j) => y[j] === 1).length / k;
      chance += k / (hi - lo);
    });
    return `${name} P@k ${(prec / held.y.length).toFixed(3)} (random ${(chance / held.y.length).toFixed(3)})`;
  }).join(", ");
}

const params = vlmo ? vlmo.parameters() : [...cnn.parameters(), ...head.parameters()];
const lr = Number(process.env.LR ?? 1e-3);
// TRAIN=shape|colour|pair: the loss on one label group only (the default, all, averages the BCE over
// every label, where the 154 pairs and 11 colours outweigh the 14 shapes); TRAIN=shape,colour: the
// mean of those groups' losses (computeImageLabels, as VLMo's vg-labels stage weighs its two groups)
const trainOn = (process.env.TRAIN ?? "all").split(",") as ("all" | keyof typeof groups)[];
if (!trainOn.every((g) => g === "all" || g in groups)) throw new Error(`TRAIN must be all or a list of shape, colour, pair, got ${process.env.TRAIN}`);
const lossOf = (logits: Tensor, y: Tensor): Tensor => (trainOn[0] === "all" ? F.binaryCrossEntropyWithLogits(logits, y)
  : computeImageLabels(logits, y, Object.fromEntries(trainOn.map((g) => [g, [...groups[g as keyof typeof groups]] as [number, number]]))).loss);
const opt = new AdamW(params, { lr, weightDecay: 0.01 });
const rng = new Rng(0);
const t0 = Date.now();
let running = 0;
for (let s = 1; s <= steps; s++) {
  const idx = Array.from({ length: 32 }, () => rng.int(train.x.length));
  const loss = tidy(() => {
    const [px, y] = batchOf(train, idx);
    const l = lossOf(forward(px), y);
    l.backward();
    return l.item();
  });
  opt.setLr(s <= 0.05 * steps ? (lr * s) / (0.05 * steps) : (lr * (steps - s)) / (0.95 * steps));
  clipGradNorm(params, 1.0);
  noGrad(() => opt.step());
  opt.zeroGrad();
  running = s === 1 ? loss : 0.95 * running + 0.05 * loss;
  if (s % 300 === 0) console.log(`step ${s}: train bce ${running.toFixed(4)}; held-out ${evaluate()} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
}
