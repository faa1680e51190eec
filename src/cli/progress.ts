/**
 * A minimal progress bar for stderr: count/total, rate, ETA. On a TTY it redraws at most
 * every 100 ms; otherwise it stays quiet (or prints a line every `lineEvery` ms) until `finish()`,
 * which prints one final line.
 */
import type { ProgressFactory } from "../train/progress.ts";

export interface ProgressOptions {
  label?: string;
  /** Defaults to process.stderr. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Minimum milliseconds between redraws (default 100). */
  interval?: number;
  /** Clock, for tests. */
  now?: () => number;
  /**
   * Off a TTY, also print the bar as a line every this many milliseconds while it runs (default:
   * the environment's VLP_PROGRESS_EVERY seconds, else never): `vlp demo` sets it for its child jobs,
   * whose output is a pipe, so that a long job still shows where it is.
   */
  lineEvery?: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const mmss = `${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  return h > 0 ? `${h}:${mmss}` : mmss;
}

export class ProgressBar {
  private count = 0;
  private lastDraw = -Infinity;
  private readonly start: number;
  private readonly stream: NonNullable<ProgressOptions["stream"]>;
  private readonly now: () => number;
  private readonly interval: number;
  private readonly label: string;
  private readonly lineEvery: number;
  private finished = false;
  /** Extra text shown after the rate (e.g. the current loss). */
  status = "";

  constructor(readonly total: number, opts: ProgressOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.now = opts.now ?? (() => performance.now());
    this.interval = opts.interval ?? 100;
    this.label = opts.label ?? "";
    this.lineEvery = opts.lineEvery ?? 1000 * (Number(process.env.VLP_PROGRESS_EVERY) || 0);
    this.start = this.now();
  }

  get done(): number {
    return this.count;
  }

  tick(n = 1): void {
    this.update(this.count + n);
  }

  /** Sets the count (and the status text, when given) and redraws if due. */
  update(count: number, status?: string): void {
    this.count = count;
    if (status !== undefined) this.status = status;
    if (!this.stream.isTTY) {
      if (this.lineEvery <= 0 || count >= this.total) return;
      const t = this.now();
      if (t - Math.max(this.lastDraw, this.start) < this.lineEvery) return;
      this.lastDraw = t;
      this.stream.write(`${this.line(t)}\n`);
      return;
    }
    const t = this.now();
    if (t - this.lastDraw < this.interval && count < this.total) return;
    this.lastDraw = t;
    this.stream.write(`\r${this.line(t)}\x1b[K`);
  }

  /** Print the final line (and a newline). Idempotent. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    const text = this.line(this.now());
    this.stream.write(this.stream.isTTY ? `\r${text}\x1b[K\n` : `${text}\n`);
  }

  /** The text of the bar at time t (ms). */
  line(t: number): string {
    const elapsed = Math.max(1e-9, (t - this.start) / 1000);
    const rate = this.count / elapsed;
    const frac = this.total > 0 ? Math.min(1, this.count / this.total) : 1;
    const width = 24;
    const filled = Math.round(frac * width);
    const bar = "#".repeat(filled) + "-".repeat(width - filled);
    const eta = this.count >= this.total ? `elapsed ${formatDuration(elapsed)}` : `eta ${formatDuration((this.total - this.count) / rate)}`;
    const head = this.label ? `${this.label} ` : "";
    return `${head}[${bar}] ${this.count}/${this.total} ${(frac * 100).toFixed(0)}% ${rate.toFixed(1)}/s ${eta}${this.status ? ` ${this.status}` : ""}`;
  }
}

/** The trainer's and the tasks' progress callback (src/train/progress.ts): a bar on stderr per loop. */
export const progressBars: ProgressFactory = (total, label) => new ProgressBar(total, { label });

/** An `onProgress(done, total)` callback drawing a bar made on its first call (once the total is known); `finish` prints the last line. */
export function lazyProgress(label: string, quiet = false): { onProgress: (done: number, total: number) => void; finish: () => void } {
  let bar: ProgressBar | null = null;
  return {
    onProgress: (done, total) => {
      if (quiet) return;
      bar ??= new ProgressBar(total, { label });
      bar.update(done);
    },
    finish: () => bar?.finish(),
  };
}
