// How long-running loops (training stages, evaluation and scoring passes) report progress: through a
// callback the caller passes, so the loops never draw anything themselves. The CLI passes its terminal
// bar (src/cli/progress.ts); a library caller passes its own, or nothing.

/** One progress display: `done` of its total, with an optional status text (e.g. the current loss). */
export interface Progress {
  update(done: number, status?: string): void;
  /** The last line; called once when the loop ends (also on errors). */
  finish(): void;
}

/** Makes the display of one loop of `total` steps, named `label`. */
export type ProgressFactory = (total: number, label: string) => Progress;
