// `vlp demo`: the main job. Writes a small synthetic world (if missing), then pre-trains tiny
// SemVLP, MSP (LXMERT-S) and VLMo models on it with their recipes, and prints the measured
// pre-training metrics next to their chance levels.
import { parseArgs } from "node:util";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { runSynth } from "./synth.ts";
import { loadRecipe } from "../pretrain/recipe.ts";
import { buildStrategy } from "./pretrain.ts";
import { train } from "../pretrain/trainer.ts";
import { manualSeed, getNumThreads } from "../engine/index.ts";

const RECIPES = ["semvlp-tiny", "msp-tiny", "vlmo-tiny"];

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      images: { type: "string", default: "1000" },
      world: { type: "string", default: "data/world-tiny" },
      runs: { type: "string", default: "runs/demo" },
      recipes: { type: "string", default: RECIPES.join(",") },
      set: { type: "string", multiple: true, default: [] },
      downstream: { type: "boolean", default: true },
    },
  });
  const world = resolve(values.world!);
  if (!existsSync(join(world, "features", "obj36.tsv"))) {
    console.log(`vlp demo: writing a synthetic world of ${values.images} images to ${world}`);
    await runSynth({ images: Number(values.images), seed: 0, out: world });
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
    // the recipe as run, so that `vlp finetune --from`, `vlp eval` and `vlp serve` can read the run
    mkdirSync(runDir, { recursive: true });
    writeFileSync(join(runDir, "recipe.json"), JSON.stringify(r, null, 2));
    console.log(`\n== ${name}: ${r.method}, ${model.numParameters().toLocaleString()} parameters, stages ${stages.map((s) => s.name).join(" -> ")} (${getNumThreads()} threads)`);
    const t0 = performance.now();
    const summary = await train(model, stages, { runDir, seed: r.train.seed, clip: r.train.clip, accumulate: r.train.accumulate, checkpointEvery: r.train.checkpointEvery, evalEvery: r.train.evalEvery, workers: r.train.workers, precision: r.train.precision });
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
  if (values.downstream) await downstream(world, values.runs!, values.recipes!.split(","));
  console.log("\nChance levels: ITM 0.5 (SemVLP, MSP: half the pairs mismatched) or 0.667 majority (VLMo: 1 positive per 2 hard negatives); ITC 1/batch = 0.031; object labels 1/15 classes = 0.067; MLM 1/30522 uniform (the synthetic vocabulary has ~60 words: 0.017).");
}

/**
 * The downstream half of the main job: each pre-trained run fine-tuned on VQA (tiny recipe) and
 * evaluated on the test split and the held-out compositional split, plus zero-shot retrieval.
 * The VLMo VQA run is what `vlp serve --checkpoint runs/demo/vlmo-tiny --vqa runs/demo/vlmo-tiny-vqa` serves.
 */
async function downstream(world: string, runs: string, names: string[]): Promise<void> {
  const { loadTask, loadFinetuneRecipe } = await import("../tasks/task.ts");
  const recipesDir = new URL("../../recipes/finetune/", import.meta.url).pathname;
  const vqa = await loadTask("vqa");
  const retrieval = await loadTask("retrieval");
  const rows: string[][] = [];
  const pct = (v: number | undefined) => (v === undefined ? "" : (100 * v).toFixed(1));
  for (const name of names) {
    const pre = join(runs, name);
    console.log(`\n== ${name}: VQA fine-tuning, then evaluation; zero-shot retrieval`);
    const out = join(runs, `${name}-vqa`);
    const recipe = loadFinetuneRecipe(join(recipesDir, "vqa-tiny.json"), [`data.world=${world}`]);
    await vqa.finetune({ recipe, from: pre, out, quiet: false });
    const test = await vqa.evaluate({ checkpoint: out, split: "test", quiet: true });
    const comp = await vqa.evaluate({ checkpoint: out, split: "test_comp", quiet: true });
    const zs = await retrieval.evaluate({ checkpoint: pre, split: "test", quiet: true });
    rows.push([name, pct(test.vqa_acc), pct(comp.vqa_acc), pct(zs.ir_r1), pct(zs.ir_r10), pct(zs.tr_r1), pct(zs.tr_r10)]);
  }
  console.log("\nDownstream (percent, world test split; comp = held-out compositional split):\n");
  const head = ["pre-trained run", "VQA acc", "VQA acc comp", "ZS IR R@1", "ZS IR R@10", "ZS TR R@1", "ZS TR R@10"];
  console.log(`| ${head.join(" | ")} |\n|${head.map(() => "---").join("|")}|`);
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
  console.log("\nChance levels: VQA always answering the most frequent answer scores 25.8% on the default world's test split; zero-shot IR R@K = K / (test images), i.e. 2% and 20% for R@1 and R@10 with 50 images; TR a little higher (5 captions per image).");
}
