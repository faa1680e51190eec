// Forward + backward time per batch of the pre-training models at base size, vlpkit vs the same
// model in PyTorch (Debian's 1.13, the reference implementation of test/models-ref.ts) in the same
// run, with the same thread count. Prints ms/batch, the ratio vlpkit/PyTorch and parameter counts.
//
//   node --import tsx bench/models.ts [--iters 5] [--warmup 2] [--threads N] [--only lxmertS,semvlp-two] [--batch 8]
//
// To add a model (e.g. VLMo), write a function returning a ModelBench (see lxmertSBench below) and
// add it to ALL_BENCHES: `ts()` builds the vlpkit model and returns one training step (forward,
// loss, backward); `python` is Python source that defines `setup(cfg)` returning (step, n_params),
// run after `prelude` (by default the reference models of test/models-ref.ts).
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import readline from "node:readline";
import os from "node:os";
import { randint, rand, ones, getNumThreads, setNumThreads, type Tensor } from "../src/engine/tensor.ts";
import { tidy } from "../src/engine/scope.ts";
import type { Module } from "../src/engine/nn.ts";
import { LxmertForPreTraining, lxmertConfig, transformerParameterCount } from "../src/models/lxmert.ts";
import { SemVLPForPreTraining, semvlpConfig, type SemVLPMode } from "../src/models/semvlp.ts";
import { PY_MODELS } from "../test/models-ref.ts";
import { vlmoBench } from "./models_vlmo.ts";

const PYTHON = process.env.VLP_TORCH_PYTHON ?? "/usr/bin/python3";

export interface BenchShape {
  batch: number;
  words: number;
  regions: number;
  featDim: number;
}

export interface TsBench {
  /** One forward + backward (gradients are reset before each step by the runner via reset()). */
  step(): void;
  reset(): void;
  dispose(): void;
  /** Parameter counts to print, e.g. { total, transformer }. */
  parameters: Record<string, number>;
}

export interface ModelBench {
  name: string;
  ts(shape: BenchShape): TsBench;
  /** Python defining setup(cfg) -> (step_fn, n_params); `cfg` is `pyConfig` plus the shape. */
  python: string;
  pyConfig: Record<string, unknown>;
  /** Python source run before `python` (default: the reference models). */
  prelude?: string;
}

/** Sum of the means of the outputs: touches every head so the backward covers the whole model. */
function meanLoss(ts: (Tensor | undefined)[]): Tensor {
  let loss: Tensor | null = null;
  for (const t of ts) if (t) loss = loss ? loss.add(t.mean()) : t.mean();
  return loss!;
}

function tsBench(model: Module, forward: () => Tensor, parameters: Record<string, number>): TsBench {
  model.train();
  return {
    step: () => tidy(() => forward().backward()),
    reset: () => model.zeroGrad(),
    dispose: () => model.dispose(),
    parameters,
  };
}

function inputs(s: BenchShape, vocab: number) {
  return {
    inputIds: randint(1, vocab, [s.batch, s.words]),
    attentionMask: ones([s.batch, s.words], { dtype: "int64" }),
    positionIds: randint(1, 20, [s.batch, s.words]),
    visualFeats: rand([s.batch, s.regions, s.featDim]),
    visualPos: rand([s.batch, s.regions, 4]),
  };
}

const PY_LXMERT = String.raw`
def setup(cfg):
    c = cfg["model"]
    m = LxmertPre(c)
    m.train()
    b, l, n, f = cfg["batch"], cfg["words"], cfg["regions"], cfg["featDim"]
    ids = torch.randint(1, c["vocabSize"], (b, l))
    mask = torch.ones(b, l, dtype=torch.long)
    pos = torch.randint(1, 20, (b, l))
    feats, boxes = torch.rand(b, n, f), torch.rand(b, n, 4)
    keys = ["lmLogits", "matchLogits", "pooled", "topic", "answerLogits", "obj", "attr", "feat"]
    def step():
        m.zero_grad(set_to_none=True)
        out = m(ids, None, mask, pos, feats, boxes, None)
        sum(out[k].mean() for k in keys if k in out).backward()
    return step, sum(p.numel() for p in m.parameters())
`;

const PY_SEMVLP = String.raw`
def setup(cfg):
    c = cfg["model"]
    m = SemVLPPre(c)
    m.train()
    b, l, n, f = cfg["batch"], cfg["words"], cfg["regions"], cfg["featDim"]
    ids = torch.randint(1, c["vocabSize"], (b, l))
    mask = torch.ones(b, l, dtype=torch.long)
    feats, boxes = torch.rand(b, n, f), torch.rand(b, n, 4)
    keys = ["lmLogits", "matchLogits", "pooled", "answerLogits", "obj", "attr", "feat"]
    def step():
        m.zero_grad(set_to_none=True)
        out = m(cfg["mode"], ids, None, mask, None, feats, boxes, None)
        sum(out[k].mean() for k in keys if k in out).backward()
    return step, sum(p.numel() for p in m.parameters())
`;

/** LXMERT-S (0/5/0, base) with all its pre-training heads. */
export function lxmertSBench(preset: "lxmertS" | "lxmert" = "lxmertS"): ModelBench {
  return {
    name: preset,
    python: PY_LXMERT,
    pyConfig: {},
    ts(s) {
      const c = lxmertConfig(preset, { visualFeatDim: s.featDim });
      this.pyConfig = { model: c };
      const m = new LxmertForPreTraining(c);
      const x = inputs(s, c.vocabSize);
      return tsBench(
        m,
        () => {
          const o = m.forward({ ...x, positionIds: c.wordPositions ? x.positionIds : null });
          return meanLoss([o.lmLogits, o.matchLogits, o.pooledOutput, o.topicLogits, o.answerLogits, o.visualLogits?.obj, o.visualLogits?.attr, o.visualLogits?.feat]);
        },
        { total: m.numParameters(), transformer: transformerParameterCount(m) },
      );
    },
  };
}

/** SemVLP-base (12 layers, L_s = 6) in one mode, with its pre-training heads. */
export function semvlpBench(mode: SemVLPMode): ModelBench {
  return {
    name: `semvlp-${mode}`,
    python: PY_SEMVLP,
    pyConfig: {},
    ts(s) {
      const c = semvlpConfig("base", { visualFeatDim: s.featDim });
      this.pyConfig = { model: c, mode };
      const m = new SemVLPForPreTraining(c);
      const x = inputs(s, c.vocabSize);
      return tsBench(
        m,
        () => {
          const o = m.forward({ ...x, positionIds: null }, mode);
          return meanLoss([o.lmLogits, o.matchLogits, o.pooledOutput, o.answerLogits, o.visualLogits?.obj, o.visualLogits?.attr, o.visualLogits?.feat]);
        },
        { total: m.numParameters(), encoder: m.bert.encoder.numParameters() },
      );
    },
  };
}

export const ALL_BENCHES: (() => ModelBench)[] = [() => lxmertSBench("lxmertS"), () => semvlpBench("single"), () => semvlpBench("two"), () => vlmoBench("base")];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export interface BenchResult {
  name: string;
  vlpkitMs: number;
  torchMs: number;
  ratio: number;
  /** CPU time (all threads) per step: robust when other processes compete for the cores. */
  vlpkitCpuMs: number;
  torchCpuMs: number;
  cpuRatio: number;
  parameters: Record<string, number>;
  torchParameters: number;
}

const WORKER = String.raw`
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
state = {}
for line in sys.stdin:
    msg = json.loads(line)
    cmd = msg["cmd"]
    if cmd == "setup":
        env = {}
        exec(msg["prelude"], env)
        exec(msg["python"], env)
        step, n = env["setup"](msg["cfg"])
        state["step"] = step
        reply = {"params": n}
    elif cmd == "step":
        t0, c0 = time.perf_counter(), time.process_time()
        state["step"]()
        reply = {"ms": (time.perf_counter() - t0) * 1000, "cpuMs": (time.process_time() - c0) * 1000}
    elif cmd == "free":
        state.clear()
        reply = {}
    else:
        break
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
`;

/** A PyTorch process that builds one bench model at a time and times single steps on request. */
class TorchWorker {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  constructor(threads: number) {
    this.proc = spawn(PYTHON, ["-c", WORKER, String(threads)], { stdio: ["pipe", "pipe", "pipe"] });
    this.proc.stderr.on("data", (d) => process.stderr.write(d));
    this.lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  }
  async request(msg: Record<string, unknown>): Promise<Record<string, number>> {
    this.proc.stdin.write(JSON.stringify(msg) + "\n");
    const r = await this.lines.next();
    if (r.done) throw new Error("the PyTorch bench worker exited");
    return JSON.parse(r.value);
  }
  close(): void {
    this.proc.stdin.end();
  }
}

/**
 * Time each bench on both sides with the steps interleaved (vlpkit, PyTorch, vlpkit, ...), so a
 * busy machine slows both alike; the median of `iters` steps after `warmup` steps each.
 */
export async function runBenches(benches: ModelBench[], o: { shape: BenchShape; warmup: number; iters: number; threads: number }): Promise<BenchResult[]> {
  const worker = new TorchWorker(o.threads);
  const results: BenchResult[] = [];
  try {
    for (const b of benches) {
      const t = b.ts(o.shape);
      const { params } = await worker.request({ cmd: "setup", prelude: b.prelude ?? PY_MODELS, python: b.python, cfg: { ...b.pyConfig, ...o.shape } });
      const tsTimes: number[] = [];
      const pyTimes: number[] = [];
      const tsCpu: number[] = [];
      const pyCpu: number[] = [];
      for (let i = 0; i < o.warmup + o.iters; i++) {
        t.reset();
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        t.step();
        const ms = performance.now() - t0;
        const c = process.cpuUsage(c0);
        const py = await worker.request({ cmd: "step" });
        if (i >= o.warmup) {
          tsTimes.push(ms);
          pyTimes.push(py.ms);
          tsCpu.push((c.user + c.system) / 1000);
          pyCpu.push(py.cpuMs);
        }
      }
      await worker.request({ cmd: "free" });
      const r: BenchResult = {
        name: b.name,
        vlpkitMs: median(tsTimes),
        torchMs: median(pyTimes),
        ratio: median(tsTimes) / median(pyTimes),
        vlpkitCpuMs: median(tsCpu),
        torchCpuMs: median(pyCpu),
        cpuRatio: median(tsCpu) / median(pyCpu),
        parameters: t.parameters,
        torchParameters: params,
      };
      t.dispose();
      console.log(`${b.name.padEnd(14)} vlpkit ${tsTimes.map((x) => x.toFixed(0)).join(" ")} ms | PyTorch ${pyTimes.map((x) => x.toFixed(0)).join(" ")} ms`);
      results.push(r);
    }
  } finally {
    worker.close();
  }
  return results;
}

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

async function main(): Promise<void> {
  const threads = Number(arg("threads", String(getNumThreads())));
  setNumThreads(threads);
  const shape: BenchShape = { batch: Number(arg("batch", "8")), words: Number(arg("words", "20")), regions: Number(arg("regions", "36")), featDim: Number(arg("feat-dim", "2048")) };
  const only = arg("only", "");
  const benches = ALL_BENCHES.map((f) => f()).filter((b) => !only || only.split(",").includes(b.name));
  const warmup = Number(arg("warmup", "2"));
  const iters = Number(arg("iters", "5"));
  console.log(`forward+backward, batch ${shape.batch}, ${shape.words} words, ${shape.regions} regions, ${shape.featDim}-d features, ${threads} threads, median of ${iters} after ${warmup} warm-up (OMP_WAIT_POLICY=${process.env.OMP_WAIT_POLICY ?? "unset"})`);
  const results = await runBenches(benches, { shape, warmup, iters, threads });
  console.log("\nmodel          wall: vlpkit ms  PyTorch ms  ratio | cpu: vlpkit ms  PyTorch ms  ratio | parameters");
  for (const r of results) {
    const params = Object.entries(r.parameters).map(([k, v]) => `${k} ${(v / 1e6).toFixed(2)}M`).join(", ");
    console.log(
      `${r.name.padEnd(14)} ${r.vlpkitMs.toFixed(1).padStart(15)} ${r.torchMs.toFixed(1).padStart(11)} ${r.ratio.toFixed(3).padStart(6)} | ` +
        `${r.vlpkitCpuMs.toFixed(1).padStart(14)} ${r.torchCpuMs.toFixed(1).padStart(11)} ${r.cpuRatio.toFixed(3).padStart(6)} | ${params} (PyTorch total ${(r.torchParameters / 1e6).toFixed(2)}M)`,
    );
  }
  const worst = Math.max(...results.map((r) => r.ratio));
  const worstCpu = Math.max(...results.map((r) => r.cpuRatio));
  console.log(`\nworst ratio: wall ${worst.toFixed(3)}, cpu ${worstCpu.toFixed(3)} (target <= 1.10): ${worst <= 1.1 ? "ok" : "ABOVE TARGET"}`);
  console.log(`load average now ${os.loadavg().map((x) => x.toFixed(1)).join(" ")} on ${os.cpus().length} cores (a loaded machine makes wall times noisy; compare the cpu columns then)`);
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("bench/models.ts")) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
