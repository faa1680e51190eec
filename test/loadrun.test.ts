// Runs carry their config: `vlp pretrain` and `vlp finetune` write config.json beside the weights,
// and loadRun rebuilds a run's model from model.safetensors + config.json alone (no recipe, no data);
// older runs without config.json load through their recipe; a folder with neither is named. Also
// the method registry: every method registers its presets, strategy and task models.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { generateWorld } from "../src/data/synth/world.ts";
import { type Recipe } from "../src/pretrain/recipe.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { buildStrategy } from "../src/cli/pretrain.ts";
import { saveStateDict, loadStateDictFile } from "../src/engine/checkpoint.ts";
import { manualSeed, setNumThreads, type Module } from "../src/engine/index.ts";
import { getMethod, loadRun, methodNames, readRunConfig, writeRunConfig, type RunConfig } from "../src/methods/index.ts";
import { loadTaskRun, pretrainedTaskNet } from "../src/tasks/models.ts";
import { VLMoForPretraining } from "../src/models/vlmo/pretraining.ts";
import { LxmertSForMSP } from "../src/models/lxmert_msp.ts";
import { SemVLPForPreTraining } from "../src/models/semvlp.ts";

setNumThreads(1);
const root = mkdtempSync(join(tmpdir(), "vlp-loadrun-"));
if (!process.env.KEEP) process.on("exit", () => rmSync(root, { recursive: true, force: true }));
const world = join(root, "world");
const CLI = new URL("../src/cli/vlp.ts", import.meta.url).pathname;
const MICRO_BERT = { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 32 };
const MODELS = {
  semvlp: { preset: "tiny", overrides: { ...MICRO_BERT, numHiddenLayers: 2, crossLayerStart: 1 } },
  msp: { preset: "lxmertSTiny", overrides: { ...MICRO_BERT, xLayers: 1 } },
  vlmo: { preset: "tiny", overrides: { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1, maxTextLen: 16 } },
} as const;

before(async () => {
  await generateWorld({ images: 48, seed: 5, out: world, size: 64, featDim: 32, boxes: 12 });
});

const recipe = (method: keyof typeof MODELS, extra: Record<string, unknown> = {}): Recipe =>
  validateRecipe({ method, model: MODELS[method], data: { world }, train: { seed: 4, batchSize: 4, steps: 1, workers: 0 }, ...extra });

/** Every tensor of `a` equals `b`'s of the same name, and both have the same names. */
function sameWeights(a: Module, b: Module): void {
  const x = a.stateDict(), y = b.stateDict();
  assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort());
  for (const [k, t] of x) assert.equal(t.sub(y.get(k)!).abs().max().item(), 0, k);
}

/** A folder holding only the weights and config.json of `dir`. */
function copyRun(dir: string, name: string): string {
  const to = join(root, name);
  mkdirSync(to, { recursive: true });
  for (const f of ["model.safetensors", "config.json"]) copyFileSync(join(dir, f), join(to, f));
  return to;
}

test("the registry: three methods, each with presets, a strategy and task models", () => {
  assert.deepEqual(methodNames(), ["semvlp", "msp", "vlmo"]);
  for (const name of methodNames()) {
    const m = getMethod(name);
    assert.ok(m.presets.includes(MODELS[name as keyof typeof MODELS].preset), name);
    assert.equal(typeof m.buildStrategy, "function");
  }
  assert.throws(() => getMethod("clip", "recipe.method"), /recipe\.method: unknown method "clip" \(expected "semvlp", "msp", "vlmo"\)/);
});

test("a pre-training model of each method loads from model.safetensors + config.json alone, as the class it trained; without config.json, through its recipe", async () => {
  const classes = { semvlp: SemVLPForPreTraining, msp: LxmertSForMSP, vlmo: VLMoForPretraining };
  const extras: Record<string, Record<string, unknown>> = { msp: { msp: { itc: 1 } }, vlmo: { vlmo: { mimTarget: "hog", standard: true, imageTask: "vg-labels" } }, semvlp: {} };
  for (const method of ["semvlp", "msp", "vlmo"] as const) {
    const r = recipe(method, extras[method]);
    manualSeed(1);
    const { model } = await buildStrategy(r);
    const dir = join(root, `built-${method}`);
    mkdirSync(dir, { recursive: true });
    saveStateDict(join(dir, "model.safetensors"), model);
    const cfg = writeRunConfig(dir, { kind: "pretrain", method, spec: getMethod(method).modelSpec(r), model });
    assert.equal(cfg.vlpkit, JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version);
    assert.equal(cfg.vocab.tokenizer, "bert-base-uncased");
    assert.match(cfg.vocab.sha256, /^[0-9a-f]{64}$/);
    const copy = copyRun(dir, `copy-${method}`);
    const { model: back, run } = await loadRun(copy);
    assert.ok(back instanceof classes[method], `${method}: ${back.constructor.name}`);
    assert.deepEqual(run.config, JSON.parse(JSON.stringify((model as Module & { config: unknown }).config)));
    sameWeights(back, model);
    // the same run from before config.json: its recipe and the shapes of its weights
    const legacy = join(root, `legacy-${method}`);
    mkdirSync(legacy, { recursive: true });
    copyFileSync(join(dir, "model.safetensors"), join(legacy, "model.safetensors"));
    writeFileSync(join(legacy, "recipe.json"), JSON.stringify(r));
    const old = await loadRun(legacy);
    if (method === "vlmo") {
      // VLMo's network with the heads its tensor names show; the stage-1 extras (mim_*) are left out
      const names = [...old.model.stateDict().keys()];
      assert.ok(!names.some((k) => k.startsWith("mim_")) && names.includes("itc_text_proj.fc.weight"));
      for (const [k, t] of old.model.stateDict()) assert.equal(t.sub(model.stateDict().get(k)!).abs().max().item(), 0, k);
    } else {
      assert.ok(old.model instanceof classes[method]);
      sameWeights(old.model, model);
    }
    old.model.dispose();
    if (method === "vlmo") {
      assert.equal((back as VLMoForPretraining).mimTarget, "hog");
      // the image-labelling head of imageTask vg-labels comes back with its width
      assert.ok((model as VLMoForPretraining).label_head!.outFeatures > 10);
      assert.equal((back as VLMoForPretraining).label_head?.outFeatures, (model as VLMoForPretraining).label_head!.outFeatures);
      assert.equal((back as VLMoForPretraining).config.standard, true);
    }
    back.dispose();
    model.dispose();
  }
});

test("vlp pretrain and vlp finetune write config.json; the copied fine-tuning run loads as its task model; a folder with neither config nor recipe is named", { timeout: 180_000 }, async () => {
  const rfile = join(root, "pre.json");
  writeFileSync(rfile, JSON.stringify({ method: "vlmo", model: MODELS.vlmo, data: { world }, train: { seed: 4, batchSize: 4, steps: 1, workers: 0 }, vlmo: { order: ["image-text"] } }));
  const pre = join(root, "pre-vlmo");
  const run = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", CLI, ...args], { encoding: "utf8", env: { ...process.env, VLP_NUM_THREADS: "1" } });
  const p = run("pretrain", "--recipe", rfile, "--out", pre, "--quiet");
  assert.equal(p.status, 0, p.stderr);
  const cfg = JSON.parse(readFileSync(join(pre, "config.json"), "utf8")) as RunConfig;
  assert.equal(cfg.kind, "pretrain");
  assert.equal(cfg.method, "vlmo");
  assert.deepEqual(cfg.heads, { model: "pretraining", mimTarget: "pixels" });
  assert.equal((cfg.config as { hiddenSize: number }).hiddenSize, 32);
  // a task model on the copied pre-training run: no recipe.json there
  const preCopy = copyRun(pre, "pre-vlmo-copy");
  manualSeed(9);
  const onCopy = await pretrainedTaskNet(preCopy, { kind: "nlvr2" });
  manualSeed(9);
  const onRun = await pretrainedTaskNet(pre, { kind: "nlvr2" });
  sameWeights(onCopy.net.model, onRun.net.model);
  onCopy.net.model.dispose();
  onRun.net.model.dispose();

  const ffile = join(root, "ft.json");
  writeFileSync(ffile, JSON.stringify({ task: "vqa", data: { world }, train: { seed: 1, batchSize: 8, steps: 2, workers: 0 }, options: { maxTextLen: 16, maxBoxes: 12 } }));
  const ft = join(root, "ft-vqa");
  const f = run("finetune", "vqa", "--from", pre, "--recipe", ffile, "--out", ft, "--quiet");
  assert.equal(f.status, 0, f.stderr);
  const fcfg = readRunConfig(ft);
  assert.equal(fcfg.kind, "finetune");
  assert.equal(fcfg.task, "vqa");
  assert.ok(fcfg.labels && fcfg.labels.length > 0);
  assert.equal((fcfg.config as { heads: { vqaLabels: number } }).heads.vqaLabels, fcfg.labels.length);
  const copy = copyRun(ft, "ft-vqa-copy");
  const { net, info } = await loadTaskRun(copy);
  assert.equal(info.task, "vqa");
  const weights = loadStateDictFile(join(ft, "model.safetensors"));
  const own = net.model.stateDict();
  assert.deepEqual([...own.keys()].sort(), [...weights.keys()].sort());
  for (const [k, t] of own) assert.equal(t.sub(weights.get(k)!).abs().max().item(), 0, k);
  for (const t of weights.values()) t.dispose();
  net.model.dispose();

  // neither config.json nor a recipe: the folder is named
  const bare = join(root, "bare");
  mkdirSync(bare);
  copyFileSync(join(ft, "model.safetensors"), join(bare, "model.safetensors"));
  await assert.rejects(loadRun(bare), new RegExp(`${bare}: no config.json, finetune.json or recipe.json there \\(not a vlp run directory\\)`));
});
