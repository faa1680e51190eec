// `vlp demo`: the main job. Writes a small synthetic world (if missing), then pre-trains tiny
// SemVLP, MSP (LXMERT-S) and VLMo models on it with their recipes, and prints the measured
// pre-training metrics next to their chance levels.
import { parseArgs } from "node:util";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { writeJsonAtomic } from "../engine/serialize/atomic.ts";
import { join, resolve } from "node:path";
import { runSynth } from "./synth.ts";
import { loadRecipe } from "../methods/index.ts";
import { buildStrategy, writePretrainConfig } from "./pretrain.ts";
import { train } from "../train/trainer.ts";
import { claimRunDir, runFiles } from "../train/rundir.ts";
import { manualSeed, getNumThreads } from "../engine/index.ts";
import { vqaAccuracy } from "../tasks/metrics.ts";
import { progressBars } from "./progress.ts";

const RECIPES = ["semvlp-tiny", "msp-tiny", "vlmo-tiny"];
/** Detector-code values per region in the demo's world (the tiny region recipes expect 64 + 32 features). */
export const DEMO_CODE_DIM = 32;

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      images: { type: "string", default: "5000" },
      world: { type: "string", default: "data/world-demo" },
      runs: { type: "string", default: "runs/demo" },
      recipes: { type: "string", default: RECIPES.join(",") },
      set: { type: "string", multiple: true, default: [] },
      /** Only the pre-training half (no held-out evaluation, fine-tuning or summary). */
      "pretrain-only": { type: "boolean", default: false },
      "finetune-set": { type: "string", multiple: true, default: [] },
    },
  });
  const world = resolve(values.world!);
  if (!existsSync(join(world, "features", "obj36.tsv"))) {
    // region features with the detector's class/attribute code (README "Pre-training that learns")
    console.log(`vlp demo: writing a synthetic world of ${values.images} images to ${world}`);
    await runSynth({ images: Number(values.images), seed: 0, out: world, codeDim: DEMO_CODE_DIM });
  } else {
    console.log(`vlp demo: using the synthetic world in ${world}`);
  }
  const recipesDir = new URL("../../recipes/", import.meta.url).pathname;
  const rows: string[][] = [];
  for (const name of values.recipes!.split(",")) {
    const r = loadRecipe(join(recipesDir, `${name}.json`), [`data.world=${world}`, ...values.set!]);
    manualSeed(r.train.seed);
    const { model, stages } = await buildStrategy(r);
    const runDir = join(values.runs!, name);
    startOver(runDir);
    // the recipe as run, so that `vlp finetune --from`, `vlp eval` and `vlp serve` can read the run
    mkdirSync(runDir, { recursive: true });
    writeJsonAtomic(join(runDir, "recipe.json"), r);
    await writePretrainConfig(runDir, r, model);
    console.log(`\n== ${name}: ${r.method}, ${model.numParameters().toLocaleString()} parameters, stages ${stages.map((s) => s.name).join(" -> ")} (${getNumThreads()} threads)`);
    const t0 = performance.now();
    const summary = await train(model, stages, { runDir, seed: r.train.seed, clip: r.train.clip, accumulate: r.train.accumulate, checkpointEvery: r.train.checkpointEvery, evalEvery: r.train.evalEvery, logEvery: r.train.logEvery, workers: r.train.workers, precision: r.train.precision, device: r.train.device, progress: progressBars });
    const sec = (performance.now() - t0) / 1000;
    const steps = readFileSync(join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").filter((l) => !l.includes('"source":"val"')).length;
    for (const [stage, m] of Object.entries(summary)) {
      const f = (k: string) => (m[k] === undefined ? "" : m[k].toFixed(3));
      rows.push([name, stage, f("loss"), f("mlm_acc") || f("text_mlm_acc"), f("itm_acc"), f("itc_i2t_acc"), f("obj_acc"), f("qa_acc")]);
    }
    console.log(`${name}: ${steps} steps in ${sec.toFixed(0)} s (${(steps / sec).toFixed(2)} steps/s); model ${join(runDir, "model.safetensors")}, curves ${join(runDir, "metrics.html")}`);
  }
  console.log("\nFinal pre-training metrics (mean of each stage's last 20 steps):\n");
  const head = ["recipe", "stage", "loss", "MLM acc", "ITM acc", "ITC i2t acc", "object acc", "QA acc"];
  console.log(`| ${head.join(" | ")} |\n|${head.map(() => "---").join("|")}|`);
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
  if (!values["pretrain-only"]) await downstream(world, values.runs!, values.recipes!.split(","), values["finetune-set"]!);
  console.log("\nChance levels: ITM 0.5 (SemVLP, MSP: half the pairs mismatched) or 0.667 majority (VLMo: 1 positive per 2 hard negatives); ITC 1/batch = 0.031; object labels 1/15 classes = 0.067; MLM 1/30522 uniform (the synthetic vocabulary has ~60 words: 0.017).");
}

/** VQA accuracy of always giving the most frequent train answer, on the test split (the official metric). */
export function vqaMajority(world: string, split = "test"): number {
  const read = (sp: string) => (JSON.parse(readFileSync(join(world, "vqa", `v2_synth_${sp}_annotations.json`), "utf8")) as { annotations: { multiple_choice_answer: string; answers: { answer: string }[] }[] }).annotations;
  const counts = new Map<string, number>();
  for (const a of read("train")) counts.set(a.multiple_choice_answer, (counts.get(a.multiple_choice_answer) ?? 0) + 1);
  const top = [...counts].sort((a, b) => b[1] - a[1])[0][0];
  const test = read(split);
  return test.reduce((acc, a) => acc + vqaAccuracy(top, a.answers.map((x) => x.answer)), 0) / test.length;
}

/**
 * The downstream half of the main job, per pre-trained run: what it learned about alignment on the
 * held-out test split (ITM on balanced caption pairs; zero-shot retrieval, on a 100-image subset for
 * the fusion models), then VQA fine-tuned from it and from scratch with the same recipe, on the test
 * split and the held-out compositional split. Writes `<runs>/summary.json`.
 */
async function downstream(world: string, runs: string, names: string[], sets: string[]): Promise<void> {
  const { loadTask, loadFinetuneRecipe } = await import("../tasks/task.ts");
  const { readRunInfo, getMethod } = await import("../methods/index.ts");
  const { evaluatePretraining } = await import("../tasks/pretrain_eval.ts");
  const { runBow } = await import("../baselines/bow.ts");
  const { runQuestionAttention } = await import("../baselines/question_attention.ts");
  const recipesDir = new URL("../../recipes/finetune/", import.meta.url).pathname;
  const vqa = await loadTask("vqa");
  const majority = vqaMajority(world);
  const summary: Record<string, Record<string, number>> = {};
  const images: Record<string, number> = {};
  const pct = (v: number | undefined) => (v === undefined ? "" : (100 * v).toFixed(1));
  console.log("\n== baseline: bag-of-words x mean region feature (src/baselines/bow.ts)");
  const bow = (await runBow({ world, seed: 0 })).metrics;
  summary.baseline_bow = bow;
  console.log("\n== baseline: VQA, the question's bag of words attends the regions (src/baselines/question_attention.ts)");
  const vqaBase = (await runQuestionAttention({ world, task: "vqa", seed: 0 })).metrics;
  summary.baseline_vqa = vqaBase;
  for (const name of names) {
    const pre = join(runs, name);
    const r = readRunInfo(pre);
    console.log(`\n== ${name}: held-out alignment, then VQA fine-tuning from it and from scratch`);
    const fusion = getMethod(r.method).input === "regions";
    const align = await evaluatePretraining(pre, { split: "test", limit: fusion ? 100 : undefined, quiet: true });
    const ft = (from: string | null, out: string) => vqa.finetune({
      recipe: loadFinetuneRecipe(join(recipesDir, "vqa-tiny.json"), [`data.world=${world}`, `method=${r.method}`, `model=${JSON.stringify(r.model)}`, ...sets]),
      from, out, quiet: false, progress: progressBars,
    });
    const outPre = join(runs, `${name}-vqa`), outScratch = join(runs, `${name}-vqa-scratch`);
    startOver(outPre);
    await ft(pre, outPre);
    startOver(outScratch);
    await ft(null, outScratch);
    const test = await vqa.evaluate({ checkpoint: outPre, split: "test", quiet: true });
    const comp = await vqa.evaluate({ checkpoint: outPre, split: "test_comp", quiet: true });
    const scratch = await vqa.evaluate({ checkpoint: outScratch, split: "test", quiet: true });
    const m: Record<string, number> = {
      itm_acc: align.itm_acc, itm_chance: align.itm_chance,
      zs_ir_r1: align.zs_ir_r1, zs_ir_r10: align.zs_ir_r10, zs_tr_r1: align.zs_tr_r1, zs_tr_r10: align.zs_tr_r10,
      zs_chance_r1: align.zs_chance_r1, zs_chance_r10: align.zs_chance_r10,
      vqa_acc: test.vqa_acc, vqa_acc_comp: comp.vqa_acc, vqa_acc_scratch: scratch.vqa_acc, vqa_majority: majority,
    };
    if (!fusion) {
      const last = readFileSync(join(pre, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>).filter((x) => x.val_itc_i2t_acc !== undefined).at(-1);
      if (last) m.itc_i2t_acc = last.val_itc_i2t_acc;
    }
    summary[name] = m;
    images[name] = align.images;
  }
  const file = join(runs, "summary.json");
  writeJsonAtomic(file, summary);
  console.log("\nWhat the pre-trained models learned (percent; held-out test split of the world; chance and the baselines beside):\n");
  const head = ["run", "ITM acc (chance)", "ZS IR R@1 (chance)", "ZS IR R@10 (chance)", "ZS TR R@1", "VQA from pre-trained", "VQA from scratch", "VQA comp", "VQA majority"];
  console.log(`| ${head.join(" | ")} |\n|${head.map(() => "---").join("|")}|`);
  for (const name of names) {
    const m = summary[name];
    console.log(`| ${name} | ${pct(m.itm_acc)} (${pct(m.itm_chance)}) | ${pct(m.zs_ir_r1)} (${pct(m.zs_chance_r1)}, ${images[name]} images) | ${pct(m.zs_ir_r10)} (${pct(m.zs_chance_r10)}) | ${pct(m.zs_tr_r1)} | ${pct(m.vqa_acc)} | ${pct(m.vqa_acc_scratch)} | ${pct(m.vqa_acc_comp)} | ${pct(m.vqa_majority)} |`);
  }
  console.log(`| bag-of-words baseline | ${pct(bow.itm_acc)} (${pct(bow.itm_chance)}) | ${pct(bow.zs_ir_r1)} (${pct(bow.zs_chance_r1)}, all test images) | ${pct(bow.zs_ir_r10)} | ${pct(bow.zs_tr_r1)} | | | | |`);
  console.log(`| VQA baseline (no transformer) | | | | | ${pct(vqaBase.vqa_acc)} | | ${pct(vqaBase.vqa_acc_test_comp)} | |`);
  console.log(`\nsummary: ${file}`);
}

/** The demo owns its runs folder: a run left by an earlier `vlp demo` is removed before it is run again. */
function startOver(dir: string): void {
  if (runFiles(dir).length) console.log(`vlp demo: replacing the earlier run in ${dir}`);
  claimRunDir(dir, { resume: false, overwrite: true, resumeFlag: "" });
}
