// A run directory belongs to one run: starting a new run over an old one would truncate its
// metrics, replace its recipe and model, and leave its checkpoints for a later --resume under the
// new recipe. The CLIs refuse unless told to continue it (--resume) or to remove it (--overwrite).
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pidAlive } from "../engine/checkpoint.ts";

/** What marks a folder as a vlp run (pre-training or fine-tuning). */
const RUN_FILE = /^(recipe\.json|finetune\.json|metrics\.jsonl|model\.safetensors|summary\.json|eval\.json|ckpt-\d+(\.old|\.tmp-\d+)?|mode-\w+)$/;

/** The names in `dir` that belong to a run (empty when `dir` is missing or holds none). */
export function runFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((n) => RUN_FILE.test(n)).sort();
}

export interface ClaimOptions {
  resume: boolean;
  overwrite: boolean;
  /** How this command continues a run, for the message ("--resume DIR", "--resume"). */
  resumeFlag: string;
}

/**
 * Before a new run writes into `dir`: refuse when it holds a run, unless `overwrite` (the old run is
 * removed first). With `resume` nothing is checked here (the trainer resumes from its checkpoints).
 */
export function claimRunDir(dir: string, o: ClaimOptions): void {
  if (o.resume && o.overwrite) throw new Error("--resume and --overwrite exclude each other");
  if (o.resume) return;
  const found = runFiles(dir);
  if (found.length === 0) return;
  if (o.overwrite) {
    const holder = liveHolder(dir);
    if (holder !== undefined) throw new Error(`${dir}: another vlp process (pid ${holder}) is writing this run; --overwrite would remove it under that process`);
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  const shown = found.length > 4 ? [...found.slice(0, 4), `... ${found.length - 4} more`] : found;
  throw new Error(`--out ${dir}: this folder already holds a run (${shown.join(", ")}); continue it with ${o.resumeFlag}, or start over with --overwrite (removes the old run first)`);
}

/** The lock file of a run directory: the pid of the process writing it. */
export const LOCK_FILE = ".vlp-lock";

/** The pid a lock file names (undefined: no lock there, e.g. released a moment ago, or not a pid). */
function lockOwner(file: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** The pid of another live process holding `dir`'s lock, if any. */
function liveHolder(dir: string): number | undefined {
  const pid = lockOwner(join(dir, LOCK_FILE));
  return pid !== undefined && pid !== process.pid && pidAlive(pid) ? pid : undefined;
}

/**
 * One writer per run directory: two processes training into one folder (a second --resume while the
 * first still runs) would interleave their metrics and race on the checkpoints. Creates
 * `dir/.vlp-lock` holding this process's pid, removed when the process exits; refuses while another
 * live process holds it; a lock left by a process that died is taken over. Workers under the
 * launcher (VLP_LAUNCHED=1) skip it: the launcher holds the lock for them.
 */
export function lockRunDir(dir: string): void {
  if (process.env.VLP_LAUNCHED === "1") return;
  mkdirSync(dir, { recursive: true });
  const file = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: "wx" });
      process.once("exit", () => {
        try {
          if (lockOwner(file) === process.pid) rmSync(file, { force: true });
        } catch {
          // unreadable at exit: leave it (a later taker sees a dead pid and takes it over)
        }
      });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    if (lockOwner(file) === process.pid) return;
    const pid = liveHolder(dir);
    if (pid !== undefined) throw new Error(`${dir}: another vlp process (pid ${pid}) is writing this run; wait for it or stop it (its lock: ${file})`);
    rmSync(file, { force: true }); // stale: its process is gone
  }
  throw new Error(`${dir}: could not take the run's lock (${file})`);
}
