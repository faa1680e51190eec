// What a resumed run must agree on with its checkpoint, and the summary of a run rebuilt from its
// metrics.jsonl (a resumed process trained only part of the run but reports all of it).
import { appendFileSync } from "node:fs";
import { writingTo } from "../engine/serialize/atomic.ts";
import { join } from "node:path";
import type { Stage, TrainOptions } from "./trainer.ts";

/** The training settings stored in each checkpoint (trainer.json's `settings`). */
export interface Settings {
  seed: number;
  clip: number | null;
  accumulate: number;
  stages: { name: string; steps: number | null; epochs: number | null; lr: number; warmup: number; schedule: string; weightDecay: number; sources: [string, number, number][] }[];
}

export function runSettings(stages: Stage[], o: TrainOptions): Settings {
  return {
    seed: o.seed,
    clip: o.clip ?? null,
    accumulate: o.accumulate ?? 1,
    stages: stages.map((st) => ({
      name: st.name,
      steps: st.steps ?? null,
      epochs: st.epochs ?? null,
      lr: st.lr,
      warmup: st.warmup,
      schedule: st.schedule ?? "linear",
      weightDecay: st.weightDecay ?? 0.01,
      sources: st.sources.map((x): [string, number, number] => [x.name, x.batchSize, x.weight ?? 1]),
    })),
  };
}

function flatten(v: unknown, prefix: string, out: Map<string, unknown>): Map<string, unknown> {
  if (typeof v === "object" && v !== null) for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  else out.set(prefix, v);
  return out;
}

/**
 * A resume may change how the rest of the run trains (learning rate, steps, clipping, ...): each
 * change is printed as a warning and appended to the run's `changes.jsonl`, so the run records what
 * it really did. It may not change what makes the checkpoint's state meaningless: the seed (the
 * data order and every random choice so far) or the stages (their names and number).
 */
export function checkResumeSettings(saved: Settings | undefined, now: Settings, o: { runDir: string; checkpoint: string; step: number; stage: number; stageStep: number; warn: (s: string) => void }): void {
  if (!saved) return; // a checkpoint written before settings were recorded
  const names = (s: Settings) => s.stages.map((x) => x.name).join(" -> ");
  if (names(saved) !== names(now)) throw new Error(`--resume: ${o.checkpoint} was trained with stages ${names(saved)}, the recipe now gives ${names(now)}; start a new run to change the stages`);
  if (saved.seed !== now.seed) throw new Error(`--resume: ${o.checkpoint} was trained with seed ${saved.seed}, the recipe now gives ${now.seed}; the seed cannot change on resume (start a new run)`);
  const st = now.stages[o.stage];
  if (st?.steps !== null && st?.steps !== undefined && st.steps < o.stageStep) throw stepsBelow(st.name, st.steps, o.checkpoint, o.stageStep);
  const a = flatten(saved, "", new Map());
  const b = flatten(now, "", new Map());
  const changes: Record<string, [unknown, unknown]> = {};
  for (const k of new Set([...a.keys(), ...b.keys()])) if (a.get(k) !== b.get(k)) changes[k] = [a.get(k) ?? null, b.get(k) ?? null];
  if (Object.keys(changes).length === 0) return;
  o.warn(`--resume ${o.runDir} at step ${o.step} with changed settings: ${Object.entries(changes).map(([k, [x, y]]) => `${k} ${JSON.stringify(x)} -> ${JSON.stringify(y)}`).join(", ")} (recorded in ${join(o.runDir, "changes.jsonl")})`);
  const file = join(o.runDir, "changes.jsonl");
  writingTo(file, () => appendFileSync(file, JSON.stringify({ time: Date.now(), step: o.step, checkpoint: o.checkpoint, changes }) + "\n"));
}

/** A stage asked to end before the step its checkpoint has reached. */
export function stepsBelow(stage: string, steps: number, checkpoint: string, at: number): Error {
  return new Error(`--resume: stage ${stage} now has ${steps} steps, but its checkpoint ${checkpoint} is at step ${at}; give at least ${at} steps, or start a new run`);
}

export type MetricsRow = { step: number; stage: string; source: string; [k: string]: unknown };

/** Keys of a metrics.jsonl row that describe the step rather than measure it. */
const BOOKKEEPING = new Set(["step", "stage", "stage_step", "source", "lr", "grad_norm", "loss_scale", "skipped", "time"]);
const WINDOW = 20;

/** Add one step's metrics to the running window of the last 20 steps. */
export function pushRecent(recent: Record<string, number[]>, metrics: Record<string, number>): void {
  for (const [k, v] of Object.entries(metrics)) {
    const r = (recent[k] ??= []);
    r.push(v);
    if (r.length > WINDOW) r.shift();
  }
}

/** A stage's summary: each metric's mean over the window, then the last evaluation's values. */
export function stageSummary(recent: Record<string, number[]>, evalSummary: Record<string, number>): Record<string, number> {
  return { ...Object.fromEntries(Object.entries(recent).map(([m, v]) => [m, v.reduce((x, y) => x + y, 0) / v.length])), ...evalSummary };
}

/**
 * A stage's summary from logged rows, as the trainer computes it live: the mean of each training
 * metric over the stage's last 20 steps, plus its last held-out evaluation. With `into`, fills the
 * trainer's running window and evaluation instead (a stage resumed in the middle).
 */
export function summarizeHistory(rows: MetricsRow[], stage: string, into?: { recent: Record<string, number[]>; evalSummary: Record<string, number> }): Record<string, number> {
  const recent: Record<string, number[]> = into?.recent ?? {};
  const evalSummary: Record<string, number> = into?.evalSummary ?? {};
  for (const row of rows) {
    if (row.stage !== stage) continue;
    const values = Object.fromEntries(Object.entries(row).filter(([k, v]) => !BOOKKEEPING.has(k) && typeof v === "number")) as Record<string, number>;
    if (row.source === "val") Object.assign(evalSummary, values);
    else pushRecent(recent, values);
  }
  return stageSummary(recent, evalSummary);
}
