/**
 * Loader benchmark: samples/s of the pre-training batch builders through the Loader, for
 * region-feature batches (SemVLP/MSP: tokenised text + 36 regions read by positioned reads) and
 * image-patch batches (VLMo: PNG decode + resize + normalise + tokenised caption), with the builders
 * in the main thread (workers 0) and in 2 worker threads, and the RSS while iterating.
 *
 *   node --import tsx bench/loader.ts [--images 1000] [--batches 60] [--world DIR]
 */
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateWorld } from "../src/data/synth/world.ts";
import { Loader } from "../src/data/loader.ts";
import { regionTextSpec } from "../src/pretrain/common.ts";

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const images = Number(arg("images", "1000"));
const batches = Number(arg("batches", "60"));
const world = arg("world", join(mkdtempSync(join(tmpdir(), "vlp-bench-loader-")), "world"));
if (!existsSync(join(world, "features", "obj36.tsv"))) await generateWorld({ images, seed: 0, out: world });

const specs = {
  "region-text (batch 32)": regionTextSpec({ examples: [{ path: join(world, "lxmert/mscoco_train.json"), sources: ["mscoco", "vqa", "gqa"] }], regions: join(world, "features/obj36.tsv"), maxTextLen: 20, maxBoxes: 36, seed: 0, itm: { prob: 0.5 }, answers: join(world, "vqa/trainval_ans2label.json") }),
  "image-text 128px (batch 32)": { module: new URL("../src/pretrain/imagetext.ts", import.meta.url).href, args: { karpathy: join(world, "karpathy/dataset_synth.json"), images: join(world, "images"), split: "train", mode: "pair", imageSize: 128, maxTextLen: 40 } },
};

console.log(`| batches of | workers | samples/s | peak RSS (MB) |\n|---|---|---|---|`);
for (const [name, spec] of Object.entries(specs)) {
  for (const workers of [0, 2]) {
    const loader = await Loader.create(spec, { batchSize: 32, seed: 0, workers, prefetch: 4 });
    await loader.next(); // warm-up (opens files, builds the TSV index, starts workers)
    let peak = 0;
    const t0 = performance.now();
    for (let i = 0; i < batches; i++) {
      await loader.next();
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    const sec = (performance.now() - t0) / 1000;
    await loader.close();
    console.log(`| ${name} | ${workers} | ${((batches * 32) / sec).toFixed(0)} | ${(peak / 2 ** 20).toFixed(0)} |`);
  }
}
console.log(`\n(${images}-image world at ${world}; load average ${(await import("node:os")).loadavg().map((x) => x.toFixed(1)).join(" ")})`);
