// Data-parallel scaling on this machine: steps/s of one process with one libtorch thread against
// two processes with one thread each (`vlp pretrain --nproc 2`), on the same global batch, and the
// scaling efficiency (speed-up / 2). The runs alternate (1, 2, 1, 2, ...) so that load from other
// jobs hits both; steps/s is read from metrics.jsonl between step `--skip` and the last step
// (start-up, the first steps and the final evaluation are left out).
// The CPU seconds per step of all worker processes are measured too (from /proc): on a loaded
// machine they show what two idle cores would give.
//   node --import tsx bench/distributed.ts [--recipe recipes/semvlp-tiny.json] [--steps 40] [--rounds 2] [--world data/world-tiny] [--set k=v ...]
import { parseArgs } from "node:util";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir, loadavg } from "node:os";
import { fileURLToPath } from "node:url";

const { values } = parseArgs({
  options: {
    recipe: { type: "string", default: "recipes/semvlp-tiny.json" },
    steps: { type: "string", default: "40" },
    skip: { type: "string", default: "5" },
    rounds: { type: "string", default: "2" },
    world: { type: "string", default: "data/world-tiny" },
    set: { type: "string", multiple: true, default: [] },
  },
});
const repo = fileURLToPath(new URL("..", import.meta.url));
const steps = Number(values.steps);
const skip = Number(values.skip);
const tmp = mkdtempSync(join(tmpdir(), "vlp-bench-dist-"));

let world = values.world!;
if (!existsSync(join(world, "karpathy"))) {
  world = join(tmp, "world");
  console.log(`(no world at ${values.world}: writing a 300-image one to ${world})`);
  const { generateWorld } = await import("../src/data/synth/world.ts");
  await generateWorld({ images: 300, seed: 0, out: world });
}

/** utime + stime of a process in seconds (Linux /proc), 0 once it has exited. */
function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks (USER_HZ = 100 on Linux)
  } catch {
    return 0;
  }
}

interface Measure {
  /** steps/s between step `skip` and the last step (wall clock). */
  stepsPerSec: number;
  /** CPU seconds per step summed over the worker processes, over the same steps. */
  cpuPerStep: number;
}

function run(nproc: number, out: string): Promise<Measure> {
  const args = ["--import", "tsx", join(repo, "src/cli/vlp.ts"), "pretrain", "--recipe", values.recipe!, "--out", out, "--quiet",
    "--set", `train.steps=${steps}`, "--set", "train.workers=0", "--set", "train.checkpointEvery=0", "--set", `data.world=${world}`, ...values.set!.flatMap((x) => ["--set", x])];
  if (nproc > 1) args.push("--nproc", String(nproc));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: repo, env: { ...process.env, VLP_NUM_THREADS: "1" }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    // the workers' CPU time when step `skip` and the last step are logged
    const pids = () => (nproc === 1 ? [child.pid!] : [...stderr.matchAll(/\d+ \(pid (\d+)\)/g)].map((m) => Number(m[1])));
    const metrics = join(out, "metrics.jsonl");
    const cpuAt: Record<number, number> = {};
    const poll = setInterval(() => {
      if (!existsSync(metrics)) return;
      const last = readFileSync(metrics, "utf8").trim().split("\n").filter((l) => l && !l.includes('"val"')).length;
      for (const at of [skip, steps]) if (last >= at && cpuAt[at] === undefined) cpuAt[at] = pids().reduce((a, p) => a + cpuSeconds(p), 0);
    }, 20);
    child.on("exit", (code) => {
      clearInterval(poll);
      if (code !== 0) return reject(new Error(`${nproc} process(es): exit code ${code}\n${stderr}`));
      const rows = readFileSync(metrics, "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((x) => x.source !== "val");
      const a = rows.find((x) => x.step === skip)!;
      const b = rows.at(-1)!;
      resolve({ stepsPerSec: (b.step - a.step) / ((b.time - a.time) / 1000), cpuPerStep: (cpuAt[steps] - cpuAt[skip]) / (b.step - a.step) });
    });
  });
}

const recipe = JSON.parse(readFileSync(join(repo, values.recipe!), "utf8"));
const batchSet = values.set!.find((x) => x.startsWith("train.batchSize="));
if (batchSet) (recipe.train ??= {}).batchSize = Number(batchSet.split("=")[1]);
console.log(`${values.recipe}${values.set!.length ? ` (${values.set!.join(", ")})` : ""}: global batch ${recipe.train?.batchSize ?? 32}, ${steps} steps (steps/s from step ${skip}), 1 libtorch thread per process, load average before: ${loadavg()[0].toFixed(1)}`);
const one: Measure[] = [];
const two: Measure[] = [];
const fmt = (m: Measure) => `${m.stepsPerSec.toFixed(2)} steps/s, ${m.cpuPerStep.toFixed(3)} CPU s/step`;
for (let r = 0; r < Number(values.rounds); r++) {
  one.push(await run(1, join(tmp, `one-${r}`)));
  two.push(await run(2, join(tmp, `two-${r}`)));
  console.log(`  round ${r + 1}: 1 process ${fmt(one.at(-1)!)}; 2 processes ${fmt(two.at(-1)!)} (load ${loadavg()[0].toFixed(1)})`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const s1 = median(one.map((m) => m.stepsPerSec));
const s2 = median(two.map((m) => m.stepsPerSec));
const c1 = median(one.map((m) => m.cpuPerStep));
const c2 = median(two.map((m) => m.cpuPerStep));
const batch = recipe.train?.batchSize ?? 32;
console.log("");
console.log("| processes x threads | global batch | steps/s | speed-up | scaling efficiency | CPU s per step (all processes) |");
console.log("|---|---:|---:|---:|---:|---:|");
console.log(`| 1 x 1 | ${batch} | ${s1.toFixed(2)} | 1.00 | 100% | ${c1.toFixed(3)} |`);
console.log(`| 2 x 1 | ${batch} | ${s2.toFixed(2)} | ${(s2 / s1).toFixed(2)} | ${((100 * s2) / s1 / 2).toFixed(0)}% | ${c2.toFixed(3)} |`);
console.log(`(medians of ${one.length} alternating rounds; load average after: ${loadavg()[0].toFixed(1)}. With 2 idle cores the`);
console.log(` speed-up would approach 2 x ${c1.toFixed(3)} / ${c2.toFixed(3)} = ${((2 * c1) / c2).toFixed(2)}: the CPU work per step of both processes together vs one)`);
rmSync(tmp, { recursive: true, force: true });
