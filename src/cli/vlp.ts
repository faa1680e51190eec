// vlp: the command-line entry point. Each subcommand lives in its own module, loaded on demand.
import { parseArgs } from "node:util";

const HELP = `vlp — vision-language pre-training on libtorch

usage: vlp <command> [options]

commands:
  demo                       the main job: a synthetic world, then tiny SemVLP, MSP and VLMo pre-training
  engine-demo                a 2-layer transformer learns to sort digits (engine check)
  data synth                 write a synthetic scene world in the real dataset formats
      --images N --seed S --out DIR [--size PX] [--feat-dim D] [--code-dim K] [--boxes K] [--repeat P] [--arrow] [--wds] [--workers N]
      (--code-dim appends the detector's class/attribute code to each region's features, as the tiny
      recipes expect: --images 5000 --code-dim 32 --out data/world-demo; --arrow also writes the
      ViLT/VLMo Arrow tables, --wds WebDataset shards wds/{train,val,test}/*.tar, each a second copy of every image)
  data emoji                 real images: emoji artwork of several styles with their names and keywords, one style held out as test
      --out DIR [--styles google,twitter,openmoji] [--test-style twitter] [--size 64] [--limit N] [--seed S]
      [--pkgs DIR]  (the artwork packages are npm-installed there on demand; default ~/.cache/vlpkit/emoji)
  data convert-regions IN.tsv OUT.regions [--float16] [--skip-invalid]
                             an obj36 region-feature TSV (LXMERT's data/mscoco_imgfeat/*.tsv) into a .regions store
  data inspect PATH          detect a file's or folder's dataset format; print counts, one sample and the problems found
      [--json] [--max-problems N]
  data vqa-vocab ANNOTATIONS.json... --out DIR [--min-count 9]
                             the VQA answer vocabulary as LXMERT and ViLT/VLMo build it (trainval_ans2label.json)
  features grid --images DIR --out F.regions [--k 6] [--dim 2048] [--float16]
                             detector-free grid region features for a folder of images (a stand-in for a detector)
  pretrain --recipe FILE     pre-train with a recipe (recipes/*.json) [--set k=v] [--out DIR] [--resume DIR]
      [--nproc N] [--nnodes N --node-rank R --master-addr HOST --master-port P]  (data-parallel on c10d)
  finetune <task>            fine-tune on vqa, gqa, nlvr2 or retrieval --recipe FILE (--from RUN | --scratch)
  eval <task>                evaluate a fine-tuned (or, for retrieval, pre-trained) run --checkpoint DIR
  index build                embed images (and a dataset's captions) into a search index
      --checkpoint RUN --images FOLDER|DATASET --out DIR [--dtype float32|float16]
  baseline <bow|linear>      train and evaluate a simple baseline on a world's train split (writes metrics.json)
      --world DIR [--steps N] [--seed S] [--out RUN_DIR]
  serve --checkpoint RUN     HTTP API + web app [--vqa RUN] [--index DIR] [--runs DIR] [--port N]
  info                       libtorch build, threads, BLAS speed

pretrain, finetune, eval, serve and index build take --device cpu|cuda|cuda:N (default cpu; for training, the recipe's train.device).
run \`vlp <command> --help\` for a command's options.`;

const SYNTH_USAGE = `usage: vlp data synth --out DIR [--images N] [--seed S] [--size PX] [--feat-dim D] [--code-dim K] [--boxes K] [--repeat P] [--arrow] [--wds] [--workers N]

  --out DIR      the world's folder (see src/data/synth/README.md for what is written)
  --images N     scenes (default 1000), split into train / val / test / test_comp
  --seed S       the world's seed (default 0): the same seed writes the same bytes
  --size PX      image side in pixels (default 128, at least 48)
  --feat-dim D   region feature dimension of the stand-in detector (default 64)
  --code-dim K   append the detector's class/attribute code (K dims) to each region's features
                 (the tiny recipes expect --code-dim 32)
  --boxes K      regions per image (default 36)
  --repeat P     probability that an object repeats a category already in its scene (default 0;
                 counts above one are rare otherwise)
  --arrow        also write the ViLT/VLMo Arrow tables (a second copy of every image)
  --wds          also write WebDataset shards: wds/train/{00000..00003}.tar, wds/val/00000.tar,
                 wds/test/00000.tar (<img_id>.png + .txt captions + .json; a second copy of every image)
  --workers N    worker threads rendering images (default 2 from 200 images on)`;

const EMOJI_USAGE = `usage: vlp data emoji --out DIR [--styles google,twitter,openmoji] [--test-style twitter] [--size 64] [--limit N] [--seed S] [--pkgs DIR]

  real images: emoji artwork of several styles with their names and keywords, one style held out as
  test; the artwork packages are npm-installed under --pkgs on demand (default ~/.cache/vlpkit/emoji)`;

const DATA_USAGE = `usage: vlp data <synth|emoji|convert-regions|inspect|vqa-vocab> [options]; \`vlp data <tool> --help\` for a tool's options`;

/** Prints `usage` and returns true when argv asks for help (parseArgs would call --help an unknown option). */
function wantsHelp(argv: string[], usage: string): boolean {
  if (!argv.includes("--help") && !argv.includes("-h")) return false;
  console.log(usage);
  return true;
}

type Command = (argv: string[]) => Promise<void>;

const commands: Record<string, Command> = {
  demo: async (argv) => (await import("./demo.ts")).main(argv),
  "engine-demo": async (argv) => (await import("./engine-demo.ts")).main(argv),
  pretrain: async (argv) => (await import("./pretrain.ts")).main(argv),
  finetune: async (argv) => (await import("./finetune.ts")).finetuneMain(argv),
  eval: async (argv) => (await import("./finetune.ts")).evalMain(argv),
  baseline: async (argv) => (await import("./baseline.ts")).main(argv),
  index: async (argv) => (await import("./index-build.ts")).main(argv),
  features: async (argv) => (await import("./features.ts")).main(argv),
  serve: async (argv) => (await import("./serve.ts")).main(argv),
  info: async () => {
    const { buildInfo, getNumThreads } = await import("../engine/index.ts");
    const b = buildInfo();
    console.log(`libtorch ${b.torchVersion}, CUDA ${b.cuda ? (b.cudaAvailable ? `yes (${b.cudaDeviceCount} devices)` : "compiled, no device") : "no"}, threads ${getNumThreads()}`);
  },
  data: async (argv) => {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === "--help" || sub === "-h") {
      console.log(DATA_USAGE);
      return;
    }
    if (sub === "emoji") return emojiCommand(rest);
    if (sub === "convert-regions" || sub === "inspect" || sub === "vqa-vocab") return (await import("./data.ts")).dataToolMain(sub, rest);
    if (sub !== "synth") throw new UsageError(`unknown data command "${sub ?? ""}" (expected: synth, emoji, convert-regions, inspect, vqa-vocab)`);
    if (wantsHelp(rest, SYNTH_USAGE)) return;
    const { values } = parseArgs({
      args: rest,
      options: {
        images: { type: "string", default: "1000" },
        seed: { type: "string", default: "0" },
        out: { type: "string" },
        size: { type: "string" },
        "feat-dim": { type: "string" },
        "code-dim": { type: "string" },
        boxes: { type: "string" },
        repeat: { type: "string" },
        arrow: { type: "boolean", default: false },
        wds: { type: "boolean", default: false },
        workers: { type: "string" },
      },
      strict: true,
    });
    if (!values.out) throw new UsageError(`data synth: --out DIR is required\n${SYNTH_USAGE}`);
    const { runSynth } = await import("./synth.ts");
    await runSynth({
      images: int(values.images!, "--images"),
      seed: int(values.seed!, "--seed"),
      out: values.out,
      size: values.size ? int(values.size, "--size") : undefined,
      featDim: values["feat-dim"] ? int(values["feat-dim"], "--feat-dim") : undefined,
      codeDim: values["code-dim"] ? int(values["code-dim"], "--code-dim") : undefined,
      boxes: values.boxes ? int(values.boxes, "--boxes") : undefined,
      repeat: values.repeat !== undefined ? Number(values.repeat) : undefined,
      arrow: values.arrow,
      wds: values.wds,
      workers: values.workers ? int(values.workers, "--workers") : undefined,
    });
  },
};

async function emojiCommand(argv: string[]): Promise<void> {
  if (wantsHelp(argv, EMOJI_USAGE)) return;
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: "string" },
      styles: { type: "string", default: "google,twitter,openmoji" },
      "test-style": { type: "string" },
      size: { type: "string", default: "64" },
      limit: { type: "string" },
      seed: { type: "string", default: "0" },
      pkgs: { type: "string" },
    },
    strict: true,
  });
  if (!values.out) throw new UsageError("data emoji: --out DIR is required");
  const { EMOJI_STYLES } = await import("../data/emoji.ts");
  const styles = values.styles!.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const s of [...styles, ...(values["test-style"] ? [values["test-style"]] : [])]) {
    if (!(s in EMOJI_STYLES)) throw new UsageError(`data emoji: unknown style "${s}" (known: ${Object.keys(EMOJI_STYLES).join(", ")})`);
  }
  if (values["test-style"] && !styles.includes(values["test-style"])) throw new UsageError(`data emoji: --test-style ${values["test-style"]} is not in --styles`);
  if (styles.length < 2) throw new UsageError("data emoji: --styles needs at least two styles (one is held out as test)");
  const { runEmoji } = await import("./emoji.ts");
  await runEmoji({
    out: values.out,
    styles,
    testStyle: values["test-style"],
    size: int(values.size!, "--size"),
    limit: values.limit ? int(values.limit, "--limit") : undefined,
    seed: int(values.seed!, "--seed"),
    pkgs: values.pkgs,
  });
}

export class UsageError extends Error {}

function int(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag}: expected a non-negative integer, got "${v}"`);
  return n;
}

async function run(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    console.log(HELP);
    return 0;
  }
  const c = commands[cmd];
  if (!c) {
    console.error(`vlp: unknown command "${cmd}"\n\n${HELP}`);
    return 2;
  }
  try {
    await c(rest);
    return 0;
  } catch (e) {
    const err = e as Error;
    if (err instanceof UsageError || (err as any).code?.startsWith?.("ERR_PARSE_ARGS")) {
      console.error(`vlp ${cmd}: ${err.message}`);
      return 2;
    }
    console.error(`vlp ${cmd}: ${err.message}`);
    if (process.env.VLP_DEBUG) console.error(err.stack);
    return 1;
  }
}

process.exitCode = await run(process.argv.slice(2));
