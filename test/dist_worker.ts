// A worker of the data-parallel tests (test/dist.test.ts), started by src/cli/launch.ts with the
// torchrun environment. It also exports the tiny model, its data (a batch builder) and the ITC toy,
// so the test process can compute the one-process references with the same code.
//   node --import tsx test/dist_worker.ts <out dir>
// trains the tiny model three ways (gradSync overlap / after, and with accumulation), computes the
// 2-rank ITC, then checks that a hung peer fails a collective with a timeout error.
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Module, Linear, manualSeed, randn, tensor, F, type Tensor } from "../src/engine/index.ts";
import { distConfigFromEnv, initDistributed, type Dist } from "../src/engine/dist.ts";
import { DataParallel, reduceMetrics, allReduceGradients, type DDPOptions } from "../src/engine/ddp.ts";
import { computeItc } from "../src/objectives/losses.ts";
import { train, type Stage } from "../src/train/trainer.ts";
import { globalItc } from "../src/pretrain/vlmo.ts";
import type { BatchBuilder } from "../src/data/loader.ts";

// ---- a tiny regression model and its data ------------------------------------------------------

export class Tiny extends Module {
  readonly a = this.module("a", new Linear(6, 16));
  readonly b = this.module("b", new Linear(16, 3));
  /** Used on some steps only (chosen by the step's rng, the same on every rank). */
  readonly alt = this.module("alt", new Linear(16, 3));
  /** Never used: must keep its initial value, without a gradient, everywhere. */
  readonly never = this.param("never", randn([3]));
  forward(x: Tensor, useAlt: boolean): Tensor {
    return (useAlt ? this.alt : this.b).forward(this.a.forward(x).tanh());
  }
}

/** createBuilder for the Loader: example i is a fixed (x, y) pair. */
export function createBuilder(a: { n: number }): BatchBuilder {
  return {
    length: a.n,
    build(indices: number[]) {
      const x = new Float32Array(indices.length * 6);
      const y = new Float32Array(indices.length * 3);
      indices.forEach((i, k) => {
        for (let j = 0; j < 6; j++) x[k * 6 + j] = Math.sin(i * 0.37 + j * 1.3);
        for (let j = 0; j < 3; j++) y[k * 3 + j] = Math.cos(i * 0.11 * (j + 1));
      });
      return { arrays: { x: { data: x, shape: [indices.length, 6], dtype: "float32" }, y: { data: y, shape: [indices.length, 3], dtype: "float32" } }, meta: {} };
    },
  };
}

export const SELF = pathToFileURL(fileURLToPath(import.meta.url)).href;

/** The model (seeded) and one stage; `batchSize` is the global batch. */
export function buildTiny(batchSize = 16, steps = 6): { model: Tiny; stages: Stage[] } {
  manualSeed(1);
  const model = new Tiny();
  const stages: Stage[] = [{
    name: "tiny",
    lr: 0.02,
    warmup: 0.2,
    weightDecay: 0.01,
    steps,
    sources: [{
      name: "reg",
      batchSize,
      data: { module: SELF, args: { n: 96 } },
      step: (batch: Record<string, Tensor>, _meta, ctx) => {
        const loss = F.mseLoss(model.forward(batch.x, ctx.rng.next() < 0.35), batch.y);
        return { loss, metrics: { mse: loss.item() } };
      },
    }],
  }];
  return { model, stages };
}

/** The modes the test compares with one process: run directory name -> trainer options. */
export const TRAIN_RUNS: Record<string, { ddp: DDPOptions; accumulate?: number }> = {
  overlap: { ddp: { gradSync: "overlap" } },
  after: { ddp: { gradSync: "after" } },
  accumulate: { ddp: { gradSync: "overlap" }, accumulate: 2 },
};

// ---- the ITC toy -----------------------------------------------------------------------------------

export class ItcToy extends Module {
  readonly img = this.module("img", new Linear(5, 4));
  readonly txt = this.module("txt", new Linear(6, 4));
  readonly logit_scale = this.param("logit_scale", tensor([Math.log(1 / 0.07)]));
}
export const ITC_ROWS = 8; // the global batch

/** Model and the global batch of features (the same on every rank). */
export function itcSetup(): { model: ItcToy; xi: Tensor; xt: Tensor } {
  manualSeed(5);
  const model = new ItcToy();
  return { model, xi: randn([ITC_ROWS, 5]).keep(), xt: randn([ITC_ROWS, 6]).keep() };
}

/** ITC of rows [from, from + n) (everything without dist) with gathered features. */
export function itcLoss(s: ReturnType<typeof itcSetup>, dist?: Dist): Tensor {
  const n = dist ? ITC_ROWS / dist.world : ITC_ROWS;
  const from = dist ? dist.rank * n : 0;
  const img = F.normalize(s.model.img.forward(s.xi.narrow(0, from, n)));
  const txt = F.normalize(s.model.txt.forward(s.xt.narrow(0, from, n)));
  return globalItc(img, txt, s.model.logit_scale, dist).loss;
}

// ---- the worker --------------------------------------------------------------------------------------

async function main(out: string): Promise<void> {
  const dist = await initDistributed(distConfigFromEnv()!);
  mkdirSync(out, { recursive: true });
  const result: Record<string, unknown> = { rank: dist.rank, world: dist.world };

  for (const [name, extra] of Object.entries(TRAIN_RUNS)) {
    const { model, stages } = buildTiny();
    await train(model, stages, { runDir: join(out, name), seed: 4, clip: 1, quiet: true, dist, ...extra });
  }

  const s = itcSetup();
  const ddp = new DataParallel(dist, s.model.namedParameters());
  const loss = itcLoss(s, dist);
  ddp.backward(loss);
  ddp.finish();
  result.itcLoss = reduceMetrics(dist, { loss: loss.item() }).loss;
  result.itcGrads = Object.fromEntries(s.model.namedParameters().map(([n, p]) => [n, p.grad!.toArray()]));
  ddp.dispose();
  // the same with the other ranks' features gathered without gradients (what the test must tell apart)
  s.model.zeroGrad();
  const n = ITC_ROWS / dist.world;
  const img = F.normalize(s.model.img.forward(s.xi.narrow(0, dist.rank * n, n)));
  const txt = F.normalize(s.model.txt.forward(s.xt.narrow(0, dist.rank * n, n)));
  computeItc(img, txt, s.model.logit_scale, { allImg: dist.gatherLocalFirst(img), allTxt: dist.gatherLocalFirst(txt) }).loss.backward();
  allReduceGradients(dist, s.model.parameters());
  result.itcGradsNoGather = Object.fromEntries(s.model.namedParameters().map(([n, p]) => [n, p.grad!.toArray()]));

  // a hung peer: rank 1 stops answering (a busy wait, as a stuck process would) while rank 0 all-reduces
  dist.barrier();
  if (dist.rank === 1) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, dist.timeoutMs + 3000);
  } else {
    const t0 = Date.now();
    try {
      dist.allReduce(tensor([1]));
      result.hang = { error: null };
    } catch (e) {
      result.hang = { error: (e as Error).message, seconds: (Date.now() - t0) / 1000 };
    }
  }
  writeFileSync(join(out, `result-${dist.rank}.json`), JSON.stringify(result));
}

// not a top-level await: the Loader imports this module (for createBuilder) while main runs
if (process.argv[1] && pathToFileURL(process.argv[1]).href === SELF) {
  main(process.argv[2]).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
