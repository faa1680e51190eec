// Engine benchmark: vlpkit vs PyTorch (Debian's 1.13 at /usr/bin/python3) in one run, same thread
// count (torch.set_num_threads(getNumThreads())), the two engines alternated in short rounds (a few
// calls or steps each) so that both see the same machine load; every figure is a median.
//
//   (a) matmul GFLOP/s for [M,K] x [K,N]: 128x768x768, 512x768x3072, 2048x768x768 (target ratio >= 0.95)
//   (b) ms per training step (forward + backward + AdamW) of one BERT-base encoder layer: hidden 768,
//       12 heads, FFN 3072, post-LN, erf-GELU, dropout 0.1, batch 16, seq 64 (target ratio <= 1.10)
//
//   (c) each in float32 and under bfloat16 autocast (--precision fp32,bf16): vlpkit's autocast() vs
//       torch.autocast("cpu", dtype=torch.bfloat16), forward + loss under autocast, backward and AdamW
//       outside; every figure also as a fraction of the CPU's peak (cores x clock x FLOP/cycle from
//       its flags, src/engine/cpu.ts; bf16 peak: AMX 1024, AVX512-BF16 2x float32 FLOP/cycle)
//
//   node --import tsx bench/engine.ts [--mm-rounds 40] [--reps 3] [--rounds 10] [--steps 2] [--threads N] [--only matmul|layer] [--precision fp32,bf16]
//
// On a busy machine wall-clock times are noisy: the alternation exposes both engines to the same
// load, and the CPU time per layer step (all threads, from process.cpuUsage / time.process_time) is
// printed as a second, load-insensitive view.
import { spawn } from "node:child_process";
import readline from "node:readline";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Tensor, Generator, randn, zeros, noGrad, getNumThreads, setNumThreads, liveTensors, buildInfo, call } from "../src/engine/tensor.ts";
import { tidy } from "../src/engine/scope.ts";
import * as F from "../src/engine/functional.ts";
import { autocast } from "../src/engine/precision.ts";
import { machinePeak, machineLines, loadLine, pct } from "./machine.ts";
import { Module, Linear, LayerNorm, Dropout } from "../src/engine/nn.ts";

const PYTHON = process.env.VLP_TORCH_PYTHON ?? "/usr/bin/python3";

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const ROUNDS = Number(arg("rounds", "10"));
const MM_ROUNDS = Number(arg("mm-rounds", "40"));
const REPS = Number(arg("reps", "3"));
const STEPS = Number(arg("steps", "2"));
const ONLY = arg("only", "");
const PRECS = arg("precision", "fp32,bf16").split(",") as ("fp32" | "bf16")[];
if (arg("threads", "")) setNumThreads(Number(arg("threads", "")));
const THREADS = getNumThreads();

const median = (xs: number[]): number => {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ---- the PyTorch side: a child process answering one JSON command per line --------------------------------

const PY = String.raw`
import json, math, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)

class Layer(nn.Module):
    """The same BERT encoder layer as bench/engine.ts (post-LN, erf-GELU, dropout)."""
    def __init__(s, h, heads, ffn, p):
        super().__init__()
        s.heads = heads
        s.q = nn.Linear(h, h); s.k = nn.Linear(h, h); s.v = nn.Linear(h, h); s.o = nn.Linear(h, h)
        s.ln1 = nn.LayerNorm(h, eps=1e-12); s.f1 = nn.Linear(h, ffn); s.f2 = nn.Linear(ffn, h); s.ln2 = nn.LayerNorm(h, eps=1e-12)
        s.drop = nn.Dropout(p)
    def forward(s, x, mask):
        B, L, H = x.shape
        dh = H // s.heads
        split = lambda t: t.view(B, L, s.heads, dh).transpose(1, 2)
        q, k, v = split(s.q(x)), split(s.k(x)), split(s.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh) + mask
        probs = s.drop(F.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(B, L, H)
        h = s.ln1(x + s.drop(s.o(ctx)))
        return s.ln2(h + s.drop(s.f2(F.gelu(s.f1(h)))))

st = {}
for line in sys.stdin:
    c = json.loads(line)
    op = c["op"]
    if op == "mm_setup":
        st["a"] = torch.randn(c["m"], c["k"]); st["b"] = torch.randn(c["k"], c["n"])
        out = {"ok": True}
    elif op == "mm":
        a, b = st["a"], st["b"]
        ts = []
        for _ in range(c["reps"]):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.get("bf16", False)):
                t0 = time.perf_counter(); y = torch.mm(a, b); ts.append(time.perf_counter() - t0); del y
        out = {"times": ts}
    elif op == "layer_setup":
        layer = Layer(c["hidden"], c["heads"], c["ffn"], c["dropout"]); layer.train()
        opt = torch.optim.AdamW(layer.parameters(), lr=1e-4, weight_decay=0.01)
        x = torch.randn(c["batch"], c["seq"], c["hidden"])
        mask = torch.zeros(c["batch"], 1, 1, c["seq"])
        st.update(layer=layer, opt=opt, x=x, mask=mask)
        out = {"params": sum(p.numel() for p in layer.parameters())}
    elif op == "layer":
        layer, opt, x, mask = st["layer"], st["opt"], st["x"], st["mask"]
        ts, cpu = [], []
        for _ in range(c["steps"]):
            t0 = time.perf_counter(); c0 = time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.get("bf16", False)):
                y = layer(x, mask)
                loss = y.pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            ts.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
        out = {"times": ts, "cpu": cpu, "loss": loss.item()}
    elif op == "quit":
        break
    print(json.dumps(out), flush=True)
`;

class PyEngine {
  private proc = spawn(PYTHON, ["-c", PY, String(THREADS)], { stdio: ["pipe", "pipe", "inherit"] });
  private lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  async send(cmd: Record<string, unknown>): Promise<any> {
    this.proc.stdin.write(JSON.stringify(cmd) + "\n");
    const r = await this.lines.next();
    if (r.done) throw new Error("the PyTorch process exited");
    return JSON.parse(r.value);
  }
  async close(): Promise<void> {
    this.proc.stdin.write(JSON.stringify({ op: "quit" }) + "\n");
    this.proc.stdin.end();
    await new Promise((r) => this.proc.on("exit", r));
  }
}

// ---- vlpkit side ----------------------------------------------------------------------------------------------

/** The BERT-base encoder layer (BertLayer: self-attention, add & LN, FFN, add & LN). */
class Layer extends Module {
  readonly q: Linear; readonly k: Linear; readonly v: Linear; readonly o: Linear;
  readonly ln1: LayerNorm; readonly f1: Linear; readonly f2: Linear; readonly ln2: LayerNorm;
  readonly drop: Dropout;
  constructor(hidden: number, readonly heads: number, ffn: number, p: number) {
    super();
    this.q = this.module("q", new Linear(hidden, hidden));
    this.k = this.module("k", new Linear(hidden, hidden));
    this.v = this.module("v", new Linear(hidden, hidden));
    this.o = this.module("o", new Linear(hidden, hidden));
    this.ln1 = this.module("ln1", new LayerNorm(hidden, 1e-12));
    this.f1 = this.module("f1", new Linear(hidden, ffn));
    this.f2 = this.module("f2", new Linear(ffn, hidden));
    this.ln2 = this.module("ln2", new LayerNorm(hidden, 1e-12));
    this.drop = this.module("drop", new Dropout(p));
  }
  forward(x: Tensor, mask: Tensor): Tensor {
    const [B, L, H] = x.shape;
    const dh = H / this.heads;
    const split = (t: Tensor) => t.view(B, L, this.heads, dh).transpose(1, 2);
    const q = split(this.q.forward(x));
    const k = split(this.k.forward(x));
    const v = split(this.v.forward(x));
    const scores = q.matmul(k.transpose(-1, -2)).div(Math.sqrt(dh)).add(mask);
    const probs = this.drop.forward(scores.softmax(-1));
    const ctx = probs.matmul(v).transpose(1, 2).reshape(B, L, H);
    const h = this.ln1.forward(x.add(this.drop.forward(this.o.forward(ctx))));
    return this.ln2.forward(h.add(this.drop.forward(this.f2.forward(F.gelu(this.f1.forward(h))))));
  }
}

interface Stepper {
  step(): void;
  zeroGrad(): void;
}

/** AdamW written inline with in-place ops (used only when src/engine/optim.ts does not exist). */
function inlineAdamW(params: Tensor[], lr = 1e-4, wd = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8): Stepper {
  const m = params.map((p) => tidy(() => zeros(p.shape)).keep());
  const v = params.map((p) => tidy(() => zeros(p.shape)).keep());
  let t = 0;
  return {
    step: () => tidy(() => noGrad(() => {
      t++;
      const bc1 = 1 - b1 ** t;
      const bc2 = Math.sqrt(1 - b2 ** t);
      params.forEach((p, i) => {
        const g = p.grad;
        if (!g) return;
        p.mul_(1 - lr * wd);
        m[i].mul_(b1).add_(g, 1 - b1);
        v[i].mul_(b2).addcmul_(g, g, 1 - b2);
        p.addcdiv_(m[i], v[i].sqrt().div_(bc2).add_(eps), -lr / bc1);
      });
    })),
    zeroGrad: () => {
      for (const p of params) {
        const g = p.grad;
        if (g) {
          p.grad = null;
          g.dispose();
        }
      }
    },
  };
}

async function makeAdamW(params: Tensor[]): Promise<{ opt: Stepper; which: string }> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const file = path.join(here, "..", "src", "engine", "optim.ts");
  if (existsSync(file)) {
    const mod: any = await import(file);
    if (typeof mod.AdamW === "function") return { opt: new mod.AdamW(params, { lr: 1e-4, weightDecay: 0.01 }), which: "src/engine/optim.ts AdamW" };
  }
  return { opt: inlineAdamW(params), which: "inline AdamW (in-place ops; src/engine/optim.ts not found)" };
}

function timeIt(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

// ---- main -------------------------------------------------------------------------------------------------------

const PEAK = machinePeak(THREADS);
/** Throughputs (vlpkit, PyTorch) by "benchmark|precision", for the speed-up table. */
const speed: Record<string, [number, number]> = {};

async function main(): Promise<void> {
  const info = buildInfo();
  console.log(`# vlpkit engine bench: libtorch ${info.torchVersion}, ${THREADS} thread(s) in both engines, OMP_WAIT_POLICY=${process.env.OMP_WAIT_POLICY ?? "(default)"} (inherited by PyTorch); medians`);
  for (const line of [...machineLines(THREADS, PEAK), loadLine()]) console.log(`# ${line}`);
  const py = new PyEngine();
  const rows: string[][] = [];
  const gen = new Generator(0);

  if (ONLY === "" || ONLY === "matmul") {
    const shapes = (process.env.VLP_BENCH_SHAPES ?? "128x768x768,512x768x3072,2048x768x768").split(",").map((x) => x.split("x").map(Number));
    for (const [M, K, N] of shapes) for (const prec of PRECS) {
      const flop = 2 * M * K * N;
      const bf16 = prec === "bf16";
      const a = tidy(() => randn([M, K], { generator: gen })).keep();
      const b = tidy(() => randn([K, N], { generator: gen })).keep();
      await py.send({ op: "mm_setup", m: M, k: K, n: N });
      const mine: number[] = [];
      const theirs: number[] = [];
      const runMine = () => {
        for (let r = 0; r < REPS; r++) {
          let y: Tensor | undefined;
          mine.push(timeIt(() => (y = bf16 ? autocast("bfloat16", () => call<Tensor>("aten::mm", a, b)) : call<Tensor>("aten::mm", a, b))));
          y!.dispose(); // freed outside the timed region, as Python's `del y`
        }
      };
      runMine(); // warm-up for both
      await py.send({ op: "mm", reps: REPS, bf16 });
      mine.length = 0;
      for (let round = 0; round < MM_ROUNDS; round++) {
        if (round % 2 === 0) {
          runMine();
          theirs.push(...(await py.send({ op: "mm", reps: REPS, bf16 })).times);
        } else {
          theirs.push(...(await py.send({ op: "mm", reps: REPS, bf16 })).times);
          runMine();
        }
      }
      a.dispose();
      b.dispose();
      const gMine = flop / median(mine) / 1e9;
      const gTheirs = flop / median(theirs) / 1e9;
      const pk = bf16 ? PEAK.bf16 : PEAK.fp32;
      speed[`matmul ${M}x${K}x${N}|${prec}`] = [gMine, gTheirs];
      rows.push([`matmul ${M}x${K}x${N}`, prec, `${gMine.toFixed(1)} GFLOP/s`, `${gTheirs.toFixed(1)} GFLOP/s`, (gMine / gTheirs).toFixed(3), pct(gMine / pk), pct(gTheirs / pk), ">= 0.95", gMine / gTheirs >= 0.95 ? "yes" : "NO"]);
      console.log(`# ${rows[rows.length - 1].join(" | ")}`);
    }
  }

  let adamNote = "";
  if (ONLY === "" || ONLY === "layer") for (const prec of PRECS) {
    const bf16 = prec === "bf16";
    const cfg = { hidden: 768, heads: 12, ffn: 3072, dropout: 0.1, batch: 16, seq: 64 };
    const layer = new Layer(cfg.hidden, cfg.heads, cfg.ffn, cfg.dropout).train();
    const { opt, which } = await makeAdamW(layer.parameters());
    adamNote = which;
    const x = tidy(() => randn([cfg.batch, cfg.seq, cfg.hidden], { generator: gen })).keep();
    const mask = zeros([cfg.batch, 1, 1, cfg.seq]).keep();
    const pyParams = (await py.send({ op: "layer_setup", ...cfg })).params;
    let loss = 0;
    const stepMine = () => {
      loss = tidy(() => {
        // forward + loss under autocast (bf16), backward and the optimizer outside, as with torch.autocast
        const l = bf16 ? autocast("bfloat16", () => layer.forward(x, mask).pow(2).mean()) : layer.forward(x, mask).pow(2).mean();
        l.backward();
        opt.step();
        opt.zeroGrad();
        return l.item();
      });
    };
    const mine: number[] = [];
    const mineCpu: number[] = [];
    const theirs: number[] = [];
    const theirsCpu: number[] = [];
    const runMine = () => {
      for (let s = 0; s < STEPS; s++) {
        const c0 = process.cpuUsage();
        mine.push(timeIt(stepMine));
        const c = process.cpuUsage(c0);
        mineCpu.push((c.user + c.system) / 1e6);
      }
    };
    const runTheirs = async () => {
      const r = await py.send({ op: "layer", steps: STEPS, bf16 });
      theirs.push(...r.times);
      theirsCpu.push(...r.cpu);
    };
    runMine(); // warm-up (optimizer state, allocator)
    await runTheirs();
    mine.length = mineCpu.length = theirs.length = theirsCpu.length = 0;
    const live0 = liveTensors();
    for (let round = 0; round < ROUNDS; round++) {
      if (round % 2 === 0) {
        runMine();
        await runTheirs();
      } else {
        await runTheirs();
        runMine();
      }
    }
    if (liveTensors() !== live0) throw new Error(`the training step leaked ${liveTensors() - live0} tensors`);
    const msMine = median(mine) * 1000;
    const msTheirs = median(theirs) * 1000;
    // FLOP of a step: 3x the forward's matmuls (forward, and backward's two per matmul)
    const tokens = cfg.batch * cfg.seq;
    const stepFlop = 3 * (2 * tokens * (4 * cfg.hidden * cfg.hidden + 2 * cfg.hidden * cfg.ffn) + 2 * 2 * cfg.batch * cfg.seq * cfg.seq * cfg.hidden);
    const pk = bf16 ? PEAK.bf16 : PEAK.fp32;
    const frac = (ms: number) => pct(stepFlop / (ms / 1000) / 1e9 / pk);
    speed[`layer|${prec}`] = [1 / msMine, 1 / msTheirs];
    rows.push([`BERT-base layer train step (fwd+bwd+AdamW), batch ${cfg.batch}x${cfg.seq}`, prec, `${msMine.toFixed(1)} ms`, `${msTheirs.toFixed(1)} ms`, (msMine / msTheirs).toFixed(3), frac(msMine), frac(msTheirs), "<= 1.10", msMine / msTheirs <= 1.1 ? "yes" : "NO"]);
    const cpuMine = median(mineCpu) * 1000;
    const cpuTheirs = median(theirsCpu) * 1000;
    rows.push([`same, CPU time per step (all threads)`, prec, `${cpuMine.toFixed(1)} ms`, `${cpuTheirs.toFixed(1)} ms`, (cpuMine / cpuTheirs).toFixed(3), "", "", "(info)", ""]);
    console.log(`# ${rows[rows.length - 2].join(" | ")} (params ${layer.numParameters()} vs ${pyParams}; last loss ${loss.toFixed(4)}; CPU ${cpuMine.toFixed(1)} vs ${cpuTheirs.toFixed(1)} ms)`);
    x.dispose();
    mask.dispose();
    layer.dispose();
    (opt as { dispose?: () => void }).dispose?.();
  }
  await py.close();

  console.log("");
  console.log("| benchmark | precision | vlpkit | PyTorch 1.13 | ratio | vlpkit % of peak | PyTorch % of peak | target | met |");
  console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
  const ups = Object.keys(speed).filter((k) => k.endsWith("|bf16") && speed[k.replace("|bf16", "|fp32")]);
  if (ups.length) {
    console.log("");
    console.log("| benchmark | vlpkit bf16 over vlpkit fp32 | PyTorch bf16 over PyTorch fp32 | vlpkit bf16 over PyTorch fp32 |");
    console.log("| --- | ---: | ---: | ---: |");
    for (const k of ups) {
      const [mb, tb] = speed[k];
      const [mf, tf] = speed[k.replace("|bf16", "|fp32")];
      console.log(`| ${k.replace("|bf16", "")} | ${(mb / mf).toFixed(2)}x | ${(tb / tf).toFixed(2)}x | ${(mb / tf).toFixed(2)}x |`);
    }
  }
  console.log("");
  console.log(`threads: ${THREADS} (both engines); matmul: median of ${MM_ROUNDS}x${REPS} timed calls each; layer: median of ${ROUNDS}x${STEPS} steps each; ratio = vlpkit/PyTorch throughput for matmul, time for the layer.`);
  if (adamNote) console.log(`optimizer: vlpkit ${adamNote}; PyTorch torch.optim.AdamW (lr 1e-4, weight decay 0.01).`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
