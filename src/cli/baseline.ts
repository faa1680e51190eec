// `vlp baseline <bow|linear|vqa|nlvr2> --world DIR [--steps N] [--seed S] [--out RUN_DIR]`: train a simple
// baseline on a world's train split, evaluate it on held-out captions (VQA, NLVR2: questions, statements) and write `metrics.json`
// (see src/baselines/ and README "Baselines").
import { parseArgs } from "node:util";
import { mkdirSync } from "node:fs";
import { writeJsonAtomic } from "../engine/serialize/atomic.ts";
import { join } from "node:path";

const HELP = `usage: vlp baseline <bow|linear|vqa|nlvr2> --world DIR [--steps N] [--seed S] [--out RUN_DIR]
  bow     bag-of-words x mean region feature, bilinear score (ITM BCE + in-batch contrastive)
  linear  dual encoder: linear patch projection + mean pooling, bag of words; in-batch ITC
  vqa     VQA: the question's bag of words attends the regions; official VQA accuracy on val, test, test_comp
  nlvr2   NLVR2: the statement's bag of words attends each image's regions; accuracy on val, test, test_comp
options: [--batch-size B] [--lr LR] [--dim D] [--loss itm|itc|itm+itc (bow)] [--box-hidden H (bow)]
         [--preset tiny|small|... (linear: the VLMo preset whose image and patch size it uses; default tiny)]
         [--count (vqa, nlvr2: also a count-preserving read-out, a sigmoid-gated sum over the boxes)]
         [--log-every N] [--quiet]
writes RUN_DIR/metrics.json (default runs/baseline-<kind>-seed<S>) and prints the metrics with chance levels`;

export async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      world: { type: "string" },
      steps: { type: "string" },
      seed: { type: "string", default: "0" },
      out: { type: "string" },
      "batch-size": { type: "string" },
      lr: { type: "string" },
      dim: { type: "string" },
      loss: { type: "string" },
      "box-hidden": { type: "string" },
      preset: { type: "string" },
      count: { type: "boolean", default: false },
      "log-every": { type: "string" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const kind = positionals[0];
  if (kind !== "bow" && kind !== "linear" && kind !== "vqa" && kind !== "nlvr2") throw new Error(`expected "bow", "linear", "vqa" or "nlvr2", got "${kind ?? ""}"\n${HELP}`);
  if (positionals.length > 1) throw new Error(`unexpected argument "${positionals[1]}"`);
  if (!values.world) throw new Error("--world DIR is required");
  const num = (v: string | undefined, flag: string, integer = true): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) throw new Error(`${flag}: expected a non-negative ${integer ? "integer" : "number"}, got "${v}"`);
    return n;
  };
  const seed = num(values.seed, "--seed")!;
  const common = {
    world: values.world,
    seed,
    steps: num(values.steps, "--steps"),
    batchSize: num(values["batch-size"], "--batch-size"),
    lr: num(values.lr, "--lr", false),
    dim: num(values.dim, "--dim"),
    logEvery: num(values["log-every"], "--log-every") ?? (values.quiet ? 0 : 250),
  };
  const defined = <T extends object>(o: T): Partial<T> => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  let run;
  if (values.count && kind !== "vqa" && kind !== "nlvr2") throw new Error("--count is a vqa/nlvr2 option");
  if (kind === "vqa" || kind === "nlvr2") {
    if (values.loss !== undefined || values["box-hidden"] !== undefined || values.preset !== undefined) throw new Error("--loss, --box-hidden and --preset are bow/linear options");
    const { runQuestionAttention } = await import("../baselines/question_attention.ts");
    run = await runQuestionAttention({ ...defined(common), world: values.world, task: kind, count: values.count });
  } else if (kind === "bow") {
    if (values.preset !== undefined) throw new Error("--preset is a linear option");
    const loss = values.loss;
    if (loss !== undefined && loss !== "itm" && loss !== "itc" && loss !== "itm+itc") throw new Error(`--loss: expected itm, itc or itm+itc, got "${loss}"`);
    const { runBow } = await import("../baselines/bow.ts");
    run = await runBow({ ...defined(common), world: values.world, ...defined({ loss, boxHidden: num(values["box-hidden"], "--box-hidden") }) });
  } else {
    if (values.loss !== undefined || values["box-hidden"] !== undefined) throw new Error("--loss and --box-hidden are bow options");
    const { runLinear } = await import("../baselines/linear.ts");
    const { VLMO_PRESETS } = await import("../models/vlmo/index.ts");
    const preset = values.preset;
    if (preset !== undefined && !Object.hasOwn(VLMO_PRESETS, preset)) throw new Error(`--preset: expected one of ${Object.keys(VLMO_PRESETS).join(", ")}, got "${preset}"`);
    run = await runLinear({ ...defined(common), world: values.world, ...defined({ preset: preset as keyof typeof VLMO_PRESETS | undefined }) });
  }
  const out = values.out ?? join("runs", `baseline-${kind}-seed${seed}`);
  mkdirSync(out, { recursive: true });
  writeJsonAtomic(join(out, "metrics.json"), run.metrics);
  const { formatTable, metricRows } = await import("../baselines/common.ts");
  console.log(run.description);
  console.log(formatTable(`baseline ${kind} (${run.metrics.steps} steps, ${run.metrics.seconds.toFixed(1)} s)`, metricRows(run.metrics)));
  console.log(`wrote ${join(out, "metrics.json")}`);
}
