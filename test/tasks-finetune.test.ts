// Fine-tuning VQA, GQA and NLVR2 end to end on a small synthetic world: micro models of the three
// methods, from scratch or on a few pre-training steps, trained for seconds and evaluated on their own
// training split (better than the majority-answer / chance baseline), plus the CLI round trip,
// the results files and the loading of pre-trained runs (backbone, answer head, NLVR2 token type).
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { generateWorld } from "../src/data/synth/world.ts";
import { validateFinetuneRecipe, type FinetuneRecipe } from "../src/tasks/task.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { buildStrategy } from "../src/cli/pretrain.ts";
import { train } from "../src/train/trainer.ts";
import { loadStateDictFile } from "../src/engine/checkpoint.ts";
import { manualSeed, type Tensor } from "../src/engine/index.ts";
import { readTaskExamples } from "../src/tasks/data.ts";
import { pretrainedTaskNet } from "../src/tasks/models.ts";
import { readRunInfo } from "../src/methods/index.ts";
import * as vqa from "../src/tasks/vqa.ts";
import * as gqa from "../src/tasks/gqa.ts";
import * as nlvr2 from "../src/tasks/nlvr2.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-tasks-"));
const world = join(root, "world");
const CLI = new URL("../src/cli/vlp.ts", import.meta.url).pathname;
const MICRO = {
  semvlp: { preset: "tiny", overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 32, numHiddenLayers: 2, crossLayerStart: 1 } },
  msp: { preset: "lxmertSTiny", overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, visualFeatDim: 32, xLayers: 1 } },
  vlmo: { preset: "tiny", overrides: { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1, maxTextLen: 16 } },
} as const;

before(async () => {
  await generateWorld({ images: 60, seed: 11, out: world, size: 64, featDim: 32, boxes: 12 });
});

function recipe(task: FinetuneRecipe["task"], method: keyof typeof MICRO, train: Record<string, number>, options: Record<string, unknown> = {}): FinetuneRecipe {
  return validateFinetuneRecipe({
    task, method, model: MICRO[method], data: { world },
    train: { seed: 1, batchSize: 16, lr: 2e-3, warmup: 0.1, workers: 0, ...train },
    options: { maxBoxes: 12, maxTextLen: 16, ...options },
  });
}

/** Share of the most frequent answer (QA) or label (NLVR2) of a split: the baseline to beat. */
function majority(format: "vqa" | "gqa" | "nlvr2", split: string): number {
  const ex = readTaskExamples(format, join(world, `lxmert/${format}_${split}.json`));
  const counts = new Map<string, number>();
  for (const e of ex) {
    const key = e.label !== undefined ? String(e.label) : Object.entries(e.scores ?? {}).sort((a, b) => b[1] - a[1])[0]?.[0] ?? "";
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return Math.max(...counts.values()) / ex.length;
}

async function pretrainRun(method: "semvlp" | "vlmo"): Promise<string> {
  const dir = join(root, `pre-${method}`);
  const r = validateRecipe({ method, model: MICRO[method], data: { world }, train: { seed: 2, batchSize: 8, lr: 1e-3, steps: 2, workers: 0 }, ...(method === "vlmo" ? { vlmo: { order: ["image-text"] } } : {}) });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "recipe.json"), JSON.stringify(r));
  manualSeed(2);
  const { model, stages } = await buildStrategy(r);
  await train(model, stages, { runDir: dir, seed: 2, quiet: true });
  model.dispose();
  return dir;
}

const cli = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", CLI, ...args], { encoding: "utf8", env: { ...process.env, VLP_NUM_THREADS: "1" }, timeout: 60_000 });

test("VQA: SemVLP from scratch beats the majority answer on its split; CLI eval with the official dump", { timeout: 120_000 }, async (t) => {
  const out = join(root, "vqa");
  const r = recipe("vqa", "semvlp", { steps: 150 });
  const val = await vqa.finetune({ recipe: r, from: null, out, quiet: true });
  assert.equal(val.official, 1, "val has the official annotations");
  const own = await vqa.evaluate({ checkpoint: out, split: "train", quiet: true });
  const base = majority("vqa", "train");
  t.diagnostic(`VQA accuracy on train ${own.vqa_acc.toFixed(3)}, majority answer ${base.toFixed(3)}`);
  assert.ok(own.vqa_acc > base + 0.1, `VQA accuracy on train ${own.vqa_acc} vs majority answer ${base}`);
  // the CLI: eval writes [{question_id, answer}] for every test question
  const res = cli("eval", "vqa", "--checkpoint", out, "--split", "test", "--dump", join(root, "vqa-test.json"), "--quiet");
  assert.equal(res.status, 0, res.stderr);
  const metrics = JSON.parse(res.stdout);
  const dump = JSON.parse(readFileSync(join(root, "vqa-test.json"), "utf8")) as { question_id: number; answer: string }[];
  const test = readTaskExamples("vqa", join(world, "lxmert/vqa_test.json"));
  assert.equal(dump.length, test.length);
  assert.equal(metrics.n, test.length);
  assert.deepEqual(dump.map((d) => d.question_id), test.map((e) => e.id));
  assert.ok(dump.every((d) => readRunInfo(out).labels!.includes(d.answer)));
  // the official accuracy agrees with the soft scores here (they come from the same 10 answers)
  assert.ok(Math.abs(metrics.vqa_acc - metrics.vqa_soft) < 1e-9);
});

test("GQA: two stages (all-split, then the balanced split at a lower lr), LXMERT-S from scratch beats the majority", { timeout: 120_000 }, async (t) => {
  const out = join(root, "gqa");
  const r = recipe("gqa", "msp", { steps: 80 }, { balanced: { steps: 20, lr: 4e-4 } });
  await gqa.finetune({ recipe: r, from: null, out, quiet: true });
  const rows = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((x) => x.source !== "val");
  assert.deepEqual([...new Set(rows.map((x) => x.stage))], ["all", "balanced"]);
  assert.equal(rows.filter((x) => x.stage === "balanced").length, 20);
  assert.ok(Math.max(...rows.filter((x) => x.stage === "balanced").map((x) => x.lr)) <= 4e-4 + 1e-12);
  assert.ok(Math.max(...rows.filter((x) => x.stage === "all").map((x) => x.lr)) > 1e-3);
  const own = await gqa.evaluate({ checkpoint: out, split: "train", quiet: true, dump: join(root, "gqa.json") });
  const base = majority("gqa", "train");
  t.diagnostic(`GQA accuracy on train ${own.acc.toFixed(3)}, majority answer ${base.toFixed(3)}`);
  assert.ok(own.acc > base + 0.05, `GQA accuracy on train ${own.acc} vs majority ${base}`);
  const dump = JSON.parse(readFileSync(join(root, "gqa.json"), "utf8"));
  assert.equal(dump.length, own.n);
  assert.deepEqual(Object.keys(dump[0]).sort(), ["prediction", "questionId"]);
});

test("NLVR2: VLMo from scratch beats chance on its split; CSV dump", { timeout: 120_000 }, async (t) => {
  const out = join(root, "nlvr2");
  // 300 steps: each statement form's labels are balanced in the world, so the wording alone scores
  // the majority (0.52 here after 100 steps) and the fit must come from the image pairs
  const r = recipe("nlvr2", "vlmo", { steps: 300 });
  await nlvr2.finetune({ recipe: r, from: null, out, quiet: true });
  const csv = join(root, "nlvr2.csv");
  const own = await nlvr2.evaluate({ checkpoint: out, split: "train", quiet: true, dump: csv });
  t.diagnostic(`NLVR2 accuracy on train ${own.acc.toFixed(3)}`);
  assert.ok(own.acc > 0.6, `NLVR2 accuracy on train ${own.acc} (chance 0.5, majority ${majority("nlvr2", "train")})`);
  const lines = readFileSync(csv, "utf8").trim().split("\n");
  assert.equal(lines.length, own.n);
  assert.match(lines[0], /^train-\d+-\d+-\d+,(True|False)$/);
});

test("pre-trained runs: SemVLP backbone and QA head loaded by name; VLMo NLVR2 third token type from type 1", { timeout: 120_000 }, async () => {
  const semvlp = await pretrainRun("semvlp");
  const pre = loadStateDictFile(join(semvlp, "model.safetensors"));
  const labels = JSON.parse(readFileSync(join(world, "vqa/trainval_label2ans.json"), "utf8")) as string[];
  const ans2label = new Map(labels.map((a, i) => [a, i]));
  const eq = (a: Tensor, b: Tensor) => a.sub(b).abs().max().item() === 0;
  const { net, report } = await pretrainedTaskNet(semvlp, { kind: "qa", answers: labels.length }, { mode: "two", answerHeadFrom: { pretrained: ans2label, task: [...labels].reverse() } });
  const sd = net.model.stateDict();
  for (const [k, t] of sd) if (k.startsWith("bert.")) assert.ok(eq(t, pre.get(k)!), k);
  // the answer rows follow the answers' strings (reversed order here)
  assert.ok(eq(sd.get("answer_head.logit_fc.3.weight")!.select(0, 0), pre.get("answer_head.logit_fc.3.weight")!.select(0, labels.length - 1)));
  assert.match(report.join("\n"), new RegExp(`${labels.length} of ${labels.length} answers shared`));
  net.model.dispose();
  const fresh = await pretrainedTaskNet(semvlp, { kind: "nlvr2" });
  assert.match(fresh.report.join("\n"), /random init: logit_fc\.\* \(6\)/);
  fresh.net.model.dispose();
  for (const t of pre.values()) t.dispose();

  const vlmo = await pretrainRun("vlmo");
  const vpre = loadStateDictFile(join(vlmo, "model.safetensors"));
  const v = await pretrainedTaskNet(vlmo, { kind: "nlvr2" });
  const tt = v.net.model.stateDict().get("token_type_embeddings.weight")!;
  assert.deepEqual(tt.shape, [3, 32]);
  assert.ok(eq(tt.narrow(0, 0, 2), vpre.get("token_type_embeddings.weight")!));
  assert.ok(eq(tt.select(0, 2), tt.select(0, 1)));
  assert.match(v.report.join("\n"), /random init: nlvr2_classifier\.\* \(6\)/);
  assert.ok(![...v.net.model.stateDict().keys()].some((k) => k.startsWith("mlm_score") || k.startsWith("itc_")));
  v.net.model.dispose();
  for (const t of vpre.values()) t.dispose();

  // --from through the CLI, SemVLP mode "best": both modes trained, the better on val kept and recorded
  const rfile = join(root, "vqa-best.json");
  writeFileSync(rfile, JSON.stringify({ ...recipe("vqa", "semvlp", { steps: 4 }, { mode: "best" }), method: undefined, model: undefined }));
  const out = join(root, "vqa-best");
  const res = cli("finetune", "vqa", "--from", semvlp, "--recipe", rfile, "--out", out, "--quiet");
  assert.equal(res.status, 0, res.stderr);
  const info = readRunInfo(out) as { recipe: { options: { mode: string }; modeSelection: Record<string, unknown> } };
  const sel = info.recipe.modeSelection;
  assert.ok(existsSync(join(out, "mode-single", "model.safetensors")) && existsSync(join(out, "mode-two", "model.safetensors")));
  assert.equal(info.recipe.options.mode, sel.chosen);
  assert.ok((sel[sel.chosen as string] as number) >= (sel[sel.chosen === "single" ? "two" : "single"] as number));
  const evalRes = JSON.parse(readFileSync(join(out, "eval.json"), "utf8"));
  assert.equal(evalRes.two_stream, sel.chosen === "two" ? 1 : 0);
  const back = cli("eval", "vqa", "--checkpoint", out, "--split", "val", "--quiet");
  assert.equal(back.status, 0, back.stderr);
  assert.ok(Math.abs(JSON.parse(back.stdout).vqa_acc - evalRes.vqa_acc) < 1e-9, "eval of the kept model reproduces its val accuracy");
});

test("train.headLrMult (the official lr_mult): the task head's first AdamW step is lr x mult, the backbone's lr", { timeout: 120_000 }, async () => {
  const semvlp = join(root, "pre-semvlp");
  if (!existsSync(join(semvlp, "model.safetensors"))) await pretrainRun("semvlp");
  const lr = 1e-3;
  const run = async (mult: number) => {
    const out = join(root, `head-mult-${mult}`);
    await vqa.finetune({ recipe: recipe("vqa", "semvlp", { steps: 1, warmup: 0, lr, weightDecay: 0, headLrMult: mult }), from: semvlp, out, quiet: true });
    return loadStateDictFile(join(out, "model.safetensors"));
  };
  const [one, twenty] = [await run(1), await run(20)];
  // same start (backbone from the run, head from the seed), same batch, same gradient: the backbone
  // moves the same; Adam's first step moves every weight by lr x sign(gradient), so the head's two
  // results differ by (20 - 1) x lr where its gradient is not zero
  let head = 0;
  for (const [k, t] of one) {
    const d = t.sub(twenty.get(k)!).abs().max().item();
    if (k.startsWith("bert.")) assert.equal(d, 0, `${k} moved differently`);
    else head = Math.max(head, d);
  }
  assert.ok(Math.abs(head - 19 * lr) < 0.02 * 19 * lr, `largest head difference ${head}, expected ${19 * lr}`);
  for (const t of [...one.values(), ...twenty.values()]) t.dispose();
  assert.throws(() => recipe("vqa", "semvlp", { headLrMult: 0 }), /headLrMult/);
});

test("train.probeSteps (LP-FT): the head alone first, the backbone frozen; then every tensor", { timeout: 120_000 }, async () => {
  const semvlp = join(root, "pre-semvlp");
  if (!existsSync(join(semvlp, "model.safetensors"))) await pretrainRun("semvlp");
  const lr = 1e-3;
  const out = join(root, "probe");
  await vqa.finetune({ recipe: recipe("vqa", "semvlp", { steps: 1, warmup: 0, lr, weightDecay: 0, probeSteps: 3 }), from: semvlp, out, quiet: true });
  const stages = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { stage: string; source: string }).filter((m) => m.source !== "val").map((m) => m.stage);
  assert.deepEqual(stages, ["vqa-probe", "vqa-probe", "vqa-probe", "vqa"]);
  // the backbone took the fine-tuning's one AdamW step only (each weight moves by at most lr), had the
  // probe moved it too it would be up to 4 x lr away; the head took four steps
  const pre = loadStateDictFile(join(semvlp, "model.safetensors"));
  const after = loadStateDictFile(join(out, "model.safetensors"));
  let backbone = 0;
  for (const [k, t] of after) {
    const p = pre.get(k);
    if (k.startsWith("bert.") && p) backbone = Math.max(backbone, t.sub(p).abs().max().item());
  }
  assert.ok(backbone > 0.5 * lr && backbone <= lr * 1.001, `the backbone moved by ${backbone}, one step of lr ${lr} expected`);
  const fresh = join(root, "probe-none");
  await vqa.finetune({ recipe: recipe("vqa", "semvlp", { steps: 1, warmup: 0, lr, weightDecay: 0 }), from: semvlp, out: fresh, quiet: true });
  const once = loadStateDictFile(join(fresh, "model.safetensors"));
  const headKeys = [...after.keys()].filter((k) => !k.startsWith("bert."));
  assert.ok(headKeys.length > 0);
  const headMove = Math.max(...headKeys.map((k) => after.get(k)!.sub(once.get(k)!).abs().max().item()));
  assert.ok(headMove > 1.5 * lr, `the head's three probe steps moved it ${headMove} beyond one step`);
  for (const m of [pre, after, once]) for (const t of m.values()) t.dispose();
  assert.throws(() => recipe("vqa", "semvlp", { probeSteps: -1 }), /probeSteps/);
});

test("errors name the file or key: missing split, fine-tuning run given as --from, wrong task", { timeout: 60_000 }, async () => {
  await assert.rejects(vqa.evaluate({ checkpoint: join(root, "vqa"), split: "dev", quiet: true }), /lxmert\/vqa_dev\.json: not found/);
  await assert.rejects(vqa.finetune({ recipe: recipe("vqa", "semvlp", { steps: 1 }), from: join(root, "vqa"), out: join(root, "x"), quiet: true }), /a fine-tuning run; --from takes a pre-training run/);
  await assert.rejects(gqa.evaluate({ checkpoint: join(root, "vqa"), split: "val", quiet: true }), /a vqa run, not a gqa one/);
  await assert.rejects(vqa.finetune({ recipe: { ...recipe("vqa", "semvlp", { steps: 1 }), method: undefined }, from: null, out: join(root, "y"), quiet: true }), /recipe\.method and recipe\.model are required with --scratch/);
});
