// `vlp finetune <task> --from <pretrain run> --recipe <file>` and `vlp eval <task> --checkpoint <run>`.
import { parseArgs } from "node:util";
import { basename, join } from "node:path";
import { writeJsonAtomic } from "../engine/serialize/atomic.ts";
import { claimRunDir, lockRunDir } from "../train/rundir.ts";
import { loadFinetuneRecipe, loadTask } from "../tasks/task.ts";
import { DEVICE_HELP, DEVICE_OPTION, PRECISION_OPTION, deviceFlag, precisionFlag, usableDevice } from "./device.ts";
import { autocastAsync } from "../engine/precision.ts";
import { progressBars } from "./progress.ts";

const FT_HELP = `vlp finetune <vqa|gqa|nlvr2|retrieval> --recipe FILE [--from PRETRAIN_RUN | --scratch] [--out DIR] [--set k=v ...] [--device D] [--resume | --overwrite] [--quiet]
  --from DIR    a pre-training run (recipe.json + model.safetensors); its method and model are used
  --scratch     train the recipe's method/model from random initialisation (the "no pre-training" baseline)
  --resume      continue the run in --out from its last intact checkpoint (changed settings are recorded in changes.jsonl)
  --overwrite   remove the run in --out first (without it, a folder that holds a run is refused)
${DEVICE_HELP}`;

const EVAL_HELP = `vlp eval <vqa|gqa|nlvr2|retrieval> --checkpoint DIR [--split val|test|test_comp] [--dump FILE] [--world DIR] [--rerank K] [--limit N] [--batch-size N] [--metrics FILE] [--device D] [--precision fp32|bf16|fp16]
  --checkpoint  a fine-tuning run; for retrieval also a pre-training run (zero-shot)
  --device      cpu (default), cuda or cuda:N: where the model runs
  --precision   fp32 (default), or bf16 / fp16 (CUDA only) autocast for the forward passes (the weights stay float32)
  --metrics     also write the metrics as JSON to FILE
  --dump        write the official results file (VQA [{question_id, answer}], GQA [{questionId, prediction}], NLVR2 CSV, retrieval rankings)`;

export async function finetuneMain(argv: string[]): Promise<void> {
  const [task, ...rest] = argv;
  if (!task || task === "--help" || task === "-h") {
    console.log(FT_HELP);
    return;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      recipe: { type: "string" },
      from: { type: "string" },
      scratch: { type: "boolean", default: false },
      out: { type: "string" },
      set: { type: "string", multiple: true, default: [] },
      resume: { type: "boolean", default: false },
      overwrite: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
      ...DEVICE_OPTION,
      ...PRECISION_OPTION,
    },
    strict: true,
  });
  if (values.help) {
    console.log(FT_HELP);
    return;
  }
  const flagDevice = deviceFlag(values.device);
  if (!values.recipe) throw new Error(`--recipe <file> is required\n${FT_HELP}`);
  if (!values.from && !values.scratch) throw new Error("give --from <pre-training run> or --scratch");
  if (values.from && values.scratch) throw new Error("--from and --scratch exclude each other");
  // --device is train.device, set before the recipe is validated (fp16 is valid on CUDA only)
  const recipe = loadFinetuneRecipe(values.recipe, [...values.set!, ...(flagDevice ? [`train.device=${flagDevice}`] : [])]);
  if (recipe.task !== task) throw new Error(`${values.recipe}: a ${recipe.task} recipe, not a ${task} one`);
  await usableDevice(recipe.train.device, flagDevice !== undefined);
  const mod = await loadTask(task);
  const out = values.out ?? join("runs", `${task}-${basename(values.recipe).replace(/\.json$/, "")}-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  claimRunDir(out, { resume: values.resume!, overwrite: values.overwrite!, resumeFlag: `--resume (with --out ${out})` });
  lockRunDir(out);
  const t0 = performance.now();
  const metrics = await mod.finetune({ recipe, from: values.from ?? null, out, resume: values.resume, quiet: values.quiet, progress: progressBars });
  writeJsonAtomic(join(out, "eval.json"), { seconds: (performance.now() - t0) / 1000, ...metrics });
  if (!values.quiet) {
    console.log(`vlp finetune ${task}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s -> ${out}`);
    console.log(`  ${Object.entries(metrics).map(([k, v]) => `${k} ${typeof v === "number" ? v.toFixed(4) : v}`).join(", ")}`);
  }
}

export async function evalMain(argv: string[]): Promise<void> {
  const [task, ...rest] = argv;
  if (!task || task === "--help" || task === "-h") {
    console.log(EVAL_HELP);
    return;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      checkpoint: { type: "string" },
      split: { type: "string", default: "val" },
      dump: { type: "string" },
      world: { type: "string" },
      rerank: { type: "string" },
      limit: { type: "string" },
      "batch-size": { type: "string" },
      metrics: { type: "string" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
      ...DEVICE_OPTION,
      ...PRECISION_OPTION,
    },
    strict: true,
  });
  if (values.help) {
    console.log(EVAL_HELP);
    return;
  }
  if (!values.checkpoint) throw new Error(`--checkpoint <dir> is required\n${EVAL_HELP}`);
  const device = await usableDevice(deviceFlag(values.device) ?? "cpu", true);
  const num = (v: string | undefined, flag: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${flag}: expected a non-negative integer, got "${v}"`);
    return n;
  };
  const mod = await loadTask(task);
  const low = precisionFlag(values.precision, device);
  // nothing else computes in this process, so a scope spanning the awaits is safe (see autocastAsync)
  const metrics = await autocastAsync(low, () => mod.evaluate({
    checkpoint: values.checkpoint!,
    split: values.split!,
    dump: values.dump,
    world: values.world,
    rerank: num(values.rerank, "--rerank"),
    limit: num(values.limit, "--limit"),
    batchSize: num(values["batch-size"], "--batch-size"),
    quiet: values.quiet,
    progress: progressBars,
    device,
  }), device);
  if (values.metrics) writeJsonAtomic(values.metrics, metrics);
  console.log(JSON.stringify(metrics, null, 2));
}
