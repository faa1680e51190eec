// Mixed precision: libtorch's autocast through vlpkit's boxed dispatcher calls, compared with
// torch.autocast("cpu", dtype=torch.bfloat16) of PyTorch 1.13 on the same inputs and weights.
//
// Tolerance: bf16 keeps 8 significant bits (relative rounding 2^-9); values computed from bf16
// operands may differ by a few bf16 ulps between the engines when the kernels' summation order
// differs, so outputs are compared with |a - b| <= 2^-6 * (1 + |b|) (float32 ones the same way,
// as their inputs went through bf16 ops).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randn, tensor, randint, manualSeed, autocast, autocastAsync, autocastState, F, Linear, LayerNorm, Embedding, Module, tidy, type Tensor } from "../src/engine/index.ts";
import { AdamW } from "../src/engine/optim.ts";
import { decodeSafetensors } from "../src/engine/serialize/safetensors.ts";
import { TorchRef, type RefTensor } from "./torchref.ts";
import { generateWorld } from "../src/data/synth/world.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { validateFinetuneRecipe } from "../src/tasks/task.ts";
import { buildStrategy } from "../src/cli/pretrain.ts";
import { train } from "../src/train/trainer.ts";

const TOL = 2 ** -6;
function close(name: string, got: Tensor, want: RefTensor | null): void {
  assert.ok(want, `${name}: no PyTorch output`);
  assert.equal(got.dtype, want.dtype, `${name}: dtype ${got.dtype}, torch.autocast gives ${want.dtype}`);
  assert.deepEqual(got.shape, want.shape, `${name}: shape`);
  const g = got.toArray();
  let worst = 0;
  for (let i = 0; i < g.length; i++) worst = Math.max(worst, Math.abs(g[i] - want.values[i]) / (1 + Math.abs(want.values[i])));
  assert.ok(worst <= TOL, `${name}: worst scaled difference ${worst} > ${TOL}`);
}

test("autocast scopes: state set inside, restored after return, throw and nesting; fp16 on the CPU refused", async () => {
  assert.deepEqual(autocastState().enabled, false);
  autocast("bfloat16", () => {
    assert.deepEqual(autocastState(), { enabled: true, dtype: "bfloat16" });
    autocast(null, () => assert.equal(autocastState().enabled, false)); // torch.autocast(enabled=False) inside
    assert.deepEqual(autocastState(), { enabled: true, dtype: "bfloat16" });
  });
  assert.equal(autocastState().enabled, false);
  assert.throws(() => autocast("bfloat16", () => { throw new Error("boom"); }), /boom/);
  assert.equal(autocastState().enabled, false);
  await assert.rejects(autocastAsync("bfloat16", async () => { await new Promise((r) => setTimeout(r, 1)); throw new Error("late"); }), /late/);
  assert.equal(autocastState().enabled, false);
  const y = await autocastAsync("bfloat16", async () => {
    await new Promise((r) => setTimeout(r, 1));
    return F.linear(randn([2, 4]), randn([3, 4]));
  });
  assert.equal(y.dtype, "bfloat16");
  assert.equal(autocastState().enabled, false);
  assert.throws(() => autocast("float16", () => 0), /CUDA-only/);
  assert.equal(autocastState().enabled, false);
  // recipes: bf16 accepted, fp16 refused on the CPU with a clear message, anything else rejected
  const base = { method: "semvlp", model: { preset: "tiny" }, data: { world: "w" } };
  assert.equal(validateRecipe({ ...base, train: { precision: "bf16" } }).train.precision, "bf16");
  assert.equal(validateRecipe({ ...base }).train.precision, "fp32");
  assert.throws(() => validateRecipe({ ...base, train: { precision: "fp16" } }), /recipe\.train\.precision: precision "fp16" needs a CUDA device/);
  assert.throws(() => validateRecipe({ ...base, train: { precision: "half" } }), /recipe\.train\.precision: expected "fp32", "bf16" or "fp16"/);
  assert.equal(validateFinetuneRecipe({ task: "vqa", data: { world: "w" }, train: { precision: "bf16" } }).train.precision, "bf16");
  assert.throws(() => validateFinetuneRecipe({ task: "vqa", data: { world: "w" }, train: { precision: "fp16" } }), /needs a CUDA device/);
});

class Block extends Module {
  emb = this.module("emb", new Embedding(20, 16));
  q = this.module("q", new Linear(16, 16));
  k = this.module("k", new Linear(16, 16));
  v = this.module("v", new Linear(16, 16));
  o = this.module("o", new Linear(16, 16));
  ln1 = this.module("ln1", new LayerNorm(16));
  ff = this.module("ff", new Linear(16, 32));
  ln2 = this.module("ln2", new LayerNorm(32));
  head = this.module("head", new Linear(32, 5));
  forward(ids: Tensor, labels: Tensor): Record<string, Tensor> {
    const h = this.emb.forward(ids);
    const s = this.q.forward(h).matmul(this.k.forward(h).transpose(-1, -2)).mul(0.25);
    const p = s.softmax(-1);
    const a = p.matmul(this.v.forward(h));
    const r = h.add(this.o.forward(a)); // float32 residual + bf16
    const n = this.ln1.forward(r);
    const f = this.ff.forward(n).gelu();
    const g = this.ln2.forward(f); // a bf16 input: normalized in float32 (see F.layerNorm)
    const logits = this.head.forward(g);
    const loss = F.crossEntropy(logits.reshape([-1, 5]), labels.reshape([-1]));
    return { h, s, p, a, r, n, f, g, logits, loss };
  }
}
const torchBlock = (names: string[]) => `
W = {k: I["w." + k] for k in ${JSON.stringify(names)}}
for t in W.values(): t.requires_grad_(True)
lin = lambda x, n: F.linear(x, W[n + ".weight"], W[n + ".bias"])
with torch.autocast("cpu", dtype=torch.bfloat16):
    h = F.embedding(I["ids"], W["emb.weight"])
    s = lin(h, "q") @ lin(h, "k").transpose(-1, -2) * 0.25
    p = s.softmax(-1)
    a = p @ lin(h, "v")
    r = h + lin(a, "o")
    n = F.layer_norm(r, (16,), W["ln1.weight"], W["ln1.bias"])
    f = F.gelu(lin(n, "ff"))
    g = F.layer_norm(f.float(), (32,), W["ln2.weight"], W["ln2.bias"])  # 1.13 fails on a bf16 input with float32 weights
    logits = lin(g, "head")
    loss = F.cross_entropy(logits.reshape(-1, 5), I["labels"].reshape(-1))
loss.backward()
for k, v in dict(h=h, s=s, p=p, a=a, r=r, n=n, f=f, g=g, logits=logits, loss=loss).items(): O[k] = v.detach()
for k, v in W.items(): O["grad." + k] = v.grad
`;

test("the same small model under autocast: per-op dtypes and values as torch.autocast; float32 gradients and Adam state", async () => {
  manualSeed(11);
  const m = new Block();
  const ids = randint(0, 20, [2, 6]);
  const labels = randint(0, 5, [2, 6]);
  const ref = new TorchRef();
  for (const [n, p] of m.namedParameters()) ref.put(`block/w.${n}`, p);
  ref.put("block/ids", ids);
  ref.put("block/labels", labels);
  ref.add("block", torchBlock(m.namedParameters().map(([n]) => n)));
  // single ops, both ways round
  const x = randn([4, 16]);
  const w = randn([8, 16]);
  ref.put("ops/x", x);
  ref.put("ops/w", w);
  ref.add("ops", `
with torch.autocast("cpu", dtype=torch.bfloat16):
    y = F.linear(I["x"], I["w"])
    O["linear"] = y; O["mm"] = I["x"] @ I["w"].t(); O["bmm"] = torch.bmm(I["x"][None], I["w"].t()[None])
    O["softmax_bf16"] = y.softmax(-1); O["softmax_f32"] = I["x"].softmax(-1); O["log_softmax_bf16"] = y.log_softmax(-1)
    O["mse"] = F.mse_loss(y, torch.zeros(4, 8)); O["add_mixed"] = y + I["x"][:, :8]; O["gelu"] = F.gelu(y)
`);
  await ref.run();
  assert.equal(ref.error("ops"), undefined);
  assert.equal(ref.error("block"), undefined);
  autocast("bfloat16", () => {
    const y = F.linear(x, w);
    close("linear", y, ref.out("ops", "linear"));
    close("mm", x.mm(w.transpose(0, 1)), ref.out("ops", "mm"));
    close("bmm", x.unsqueeze(0).matmul(w.transpose(0, 1).unsqueeze(0)), ref.out("ops", "bmm"));
    close("softmax of bf16", y.softmax(-1), ref.out("ops", "softmax_bf16"));
    close("softmax of float32", x.softmax(-1), ref.out("ops", "softmax_f32"));
    close("log_softmax of bf16", y.logSoftmax(-1), ref.out("ops", "log_softmax_bf16"));
    close("mse_loss", F.mseLoss(y, tensor(new Float32Array(32), { shape: [4, 8] })), ref.out("ops", "mse"));
    close("bf16 + float32", y.add(x.narrow(1, 0, 8)), ref.out("ops", "add_mixed"));
    close("gelu", y.gelu(), ref.out("ops", "gelu"));
  });
  const out = autocast("bfloat16", () => m.forward(ids, labels));
  for (const k of ["h", "s", "p", "a", "r", "n", "f", "g", "logits", "loss"]) close(`block ${k}`, out[k], ref.out("block", k));
  // observed with PyTorch 1.13 on the CPU: linear/matmul -> bf16; softmax and gelu keep their input's dtype
  // (bf16 here); cross_entropy/mse_loss -> float32; layer_norm of a float32 residual -> float32
  assert.deepEqual(Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.dtype])), {
    h: "float32", s: "bfloat16", p: "bfloat16", a: "bfloat16", r: "float32", n: "float32", f: "bfloat16", g: "float32", logits: "bfloat16", loss: "float32",
  });
  // backward outside autocast: gradients of the float32 weights are float32 and match PyTorch's
  out.loss.backward();
  for (const [n, p] of m.namedParameters()) close(`grad ${n}`, p.grad!, ref.out("block", `grad.${n}`));
  const opt = new AdamW(m.parameters(), { lr: 1e-3 });
  opt.step();
  for (const p of m.parameters()) assert.equal(p.dtype, "float32");
  const st = opt.stateDict().state;
  assert.equal(st.size, m.parameters().length);
  for (const s of st.values()) for (const [name, b] of s.buffers) assert.equal(b.dtype, "float32", `optimizer ${name}`);
  opt.dispose();
  tidy(() => undefined);
});

/** A 24-image world in a fresh temp folder and a 4-step bf16 recipe of a 2-layer SemVLP on it (checkpoint every 2 steps). */
async function bf16SemVLPRecipe(prefix: string, worldSeed: number, trainSeed: number) {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const world = join(root, "world");
  await generateWorld({ images: 24, seed: worldSeed, out: world, size: 64, featDim: 32, boxes: 12 });
  const r = validateRecipe({
    method: "semvlp",
    model: { preset: "tiny", overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 32, numHiddenLayers: 2, crossLayerStart: 1 } },
    data: { world },
    train: { seed: trainSeed, batchSize: 8, lr: 1e-3, warmup: 0.1, steps: 4, clip: 1, workers: 0, precision: "bf16", checkpointEvery: 2 },
  });
  return { root, r };
}

test("a short bf16 pre-training run: finite losses, float32 checkpoints and model", async () => {
  const { root, r } = await bf16SemVLPRecipe("vlp-autocast-", 5, 3);
  manualSeed(r.train.seed);
  const { model, stages } = await buildStrategy(r);
  const dir = join(root, "run");
  await train(model, stages, { runDir: dir, seed: 3, clip: 1, quiet: true, workers: 0, checkpointEvery: 2, precision: r.train.precision });
  assert.equal(autocastState().enabled, false, "autocast is off after training");
  const rows = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((x) => x.source !== "val");
  assert.equal(rows.length, 4);
  for (const row of rows) assert.ok(Number.isFinite(row.loss) && Number.isFinite(row.grad_norm), `step ${row.step}: loss ${row.loss}, grad norm ${row.grad_norm}`);
  const files = [join(dir, "model.safetensors"), ...readdirSync(dir).filter((d) => d.startsWith("ckpt-")).flatMap((d) => readdirSync(join(dir, d)).filter((f) => f.endsWith(".safetensors")).map((f) => join(dir, d, f)))];
  assert.ok(files.length >= 2 && existsSync(files[0]), `checkpoint files ${files}`);
  let floating = 0;
  for (const f of files) {
    for (const [name, t] of decodeSafetensors(readFileSync(f), f).tensors) {
      if (t.dtype === "bfloat16" || t.dtype === "float16" || t.dtype === "float64") assert.fail(`${f}: ${name} is ${t.dtype}`);
      if (t.dtype === "float32") floating++;
    }
  }
  assert.ok(floating > 10, `float32 tensors in the checkpoints: ${floating}`);
  for (const p of model.parameters()) assert.equal(p.dtype, "float32");
});

test("bf16 pre-training resumes exactly: stopped after step 2 and resumed, the weights equal an uninterrupted run's byte for byte", async () => {
  const { root, r } = await bf16SemVLPRecipe("vlp-autocast-resume-", 6, 4);
  const run = async (dir: string, extra: { stopAfter?: number; resume?: boolean }) => {
    manualSeed(r.train.seed);
    const { model, stages } = await buildStrategy(r);
    await train(model, stages, { runDir: dir, seed: r.train.seed, clip: 1, quiet: true, workers: 0, checkpointEvery: 2, precision: r.train.precision, ...extra });
    model.dispose();
  };
  await run(join(root, "a"), {});
  await run(join(root, "b"), { stopAfter: 2 });
  assert.ok(!existsSync(join(root, "b", "model.safetensors")) && existsSync(join(root, "b", "ckpt-2")), "run b stopped at its step-2 checkpoint");
  await run(join(root, "b"), { resume: true });
  const wa = readFileSync(join(root, "a", "model.safetensors")), wb = readFileSync(join(root, "b", "model.safetensors"));
  assert.ok(wa.equals(wb), "the resumed bf16 run's weights differ from the uninterrupted run's");
  const losses = (d: string) => readFileSync(join(root, d, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((x) => x.source !== "val").map((x) => x.loss);
  assert.deepEqual(losses("b"), losses("a"));
});
