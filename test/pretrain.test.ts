// Pre-training strategies, trainer, recipes and exact resume, on a small synthetic world.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, readFileSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { generateWorld } from "../src/data/synth/world.ts";
import { applySets, type Recipe } from "../src/pretrain/recipe.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { buildStrategy } from "../src/cli/pretrain.ts";
import { train } from "../src/train/trainer.ts";
import { manualSeed, saveStateDict, Generator, type Tensor } from "../src/engine/index.ts";
import { Rng } from "../src/engine/rng.ts";
import { toTensors } from "../src/data/loader.ts";
import { createBuilder, type ImageTextArgs } from "../src/pretrain/imagetext.ts";
import { vgLabelTable } from "../src/data/vg_labels.ts";
import { loadImageTensor, VLMO_NORM } from "../src/vision/image.ts";
import type { VLMoForPretraining } from "../src/models/vlmo/pretraining.ts";
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

test("VLMo: the image batches read each file's pixels, the same when the decoded image is kept (a repeated batch) as decoded afresh", async () => {
  const r = recipe("vlmo", { vlmo: { order: ["image-text"], augment: false, stages: { "image-text": { steps: 1 } } } });
  const { stages } = await buildStrategy(r);
  const args = stages[0].sources[0].data.args as ImageTextArgs<"pair">;
  const builder = await createBuilder(args);
  const items = [3, 0, 7];
  const first = await builder.build(items, 0);
  const again = await builder.build(items, 1);
  const S = args.imageSize, n = 3 * S * S;
  for (const [k, f] of first.meta.files.entries()) {
    const input = args.input as { format: string; images: string };
    assert.equal(input.format, "karpathy");
    const fresh = await loadImageTensor(join(input.images, f), { mode: "square", size: S }, VLMO_NORM);
    for (const host of [first, again]) assert.deepEqual([...(host.arrays.pixels.data as Float32Array).subarray(k * n, (k + 1) * n)], [...fresh.data], `${f}`);
  }
});

test("VLMo: the image-only stage with imageTask vg-objects / vg-labels trains on each image's Visual Genome objects (and attributes) as the world drew them; the loss falls", async () => {
  const objectsOf = new Map((JSON.parse(readFileSync(join(world, "vg", "objects.json"), "utf8")) as { image_id: number; objects: { names: string[] }[] }[]).map((im) => [im.image_id, im.objects.map((o) => o.names[0])]));
  const fileId = new Map((JSON.parse(readFileSync(join(world, "vg", "image_data.json"), "utf8")) as { image_id: number; url: string }[]).map((d) => [d.url.split("/").at(-1)!, d.image_id]));
  for (const task of ["vg-objects", "vg-labels"] as const) {
    const r = recipe("vlmo", { vlmo: { order: ["image"], imageTask: task, augment: false, stages: { image: { steps: 40 } } } }, ["train.lr=0.003", "train.warmup=0"]);
    manualSeed(r.train.seed);
    const { model, stages } = await buildStrategy(r);
    // eval mode: no drop path, so that the step's forward pass and the one here agree
    const vlmo = (model as VLMoForPretraining).eval();
    const head = vlmo.label_head!;
    // the batch the pipeline builds, its labels from the model's own table, against objects.json read here
    const src = stages[0].sources[0];
    const builder = await createBuilder(src.data.args as ImageTextArgs<"image">);
    const host = await builder.build([0, 1, 2, 3, 4, 5], 0);
    const batch = toTensors(host);
    const logits = vlmo.labelLogits(batch.pixels);
    const shapes = [...new Set([...objectsOf.values()].flat())];
    const nLabels = head.outFeatures;
    if (task === "vg-objects") assert.equal(nLabels, shapes.length, "one label per object name");
    else assert.ok(nLabels > shapes.length, "names and attributes");
    const names = vgLabelTable(join(world, "vg")).objects;
    const y = host.meta.files.map((f) => {
      const own = new Set(objectsOf.get(fileId.get(f)!)!);
      return Array.from({ length: nLabels }, (_, j) => (j < names.length && own.has(names[j]) ? 1 : NaN));
    });
    // objects: binary cross-entropy by hand over the name columns
    const L = logits.toArray(), O = names.length;
    let bce = 0;
    y.forEach((row, i) => { for (let j = 0; j < O; j++) { const p = 1 / (1 + Math.exp(-L[i * nLabels + j])); bce -= row[j] === 1 ? Math.log(p) : Math.log(1 - p); } });
    bce /= y.length * O;
    const out = src.step(batch, host.meta, { rng: new Rng(1), generator: new Generator(1), step: 1 });
    const m = out.metrics as Record<string, Tensor>;
    assert.ok(Math.abs(m.lbl_objects_loss.item() - bce) < 1e-5, `objects loss ${m.lbl_objects_loss.item()} against ${bce}`);
    if (task === "vg-objects") assert.equal(m.lbl_attributes_loss, undefined);
    else assert.ok(Number.isFinite(m.lbl_attributes_loss.item()));
    const { rows } = await run(r, join(root, `vlmo-${task}`));
    const mean = (xs: typeof rows) => xs.reduce((a, x) => a + x.lbl_loss, 0) / xs.length;
    assert.ok(mean(rows.slice(-10)) < mean(rows.slice(0, 10)) - 0.05, `label loss ${mean(rows.slice(0, 10))} -> ${mean(rows.slice(-10))}`);
  }
  // an image the Visual Genome folder lacks is named
  const lacking = join(root, "vg-lacking");
  mkdirSync(lacking, { recursive: true });
  writeFileSync(join(lacking, "attributes.json"), readFileSync(join(world, "vg", "attributes.json")));
  writeFileSync(join(lacking, "image_data.json"), "[]");
  const r = recipe("vlmo", { vlmo: { order: ["image"], imageTask: "vg-objects", vg: lacking, stages: { image: { steps: 1 } } } });
  await assert.rejects(run(r, join(root, "vlmo-lacking")), /recipe\.vlmo\.imageTask vg-objects: image synth_\d+\.png has no record in the Visual Genome folder .*vg-lacking/);
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
