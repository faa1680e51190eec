// Pre-training strategies, trainer, recipes and exact resume, on a small synthetic world.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { generateWorld } from "../src/data/synth/world.ts";
import { applySets, type Recipe } from "../src/pretrain/recipe.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { buildStrategy } from "../src/cli/pretrain.ts";
import { train } from "../src/train/trainer.ts";
import { manualSeed, saveStateDict, type Tensor } from "../src/engine/index.ts";
import { parseOrder } from "../src/pretrain/msp.ts";
import { STAGE2_FROZEN } from "../src/pretrain/vlmo.ts";

let world = "";
const root = mkdtempSync(join(tmpdir(), "vlp-pretrain-"));
before(async () => {
  world = join(root, "world");
  await generateWorld({ images: 48, seed: 5, out: world, size: 64, featDim: 32, boxes: 12 });
});

const MICRO_BERT = { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 32 };

function recipe(method: "semvlp" | "msp" | "vlmo", extra: Record<string, unknown> = {}, sets: string[] = []): Recipe {
  const base: Record<string, unknown> = {
    method,
    model: method === "semvlp" ? { preset: "tiny", overrides: { ...MICRO_BERT, numHiddenLayers: 2, crossLayerStart: 1 } }
      : method === "msp" ? { preset: "lxmertSTiny", overrides: { ...MICRO_BERT, xLayers: 1 } }
      : { preset: "tiny", overrides: { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1 } },
    data: { world },
    train: { seed: 3, batchSize: 8, lr: 1e-3, warmup: 0.1, steps: 6, clip: 1, workers: 0 },
    ...extra,
  };
  applySets(base, sets);
  return validateRecipe(base);
}

async function run(r: Recipe, dir: string, extra: Partial<Parameters<typeof train>[2]> = {}) {
  manualSeed(r.train.seed);
  const { model, stages } = await buildStrategy(r);
  const summary = await train(model, stages, { runDir: dir, seed: r.train.seed, clip: r.train.clip, quiet: true, workers: r.train.workers, ...extra });
  const all = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  // training steps; the held-out evaluation at the end of each stage is logged with source "val"
  return { model, stages, summary, rows: all.filter((x) => x.source !== "val"), valRows: all.filter((x) => x.source === "val") };
}

test("model.init starts the model from a checkpoint's tensors (BERT names), the rest as initialised; a missing or unfitting file is an error", async () => {
  manualSeed(3);
  const a = (await buildStrategy(recipe("semvlp"))).model;
  const file = join(root, "init-bert.safetensors");
  // a text-only BERT: the embeddings and the transformer layers, as a BERT checkpoint has them
  const bertOnly = new Map([...a.stateDict()].filter(([k]) => /^bert\.(embeddings|encoder\.layer)\./.test(k)));
  saveStateDict(file, bertOnly);
  manualSeed(4);
  const fresh = (await buildStrategy(recipe("semvlp", { train: { seed: 4, batchSize: 8, steps: 6, workers: 0 } }))).model.stateDict();
  manualSeed(4);
  const b = (await buildStrategy(recipe("semvlp", { train: { seed: 4, batchSize: 8, steps: 6, workers: 0 } }, [`model.init=${file}`]))).model.stateDict();
  const same = (x: Tensor, y: Tensor) => x.sub(y).abs().max().item() === 0;
  const sa = a.stateDict();
  const word = "bert.embeddings.word_embeddings.weight";
  assert.ok(!same(fresh.get(word)!, sa.get(word)!), "precondition: seeds 3 and 4 initialise differently");
  assert.ok(same(b.get(word)!, sa.get(word)!), "the word embeddings come from the file");
  assert.ok(same(b.get("bert.encoder.layer.0.attention.self.query.weight")!, sa.get("bert.encoder.layer.0.attention.self.query.weight")!));
  // (the MLM decoder is tied to the word embeddings: it came with them)
  const rest = [...b.keys()].filter((k) => !bertOnly.has(k) && k !== "cls.predictions.decoder.weight");
  assert.ok(rest.length > 0);
  for (const k of rest) assert.ok(same(b.get(k)!, fresh.get(k)!), `${k} keeps its own initialisation`);
  assert.throws(() => validateRecipe({ method: "semvlp", model: { preset: "tiny", init: 3 }, data: { world } }), /recipe\.model\.init/);
  await assert.rejects(buildStrategy(recipe("semvlp", {}, [`model.init=${join(root, "absent.bin")}`])), /recipe\.model\.init: .*absent\.bin does not exist/);
  const foreign = join(root, "foreign.safetensors");
  saveStateDict(foreign, new Map([["some.other.weight", sa.get(word)!]]));
  await assert.rejects(buildStrategy(recipe("semvlp", {}, [`model.init=${foreign}`])), /recipe\.model\.init: no tensor of .*foreign\.safetensors/);
});

test("recipes: unknown keys and wrong types are rejected naming the key; --set overrides", () => {
  assert.throws(() => recipe("semvlp", { train: { lr: "fast" } }), /recipe\.train\.lr: expected a number/);
  assert.throws(() => recipe("semvlp", { semvlp: { singelRatio: 0.5 } }), /recipe\.semvlp\.singelRatio: unknown key/);
  assert.throws(() => validateRecipe({ method: "clip", model: { preset: "x" }, data: { world: "w" } }), /recipe\.method/);
  const r = recipe("semvlp", {}, ["train.lr=0.5", "semvlp.singleRatio=0.25"]);
  assert.equal(r.train.lr, 0.5);
  assert.equal((r.semvlp as { singleRatio: number }).singleRatio, 0.25);
  for (const f of ["semvlp-tiny", "msp-tiny", "vlmo-tiny", "semvlp-small", "msp-small", "vlmo-small", "semvlp-paper", "msp-paper", "vlmo-paper"]) {
    validateRecipe(JSON.parse(readFileSync(new URL(`../recipes/${f}.json`, import.meta.url), "utf8")), f);
  }
});

test("SemVLP: each step trains one mode; the single/two ratio follows the recipe", async () => {
  const half = await run(recipe("semvlp", { semvlp: { singleRatio: 0.5 } }, ["train.steps=24"]), join(root, "semvlp-half"));
  const modes = half.rows.map((r) => r.source);
  const single = modes.filter((m) => m === "single").length;
  assert.equal(modes.filter((m) => m !== "single" && m !== "two").length, 0);
  assert.ok(single >= 5 && single <= 19, `single-stream steps ${single}/24`);
  for (const k of ["mlm_loss", "mrfr_loss", "moc_obj_loss", "itm_loss", "qa_loss"]) assert.ok(Number.isFinite(half.rows.at(-1)[k]), k);
  // linear warmup over 10% of the 24 updates (2.4), then linear decay to 0
  const lr = half.rows.map((r) => r.lr / 1e-3);
  assert.equal(lr[0], 0);
  assert.ok(Math.abs(lr[1] - 1 / 2.4) < 1e-9 && Math.abs(lr[3] - 21 / 21.6) < 1e-9 && Math.abs(lr[23] - 1 / 21.6) < 1e-9, `lr factors ${lr.slice(0, 4)}`);
  const onlyTwo = await run(recipe("semvlp", { semvlp: { singleRatio: 0 } }, ["train.steps=4"]), join(root, "semvlp-two"));
  assert.deepEqual(onlyTwo.rows.map((r) => r.source), ["two", "two", "two", "two"]);
  assert.ok(existsSync(join(root, "semvlp-two", "model.safetensors")));
  assert.match(readFileSync(join(root, "semvlp-two", "metrics.html"), "utf8"), /<svg/);
});

test("MSP: stages run in the recipe's order, each on its own data with its own objectives", async () => {
  assert.deepEqual(parseOrder(["S", "p", "token"]), ["sentence", "phrase", "token"]);
  const r = recipe("msp", { msp: { order: ["sentence", "phrase", "token"], stages: { sentence: { steps: 2 }, phrase: { steps: 2 }, token: { steps: 2 } } } });
  const { stages, rows, valRows } = await run(r, join(root, "msp"));
  assert.deepEqual(stages.map((s) => s.name), ["sentence", "phrase", "token"]);
  assert.deepEqual(valRows.map((x) => x.stage), ["sentence", "phrase", "token"], "one held-out evaluation per stage");
  for (const s of stages) assert.match(JSON.stringify(s.sources[0].data.args), new RegExp(`msp/${s.name}_train.json`));
  assert.deepEqual(rows.map((x) => x.stage), ["sentence", "sentence", "phrase", "phrase", "token", "token"]);
  const keys = (st: string) => new Set(rows.filter((x) => x.stage === st).flatMap((x) => Object.keys(x)));
  assert.ok(keys("sentence").has("tits_loss") && keys("sentence").has("itm_loss") && !keys("sentence").has("ifrs_count"));
  assert.ok(keys("phrase").has("titp_loss") && !keys("phrase").has("itm_loss"));
  assert.ok(keys("token").has("ifrs_count") && !keys("token").has("titp_loss"));
  const joint = await run(recipe("msp", { msp: { joint: true } }, ["train.steps=9"]), join(root, "msp-joint"));
  assert.deepEqual(joint.stages.map((s) => s.name), ["joint"]);
  assert.ok(new Set(joint.rows.map((x) => x.source)).size >= 2, "the joint stage samples several granularities");
  // with each stage's steps given, the joint stage trains their sum (the stagewise runs' budget), not train.steps
  const budget = recipe("msp", { msp: { joint: true, stages: { token: { steps: 2 }, phrase: { steps: 2 }, sentence: { steps: 3 } } } }, ["train.steps=9"]);
  manualSeed(budget.train.seed);
  assert.deepEqual((await buildStrategy(budget)).stages.map((s) => [s.name, s.steps]), [["joint", 7]]);
});

test("VLMo: stage 2 leaves self-attention and the vision expert bit-identical, trains the language expert", async () => {
  const r = recipe("vlmo", { vlmo: { order: ["text"], stages: { text: { steps: 3 } } } });
  manualSeed(r.train.seed);
  const { model, stages } = await buildStrategy(r);
  const before = new Map(model.namedParameters().map(([n, p]) => [n, Buffer.from(p.bytes())]));
  await train(model, stages, { runDir: join(root, "vlmo-text"), seed: 3, quiet: true, workers: 0 });
  let frozen = 0, changedText = 0;
  for (const [n, p] of model.namedParameters()) {
    const same = Buffer.from(p.bytes()).equals(before.get(n)!);
    if (STAGE2_FROZEN.test(n)) { assert.ok(same, `${n} changed during stage 2`); frozen++; }
    if (/mlp_text/.test(n) && !same) changedText++;
  }
  assert.ok(frozen > 10, `frozen parameters found: ${frozen}`);
  assert.ok(changedText > 0, "the language expert was trained");
});

test("VLMo: all three stages run and log ITC/ITM/MLM", async () => {
  const r = recipe("vlmo", { vlmo: { stages: { image: { steps: 2 }, text: { steps: 2 }, "image-text": { steps: 2 } } } });
  const { rows } = await run(r, join(root, "vlmo-all"));
  assert.deepEqual(rows.map((x) => x.stage), ["image", "image", "text", "text", "image-text", "image-text"]);
  const last = rows.at(-1);
  for (const k of ["itc_loss", "itm_loss", "mlm_loss", "itc_i2t_acc"]) assert.ok(Number.isFinite(last[k]), k);
  assert.ok(Number.isFinite(rows[0].mim_loss));
});

function cli(args: string[]): { proc: ReturnType<typeof spawn>; done: Promise<number> } {
  const proc = spawn(process.execPath, ["--import", "tsx", "src/cli/vlp.ts", ...args], { cwd: new URL("..", import.meta.url).pathname, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  proc.stderr!.on("data", (d) => (err += d));
  const done = new Promise<number>((res) => proc.on("exit", (code) => { if (code && code !== 0 && !proc.killed) console.error(err); res(code ?? -1); }));
  return { proc, done };
}

test("a run killed with SIGKILL and resumed reaches bit-identical weights", async () => {
  const file = join(root, "resume-recipe.json");
  const r = recipe("semvlp", {}, ["train.steps=10", "train.checkpointEvery=2", "train.workers=1"]);
  writeFileSync(file, JSON.stringify(r));
  const a = cli(["pretrain", "--recipe", file, "--out", join(root, "run-a"), "--quiet"]);
  assert.equal(await a.done, 0);
  const b = cli(["pretrain", "--recipe", file, "--out", join(root, "run-b"), "--quiet"]);
  // kill as soon as a checkpoint past step 4 exists
  await new Promise<void>((res) => {
    const t = setInterval(() => {
      if (existsSync(join(root, "run-b", "ckpt-4", "trainer.json")) || existsSync(join(root, "run-b", "ckpt-6", "trainer.json"))) {
        clearInterval(t);
        b.proc.kill("SIGKILL");
        res();
      }
    }, 20);
  });
  await b.done;
  assert.ok(!existsSync(join(root, "run-b", "model.safetensors")), "the run was killed before it finished");
  const c = cli(["pretrain", "--resume", join(root, "run-b"), "--quiet"]);
  assert.equal(await c.done, 0);
  const wa = readFileSync(join(root, "run-a", "model.safetensors"));
  const wb = readFileSync(join(root, "run-b", "model.safetensors"));
  assert.ok(wa.equals(wb), "resumed weights differ from the uninterrupted run");
});

test("periodic evaluation logs held-out metrics; a non-finite loss stops the run naming the last good checkpoint", async () => {
  const r = recipe("semvlp", {}, ["train.steps=4"]);
  manualSeed(r.train.seed);
  const { model, stages } = await buildStrategy(r);
  const dir = join(root, "nan");
  const src = stages[0].sources[0];
  const step = src.step;
  src.step = (b, m, ctx) => {
    const out = step(b, m, ctx);
    return ctx.step >= 3 ? { ...out, loss: out.loss.mul(Number.NaN) } : out;
  };
  await assert.rejects(
    train(model, stages, { runDir: dir, seed: 3, quiet: true, workers: 0, checkpointEvery: 2, evalEvery: 2 }),
    /non-finite loss \(NaN\) at stage semvlp, step 3.*last good checkpoint is .*ckpt-2/,
  );
  const rows = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const val = rows.find((x) => x.source === "val");
  assert.ok(val && Number.isFinite(val.val_mlm_loss) && Number.isFinite(val.val_itm_acc), "a validation row at step 2");
});
