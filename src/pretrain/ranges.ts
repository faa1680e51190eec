// Numeric ranges of recipe fields: a value outside them cannot be right (a negative clip norm
// reverses the gradients, 1000 loader workers exhaust memory), so it is refused naming the key.
import { availableParallelism } from "node:os";

export interface Range {
  int?: boolean;
  /** Smallest allowed value (inclusive). */
  min?: number;
  /** Values must be strictly greater than this. */
  above?: number;
  /** Largest allowed value (inclusive). */
  max?: number;
  /** Why the bound is there, added to the message. */
  why?: string;
}

/** Loader worker threads: more than twice the cores (at least 8) only cost memory. */
export const MAX_WORKERS = Math.max(8, 2 * availableParallelism());

function describe(r: Range): string {
  const lo = r.above !== undefined ? `> ${r.above}` : r.min !== undefined ? `>= ${r.min}` : "";
  const hi = r.max !== undefined ? `<= ${r.max}` : "";
  return `${r.int ? "an integer" : "a number"}${lo || hi ? ` ${[lo, hi].filter(Boolean).join(" and ")}` : ""}`;
}

/** Throws `key: expected an integer >= 1 and <= 1024, got -1` unless `v` is a finite number in `r`. */
export function checkRange(v: unknown, key: string, r: Range): void {
  const ok = typeof v === "number" && Number.isFinite(v) && (!r.int || Number.isInteger(v))
    && (r.min === undefined || v >= r.min) && (r.above === undefined || v > r.above) && (r.max === undefined || v <= r.max);
  if (!ok) throw new Error(`${key}: expected ${describe(r)}${r.why ? ` (${r.why})` : ""}, got ${JSON.stringify(v)}`);
}

/** Check each present field of `obj` against its range. */
export function checkRanges(obj: Record<string, unknown> | undefined, where: string, ranges: Record<string, Range>): void {
  for (const [k, r] of Object.entries(ranges)) if (obj?.[k] !== undefined) checkRange(obj[k], `${where}.${k}`, r);
}

const FRACTION: Range = { min: 0, max: 1 };
export const COUNT: Range = { int: true, min: 0 };

/** The train section of pre-training and fine-tuning recipes. */
export const TRAIN_RANGES: Record<string, Range> = {
  seed: { int: true, min: 0, max: 2 ** 31 - 1 },
  batchSize: { int: true, min: 1, max: 1 << 16 },
  lr: { above: 0, max: 1 },
  warmup: FRACTION,
  epochs: { above: 0, max: 1e6 },
  steps: { int: true, min: 1, max: 1e9 },
  clip: { above: 0, why: "the gradient norm is clipped to it; <= 0 would zero or reverse the gradients" },
  accumulate: { int: true, min: 1, max: 1024 },
  checkpointEvery: COUNT,
  keepCheckpoints: COUNT,
  evalEvery: COUNT,
  logEvery: { int: true, min: 1, max: 1e9 },
  workers: { int: true, min: 0, max: MAX_WORKERS, why: `loader threads; this machine has ${availableParallelism()} cores` },
  weightDecay: FRACTION,
};

export const RATIO = FRACTION;
/** A loss weight. */
export const WEIGHT: Range = { min: 0, max: 1e4 };
