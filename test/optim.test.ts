// Optimizers, schedules, clipping and accumulation against Debian's PyTorch 1.13 (/usr/bin/python3).
// Both sides run the same libtorch (libtorch_cpu.so.1.13) on one thread from the same initial
// weights and data (written by our safetensors writer, read in Python with json+struct+frombuffer),
// and our updates issue the same ATen operators as torch.optim's, so trajectories agree to the
// bit; the asserted bound is 1e-6 relative, the only scalar-level difference being V8's Math.pow
// vs glibc's pow in the bias corrections (1 ulp in double, then rounded to float32 by the kernels).
import { test } from "node:test";
import { PY_LOAD_SAFETENSORS } from "./torchref.ts";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { F, Generator, LayerNorm, Linear, Module, liveTensors, randint, randn, setNumThreads, tensor, tidy, zerosLike, type Tensor } from "../src/engine/index.ts";
import { Adam, AdamW, SGD, defaultNoDecay, paramGroupsNoDecay, type Optimizer, type ParamGroupSpec } from "../src/engine/optim.ts";
import { applyLr, constantWithWarmup, cosineDecay, linearWarmupDecay, makeSchedule, polynomialDecay, type ScheduleConfig } from "../src/engine/schedule.ts";
import { GradAccumulator, clipGradNorm, hasNonFinite, hasNonFiniteGrad } from "../src/engine/grad.ts";
import { loadStateDictFile, saveStateDict } from "../src/engine/checkpoint.ts";

setNumThreads(1);
const dir = mkdtempSync(join(tmpdir(), "vlp-optim-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

class MLP extends Module {
  fc1 = this.module("fc1", new Linear(6, 16));
  ln = this.module("ln", new LayerNorm(16));
  fc2 = this.module("fc2", new Linear(16, 4));
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.ln.forward(this.fc1.forward(x).tanh()));
  }
}

// Fixed initial weights and data, shared with Python through safetensors files.
const gen = new Generator(1234);
const initModel = new MLP();
for (const p of initModel.parameters()) F.normal_(p, 0, 0.5, gen);
saveStateDict(join(dir, "init.safetensors"), initModel);
const x = randn([16, 6], { generator: gen }).keep();
const y = randint(0, 4, [16], { generator: gen }).keep();
saveStateDict(join(dir, "data.safetensors"), new Map([["x", x], ["y", y]]));

function freshModel(): MLP {
  const m = new MLP();
  const init = loadStateDictFile(join(dir, "init.safetensors"));
  m.loadStateDict(init);
  for (const t of init.values()) t.dispose();
  return m;
}

const PY_PRELUDE = `
import json, struct, sys, math, torch
import torch.nn.functional as F
torch.set_num_threads(1)
${PY_LOAD_SAFETENSORS}
class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 16)
        self.ln = torch.nn.LayerNorm(16)
        self.fc2 = torch.nn.Linear(16, 4)
    def forward(self, x):
        return self.fc2(self.ln(torch.tanh(self.fc1(x))))
`;

const PY_TRAIN = `${PY_PRELUDE}
cfg = json.load(open(sys.argv[1]))
d = sys.argv[2]
m = MLP()
m.load_state_dict(load_st(d + "/init.safetensors"))
data = load_st(d + "/data.safetensors")
x, y = data["x"], data["y"]
for n in cfg["frozen"]:
    m.get_parameter(n).requires_grad_(False)
named = dict(m.named_parameters())
groups = []
for g in cfg["groups"]:
    g = dict(g)
    g["params"] = [named[n] for n in g.pop("names")]
    groups.append(g)
Opt = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam, "SGD": torch.optim.SGD}[cfg["opt"]]
opt = Opt(groups, **cfg["kwargs"])
sch = cfg["schedule"]
def lam(step):  # transformers.get_linear_schedule_with_warmup's lr_lambda
    w, T = sch["warmup"], sch["total"]
    if step < w:
        return float(step) / float(max(1, w))
    return max(0.0, float(T - step) / float(max(1, T - w)))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lam) if sch else None
losses, norms = [], []
for step in range(cfg["steps"]):
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(m(x), y)
    loss.backward()
    if cfg["clip"]:
        norms.append(torch.nn.utils.clip_grad_norm_(m.parameters(), cfg["clip"]["max"], cfg["clip"]["norm_type"]).item())
    opt.step()
    if sched:
        sched.step()
    losses.append(loss.item())
json.dump({"losses": losses, "norms": norms,
           "params": {n: p.detach().double().flatten().tolist() for n, p in m.named_parameters()}}, sys.stdout)
`;

interface TorchResult {
  losses: number[];
  norms: number[];
  params: Record<string, number[]>;
}

interface TrainConfig {
  opt: "AdamW" | "Adam" | "SGD";
  kwargs: Record<string, unknown>;
  steps: number;
  schedule: ({ warmup: number; total: number }) | null;
  clip: { max: number; norm_type: number } | null;
  frozen: string[];
}

let runs = 0;
function runTorch(cfg: TrainConfig, groups: { names: string[]; [k: string]: unknown }[]): TorchResult {
  const path = join(dir, `cfg-${runs++}.json`);
  writeFileSync(path, JSON.stringify({ ...cfg, groups }));
  return JSON.parse(execFileSync("/usr/bin/python3", ["-c", PY_TRAIN, path, dir], { encoding: "utf8", maxBuffer: 1 << 26 })) as TorchResult;
}

/** Train our model like PY_TRAIN; returns losses, clip norms, parameters and the torch groups matching ours. */
function runOurs(cfg: TrainConfig, makeOpt: (m: MLP) => Optimizer<object>) {
  const m = freshModel();
  const names = new Map(m.namedParameters().map(([n, p]) => [p, n]));
  for (const n of cfg.frozen) new Map(m.namedParameters()).get(n)!.requiresGrad_(false);
  const opt = makeOpt(m);
  const groups = opt.groups.map((g) => {
    const { params, initialLr, lrScale, weightDecay, lr: _lr, name: _name, ...rest } = g as typeof g & { name?: string };
    return { names: params.map((p) => names.get(p)!), lr: initialLr * lrScale, weight_decay: weightDecay, ...rest };
  });
  const sched: ScheduleConfig | null = cfg.schedule ? { kind: "linear", ...cfg.schedule } : null;
  const losses: number[] = [];
  const norms: number[] = [];
  for (let step = 0; step < cfg.steps; step++) {
    if (sched) applyLr(opt, step, sched);
    losses.push(
      tidy(() => {
        const loss = F.crossEntropy(m.forward(x), y);
        loss.backward();
        if (cfg.clip) norms.push(clipGradNorm(m.parameters(), cfg.clip.max, cfg.clip.norm_type));
        opt.step();
        opt.zeroGrad();
        return loss.item();
      }),
    );
  }
  const params = Object.fromEntries(m.namedParameters().map(([n, p]) => [n, Array.from(p.toFloat32Array())]));
  const result = { losses, norms, params, groups, model: m, opt };
  return result;
}

/** Largest |a - b| / max(|a|, |b|) (0 when both are 0) and the count of elements that differ at all. */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): { rel: number; differing: number } {
  assert.equal(a.length, b.length);
  let rel = 0;
  let differing = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    differing++;
    rel = Math.max(rel, Math.abs(a[i] - b[i]) / Math.max(Math.abs(a[i]), Math.abs(b[i])));
  }
  return { rel, differing };
}

function compareWithTorch(t: { diagnostic(s: string): void }, cfg: TrainConfig, makeOpt: (m: MLP) => Optimizer<object>) {
  const ours = runOurs(cfg, makeOpt);
  const ref = runTorch(cfg, ours.groups);
  let worst = relDiff(ours.losses, ref.losses);
  assert.ok(worst.rel <= 1e-6, `losses differ by ${worst.rel}`);
  if (cfg.clip) {
    const n = relDiff(ours.norms, ref.norms);
    assert.ok(n.rel <= 1e-6, `clip norms differ by ${n.rel}`);
  }
  let changed = 0;
  const init = freshModel();
  const initParams = new Map(init.namedParameters());
  for (const [name, values] of Object.entries(ref.params)) {
    const d = relDiff(ours.params[name], values);
    assert.ok(d.rel <= 1e-6, `${name} differs from torch by ${d.rel} relative`);
    worst = { rel: Math.max(worst.rel, d.rel), differing: worst.differing + d.differing };
    if (relDiff(ours.params[name], initParams.get(name)!.toFloat32Array()).differing > 0) changed++;
  }
  init.dispose();
  assert.ok(changed >= 5, "the parameters must have moved");
  assert.ok(ours.losses[cfg.steps - 1] < ours.losses[0], "the loss must go down");
  t.diagnostic(`${cfg.opt}: max relative difference to torch ${worst.rel}, ${worst.differing} differing values`);
  ours.opt.dispose();
  ours.model.dispose();
  return ours;
}

const base = { steps: 20, schedule: null, clip: null, frozen: [] as string[] };

test("AdamW with no-decay groups, lr multipliers, a warmup schedule and clipping matches torch.optim.AdamW", (t) => {
  const cfg: TrainConfig = { ...base, opt: "AdamW", kwargs: { lr: 0.02, betas: [0.9, 0.98], eps: 1e-6, weight_decay: 0.1 }, schedule: { warmup: 4, total: 20 }, clip: { max: 0.5, norm_type: 2 } };
  for (const foreach of [true, false]) {
    compareWithTorch(t, cfg, (m) =>
      new AdamW(paramGroupsNoDecay(m, 0.1, { lrScale: (n) => (n.startsWith("fc2") ? 2 : n.startsWith("fc1") ? 0.5 : 1) }), { lr: 0.02, betas: [0.9, 0.98], eps: 1e-6, foreach }),
    );
  }
});

test("Adam (L2 decay in the gradient) with a frozen parameter matches torch.optim.Adam", (t) => {
  const cfg: TrainConfig = { ...base, opt: "Adam", kwargs: { lr: 0.01, weight_decay: 0.05 }, frozen: ["fc1.bias"] };
  for (const foreach of [true, false]) {
    const ours = compareWithTorch(t, cfg, (m) => new Adam(m.parameters(), { lr: 0.01, weightDecay: 0.05, foreach }));
    assert.deepEqual(ours.params["fc1.bias"], Array.from(initModel.fc1.bias!.toFloat32Array()), "a frozen parameter must not move");
  }
});

test("SGD (plain, momentum with dampening, Nesterov, weight decay) matches torch.optim.SGD", (t) => {
  const variants = [
    { lr: 0.1 },
    { lr: 0.05, momentum: 0.9, dampening: 0.1, weight_decay: 1e-3 },
    { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 1e-2 },
  ];
  for (const kw of variants) {
    for (const foreach of [true, false]) {
      compareWithTorch(t, { ...base, opt: "SGD", kwargs: kw }, (m) =>
        new SGD(m.parameters(), { lr: kw.lr, momentum: kw.momentum, dampening: kw.dampening, nesterov: kw.nesterov, weightDecay: kw.weight_decay, foreach }),
      );
    }
  }
});

test("paramGroupsNoDecay puts biases and norm weights in a no-decay group; decay and lr multipliers act per group", () => {
  const m = freshModel();
  const groups = paramGroupsNoDecay(m, 0.1, { lrScale: (n) => (n.startsWith("fc2") ? 2 : 1) });
  const names = new Map(m.namedParameters().map(([n, p]) => [p, n]));
  const byName = Object.fromEntries(groups.map((g) => [g.name, g.params.map((p) => names.get(p))]));
  assert.deepEqual(byName, { decay: ["fc1.weight"], no_decay: ["fc1.bias", "ln.weight", "ln.bias"], "decay@2": ["fc2.weight"], "no_decay@2": ["fc2.bias"] });
  assert.deepEqual(groups.map((g) => g.weightDecay), [0.1, 0, 0.1, 0]);
  assert.equal(defaultNoDecay("encoder.layer.0.attention.output.LayerNorm.weight", m.fc1.weight), true);
  assert.equal(defaultNoDecay("blocks.0.norm1.weight", m.fc1.weight), true);
  assert.equal(defaultNoDecay("fc1.weight", m.fc1.weight), false);
  const custom = paramGroupsNoDecay(m, 0.1, { noDecay: (n) => n === "fc1.weight" });
  assert.equal(custom.find((g) => g.name === "no_decay")!.params.length, 1);

  // With zero gradients Adam's moments stay 0, so AdamW only applies p <- p * (1 - lr * lrScale * wd).
  const lr = 0.5;
  const opt = new AdamW(groups as ParamGroupSpec[], { lr });
  const before = new Map(m.namedParameters().map(([n, p]) => [n, p.toFloat32Array()]));
  tidy(() => {
    for (const p of m.parameters()) p.grad = zerosLike(p);
  });
  opt.step();
  for (const [n, p] of m.namedParameters()) {
    const scale = n.startsWith("fc2") ? 2 : 1;
    const decays = n.endsWith("weight") && !n.startsWith("ln");
    const expected = decays ? tidy(() => tensor(before.get(n)!).mul(1 - lr * scale * 0.1).toFloat32Array()) : before.get(n)!;
    assert.deepEqual(p.toFloat32Array(), expected, n);
  }
  assert.deepEqual(opt.effectiveLrs(), [0.5, 0.5, 1, 1]);
  applyLr(opt, 5, { kind: "linear", warmup: 10, total: 100 });
  assert.deepEqual(opt.effectiveLrs(), [0.25, 0.25, 0.5, 0.5]);
  opt.setLr(0.1);
  assert.deepEqual(opt.effectiveLrs(), [0.1, 0.1, 0.2, 0.2]);
  opt.dispose();
  m.dispose();
});

test("optimizer stateDict/loadStateDict continue the trajectory exactly", () => {
  const trainSteps = (m: MLP, opt: Optimizer<object>, n: number) => {
    for (let i = 0; i < n; i++) {
      tidy(() => {
        F.crossEntropy(m.forward(x), y).backward();
        opt.step();
        opt.zeroGrad();
      });
    }
  };
  for (const make of [(m: MLP) => new AdamW(m.parameters(), { lr: 0.01 }), (m: MLP) => new SGD(m.parameters(), { lr: 0.05, momentum: 0.9 })]) {
    const a = freshModel();
    const optA = make(a);
    trainSteps(a, optA, 6);
    const b = freshModel();
    b.loadStateDict(a.stateDict());
    const optB = make(b);
    optB.loadStateDict(optA.stateDict());
    const sd = optB.stateDict();
    assert.equal(sd.state.size, 6);
    for (const s of sd.state.values()) assert.equal(s.step, 6);
    trainSteps(a, optA, 6);
    trainSteps(b, optB, 6);
    for (const [n, p] of a.namedParameters()) assert.deepEqual(new Map(b.namedParameters()).get(n)!.toFloat32Array(), p.toFloat32Array(), n);
    assert.throws(() => optB.loadStateDict({ ...optA.stateDict(), groups: [] }), /groups/);
    optA.dispose();
    optB.dispose();
    a.dispose();
    b.dispose();
  }
});

test("schedules: linear, polynomial, cosine, constant with warmup (hand-computed and transformers' formulas)", () => {
  // Hand-computed values: warmup 10, total 110.
  const o = { warmup: 10, total: 110 };
  assert.deepEqual([0, 5, 10, 60, 110, 200].map((s) => linearWarmupDecay(s, o)), [0, 0.5, 1, 0.5, 0, 0]);
  assert.equal(linearWarmupDecay(5, { ...o, base: 4e-4 }), 2e-4);
  assert.deepEqual([0, 5, 10, 60, 110, 200].map((s) => constantWithWarmup(s, o)), [0, 0.5, 1, 1, 1, 1]);
  assert.equal(cosineDecay(60, o), 0.5);
  assert.equal(cosineDecay(110, o), 0);
  assert.equal(cosineDecay(60, { ...o, base: 1e-3, min: 1e-4 }), 1e-4 + 0.9e-3 * 0.5);
  assert.equal(cosineDecay(1000, { ...o, min: 0.1 }), 0.1);
  assert.equal(polynomialDecay(60, { ...o, power: 2 }), 0.25);
  assert.ok(Math.abs(polynomialDecay(60, { ...o, base: 1, end: 0.2, power: 1 }) - 0.6) < 1e-15);
  assert.equal(polynomialDecay(500, { ...o, end: 0.2 }), 0.2);
  // Warmup as a fraction of total: 5% of 1000 steps.
  assert.equal(linearWarmupDecay(25, { total: 1000, warmupRatio: 0.05 }), 0.5);
  assert.throws(() => linearWarmupDecay(1, { total: 10, warmup: 1, warmupRatio: 0.1 }));

  // transformers' lr_lambda formulas, restated, over whole runs (including non-integer warmup,
  // which is LXMERT's BertAdam warmup_linear: x < w ? x / w : max((x - 1) / (w - 1), 0), x = step / total).
  const hfLinear = (s: number, w: number, T: number) => (s < w ? s / Math.max(1, w) : Math.max(0, (T - s) / Math.max(1, T - w)));
  const hfCosine = (s: number, w: number, T: number) => (s < w ? s / Math.max(1, w) : Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * ((s - w) / Math.max(1, T - w))))));
  const hfPoly = (s: number, w: number, T: number, init: number, end: number, power: number) => {
    if (s < w) return s / Math.max(1, w);
    if (s > T) return end / init;
    return ((init - end) * (1 - (s - w) / (T - w)) ** power + end) / init;
  };
  const bertAdam = (s: number, ratio: number, T: number) => {
    const xx = s / T;
    return xx < ratio ? xx / ratio : Math.max((xx - 1) / (ratio - 1), 0);
  };
  for (let s = 0; s <= 320; s++) {
    assert.ok(Math.abs(linearWarmupDecay(s, { warmup: 30, total: 300 }) - hfLinear(s, 30, 300)) < 1e-15);
    // Past total transformers' cosine rises again (progress > 1); ours holds the minimum.
    if (s <= 300) assert.ok(Math.abs(cosineDecay(s, { warmup: 30, total: 300 }) - hfCosine(s, 30, 300)) < 1e-15);
    else assert.equal(cosineDecay(s, { warmup: 30, total: 300 }), 0);
    assert.ok(Math.abs(polynomialDecay(s, { warmup: 30, total: 300, base: 1e-4, end: 1e-7, power: 1.5 }) / 1e-4 - hfPoly(s, 30, 300, 1e-4, 1e-7, 1.5)) < 1e-12);
    if (s <= 300) assert.ok(Math.abs(linearWarmupDecay(s, { warmupRatio: 0.05, total: 300 }) - bertAdam(s, 0.05, 300)) < 1e-12);
  }
  const sched = makeSchedule({ kind: "cosine", warmup: 10, total: 110, min: 0.1 });
  assert.equal(sched(60), cosineDecay(60, { warmup: 10, total: 110, min: 0.1 }));
  assert.throws(() => makeSchedule({ kind: "nope" } as unknown as ScheduleConfig), /unknown kind/);
});

const PY_CLIP = `${PY_PRELUDE}
d = sys.argv[1]
m = MLP()
m.load_state_dict(load_st(d + "/init.safetensors"))
data = load_st(d + "/data.safetensors")
m.fc1.bias.requires_grad_(False)
out = []
for max_norm, norm_type in json.loads(sys.argv[2]):
    m.zero_grad(set_to_none=True)
    F.cross_entropy(m(data["x"]), data["y"]).backward()
    total = torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm, norm_type).item()
    out.append({"total": total, "grads": {n: p.grad.double().flatten().tolist() for n, p in m.named_parameters() if p.grad is not None}})
json.dump(out, sys.stdout)
`;

test("clipGradNorm returns torch's total norm and leaves the same clipped gradients (p = 2, 1, 3, inf; clipping on and off)", (t) => {
  const cases: [number, number][] = [[0.1, 2], [100, 2], [0.3, 1], [0.2, 3], [0.05, Infinity]];
  const ref = JSON.parse(execFileSync("/usr/bin/python3", ["-c", PY_CLIP, dir, JSON.stringify(cases).replace("null", "Infinity")], { encoding: "utf8" })) as { total: number; grads: Record<string, number[]> }[];
  const m = freshModel();
  m.fc1.bias!.requiresGrad_(false);
  let worst = 0;
  cases.forEach(([maxNorm, normType], i) => {
    m.zeroGrad();
    tidy(() => F.crossEntropy(m.forward(x), y).backward());
    const total = clipGradNorm(m.parameters(), maxNorm, normType);
    assert.equal(Object.keys(ref[i].grads).length, 5);
    worst = Math.max(worst, relDiff([total], [ref[i].total]).rel);
    for (const [n, g] of Object.entries(ref[i].grads)) {
      const ours = tidy(() => new Map(m.namedParameters()).get(n)!.grad!.toFloat32Array());
      worst = Math.max(worst, relDiff(ours, g).rel);
    }
    if (maxNorm < total) {
      const after = clipGradNorm(m.parameters(), 1e9, normType);
      assert.ok(Math.abs(after - maxNorm) / maxNorm < 1e-5, `clipped norm ${after} should be ${maxNorm}`);
    }
  });
  assert.ok(worst <= 1e-6, `clipping differs from torch by ${worst}`);
  t.diagnostic(`clip_grad_norm: max relative difference to torch ${worst}`);
  assert.equal(clipGradNorm([m.fc1.bias!], 1), 0, "no gradients: norm 0");
  m.dispose();
});

test("GradAccumulator: k micro-batches equal one big batch; flush handles a short last group", () => {
  const bigBatch = (rows: number) => {
    const m = freshModel();
    const opt = new SGD(m.parameters(), { lr: 0.1 });
    tidy(() => F.crossEntropy(m.forward(x.narrow(0, 0, rows)), y.narrow(0, 0, rows)).backward());
    const grads = new Map(m.namedParameters().map(([n, p]) => [n, tidy(() => p.grad!.toFloat32Array())]));
    opt.step();
    return { m, opt, grads };
  };
  for (const [k, micro, rows] of [[4, 4, 16], [4, 3, 12]]) {
    const ref = bigBatch(rows);
    const m = freshModel();
    const opt = new SGD(m.parameters(), { lr: 0.1 });
    const acc = new GradAccumulator(opt, k);
    const results = [];
    for (let i = 0; i < micro; i++) {
      results.push(tidy(() => acc.backward(F.crossEntropy(m.forward(x.narrow(0, i * 4, 4)), y.narrow(0, i * 4, 4)))));
      if (i < micro - 1) assert.equal(results[i], null);
      if (i === micro - 1 && micro < k) {
        assert.equal(results[i], null);
        assert.equal(acc.pending, micro);
        const grads = new Map(m.namedParameters().map(([n, p]) => [n, tidy(() => p.grad!.toFloat32Array())]));
        for (const [n, g] of ref.grads) {
          const scaled = grads.get(n)!.map((v) => (v * k) / micro);
          for (let j = 0; j < g.length; j++) assert.ok(Math.abs(scaled[j] - g[j]) <= 1e-6 + 1e-5 * Math.abs(g[j]), `${n}[${j}]`);
        }
        results[i] = acc.flush();
      }
    }
    assert.deepEqual(results[micro - 1], { stepped: true, gradNorm: undefined, microBatches: micro });
    assert.equal(acc.updates, 1);
    assert.equal(acc.pending, 0);
    const refParams = new Map(ref.m.namedParameters());
    for (const [n, p] of m.namedParameters()) {
      assert.equal(p.grad, null, "gradients are zeroed after the update");
      const a = p.toFloat32Array();
      const b = refParams.get(n)!.toFloat32Array();
      for (let j = 0; j < a.length; j++) assert.ok(Math.abs(a[j] - b[j]) <= 1e-6 + 1e-5 * Math.abs(b[j]), `${n}[${j}]: ${a[j]} vs ${b[j]}`);
    }
    ref.m.dispose();
    m.dispose();
  }
  assert.throws(() => new GradAccumulator(new SGD([], { lr: 1 }), 0));
});

test("hasNonFinite flags NaN and inf in losses, tensors and gradients; GradAccumulator can skip such updates", () => {
  assert.equal(hasNonFinite(NaN), true);
  assert.equal(hasNonFinite(Infinity), true);
  assert.equal(hasNonFinite(1.5), false);
  tidy(() => {
    assert.equal(hasNonFinite(tensor([1, 2, 3])), false);
    assert.equal(hasNonFinite([tensor([1, 2]), tensor([3, -Infinity])]), true);
    assert.equal(hasNonFinite([null, tensor([[1, NaN]]), undefined]), true);
    assert.equal(hasNonFinite(tensor(NaN)), true);
    assert.equal(hasNonFinite(tensor([3.0e38, 3.0e38])), false, "large finite values are not overflow");
    assert.equal(hasNonFinite([]), false);
    assert.equal(hasNonFinite([tensor([1, 2], { dtype: "int64" }), tensor([true])]), false, "integer tensors are always finite");
  });
  const m = freshModel();
  const opt = new SGD(m.parameters(), { lr: 0.1 });
  assert.equal(hasNonFiniteGrad(m.parameters()), false, "no gradients at all");
  tidy(() => F.crossEntropy(m.forward(x), y).backward());
  assert.equal(hasNonFiniteGrad(m.parameters()), false);
  const acc = new GradAccumulator(opt, 1, { skipNonFinite: true, maxGradNorm: 1 });
  const before = m.fc2.weight.toFloat32Array();
  const r = tidy(() => acc.backward(F.crossEntropy(m.forward(x), y).mul(Infinity)));
  assert.deepEqual(r, { stepped: false, microBatches: 1 });
  assert.deepEqual(m.fc2.weight.toFloat32Array(), before, "a non-finite update is skipped");
  assert.equal(m.fc2.weight.grad, null);
  const ok = tidy(() => acc.backward(F.crossEntropy(m.forward(x), y)));
  assert.equal(ok!.stepped, true);
  assert.ok(ok!.gradNorm! > 0);
  m.dispose();
});

test("step() leaks no native tensors; dispose() frees the optimizer state", () => {
  for (const make of [(m: MLP) => new AdamW(m.parameters(), { lr: 0.01 }), (m: MLP) => new SGD(m.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 0.1, nesterov: true }), (m: MLP) => new Adam(m.parameters(), { lr: 0.01, weightDecay: 0.1, foreach: false })]) {
    const m = freshModel();
    const opt = make(m);
    const stepOnce = () => tidy(() => {
      F.crossEntropy(m.forward(x), y).backward();
      clipGradNorm(m.parameters(), 0.1);
      opt.step();
      opt.zeroGrad();
    });
    const before = liveTensors();
    stepOnce();
    const afterFirst = liveTensors();
    const perParam = opt instanceof SGD ? 1 : 2;
    assert.equal(afterFirst - before, perParam * m.parameters().length, "only the new state tensors stay alive");
    for (let i = 0; i < 5; i++) stepOnce();
    assert.equal(liveTensors(), afterFirst, "later steps allocate nothing that survives");
    opt.dispose();
    assert.equal(liveTensors(), before);
    m.dispose();
  }
});
