// `vlp index build --checkpoint <run dir> --images <folder|dataset> --out <dir>`: embed a
// collection with the checkpoint's dual encoder into a search index (see src/serve/vindex.ts);
// run again over a grown collection to add only the new images.
import { parseArgs } from "node:util";
import { ProgressBar } from "./progress.ts";
import { loadServedModel } from "../serve/model.ts";
import { buildIndex, resolveCollection } from "../serve/build.ts";
import { DEVICE_OPTION, PRECISION_OPTION, deviceFlag, precisionFlag, usableDevice } from "./device.ts";
import { autocastAsync } from "../engine/precision.ts";

const USAGE = `vlp index build --checkpoint <run dir> --images <folder|dataset> --out <dir>
    [--dtype float32|float16] [--split train|val|test|all] [--image-root DIR] [--limit N] [--batch N] [--no-captions] [--device D] [--precision fp32|bf16|fp16] [--quiet]

  --images   a folder of .png/.jpg/.webp images (searched 4 levels deep), a dataset folder
             (a synthetic world: karpathy/*.json + images/) or a Karpathy split JSON; a dataset's
             captions are embedded too (for image -> caption search)
  --out      the index folder; if it holds an index of the same checkpoint, only new ids are added
  --dtype    stored vectors: float32 (default) or float16 (half the memory)
  --device   cpu (default), cuda or cuda:N: where the encoders run
  --precision fp32 (default), or bf16 / fp16 (CUDA only) autocast for the encoders (embeddings are stored in --dtype)`;

export async function main(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === "--help" || sub === "-h" || sub === undefined) {
    console.log(USAGE);
    return;
  }
  if (sub !== "build") throw new Error(`unknown index command "${sub}" (expected: build)\n${USAGE}`);
  const { values } = parseArgs({
    args: rest,
    options: {
      checkpoint: { type: "string" },
      images: { type: "string" },
      out: { type: "string" },
      dtype: { type: "string" },
      split: { type: "string", default: "all" },
      "image-root": { type: "string" },
      limit: { type: "string" },
      batch: { type: "string", default: "64" },
      "no-captions": { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
      ...DEVICE_OPTION,
      ...PRECISION_OPTION,
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  for (const k of ["checkpoint", "images", "out"] as const) if (!values[k]) throw new Error(`--${k} is required\n${USAGE}`);
  if (values.dtype !== undefined && values.dtype !== "float32" && values.dtype !== "float16") throw new Error(`--dtype: expected float32 or float16, got ${values.dtype}`);
  if (!["train", "val", "test", "all"].includes(values.split!)) throw new Error(`--split: expected train, val, test or all, got ${values.split}`);
  const posInt = (v: string | undefined, flag: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected a positive integer, got "${v}"`);
    return n;
  };
  const device = await usableDevice(deviceFlag(values.device) ?? "cpu", true);
  const served = await loadServedModel(values.checkpoint!, undefined, device);
  const col = resolveCollection(values.images!, { split: values.split as "all", imageRoot: values["image-root"], limit: posInt(values.limit, "--limit") });
  const bars: Record<string, ProgressBar> = {};
  // nothing else computes in this process, so an autocast scope spanning the awaits is safe
  const summary = await autocastAsync(precisionFlag(values.precision, device), () => buildIndex(served, col, {
    out: values.out!,
    dtype: values.dtype as "float32" | "float16" | undefined,
    batch: posInt(values.batch, "--batch"),
    captions: !values["no-captions"],
    onProgress: values.quiet ? undefined : (kind, done, total) => {
      bars[kind] ??= new ProgressBar(total, { label: `index ${kind}` });
      bars[kind].update(done);
      if (done >= total && total > 0) bars[kind].finish();
    },
  }), device);
  for (const b of Object.values(bars)) b.finish();
  const s = summary;
  const rate = (n: number, t: number) => (t > 0 ? `${(n / t).toFixed(1)}/s` : "-");
  console.log(`index ${values.out}: ${s.total.images} images (${s.added.images} added in ${s.seconds.images.toFixed(1)} s, ${rate(s.added.images, s.seconds.images)}; ${s.skipped.images} already there), ` +
    `${s.total.captions} captions (${s.added.captions} added, ${rate(s.added.captions, s.seconds.captions)}; ${s.skipped.captions} already there); ${s.dim}-d ${s.dtype}`);
  served.model.dispose();
}
