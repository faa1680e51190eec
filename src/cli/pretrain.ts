// `vlp pretrain --recipe <file> [--set key=value ...] [--out <run dir>] [--resume <run dir>] [--device cpu|cuda|cuda:N]`
// Data parallel: `--nproc N` starts N workers here (src/cli/launch.ts); `--nnodes/--node-rank/
// --master-addr/--master-port` join machines; a worker started with torchrun's environment
// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) joins its group directly.
import { parseArgs } from "node:util";
import { existsSync, mkdirSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { applySets, readRecipeJson, type Recipe } from "../pretrain/recipe.ts";
import { claimRunDir, lockRunDir } from "../train/rundir.ts";
import { writeJsonAtomic } from "../engine/serialize/atomic.ts";
import type { Stage } from "../train/trainer.ts";
import type { Module } from "../engine/index.ts";
import type { Dist } from "../engine/dist.ts";
import { launch, exitWithLauncher } from "./launch.ts";
import { DEVICE_OPTION, deviceFlag, usableDevice } from "./device.ts";
import { progressBars } from "./progress.ts";
// The engine (libtorch) is imported where it is used: the launcher of `--nproc N` never loads it.

/**
 * The recipe's method's model and stages (src/methods/: the registry, loaded with the engine); with
 * `model.init`, the model starts from that checkpoint's tensors (initFromCheckpoint).
 */
export async function buildStrategy(r: Recipe): Promise<{ model: Module; stages: Stage[] }> {
  const { getMethod } = await import("../methods/index.ts");
  const built = getMethod(r.method, "recipe.method").buildStrategy(r);
  if (r.model.init) await initFromCheckpoint(built.model, resolve(r.model.init));
  return built;
}

/**
 * `recipe.model.init`: a foreign pre-trained checkpoint (BERT for SemVLP's shared blocks or
 * LXMERT-S's language side, official LXMERT or VLMo weights) read by loadPretrained; the model's
 * tensors the file lacks keep their initialisation (the heads, the visual side), the file's tensors the
 * model lacks are dropped, and a file that fills none is an error. Prints what it loaded.
 */
export async function initFromCheckpoint(model: Module, file: string): Promise<{ layout: string; loaded: string[]; missing: string[]; unmatched: string[] }> {
  if (!existsSync(file)) throw new Error(`recipe.model.init: ${file} does not exist`);
  const { loadPretrained } = await import("../models/pretrained.ts");
  const r = loadPretrained(model, file, { allowMissing: true, allowUnmatched: true });
  if (r.loaded.length === 0) throw new Error(`recipe.model.init: no tensor of ${file} (read as ${r.layout}) fits the ${model.constructor.name}: its ${r.unmatched.length} tensors all match no tensor of the model`);
  console.log(`vlp pretrain: model.init ${file} (${r.layout}): ${r.loaded.length} tensors loaded, ${r.missing.length} of the model's left as initialised, ${r.unmatched.length} of the file's dropped`);
  return r;
}

/** Writes the run's config.json (method, the model's full config and heads, vocabulary, vlpkit version) beside its weights. */
export async function writePretrainConfig(runDir: string, r: Recipe, model: Module): Promise<void> {
  const { getMethod, writeRunConfig } = await import("../methods/index.ts");
  writeRunConfig(runDir, { kind: "pretrain", method: r.method, spec: getMethod(r.method).modelSpec(r), model });
}

const OPTIONS = {
  recipe: { type: "string" as const },
  set: { type: "string" as const, multiple: true as const, default: [] as string[] },
  out: { type: "string" as const },
  resume: { type: "string" as const },
  overwrite: { type: "boolean" as const, default: false },
  quiet: { type: "boolean" as const, default: false },
  help: { type: "boolean" as const, default: false },
  ...DEVICE_OPTION,
  // data parallel
  nproc: { type: "string" as const },
  nnodes: { type: "string" as const },
  "node-rank": { type: "string" as const },
  "master-addr": { type: "string" as const },
  "master-port": { type: "string" as const },
  "dist-timeout": { type: "string" as const },
  "grad-sync": { type: "string" as const },
  "max-restarts": { type: "string" as const },
};

const HELP = `vlp pretrain --recipe <file> [--set key=value ...] [--out <run dir>] [--resume <run dir>] [--overwrite] [--device D] [--quiet]
  --out DIR                  the run's folder; one that holds a run is refused unless --overwrite (removes the old run first)
  --resume DIR               continue a run from its last intact checkpoint; --set changes are recorded in DIR/changes.jsonl
                             (the method, model, data, seed and stages cannot change)
  --device cpu|cuda|cuda:N   where the model and every batch go (sets train.device; "cuda": each worker's own GPU, cuda:LOCAL_RANK)
data parallel (the recipe's batch size is the global batch, split over the processes):
  --nproc N                  start N worker processes on this machine
  --nnodes M --node-rank K   M machines, this one is K (run the same command on each)
  --master-addr A --master-port P   where node 0's rank 0 hosts the rendezvous (one machine: 127.0.0.1, a free port)
  --dist-timeout S           seconds before a hung peer fails a collective (default 300; env VLP_DIST_TIMEOUT)
  --grad-sync overlap|after  average gradients during backward (c10d Reducer, default) or after it
                             (the process group is NCCL when the device is CUDA, gloo on the CPU; VLP_DIST_BACKEND overrides)
  --max-restarts R           after a worker fails, restart all workers from the last checkpoint up to R times
  Workers started by torchrun or a scheduler (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set) join directly.`;

type Values = ReturnType<typeof parse>["values"];
const parse = (argv: string[]) => parseArgs({ args: argv, options: OPTIONS, strict: true });

function int(v: string | undefined, flag: string, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected an integer >= ${min}, got "${v}"`);
  return n;
}

const defaultRunDir = (recipePath: string) => join("runs", `${basename(recipePath).replace(/\.json$/, "")}-${new Date().toISOString().replace(/[:.]/g, "-")}`);

/** The parent of `--nproc N`: fixes the run directory, starts the workers, restarts them from the last checkpoint if asked. */
async function runLauncher(v: Values): Promise<void> {
  const nproc = int(v.nproc, "--nproc", 1)!;
  deviceFlag(v.device); // its form; whether this machine has it, each worker checks
  const maxRestarts = int(v["max-restarts"], "--max-restarts") ?? 0;
  const timeout = v["dist-timeout"];
  if (timeout !== undefined && !(Number(timeout) > 0)) throw new Error(`--dist-timeout: expected seconds > 0, got "${timeout}"`);
  if (!v.resume && !v.recipe) throw new Error("--recipe <file> is required (or --resume <run dir>)");
  const runDir = v.resume ?? v.out ?? defaultRunDir(v.recipe!);
  claimRunDir(runDir, { resume: !!v.resume, overwrite: !!v.overwrite, resumeFlag: `--resume ${runDir}` });
  lockRunDir(runDir);
  const pass = (resume: boolean) => [
    ...(resume ? ["--resume", runDir] : ["--recipe", v.recipe!, "--out", runDir]),
    ...v.set!.flatMap((s) => ["--set", s]),
    ...(v.quiet ? ["--quiet"] : []),
    ...(v["grad-sync"] ? ["--grad-sync", v["grad-sync"]] : []),
    ...(v.device ? ["--device", v.device] : []),
  ];
  const nnodes = int(v.nnodes, "--nnodes", 1) ?? 1;
  const again = `vlp pretrain --nproc ${nproc}${nnodes > 1 ? " --nnodes ..." : ""} --resume ${runDir}`;
  let resume = !!v.resume;
  for (let attempt = 0; ; attempt++) {
    const r = await launch({
      nproc,
      nnodes,
      nodeRank: int(v["node-rank"], "--node-rank"),
      masterAddr: v["master-addr"],
      masterPort: int(v["master-port"], "--master-port", 1),
      script: fileURLToPath(new URL("./vlp.ts", import.meta.url)),
      args: ["pretrain", ...pass(resume)],
      env: timeout ? { VLP_DIST_TIMEOUT: timeout } : {},
    });
    if (r.code === 0) return;
    // a node other than 0 cannot see the checkpoints; it restarts and rank 0 decides
    const ckpt = nnodes > 1 && (int(v["node-rank"], "--node-rank") ?? 0) > 0 ? "(on node 0)" : (await import("../engine/checkpoint.ts")).latestCheckpoint(runDir);
    if (attempt < maxRestarts && ckpt) {
      process.stderr.write(`vlp pretrain: ${r.failure}; restarting all workers from ${ckpt} (restart ${attempt + 1} of ${maxRestarts})\n`);
      resume = true;
      continue;
    }
    throw new Error(`${r.failure}; the workers were stopped. ${ckpt ? `Resume from the last checkpoint (${ckpt}) with: ${again}` : "No checkpoint was written yet."}`);
  }
}

/** train.device of the recipe this process can read (the run's recipe.json when resuming), if any: what it trains on. */
function peekDevice(v: Values, sets: string[]): string | undefined {
  const file = v.resume ? join(v.resume, "recipe.json") : v.recipe;
  if (!file || !existsSync(file)) return undefined;
  try {
    const d = (readRecipeJson(file, sets).train as { device?: unknown } | undefined)?.device;
    return typeof d === "string" ? d : undefined;
  } catch {
    return undefined; // rank 0 reports a broken recipe
  }
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parse(argv);
  if (values.help) {
    console.log(HELP);
    return;
  }
  if (values.resume && values.overwrite) throw new Error("--resume and --overwrite exclude each other");
  if (values.nproc !== undefined && process.env.VLP_LAUNCHED !== "1") return runLauncher(values);
  if (values.nnodes !== undefined || values["node-rank"] !== undefined) throw new Error("--nnodes/--node-rank need --nproc (workers per machine)");
  const gradSync = values["grad-sync"];
  if (gradSync !== undefined && gradSync !== "overlap" && gradSync !== "after") throw new Error(`--grad-sync: expected overlap or after, got "${gradSync}"`);
  const flagDevice = deviceFlag(values.device);
  // --device is train.device, set before the recipe is validated (fp16 is valid on CUDA only)
  const sets = [...values.set!, ...(flagDevice ? [`train.device=${flagDevice}`] : [])];

  // the device, as far as this process can tell before rank 0 shares the recipe: fail before any group forms
  const deviceHint = flagDevice ?? peekDevice(values, sets);
  if (deviceHint) await usableDevice(deviceHint, flagDevice !== undefined);

  // a worker of a data-parallel run: join the group first (rank 0 reads the recipe for everyone)
  exitWithLauncher();
  const { distConfigFromEnv, initDistributed } = await import("../engine/dist.ts");
  const { manualSeed } = await import("../engine/index.ts");
  const { train } = await import("../train/trainer.ts");
  const cfg = distConfigFromEnv();
  if (cfg && values["dist-timeout"]) cfg.timeoutMs = Math.round(Number(values["dist-timeout"]) * 1000);
  // NCCL for CUDA, gloo for the CPU: every rank decides before the group exists, from --device or its copy of the recipe
  if (cfg) cfg.device = deviceHint ?? "cpu";
  const dist: Dist | undefined = cfg ? await initDistributed(cfg) : undefined;
  const main = !dist || dist.isMain;
  const quiet = values.quiet || !main;
  try {
    let recipe: Recipe | undefined;
    let runDir: string | undefined;
    if (main) {
      // recipes are checked against the registered methods' sections (src/methods/recipe.ts)
      const { loadRecipe, validateRecipe } = await import("../methods/index.ts");
      if (values.resume) {
        runDir = values.resume;
        const saved = join(runDir, "recipe.json");
        if (!existsSync(saved)) throw new Error(`--resume ${runDir}: no recipe.json there (not a vlp run directory)`);
        lockRunDir(runDir);
        const before = readRecipeJson(saved);
        const raw = structuredClone(before);
        applySets(raw, sets);
        recipe = validateRecipe(raw, saved);
        for (const k of ["method", "model", "data"] as const) {
          if (JSON.stringify(before[k]) !== JSON.stringify(recipe[k])) throw new Error(`--resume ${runDir}: --set changes the run's ${k}, which its checkpoints were trained with; start a new run instead`);
        }
        // other changes (lr, steps, ...) are kept in the run's recipe; the trainer warns and records them
        if (JSON.stringify(before) !== JSON.stringify(recipe)) writeJsonAtomic(saved, recipe);
      } else {
        if (!values.recipe) throw new Error("--recipe <file> is required (or --resume <run dir>)");
        recipe = loadRecipe(values.recipe, sets);
        runDir = values.out ?? defaultRunDir(values.recipe);
        // under the launcher (--nproc) the parent has claimed the folder already
        claimRunDir(runDir, { resume: false, overwrite: values.overwrite! && process.env.VLP_LAUNCHED !== "1", resumeFlag: `--resume ${runDir}` });
        mkdirSync(runDir, { recursive: true });
        lockRunDir(runDir);
        writeJsonAtomic(join(runDir, "recipe.json"), recipe);
      }
    }
    if (dist) [recipe, runDir] = dist.broadcastObject([recipe, runDir]);
    const device = await usableDevice(recipe!.train.device, flagDevice !== undefined);
    manualSeed(recipe!.train.seed);
    const { model, stages } = await buildStrategy(recipe!);
    if (main) await writePretrainConfig(runDir!, recipe!, model);
    if (!quiet) console.log(`vlp pretrain: ${recipe!.method} (${model.numParameters().toLocaleString()} parameters), stages ${stages.map((s) => s.name).join(" -> ")}, run ${runDir}${device !== "cpu" ? ` on ${device}` : ""}${dist ? `, ${dist.world} processes (${dist.backend})` : ""}`);
    const t0 = performance.now();
    const summary = await train(model, stages, {
      runDir: runDir!,
      seed: recipe!.train.seed,
      clip: recipe!.train.clip,
      accumulate: recipe!.train.accumulate,
      checkpointEvery: recipe!.train.checkpointEvery,
      keepCheckpoints: recipe!.train.keepCheckpoints,
      evalEvery: recipe!.train.evalEvery,
      logEvery: recipe!.train.logEvery,
      workers: recipe!.train.workers,
      precision: recipe!.train.precision,
      device,
      resume: !!values.resume,
      quiet,
      progress: progressBars,
      dist,
      ddp: gradSync ? { gradSync } : undefined,
    });
    const sec = (performance.now() - t0) / 1000;
    if (main) writeJsonAtomic(join(runDir!, "summary.json"), { seconds: sec, ...(dist ? { processes: dist.world } : {}), stages: summary });
    if (!quiet) {
      console.log(`done in ${sec.toFixed(1)} s; final metrics (mean of the last 20 steps per stage):`);
      for (const [stage, m] of Object.entries(summary)) {
        console.log(`  ${stage}: ${Object.entries(m).filter(([k]) => /loss$|acc|precision|recall/.test(k)).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")}`);
      }
      console.log(`model: ${join(runDir!, "model.safetensors")}; curves: ${join(runDir!, "metrics.html")}`);
    }
    dist?.dispose({ sync: true });
  } catch (e) {
    // a failed group is left as it is: tearing it down could wait on a dead peer until the timeout
    if (dist && !(e as Error).message.includes(`rank ${dist.rank}`)) (e as Error).message = `rank ${dist.rank}: ${(e as Error).message}`;
    throw e;
  }
}
