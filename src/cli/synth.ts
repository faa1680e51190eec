/**
 * `vlp data synth --images N --seed S --out DIR`: generate the synthetic scene world
 * (see src/data/synth/README.md for what is written).
 */
import { generateWorld, type WorldOptions, type WorldSummary } from "../data/synth/world.ts";
import { ProgressBar } from "./progress.ts";

/** The world's options (without the progress callback, which runSynth draws as a bar). */
export interface SynthArgs extends Omit<WorldOptions, "onProgress"> {
  /** No progress output at all. */
  quiet?: boolean;
}

export async function runSynth(args: SynthArgs): Promise<WorldSummary & { seconds: number }> {
  const t0 = performance.now();
  const bar = args.quiet ? null : new ProgressBar(args.images, { label: "synth" });
  const { quiet: _quiet, ...options } = args;
  const summary = await generateWorld({ ...options, onProgress: (done) => bar?.update(done) });
  bar?.finish();
  const seconds = (performance.now() - t0) / 1000;
  if (!args.quiet) {
    const s = summary.splits;
    process.stderr.write(
      `synth: ${summary.images} images (train ${s.train}, val ${s.val}, test ${s.test}, test_comp ${s.test_comp}) ` +
        `in ${seconds.toFixed(1)} s (${Object.entries(summary.phases).map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(", ")}) -> ${args.out}\n`,
    );
  }
  return { ...summary, seconds };
}
