// The papers' comparisons at small scale, measured on the synthetic world:
//   A. each method pre-trained vs the same model fine-tuned from scratch (VQA, GQA, NLVR2, retrieval),
//      with zero-shot retrieval and the held-out compositional split next to the in-distribution one;
//   B. SemVLP: single-stream only vs two-stream only vs both (paper Table 4) and an L_s sweep (Figure 3);
//   C. MSP: S, T->S, P->S, T->P->S, T+P+S, S->P->T (MSP Table 4);
//   D. VLMo: MoME vs a standard Transformer, with and without the image-only and text-only stages
//      (VLMo Tables 4 and 5).
// Every run is a `vlp` child process (1 libtorch thread each, --jobs of them at once); a finished run
// is skipped when the script is started again, so an interrupted comparison resumes where it stopped.
//
//   node --import tsx experiments/compare.ts [--world data/world-demo] [--out experiments/runs]
// (the tiny recipes expect the main job's world: vlp data synth --images 5000 --code-dim 32 --out data/world-demo)
//        [--jobs 2] [--seeds 0,1] [--pretrain-seeds 0] [--groups A,B,C,D] [--methods semvlp,msp,vlmo] [--tasks vqa,gqa,nlvr2,retrieval] [--pretrain-scale 1] [--finetune-set task:key=value ...] [--table experiments/RESULTS.md]
// --seeds are group A's fine-tuning seeds. --pretrain-seeds are the pre-training seeds of groups B-D's
// rows (run `<id>-p<seed>` for a seed other than 0): their cells are mean ± std over those runs, each
// held-out on the world's test split (experiments/heldout.ts) and fine-tuned once (the first --seeds seed).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { pretrainedMode } from "../src/tasks/pretrain_eval.ts";
import { meanStd, transferVerdict } from "./stats.ts";
import { pool, runChild } from "../src/cli/children.ts";

const ROOT = resolve(import.meta.dirname, "..");
const VLP = join(ROOT, "src/cli/vlp.ts");

const { values: opt } = parseArgs({
  options: {
    world: { type: "string", default: "data/world-demo" },
    out: { type: "string", default: "experiments/runs" },
    jobs: { type: "string", default: "2" },
    seeds: { type: "string", default: "0,1" },
    "pretrain-seeds": { type: "string", default: "0" },
    groups: { type: "string", default: "A,B,C,D" },
    /** Group A's fine-tuning tasks (default all four; GQA runs with the first seed only). */
    tasks: { type: "string", default: "vqa,gqa,nlvr2,retrieval" },
    /** Group A's methods (default all three). */
    methods: { type: "string", default: "semvlp,msp,vlmo" },
    "pretrain-scale": { type: "string", default: "1" },
    /** A fine-tuning setting for one task, `task:key=value` (repeatable), e.g. `vqa:train.steps=1000`: its runs get their own folders. */
    "finetune-set": { type: "string", multiple: true, default: [] },
    table: { type: "string", default: "experiments/RESULTS.md" },
    "pretrain-only": { type: "boolean", default: false },
    /** Only write the table from the runs already done (cells of runs not done stay "–"). */
    "table-only": { type: "boolean", default: false },
  },
});
const world = resolve(opt.world!);
const out = resolve(opt.out!);
const seeds = opt.seeds!.split(",").map(Number);
const pretrainSeeds = opt["pretrain-seeds"]!.split(",").map(Number);
/** The runs of one row of groups B-D: one per pre-training seed. */
const seedIds = (id: string): string[] => pretrainSeeds.map((p) => (p === 0 ? id : `${id}-p${p}`));
const groups = new Set(opt.groups!.split(","));
const methods = new Set(opt.methods!.split(","));
const tasks = new Set(opt.tasks!.split(","));
const scale = Number(opt["pretrain-scale"]);
const ftSets = new Map<string, string[]>();
for (const s of opt["finetune-set"]!) {
  const m = /^(vqa|gqa|nlvr2|retrieval):([\w.]+=.+)$/.exec(s);
  if (!m) throw new Error(`--finetune-set ${s}: expected task:key=value with task vqa, gqa, nlvr2 or retrieval (e.g. vqa:train.steps=1000)`);
  ftSets.set(m[1], [...(ftSets.get(m[1]) ?? []), m[2]]);
}

// ---- the runs -----------------------------------------------------------------------------------

interface Pretrain { id: string; method: "semvlp" | "msp" | "vlmo"; recipe: string; sets: string[] }
type Task = "vqa" | "gqa" | "nlvr2" | "retrieval";

const steps = (n: number) => Math.max(1, Math.round(n * scale));
const semvlp = (id: string, sets: string[]): Pretrain => ({ id, method: "semvlp", recipe: "recipes/semvlp-tiny.json", sets: [`train.steps=${steps(300)}`, ...sets] });
// step counts only: the recipe's per-stage settings (e.g. the sentence stage's loss weights) stay
const mspStages = [`msp.stages.token.steps=${steps(80)}`, `msp.stages.phrase.steps=${steps(80)}`, `msp.stages.sentence.steps=${steps(160)}`];
const msp = (id: string, sets: string[]): Pretrain => ({ id, method: "msp", recipe: "recipes/msp-tiny.json", sets: [...mspStages, ...sets] });
const vlmoStages = [`vlmo.stages.image.steps=${steps(60)}`, `vlmo.stages.text.steps=${steps(60)}`, `vlmo.stages.image-text.steps=${steps(200)}`];
const vlmo = (id: string, sets: string[]): Pretrain => ({ id, method: "vlmo", recipe: "recipes/vlmo-tiny.json", sets: [...vlmoStages, ...sets] });

const BASE_PRETRAIN: Pretrain[] = [
  semvlp("semvlp-both", ["semvlp.singleRatio=0.5"]),
  semvlp("semvlp-single", ["semvlp.singleRatio=1"]),
  semvlp("semvlp-two", ["semvlp.singleRatio=0"]),
  ...[0, 3].map((ls) => semvlp(`semvlp-two-ls${ls}`, ["semvlp.singleRatio=0", `model.overrides.crossLayerStart=${ls}`])),
  msp("msp-TPS", ['msp.order=["token","phrase","sentence"]']),
  msp("msp-S", ['msp.order=["sentence"]']),
  msp("msp-TS", ['msp.order=["token","sentence"]']),
  msp("msp-PS", ['msp.order=["phrase","sentence"]']),
  msp("msp-joint", ['msp.order=["token","phrase","sentence"]', "msp.joint=true"]),
  msp("msp-SPT", ['msp.order=["sentence","phrase","token"]']),
  vlmo("vlmo-mome-stagewise", []),
  vlmo("vlmo-mome-pairs", ['vlmo.order=["image-text"]']),
  vlmo("vlmo-standard-stagewise", ["vlmo.standard=true"]),
  vlmo("vlmo-standard-pairs", ['vlmo.order=["image-text"]', "vlmo.standard=true"]),
];
/** Group A: each method's pre-trained run, against the same model from scratch. */
const GROUP_A = [["semvlp", "semvlp-both"], ["msp", "msp-TPS"], ["vlmo", "vlmo-mome-stagewise"]] as const;
// every pre-training seed of every row (seed 0 keeps the recipe's seed and the plain id)
const PRETRAIN: Pretrain[] = BASE_PRETRAIN.flatMap((p) => pretrainSeeds.map((q) => (q === 0 ? p : { ...p, id: `${p.id}-p${q}`, sets: [...p.sets, `train.seed=${q}`] })));
// from scratch: the same model as the pre-trained runs (the tiny recipe's preset and overrides)
const modelOf = (recipe: string): string => JSON.stringify((JSON.parse(readFileSync(recipe, "utf8")) as { model: unknown }).model);
const METHOD_OF: Record<string, { method: string; model: string }> = {
  semvlp: { method: "semvlp", model: modelOf("recipes/semvlp-tiny.json") },
  msp: { method: "msp", model: modelOf("recipes/msp-tiny.json") },
  vlmo: { method: "vlmo", model: modelOf("recipes/vlmo-tiny.json") },
};

interface Finetune { pre: string | null; method: string; task: Task; seed: number }
const finetunes: Finetune[] = [];
const add = (pre: string | null, method: string, ts: Task[], s: number[]) => {
  for (const task of ts) for (const seed of s) if (tasks.has(task)) finetunes.push({ pre, method, task, seed });
};
const MAIN: Task[] = ["vqa", "nlvr2", "retrieval"];
if (groups.has("A")) {
  // every seed for VQA, NLVR2 and retrieval; GQA (two-stage) with the first seed only, for time
  for (const [m, pre] of [...GROUP_A, ...GROUP_A.map(([method]) => [method, null] as const)]) {
    if (!methods.has(m)) continue;
    add(pre, m, MAIN, seeds);
    add(pre, m, ["gqa"], seeds.slice(0, 1));
  }
}
if (groups.has("B")) for (const id of ["semvlp-both", "semvlp-single", "semvlp-two", "semvlp-two-ls0", "semvlp-two-ls3"].flatMap(seedIds)) add(id, "semvlp", ["vqa", "nlvr2"], seeds.slice(0, 1));
if (groups.has("C")) for (const id of ["msp-S", "msp-TS", "msp-PS", "msp-TPS", "msp-joint", "msp-SPT"].flatMap(seedIds)) add(id, "msp", ["vqa", "nlvr2"], seeds.slice(0, 1));
if (groups.has("D")) for (const id of ["vlmo-mome-stagewise", "vlmo-mome-pairs", "vlmo-standard-stagewise", "vlmo-standard-pairs"].flatMap(seedIds)) add(id, "vlmo", ["nlvr2", "retrieval"], seeds.slice(0, 1));
// one job per distinct (pre, task, seed, --finetune-set of the task)
const ftSuffix = (task: string) => (ftSets.get(task) ?? []).map((s) => `-${s.replace(/[^\w.=]/g, "")}`).join("");
const ftKey = (f: Finetune) => `${f.task}-${f.pre ?? `scratch-${f.method}`}-s${f.seed}${ftSuffix(f.task)}`;
const uniqueFt = [...new Map(finetunes.map((f) => [ftKey(f), f])).values()];
const neededPre = PRETRAIN.filter((p) => uniqueFt.some((f) => f.pre === p.id));

// ---- running ------------------------------------------------------------------------------------

/** A `vlp` (or experiments script) child run with 1 libtorch thread, its output in `log`; rejects naming the log if it fails. */
async function vlp(args: string[], log: string, script = VLP): Promise<void> {
  const code = await runChild(["--import", "tsx", script, ...args], { log, cwd: ROOT, env: { ...process.env, VLP_NUM_THREADS: "1" } });
  if (code !== 0) throw new Error(`vlp ${args.slice(0, 2).join(" ")} failed (exit ${code}); log: ${log}`);
}

/** `fn` on every item, `jobs` at once; a failure is printed and leaves its cells empty. */
async function run<T>(items: T[], jobs: number, fn: (x: T) => Promise<void>): Promise<void> {
  const failed = await pool(items, jobs, async (x) => {
    try {
      await fn(x);
    } catch (e) {
      console.error(`  FAILED: ${(e as Error).message}`);
      throw e;
    }
  });
  if (failed.length) console.error(`${failed.length} job(s) failed; their cells are empty`);
}

const t0 = performance.now();
const stamp = () => `[${((performance.now() - t0) / 60000).toFixed(1)} min]`;
const jobs = opt["table-only"] ? 0 : Number(opt.jobs);
mkdirSync(out, { recursive: true });

const preDir = (id: string) => join(out, "pretrain", id);
await run(neededPre, jobs, async (p) => {
  const dir = preDir(p.id);
  if (existsSync(join(dir, "model.safetensors"))) return;
  console.log(`${stamp()} pretrain ${p.id}`);
  const resume = existsSync(join(dir, "recipe.json"));
  const args = resume ? ["pretrain", "--resume", dir, "--quiet"] : ["pretrain", "--recipe", p.recipe, "--out", dir, "--quiet", "--set", `data.world=${world}`, ...p.sets.flatMap((s) => ["--set", s])];
  mkdirSync(dir, { recursive: true });
  await vlp(args, join(out, "pretrain", `${p.id}.log`));
});

if (opt["pretrain-only"]) process.exit(0);

// zero-shot retrieval on the whole test split straight from group A's pre-trained runs (groups B-D read
// the held-out file's, on the first 100 images: a fusion model scores every pair, ~12 min per run here)
const zsFile = (id: string) => join(out, "zeroshot", `${id}.json`);
mkdirSync(join(out, "zeroshot"), { recursive: true });
const groupA = new Set<string>(groups.has("A") ? GROUP_A.map(([, pre]) => pre) : []);
await run(neededPre.filter((p) => groupA.has(p.id)), jobs, async (p) => {
  if (existsSync(zsFile(p.id)) || !existsSync(join(preDir(p.id), "model.safetensors"))) return;
  console.log(`${stamp()} zero-shot retrieval ${p.id}`);
  await vlp(["eval", "retrieval", "--checkpoint", preDir(p.id), "--split", "test", "--metrics", zsFile(p.id), "--quiet"], zsFile(p.id).replace(/json$/, "log"));
});

/** A fusion model (SemVLP, LXMERT-S) scores every (caption, image) pair: its retrieval is evaluated on the first 100 images of a split. */
const FUSION_RETRIEVAL_IMAGES = 100;
// held-out alignment of every pre-trained run (ITM, ITM with hard negatives, zero-shot R@K; the fusion
// models on the first 100 test images, as experiments/heldout.ts prints them)
const heldoutFile = (id: string) => join(out, "heldout", `${id}.json`);
mkdirSync(join(out, "heldout"), { recursive: true });
await run(neededPre, jobs, async (p) => {
  if (existsSync(heldoutFile(p.id)) || !existsSync(join(preDir(p.id), "model.safetensors"))) return;
  console.log(`${stamp()} held-out alignment ${p.id}`);
  const limit = p.method === "vlmo" ? [] : ["--limit", String(FUSION_RETRIEVAL_IMAGES)];
  await vlp([...limit, "--out", heldoutFile(p.id), preDir(p.id)], heldoutFile(p.id).replace(/json$/, "log"), join(ROOT, "experiments/heldout.ts"));
});

const ftDir = (f: Finetune) => join(out, "finetune", ftKey(f));
const fusionRetrieval = (f: Finetune) => f.task === "retrieval" && f.method !== "vlmo";
const evalFile = (f: Finetune, split: string) => join(ftDir(f), `test-${split}.json`);
const COMP: Partial<Record<Task, boolean>> = { vqa: true, gqa: true, nlvr2: true, retrieval: true };
await run(uniqueFt, jobs, async (f) => {
  const dir = ftDir(f);
  if (f.pre && !existsSync(join(preDir(f.pre), "model.safetensors"))) throw new Error(`${ftKey(f)}: pre-training ${f.pre} did not finish`);
  if (!existsSync(join(dir, "eval.json"))) {
    console.log(`${stamp()} finetune ${ftKey(f)}`);
    const m = METHOD_OF[f.method];
    const from = f.pre ? ["--from", preDir(f.pre)] : ["--scratch", "--set", `method=${m.method}`, "--set", `model=${m.model}`];
    const resume = existsSync(join(dir, "finetune.json")) ? ["--resume"] : [];
    // a SemVLP run pre-trained two-stream only is fine-tuned in that mode (the others in single-stream mode)
    const mode = f.pre && f.method === "semvlp" && pretrainedMode(preDir(f.pre)) === "two" && (f.task === "vqa" || f.task === "nlvr2") ? ["--set", "options.mode=two"] : [];
    await vlp(["finetune", f.task, "--recipe", `recipes/finetune/${f.task}-tiny.json`, ...from, ...mode, "--out", dir, "--quiet", "--set", `data.world=${world}`, "--set", `train.seed=${f.seed}`, ...(ftSets.get(f.task) ?? []).flatMap((s) => ["--set", s]), ...(fusionRetrieval(f) ? ["--set", `options.evalLimit=${FUSION_RETRIEVAL_IMAGES}`] : []), ...resume], `${dir}.log`);
  }
  for (const split of COMP[f.task] ? ["test", "test_comp"] : ["test"]) {
    if (existsSync(evalFile(f, split))) continue;
    await vlp(["eval", f.task, "--checkpoint", dir, "--split", split, "--metrics", evalFile(f, split), "--quiet", ...(fusionRetrieval(f) ? ["--limit", String(FUSION_RETRIEVAL_IMAGES)] : [])], `${dir}-${split}.log`);
  }
});
if (jobs > 0) console.log(`${stamp()} all runs done`);

// ---- the tables -----------------------------------------------------------------------------------

const readJson = (p: string): Record<string, number> | null => (existsSync(p) ? JSON.parse(readFileSync(p, "utf8")) : null);

/** The headline number of a task's metrics: VQA accuracy, accuracy, or retrieval's mean of R@1/5/10 (IR and TR). */
function headline(task: Task, m: Record<string, number> | null): number | null {
  if (!m) return null;
  if (task === "retrieval") {
    if (typeof m.r_mean === "number") return m.r_mean;
    const ks = ["ir_r1", "ir_r5", "ir_r10", "tr_r1", "tr_r5", "tr_r10"].map((k) => m[k]);
    return ks.every((v) => typeof v === "number") ? ks.reduce((a, b) => a + b, 0) / ks.length : null;
  }
  const v = m.vqa_acc ?? m.acc ?? m.accuracy;
  return typeof v === "number" ? v : null;
}

/** The headline metric of each fine-tuning seed that finished. */
const seedValues = (pre: string | null, method: string, task: Task, split: string, s: number[]): number[] =>
  s.map((seed) => headline(task, readJson(evalFile({ pre, method, task, seed }, split)))).filter((v): v is number => v !== null);

const cell = (pre: string | null, method: string, task: Task, split: string, s: number[]): string => meanStd(seedValues(pre, method, task, split, s));

/**
 * Transfer verdict: pre-trained minus scratch, and whether it exceeds twice the larger of the two
 * seed standard deviations (issue 12's bar); "–" without two seeds on both sides.
 */
const transfer = (pre: string, method: string, task: Task, split: string, s: number[]): string =>
  transferVerdict(seedValues(pre, method, task, split, s), seedValues(null, method, task, split, s));

/** mean ± std over a row's pre-training seeds of `get(run id)` (percent). */
const overSeeds = (id: string, get: (run: string) => number | null | undefined): string =>
  meanStd(seedIds(id).map(get).filter((v): v is number => typeof v === "number"));
const heldout = (id: string, key: string) => overSeeds(id, (r) => readJson(heldoutFile(r))?.[key]);
const ftOver = (id: string, method: string, task: Task, split: string) => overSeeds(id, (r) => headline(task, readJson(evalFile({ pre: r, method, task, seed: seeds[0] }, split))));
const zsOver = (id: string) => heldout(id, "zs_r_mean");

const zs = (id: string) => {
  const v = headline("retrieval", readJson(zsFile(id)));
  return meanStd(v === null ? [] : [v]);
};

const lines: string[] = [];
const row = (xs: string[]) => lines.push(`| ${xs.join(" | ")} |`);
const head = (xs: string[]) => {
  row(xs);
  row(xs.map(() => "---"));
};
lines.push(`Measured by \`node --import tsx experiments/compare.ts\` on ${world.replace(ROOT + "/", "")} (fine-tuning seeds ${seeds.join(",")}; pre-training seeds ${pretrainSeeds.join(",")}; pre-training scale ×${scale}${ftSets.size ? `; fine-tuning ${[...ftSets].map(([t, s]) => `${t}: ${s.join(", ")}`).join("; ")}` : ""}); ${new Date().toISOString().slice(0, 10)}.`);
lines.push(`All numbers are percentages on the world's test split (comp = the held-out compositional split, \`test_comp\`). VQA: official VQA accuracy; GQA, NLVR2: accuracy; retrieval: mean of IR and TR R@1/5/10 (SemVLP and MSP, which score every pair with their ITM head: the first ${FUSION_RETRIEVAL_IMAGES} images of the split; VLMo: all); ZS: zero-shot retrieval from the pre-trained checkpoint on the whole test split. Group A: \`a ± b\` is the mean ± sample standard deviation over the fine-tuning seeds (one pre-training run per row). Groups B-D: over the pre-training seeds, each fine-tuned once (seed ${seeds[0]}); "held-out ITM" (every test caption with its own image and a random one, chance 50), ITM_HS (with a hard negative, \`itm_hs_acc\`), ZS R@1 (chance 1.0) and ZS retrieval (mean of IR and TR R@1/5/10, chance 5.3) are experiments/heldout.ts's numbers on the first 100 test images (VLMo: all).`);
lines.push("");
if (groups.has("A")) {
  lines.push("**A. Pre-trained vs from scratch**", "");
  const gqa = tasks.has("gqa");
  head(["method", "init", "VQA", "VQA comp", ...(gqa ? ["GQA", "GQA comp"] : []), "NLVR2", "NLVR2 comp", "retrieval", "retrieval comp", "retrieval ZS"]);
  for (const [method, pre] of GROUP_A) {
    if (!methods.has(method)) continue;
    for (const p of [pre, null]) {
      const c = (t: Task, split: string) => cell(p, method, t, split, seeds);
      row([method, p ? `pre-trained (${p})` : "scratch", c("vqa", "test"), c("vqa", "test_comp"), ...(gqa ? [c("gqa", "test"), c("gqa", "test_comp")] : []), c("nlvr2", "test"), c("nlvr2", "test_comp"), c("retrieval", "test"), c("retrieval", "test_comp"), p ? zs(p) : "–"]);
    }
  }
  lines.push("", "Transfer (pre-trained − scratch, points) against twice the larger seed standard deviation:", "");
  head(["method", "VQA", "VQA comp", "NLVR2", "NLVR2 comp", "retrieval", "retrieval comp"]);
  for (const [method, pre] of GROUP_A) {
    if (!methods.has(method)) continue;
    const t = (task: Task, split: string) => transfer(pre, method, task, split, seeds);
    row([method, t("vqa", "test"), t("vqa", "test_comp"), t("nlvr2", "test"), t("nlvr2", "test_comp"), t("retrieval", "test"), t("retrieval", "test_comp")]);
  }
  lines.push("");
}
if (groups.has("B")) {
  lines.push("**B. SemVLP: pre-training modes (paper Table 4) and L_s (Figure 3; two-stream only, 4 layers)**", "");
  head(["pre-training", "L_s", "held-out ITM", "ZS IR R@1", "ZS TR R@1", "ZS retrieval", "VQA", "VQA comp", "NLVR2"]);
  for (const [id, what, ls] of [["semvlp-single", "single-stream only", "2"], ["semvlp-two", "two-stream only", "2"], ["semvlp-both", "both (50/50)", "2"], ["semvlp-two-ls0", "two-stream only", "0"], ["semvlp-two-ls3", "two-stream only", "3"]]) {
    row([what, ls, heldout(id, "itm_acc"), heldout(id, "zs_ir_r1"), heldout(id, "zs_tr_r1"), zsOver(id), ftOver(id, "semvlp", "vqa", "test"), ftOver(id, "semvlp", "vqa", "test_comp"), ftOver(id, "semvlp", "nlvr2", "test")]);
  }
  lines.push("");
}
if (groups.has("C")) {
  lines.push("**C. MSP stage orders on LXMERT-S (MSP Table 4)**", "");
  head(["stages", "held-out ITM", "ITM_HS", "ZS IR R@1", "ZS retrieval", "VQA", "NLVR2"]);
  for (const [id, what] of [["msp-S", "S"], ["msp-TS", "T→S"], ["msp-PS", "P→S"], ["msp-TPS", "T→P→S"], ["msp-joint", "T+P+S (joint)"], ["msp-SPT", "S→P→T"]]) {
    row([what, heldout(id, "itm_acc"), heldout(id, "itm_hs_acc"), heldout(id, "zs_ir_r1"), zsOver(id), ftOver(id, "msp", "vqa", "test"), ftOver(id, "msp", "nlvr2", "test")]);
  }
  lines.push("");
}
if (groups.has("D")) {
  lines.push("**D. VLMo: MoME vs standard Transformer, with and without the image-only and text-only stages (VLMo Tables 4, 5)**", "");
  head(["Transformer", "pre-training", "ZS IR R@1", "ZS retrieval", "NLVR2", "retrieval"]);
  for (const [id, tf, what] of [["vlmo-mome-stagewise", "MoME", "image → text → image-text"], ["vlmo-mome-pairs", "MoME", "image-text only"], ["vlmo-standard-stagewise", "standard", "image → text → image-text"], ["vlmo-standard-pairs", "standard", "image-text only"]]) {
    row([tf, what, heldout(id, "zs_ir_r1"), zsOver(id), ftOver(id, "vlmo", "nlvr2", "test"), ftOver(id, "vlmo", "retrieval", "test")]);
  }
  lines.push("");
}
writeFileSync(resolve(opt.table!), lines.join("\n") + "\n");
console.log(lines.join("\n"));
