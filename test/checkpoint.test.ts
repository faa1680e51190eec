// Weights files and training checkpoints: safetensors read by PyTorch 1.13 (/usr/bin/python3),
// torch.save'd state dicts loaded into vlpkit modules, bit-identical resume, and crash safety
// (child processes that SIGKILL themselves at every stage of saveCheckpoint).
import { test } from "node:test";
import { PY_LOAD_SAFETENSORS } from "./torchref.ts";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  Dropout, Embedding, F, Generator, LayerNorm, Linear, Module, manualSeed, randint, randn, setNumThreads, tensor, tidy, zeros, type Tensor,
} from "../src/engine/index.ts";
import { AdamW, SGD, paramGroupsNoDecay, type Optimizer } from "../src/engine/optim.ts";
import { applyLr, type ScheduleConfig } from "../src/engine/schedule.ts";
import { clipGradNorm } from "../src/engine/grad.ts";
import {
  checkpointDir, isCompleteCheckpoint, latestCheckpoint, loadCheckpoint, loadStateDictFile, readTrainerState, resolveCheckpoint, saveCheckpoint, saveStateDict,
} from "../src/engine/checkpoint.ts";
import { readSafetensors } from "../src/engine/serialize/safetensors.ts";

setNumThreads(1);
const root = fileURLToPath(new URL("..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "vlp-ckpt-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
const python = (script: string, ...args: string[]) => execFileSync("/usr/bin/python3", ["-c", script, ...args], { encoding: "utf8", maxBuffer: 1 << 26 });

const PY_READER = `
import json, struct, sys, torch
import torch.nn.functional as F
torch.set_num_threads(1)
${PY_LOAD_SAFETENSORS}`;

/** Weight tying as in BERT's MLM head: the decoder's weight is the embedding matrix. */
class Decoder extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(weight: Tensor) {
    super();
    this.weight = this.param("weight", weight);
    this.bias = this.param("bias", zeros([weight.size(0)]));
  }
}
class TinyLM extends Module {
  emb = this.module("emb", new Embedding(10, 8));
  fc = this.module("fc", new Linear(8, 8));
  ln = this.module("ln", new LayerNorm(8));
  dec = this.module("dec", new Decoder(this.emb.weight));
  forward(ids: Tensor): Tensor {
    return F.linear(this.ln.forward(this.fc.forward(this.emb.forward(ids)).gelu()), this.dec.weight, this.dec.bias);
  }
}

test("a safetensors file written by saveStateDict loads in PyTorch with identical values (all dtypes, tied weights under each name)", () => {
  const g = new Generator(5);
  const src = tidy(() => {
    const f = randn([2, 3], { generator: g });
    return new Map<string, Tensor>([
      ["f32", f],
      ["f64", randn([3], { generator: g, dtype: "float64" })],
      ["f16", randn([4], { generator: g }).half()],
      ["bf16", randn([2, 2], { generator: g }).bfloat16()],
      ["i64", tensor([-3, 0, 2 ** 40], { dtype: "int64" })],
      ["i32", tensor([-7, 9], { dtype: "int32" })],
      ["i16", tensor([-300, 300], { dtype: "int16" })],
      ["i8", tensor([-128, 127], { dtype: "int8" })],
      ["u8", tensor([0, 255], { dtype: "uint8" })],
      ["bool", tensor([true, false, true])],
      ["scalar", tensor(3.25)],
      ["empty", zeros([0, 3])],
      ["noncontig", f.T],
    ]);
  });
  const path = join(dir, "all.safetensors");
  saveStateDict(path, src, { note: "hello" });
  const lm = new TinyLM();
  const lmPath = join(dir, "lm.safetensors");
  saveStateDict(lmPath, lm);

  const out = JSON.parse(python(`${PY_READER}
t, meta = load_st_meta(sys.argv[1])
lm = load_st(sys.argv[2])
json.dump({"meta": meta, "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape), "values": v.double().flatten().tolist()} for k, v in t.items()},
           "lm_keys": sorted(lm.keys()), "tied": bool(torch.equal(lm["emb.weight"], lm["dec.weight"])),
           "emb": lm["emb.weight"].flatten().tolist()}, sys.stdout)
`, path, lmPath)) as { meta: Record<string, string>; tensors: Record<string, { dtype: string; shape: number[]; values: number[] }>; lm_keys: string[]; tied: boolean; emb: number[] };

  assert.deepEqual(out.meta, { format: "pt", note: "hello" });
  const torchDtype: Record<string, string> = { float32: "torch.float32", float64: "torch.float64", float16: "torch.float16", bfloat16: "torch.bfloat16", int64: "torch.int64", int32: "torch.int32", int16: "torch.int16", int8: "torch.int8", uint8: "torch.uint8", bool: "torch.bool" };
  assert.deepEqual(Object.keys(out.tensors).sort(), [...src.keys()].sort());
  for (const [name, t] of src) {
    const r = out.tensors[name];
    assert.equal(r.dtype, torchDtype[t.dtype], name);
    assert.deepEqual(r.shape, t.shape, name);
    assert.deepEqual(r.values, t.dtype === "bool" ? t.toArray().map(Number) : t.toArray(), name);
  }
  assert.deepEqual(out.lm_keys, ["dec.bias", "dec.weight", "emb.weight", "fc.bias", "fc.weight", "ln.bias", "ln.weight"]);
  assert.equal(out.tied, true);
  assert.deepEqual(out.emb, Array.from(lm.emb.weight.toFloat32Array()));

  // Our own reader gives back the same bytes (also when the extension does not say safetensors).
  copyFileSync(path, join(dir, "all.bin"));
  const back = loadStateDictFile(join(dir, "all.bin"));
  for (const [name, t] of src) assert.deepEqual(back.get(name)!.bytes(), t.bytes(), name);
  for (const t of [...back.values(), ...src.values()]) t.dispose();
  lm.dispose();
});

test("a .pth (torch.save of a state_dict) and a legacy-format wrapped .bin load into an equivalent module with identical outputs", () => {
  const out = JSON.parse(python(`${PY_READER}
class TinyLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 8)
        self.fc = torch.nn.Linear(8, 8)
        self.ln = torch.nn.LayerNorm(8)
        self.dec = torch.nn.Linear(8, 10)
        self.dec.weight = self.emb.weight
    def forward(self, ids):
        return self.dec(self.ln(F.gelu(self.fc(self.emb(ids)))))
torch.manual_seed(0)
m = TinyLM()
with torch.no_grad():
    m.ln.weight.normal_(); m.ln.bias.normal_(); m.dec.bias.normal_()
ids = torch.randint(0, 10, (3, 5))
d = sys.argv[1]
torch.save(m.state_dict(), d + "/lm.pth")
torch.save({"model": m.state_dict(), "epoch": 3}, d + "/lm.bin", _use_new_zipfile_serialization=False)
json.dump({"ids": ids.tolist(), "out": m(ids).detach().double().flatten().tolist()}, sys.stdout)
`, dir)) as { ids: number[][]; out: number[] };

  for (const file of ["lm.pth", "lm.bin"]) {
    const m = new TinyLM();
    const sd = loadStateDictFile(join(dir, file));
    assert.deepEqual([...sd.keys()].sort(), ["dec.bias", "dec.weight", "emb.weight", "fc.bias", "fc.weight", "ln.bias", "ln.weight"], file);
    m.loadStateDict(sd);
    assert.equal(m.dec.weight, m.emb.weight, "the tie survives loading");
    const y = tidy(() => Array.from(m.eval().forward(tensor(out.ids, { dtype: "int64" })).toFloat32Array()));
    assert.deepEqual(y, out.out, `${file}: forward outputs must be identical`);
    for (const t of sd.values()) t.dispose();
    m.dispose();
  }
});

// ---- bit-identical resume ------------------------------------------------------------------------------

class Net extends Module {
  fc1 = this.module("fc1", new Linear(6, 32));
  drop = this.module("drop", new Dropout(0.3));
  ln = this.module("ln", new LayerNorm(32));
  fc2 = this.module("fc2", new Linear(32, 4));
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.ln.forward(this.drop.forward(this.fc1.forward(x).gelu())));
  }
}

const schedule: ScheduleConfig = { kind: "linear", warmup: 3, total: 20 };

/** Steps [from, to): data from `gen`, dropout from the default generator, schedule and clipping. */
function train(m: Net, opt: Optimizer<object>, gen: Generator, from: number, to: number): number[] {
  const losses: number[] = [];
  for (let step = from; step < to; step++) {
    applyLr(opt, step, schedule);
    losses.push(
      tidy(() => {
        const x = randn([8, 6], { generator: gen });
        const y = randint(0, 4, [8], { generator: gen });
        const loss = F.crossEntropy(m.forward(x), y);
        loss.backward();
        clipGradNorm(m.parameters(), 1.0);
        opt.step();
        opt.zeroGrad();
        return loss.item();
      }),
    );
  }
  return losses;
}

const makers: Record<string, (m: Net) => Optimizer<object>> = {
  AdamW: (m) => new AdamW(paramGroupsNoDecay(m, 0.01, { lrScale: (n) => (n.startsWith("fc2") ? 3 : 1) }), { lr: 1e-2 }),
  SGD: (m) => new SGD(m.parameters(), { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-4 }),
};

for (const [kind, make] of Object.entries(makers)) {
  test(`${kind}: train 10 steps, checkpoint, load into a fresh model and optimizer, 10 more == 20 uninterrupted, bit for bit`, () => {
    const ck = join(dir, `resume-${kind}`, "ckpt-10");
    manualSeed(7);
    const a = new Net();
    const genA = new Generator(99);
    const optA = make(a);
    const first = train(a, optA, genA, 0, 10);
    const trainer = { step: 10, epoch: 0, schedule, sampler: { epochSeed: 99, index: 80 }, recipe: { name: "unit" } };
    saveCheckpoint(ck, trainer, { model: a, optimizer: optA, generators: { data: genA } });
    const rest = train(a, optA, genA, 10, 20);

    const resumed = (restoreRng: boolean) => {
      manualSeed(12345);
      const b = new Net();
      const genB = new Generator(1);
      const optB = make(b);
      const state = loadCheckpoint(ck, { model: b, optimizer: optB, generators: { data: genB } }, { restoreRng });
      const losses = train(b, optB, genB, state.step, 20);
      return { b, optB, state, losses };
    };
    const r = resumed(true);
    assert.deepEqual(r.state, trainer);
    assert.deepEqual(r.losses, rest, "losses after resuming");
    for (const [n, p] of a.namedParameters()) assert.deepEqual(new Map(r.b.namedParameters()).get(n)!.bytes(), p.bytes(), `${n} after 20 steps`);
    const sa = optA.stateDict();
    const sb = r.optB.stateDict();
    assert.deepEqual(sb.groups, sa.groups);
    for (const [i, s] of sa.state) {
      assert.equal(sb.state.get(i)!.step, s.step);
      for (const [name, t] of s.buffers) assert.deepEqual(sb.state.get(i)!.buffers.get(name)!.bytes(), t.bytes(), `state ${i}.${name}`);
    }
    // The comparison is sensitive: without the RNG states dropout and data differ.
    const norng = resumed(false);
    assert.notDeepEqual(norng.losses, rest);
    assert.ok(first.length === 10 && rest.length === 10);
    for (const x of [a, r.b, norng.b]) x.dispose();
    for (const o of [optA, r.optB, norng.optB]) o.dispose();
  });
}

// ---- crash safety -----------------------------------------------------------------------------------------

const CHILD = `
import { Linear } from ${JSON.stringify(join(root, "src/engine/index.ts"))};
import { saveCheckpoint } from ${JSON.stringify(join(root, "src/engine/checkpoint.ts"))};
const [dir, version, crashAt] = process.argv.slice(2);
const m = new Linear(4, 3);
m.weight.requiresGrad_(false).fill_(Number(version));
m.bias!.requiresGrad_(false).fill_(Number(version));
saveCheckpoint(dir, { step: Number(version) }, { model: m }, {
  onStage: (s) => { if (s === crashAt) process.kill(process.pid, "SIGKILL"); },
});
`;
const childPath = join(dir, "save-child.ts");
writeFileSync(childPath, CHILD);

function saveInChild(ckDir: string, version: number, crashAt: string): NodeJS.Signals | null {
  const r = spawnSync(process.execPath, ["--import", "tsx", childPath, ckDir, String(version), crashAt], { cwd: root, encoding: "utf8" });
  if (r.status !== 0 && r.signal === null) throw new Error(`child failed: ${r.stderr}`);
  return r.signal;
}

function saveVersion(ckDir: string, version: number): void {
  const m = new Linear(4, 3);
  tidy(() => {
    m.weight.requiresGrad_(false).fill_(version);
    m.bias!.requiresGrad_(false).fill_(version);
  });
  saveCheckpoint(ckDir, { step: version }, { model: m });
  m.dispose();
}

/** The version found at ckDir (weights and trainer step agree), or throws if nothing loads. */
function loadedVersion(ckDir: string): number {
  const m = new Linear(4, 3);
  const state = loadCheckpoint(ckDir, { model: m }, { restoreRng: false });
  const values = new Set([...m.weight.toArray(), ...m.bias!.toArray()]);
  m.dispose();
  assert.equal(values.size, 1);
  assert.equal([...values][0], state.step, "weights and trainer.json come from the same save");
  return state.step;
}

test("a kill at any stage of saveCheckpoint leaves a complete checkpoint (the previous one until the new one is in place)", () => {
  const run = join(dir, "crash");
  const ck = checkpointDir(run, 5);
  const stages = ["model.safetensors", "optimizer.safetensors", "rng.safetensors", "trainer.json", "synced", "moved-old", "installed", "done"];
  const seen: string[] = [];
  for (const stage of stages) {
    saveVersion(ck, 1);
    assert.equal(loadedVersion(ck), 1);
    const signal = saveInChild(ck, 2, stage);
    // There is no optimizer in the child, so that stage never happens and the save completes.
    const expectKilled = stage !== "optimizer.safetensors";
    assert.equal(signal, expectKilled ? "SIGKILL" : null, stage);
    const installed = ["installed", "done", "optimizer.safetensors"].includes(stage);
    assert.equal(loadedVersion(ck), installed ? 2 : 1, `killed after ${stage}`);
    assert.equal(latestCheckpoint(run), stage === "moved-old" ? `${ck}.old` : ck, `latest after a kill at ${stage}`);
    seen.push(stage);
  }
  assert.deepEqual(seen, stages);
  // A later save cleans up what dead writers left: their temp folders and a stray .old.
  assert.equal(saveInChild(ck, 2, "synced"), "SIGKILL");
  assert.equal(saveInChild(ck, 4, "moved-old"), "SIGKILL");
  assert.deepEqual(readdirSync(run).map((n) => n.replace(/tmp-\d+$/, "tmp-PID")).sort(), ["ckpt-5.old", "ckpt-5.tmp-PID"]);
  assert.equal(loadedVersion(ck), 2);
  saveVersion(ck, 3);
  assert.deepEqual(readdirSync(run), ["ckpt-5"]);
  assert.equal(loadedVersion(ck), 3);
});

test("latestCheckpoint picks the newest complete ckpt-<step>, skipping torn and half-written ones", () => {
  const run = join(dir, "latest");
  assert.equal(latestCheckpoint(run), null);
  mkdirSync(run);
  assert.equal(latestCheckpoint(run), null);
  saveVersion(checkpointDir(run, 10), 10);
  saveVersion(checkpointDir(run, 9), 9);
  assert.equal(latestCheckpoint(run), checkpointDir(run, 10));
  assert.equal(saveInChild(checkpointDir(run, 20), 20, "model.safetensors"), "SIGKILL");
  assert.equal(existsSync(checkpointDir(run, 20)), false);
  assert.equal(latestCheckpoint(run), checkpointDir(run, 10));
  saveVersion(checkpointDir(run, 30), 30);
  assert.equal(latestCheckpoint(run), checkpointDir(run, 30));
  assert.equal(readTrainerState(latestCheckpoint(run)!).step, 30);
  // A file cut short after the fact (disk trouble) makes that checkpoint incomplete.
  truncateSync(join(checkpointDir(run, 30), "model.safetensors"), 100);
  assert.equal(isCompleteCheckpoint(checkpointDir(run, 30)), false);
  assert.equal(resolveCheckpoint(checkpointDir(run, 30)), null);
  assert.throws(() => loadCheckpoint(checkpointDir(run, 30), { model: new Linear(4, 3) }), /no complete checkpoint/);
  assert.equal(latestCheckpoint(run), checkpointDir(run, 10));
  assert.equal(loadedVersion(latestCheckpoint(run)!), 10);
});

test("checkpoint files: optimizer state by parameter index, RNG states as uint8, trainer.json manifest", () => {
  const m = new Net();
  const opt = makers.AdamW(m);
  const gen = new Generator(3);
  train(m, opt, gen, 0, 2);
  const ck = join(dir, "files", "ckpt-2");
  saveCheckpoint(ck, { step: 2, epoch: 0 }, { model: m, optimizer: opt, generators: { data: gen } });
  assert.deepEqual(readdirSync(ck).sort(), ["model.safetensors", "optimizer.safetensors", "rng.safetensors", "trainer.json"]);
  const o = readSafetensors(join(ck, "optimizer.safetensors"));
  assert.equal(o.tensors.size, 2 * m.parameters().length);
  assert.deepEqual(o.tensors.get("state.0.exp_avg")!.shape, opt.groups[0].params[0].shape);
  const meta = JSON.parse(o.metadata["vlpkit.optimizer"]) as { kind: string; steps: Record<string, number>; groups: { lrScale: number }[] };
  assert.equal(meta.kind, "AdamW");
  assert.ok(Object.values(meta.steps).every((s) => s === 2));
  assert.deepEqual(meta.groups.map((g) => g.lrScale), [1, 1, 3, 3]);
  const rng = readSafetensors(join(ck, "rng.safetensors")).tensors;
  assert.deepEqual([...rng.keys()].sort(), ["default", "generator.data"]);
  assert.equal(rng.get("default")!.dtype, "uint8");
  // Loading an AdamW state into an SGD is refused.
  assert.throws(() => loadCheckpoint(ck, { model: new Net(), optimizer: makers.SGD(new Net()) }), /state is for AdamW/);
  opt.dispose();
  m.dispose();
});
