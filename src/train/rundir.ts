// A run directory belongs to one run: starting a new run over an old one would truncate its
// metrics, replace its recipe and model, and leave its checkpoints for a later --resume under the
// new recipe. The CLIs refuse unless told to continue it (--resume) or to remove it (--overwrite).
import { existsSync, readdirSync, rmSync } from "node:fs";

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
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  const shown = found.length > 4 ? [...found.slice(0, 4), `... ${found.length - 4} more`] : found;
  throw new Error(`--out ${dir}: this folder already holds a run (${shown.join(", ")}); continue it with ${o.resumeFlag}, or start over with --overwrite (removes the old run first)`);
}
