// Learning-rate schedules as pure functions of the step (the number of optimizer updates done so
// far, so the first update uses step 0, as with transformers' LambdaLR schedules). Every function
// returns `base` times a factor; with the default base 1 it returns the factor itself.
//
// Warmup is `warmup` steps, or `warmupRatio` of `total`. A ratio is not rounded: warmup = ratio *
// total exactly, which is LXMERT's BertAdam (warmup as a fraction of t_total); pass integer
// `warmup` steps to reproduce transformers' Trainer (ceil) or VLMo (floor) rounding.

export interface WarmupOptions {
  /** The peak lr (default 1: return the factor). */
  base?: number;
  /** Total optimizer updates of the run. */
  total: number;
  warmup?: number;
  warmupRatio?: number;
}

export function warmupSteps(o: WarmupOptions): number {
  if (o.warmup !== undefined && o.warmupRatio !== undefined) throw new Error("schedule: give warmup or warmupRatio, not both");
  return o.warmup ?? (o.warmupRatio ?? 0) * o.total;
}

/** Linear warmup from 0, then linear decay to 0 at `total` (BERT, LXMERT, transformers' get_linear_schedule_with_warmup). */
export function linearWarmupDecay(step: number, o: WarmupOptions): number {
  const w = warmupSteps(o);
  const base = o.base ?? 1;
  if (step < w) return (base * step) / Math.max(1, w);
  return base * Math.max(0, (o.total - step) / Math.max(1, o.total - w));
}

/**
 * Linear warmup, then (base - end) * (1 - progress)^power + end, holding `end` after `total`
 * (transformers' get_polynomial_decay_schedule_with_warmup, VLMo). `end` is in lr units (default 0).
 */
export function polynomialDecay(step: number, o: WarmupOptions & { power?: number; end?: number }): number {
  const w = warmupSteps(o);
  const base = o.base ?? 1;
  const end = o.end ?? 0;
  if (step < w) return (base * step) / Math.max(1, w);
  if (step > o.total) return end;
  const remaining = 1 - (step - w) / (o.total - w);
  return (base - end) * remaining ** (o.power ?? 1) + end;
}

/**
 * Linear warmup, then half a cosine from base down to `min` at `total`, held there afterwards (min in
 * lr units, default 0). Up to `total` this is transformers' get_cosine_schedule_with_warmup (which
 * would rise again after total) with timm's lr_min.
 */
export function cosineDecay(step: number, o: WarmupOptions & { min?: number }): number {
  const w = warmupSteps(o);
  const base = o.base ?? 1;
  const min = o.min ?? 0;
  if (step < w) return (base * step) / Math.max(1, w);
  const progress = Math.min(1, (step - w) / Math.max(1, o.total - w));
  return min + (base - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** Linear warmup, then constant (transformers' get_constant_schedule_with_warmup). */
export function constantWithWarmup(step: number, o: WarmupOptions): number {
  const w = warmupSteps(o);
  const base = o.base ?? 1;
  return step < w ? (base * step) / Math.max(1, w) : base;
}

/** A schedule described by plain data (what recipes and trainer.json store). */
export type ScheduleConfig =
  | ({ kind: "linear" } & WarmupOptions)
  | ({ kind: "polynomial"; power?: number; end?: number } & WarmupOptions)
  | ({ kind: "cosine"; min?: number } & WarmupOptions)
  | ({ kind: "constant" } & WarmupOptions);

/** Multiplier of each parameter group's initial lr at a step. */
export type Schedule = (step: number) => number;

export function makeSchedule(c: ScheduleConfig): Schedule {
  switch (c.kind) {
    case "linear": return (s) => linearWarmupDecay(s, c);
    case "polynomial": return (s) => polynomialDecay(s, c);
    case "cosine": return (s) => cosineDecay(s, c);
    case "constant": return (s) => constantWithWarmup(s, c);
    default: throw new Error(`schedule: unknown kind ${JSON.stringify((c as { kind: unknown }).kind)}`);
  }
}

/**
 * Set every group's lr to its initial lr times the schedule's value at `step` (with `base` left at
 * 1 the schedule is a factor, so per-group lrs keep their ratios). Returns that value.
 */
export function applyLr(optimizer: { setLrFactor(f: number): void }, step: number, schedule: Schedule | ScheduleConfig): number {
  const factor = typeof schedule === "function" ? schedule(step) : makeSchedule(schedule)(step);
  optimizer.setLrFactor(factor);
  return factor;
}
