// `vlp demo`: the main job. Writes a small synthetic world (if missing), then pre-trains tiny
// SemVLP, MSP (LXMERT-S) and VLMo models on it with their recipes, and prints the measured
// pre-training metrics next to their chance levels.
import { parseArgs } from "node:util";
import { existsSync, readFileSync } from "node:fs";
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
    console.log(`\n== ${name}: ${r.method}, ${model.numParameters().toLocaleString()} parameters, stages ${stages.map((s) => s.name).join(" -> ")} (${getNumThreads()} threads)`);
    const t0 = performance.now();
    const summary = await train(model, stages, { runDir, seed: r.train.seed, clip: r.train.clip, accumulate: r.train.accumulate, checkpointEvery: r.train.checkpointEvery, evalEvery: r.train.evalEvery, workers: r.train.workers });
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
  console.log("\nChance levels: ITM 0.5 (SemVLP, MSP: half the pairs mismatched) or 0.667 majority (VLMo: 1 positive per 2 hard negatives); ITC 1/batch = 0.031; object labels 1/15 classes = 0.067; MLM 1/30522 uniform (the synthetic vocabulary has ~60 words: 0.017).");
}
