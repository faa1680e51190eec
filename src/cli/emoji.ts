/**
 * `vlp data emoji --out DIR [--styles google,twitter,openmoji] [--test-style NAME] [--size 64]
 * [--limit N] [--seed S] [--pkgs DIR]`: install the emoji artwork packages on demand (npm, into a
 * cache folder) and write the emoji image-caption dataset (see src/data/emoji.ts).
 */
import {
  defaultEmojiCache, emojiPackages, installEmojiPackages, writeEmojiDataset, type EmojiOptions, type EmojiSummary,
} from "../data/emoji.ts";
import { lazyProgress } from "./progress.ts";

export interface EmojiArgs extends Omit<EmojiOptions, "onProgress" | "nodeModules"> {
  /** Where the packages are installed (npm --prefix); default ~/.cache/vlpkit/emoji. */
  pkgs?: string;
  /** No progress output at all. */
  quiet?: boolean;
}

export async function runEmoji(args: EmojiArgs): Promise<EmojiSummary & { seconds: number }> {
  const t0 = performance.now();
  const log = args.quiet ? undefined : (line: string) => process.stderr.write(`${line}\n`);
  const { quiet: _quiet, pkgs, ...options } = args;
  const prefix = pkgs ?? defaultEmojiCache();
  const nodeModules = await installEmojiPackages(prefix, emojiPackages(options.styles ?? ["google", "twitter", "openmoji"]), { log });
  const progress = lazyProgress("emoji", args.quiet);
  const summary = await writeEmojiDataset({ ...options, nodeModules, onProgress: progress.onProgress });
  progress.finish();
  const seconds = (performance.now() - t0) / 1000;
  if (log) {
    const s = summary.splits;
    const per = Object.entries(summary.styles).map(([k, v]) => `${k} ${v.images}`).join(", ");
    log(
      `emoji: ${summary.emoji} emoji, ${summary.images} images (${per}; train ${s.train}, val ${s.val}, test ${s.test} = ${summary.testStyle}), ` +
        `${summary.captions} captions in ${seconds.toFixed(1)} s -> ${args.out}`,
    );
  }
  return { ...summary, seconds };
}
