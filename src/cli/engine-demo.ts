// `vlp demo`: an end-to-end check of the engine. A 2-layer transformer encoder learns to sort
// sequences of digits (each output position predicts the digit that belongs there after sorting).
import { parseArgs } from "node:util";
import { Module, Linear, LayerNorm, Embedding, Dropout, ModuleList, F, Tensor, tidy, tensor, arange, manualSeed, noGrad, Generator, randint, getNumThreads } from "../engine/index.ts";
import { AdamW } from "../engine/optim.ts";
import { linearWarmupDecay } from "../engine/schedule.ts";

class Block extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly norm1: LayerNorm;
  readonly norm2: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly drop: Dropout;
  constructor(readonly dim: number, readonly heads: number) {
    super();
    this.norm1 = this.module("norm1", new LayerNorm(dim));
    this.qkv = this.module("qkv", new Linear(dim, 3 * dim));
    this.proj = this.module("proj", new Linear(dim, dim));
    this.norm2 = this.module("norm2", new LayerNorm(dim));
    this.fc1 = this.module("fc1", new Linear(dim, 4 * dim));
    this.fc2 = this.module("fc2", new Linear(4 * dim, dim));
    this.drop = this.module("drop", new Dropout(0.0));
  }
  forward(x: Tensor): Tensor {
    const [b, n, d] = x.shape;
    const hd = d / this.heads;
    const [q, k, v] = this.qkv.forward(this.norm1.forward(x)).view(b, n, 3, this.heads, hd).permute(2, 0, 3, 1, 4).unbind(0);
    const att = q.matmul(k.transpose(-2, -1)).mul(1 / Math.sqrt(hd)).softmax(-1);
    const y = att.matmul(v).transpose(1, 2).reshape(b, n, d);
    const h = x.add(this.drop.forward(this.proj.forward(y)));
    return h.add(this.fc2.forward(this.fc1.forward(this.norm2.forward(h)).gelu()));
  }
}

class Sorter extends Module {
  readonly tok: Embedding;
  readonly pos: Embedding;
  readonly blocks: ModuleList<Block>;
  readonly norm: LayerNorm;
  readonly head: Linear;
  constructor(vocab: number, len: number, dim: number, layers: number) {
    super();
    this.tok = this.module("tok", new Embedding(vocab, dim));
    this.pos = this.module("pos", new Embedding(len, dim));
    this.blocks = this.module("blocks", new ModuleList(Array.from({ length: layers }, () => new Block(dim, 4))));
    this.norm = this.module("norm", new LayerNorm(dim));
    this.head = this.module("head", new Linear(dim, vocab));
  }
  forward(ids: Tensor): Tensor {
    let h = this.tok.forward(ids).add(this.pos.forward(arange(ids.size(1))));
    for (const b of this.blocks) h = b.forward(h);
    return this.head.forward(this.norm.forward(h));
  }
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { steps: { type: "string", default: "400" }, seed: { type: "string", default: "0" } },
  });
  const steps = Number(values.steps);
  const seed = Number(values.seed);
  const vocab = 10;
  const len = 8;
  const batch = 64;
  manualSeed(seed);
  const gen = new Generator(seed + 1);
  const model = new Sorter(vocab, len, 64, 2);
  const opt = new AdamW([{ params: model.parameters() }], { lr: 3e-3, weightDecay: 0.01 });
  const sample = () => {
    const x = randint(0, vocab, [batch, len], { generator: gen });
    const [sorted] = x.sort(1);
    return { x, y: sorted };
  };
  console.log(`vlp demo: 2-layer transformer (${model.numParameters()} parameters) learns to sort ${len} digits; ${getNumThreads()} threads`);
  const t0 = performance.now();
  for (let step = 1; step <= steps; step++) {
    opt.setLr(linearWarmupDecay(step, { base: 3e-3, warmup: 20, total: steps }));
    const loss = tidy(() => {
      const { x, y } = sample();
      const logits = model.forward(x);
      const l = F.crossEntropy(logits.reshape(-1, vocab), y.reshape(-1));
      l.backward();
      opt.step();
      opt.zeroGrad();
      return l.item();
    });
    if (step % 50 === 0 || step === 1) console.log(`step ${String(step).padStart(4)}  loss ${loss.toFixed(4)}`);
  }
  const acc = tidy(() =>
    noGrad(() => {
      model.eval();
      const { x, y } = sample();
      return model.forward(x).argmax(-1).eq(y).float().mean().item();
    }),
  );
  const sec = (performance.now() - t0) / 1000;
  console.log(`token accuracy on fresh sequences: ${(acc * 100).toFixed(1)}% (chance 10%); ${(steps / sec).toFixed(1)} steps/s`);
  const example = tensor([[7, 3, 9, 1, 1, 0, 5, 2]], { dtype: "int64" });
  const pred = tidy(() => noGrad(() => model.forward(example).argmax(-1).toArray()));
  console.log(`sort([7,3,9,1,1,0,5,2]) -> [${pred.join(",")}]`);
}
