// `vlp pretrain --recipe <file> [--set key=value ...] [--out <run dir>] [--resume <run dir>]`
import { parseArgs } from "node:util";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { loadRecipe, validateRecipe, applySets, type Recipe } from "../pretrain/recipe.ts";
import { train, type Stage } from "../pretrain/trainer.ts";
import { manualSeed, type Module } from "../engine/index.ts";

export async function buildStrategy(r: Recipe): Promise<{ model: Module; stages: Stage[] }> {
  switch (r.method) {
    case "semvlp": return (await import("../pretrain/semvlp.ts")).buildSemVLP(r);
    case "msp": return (await import("../pretrain/msp.ts")).buildMSP(r);
    case "vlmo": return (await import("../pretrain/vlmo.ts")).buildVLMo(r);
  }
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      recipe: { type: "string" },
      set: { type: "string", multiple: true, default: [] },
      out: { type: "string" },
      resume: { type: "string" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log("vlp pretrain --recipe <file> [--set key=value ...] [--out <run dir>] [--resume <run dir>] [--quiet]");
    return;
  }
  let recipe: Recipe;
  let runDir: string;
  if (values.resume) {
    runDir = values.resume;
    const saved = join(runDir, "recipe.json");
    if (!existsSync(saved)) throw new Error(`--resume ${runDir}: no recipe.json there (not a vlp run directory)`);
    const raw = JSON.parse(readFileSync(saved, "utf8"));
    applySets(raw, values.set!);
    recipe = validateRecipe(raw, saved);
  } else {
    if (!values.recipe) throw new Error("--recipe <file> is required (or --resume <run dir>)");
    recipe = loadRecipe(values.recipe, values.set!);
    runDir = values.out ?? join("runs", `${basename(values.recipe).replace(/\.json$/, "")}-${new Date().toISOString().replace(/[:.]/g, "-")}`);
    mkdirSync(runDir, { recursive: true });
    writeFileSync(join(runDir, "recipe.json"), JSON.stringify(recipe, null, 2));
  }
  manualSeed(recipe.train.seed);
  const { model, stages } = await buildStrategy(recipe);
  if (!values.quiet) console.log(`vlp pretrain: ${recipe.method} (${model.numParameters().toLocaleString()} parameters), stages ${stages.map((s) => s.name).join(" -> ")}, run ${runDir}`);
  const t0 = performance.now();
  const summary = await train(model, stages, {
    runDir,
    seed: recipe.train.seed,
    clip: recipe.train.clip,
    accumulate: recipe.train.accumulate,
    checkpointEvery: recipe.train.checkpointEvery,
    evalEvery: recipe.train.evalEvery,
    workers: recipe.train.workers,
    resume: !!values.resume,
    quiet: values.quiet,
  });
  const sec = (performance.now() - t0) / 1000;
  writeFileSync(join(runDir, "summary.json"), JSON.stringify({ seconds: sec, stages: summary }, null, 2));
  if (!values.quiet) {
    console.log(`done in ${sec.toFixed(1)} s; final metrics (mean of the last 20 steps per stage):`);
    for (const [stage, m] of Object.entries(summary)) {
      console.log(`  ${stage}: ${Object.entries(m).filter(([k]) => /loss$|acc|precision|recall/.test(k)).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")}`);
    }
    console.log(`model: ${join(runDir, "model.safetensors")}; curves: ${join(runDir, "metrics.html")}`);
  }
}
