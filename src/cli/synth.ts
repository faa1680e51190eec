/**
 * `vlp data synth --images N --seed S --out DIR`: generate the synthetic scene world
 * (see src/data/synth/README.md for what is written).
 */
import { generateWorld, type WorldSummary } from "../data/synth/world.ts";
import { ProgressBar } from "./progress.ts";

export interface SynthArgs {
  images: number;
  seed: number;
  out: string;
  size?: number;
  featDim?: number;
  boxes?: number;
  /** Write the ViLT/VLMo Arrow tables too (default false). */
  arrow?: boolean;
  /** Worker threads (default: 2 for 200+ images). */
  workers?: number;
  /** No progress output at all. */
  quiet?: boolean;
}

export async function runSynth(args: SynthArgs): Promise<WorldSummary & { seconds: number }> {
  const t0 = performance.now();
  const bar = args.quiet ? null : new ProgressBar(args.images, { label: "synth" });
  const summary = await generateWorld({
    images: args.images, seed: args.seed, out: args.out, size: args.size, featDim: args.featDim, boxes: args.boxes,
    arrow: args.arrow, workers: args.workers,
    onProgress: (done) => bar?.update(done),
  });
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
