// Fine-tuning and evaluation shared by the classification tasks (VQA, GQA, NLVR2). A task module
// describes its data, stages and metrics (ClassifyTask); this file builds the task model (from a
// pre-trained run or from scratch), trains it with the pre-training trainer, evaluates the full val
// split with the task's metric, and writes the run directory:
//   finetune.json (method, model, world, answer labels, the recipe as run), model.safetensors,
//   metrics.jsonl / metrics.html (trainer), ckpt-<step>/; SemVLP "best": mode-single/, mode-two/.
import { Type, check, choice, num, type Filled, type Static, type TSchema } from "../pretrain/schema.ts";
import { copyFileSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { F, manualSeed, noGrad, tidy } from "../engine/index.ts";
import { Loader, toTensors, type BuilderSpec } from "../data/loader.ts";
import { moduleDevice, placeDevice } from "../engine/placement.ts";
import { computeQa } from "../objectives/losses.ts";
import { train, type Stage, type Source } from "../train/trainer.ts";
import type { ProgressFactory } from "../train/progress.ts";
import type { SemVLPMode } from "../models/semvlp.ts";
import { getMethod, readRunInfo, writeRunInfo, writeRunConfig, type RunInfo } from "../methods/index.ts";
import { pretrainedTaskNet, scratchTaskNet, loadTaskRun, type TaskHead, type TaskNet } from "./models.ts";
import { inputFile, readAnswers, readTaskInputs, type TaskBatch, type TaskDataArgs, type TaskExample, type TaskFormat, type TaskMeta } from "./data.ts";
import { need } from "../data/batches.ts";
import { answerVocab, classifySplit, worldFile, type TaskRecipeData } from "./sources.ts";
import type { EvalArgs, FinetuneArgs, FinetuneRecipe } from "./task.ts";

const DATA_MODULE = new URL("./data.ts", import.meta.url).href;

/** Options every classification task reads from `recipe.options` (a task adds its own: `ClassifyTask.options`). */
export const CLASSIFY_OPTIONS = {
  mode: Type.Optional(choice(["single", "two", "best"], { default: "single", description: "SemVLP: the mode the task reads (h_CLS of single-stream, o_IMG of two-stream), or best = both, keeping the better on val" })),
  // text positions and boxes are allocated per example: beyond these the model has no embedding or the batch no memory
  maxTextLen: Type.Optional(num({ int: true, above: 2, max: 512 }, { description: "text length (default: 20 for region models as LXMERT, the model's maxTextLen for VLMo)" })),
  maxBoxes: Type.Optional(num({ int: true, above: 2, max: 1024 }, { default: 36, description: "boxes per image (region models)" })),
  answerHead: Type.Optional(choice(["random", "pretrained"], { default: "random", description: "QA on SemVLP: start the answer head from the pre-trained QA head (answers matched by string) or random" })),
};

/** The options once checked: the common ones with their defaults, and the task's own. */
export type ClassifyOptions = Filled<Static<ReturnType<typeof Type.Object<typeof CLASSIFY_OPTIONS>>>, "mode" | "maxBoxes" | "answerHead"> & { [k: string]: unknown };

export interface Prediction {
  id: number | string;
  /** Class index (answer label, or NLVR2 0/1). */
  index: number;
  example: TaskExample;
}

export interface ClassifyTask {
  name: "vqa" | "gqa" | "nlvr2";
  format: TaskFormat;
  /** The folder of the answer vocabulary (trainval_ans2label.json / trainval_label2ans.json) in a world; none for NLVR2. */
  answersDir?: string;
  /** The metric that picks SemVLP's mode. */
  main: string;
  /** Task-specific options besides the common ones (CLASSIFY_OPTIONS), with their defaults. */
  options?: Record<string, TSchema>;
  /** The training stages (default: one stage on the train split). */
  stages?(c: StageContext): Stage[];
  /** `limit`: only the first N examples were evaluated (--limit); `annotations`: the split's VQA v2 annotation files, when it has them. */
  score(preds: Prediction[], c: { annotations?: string[]; split: string; labels?: string[]; limit?: number }): Record<string, number>;
  dump(path: string, preds: Prediction[], labels?: string[]): void;
}

export interface StageContext {
  recipe: FinetuneRecipe;
  options: ClassifyOptions;
  /** The builder spec of a split (with extra builder arguments, e.g. GQA's balancing). */
  spec(split: string, extra?: Partial<TaskDataArgs>): BuilderSpec<TaskBatch, TaskMeta>;
  /** The source of a split, trained with the task's loss. */
  source(name: string, data: BuilderSpec<TaskBatch, TaskMeta>): Source<TaskBatch, TaskMeta>;
  log(s: string): void;
}

const log = (quiet: boolean | undefined, s: string) => {
  if (!quiet) console.log(s);
};

export const taskFile = worldFile;

const schemas = new WeakMap<ClassifyTask, TSchema>();

/** The schema of a classification task's `recipe.options`: the common options and the task's own. */
export function classifyOptionsSchema(task: ClassifyTask): TSchema {
  let s = schemas.get(task);
  if (!s) {
    s = Type.Object({ ...CLASSIFY_OPTIONS, ...(task.options ?? {}) }, { additionalProperties: false, description: `${task.name} options` });
    schemas.set(task, s);
  }
  return s;
}

/** recipe.options with defaults; unknown keys and bad values are rejected naming the key. */
export function classifyOptions(task: ClassifyTask, raw: Record<string, unknown> | undefined): ClassifyOptions {
  return check(classifyOptionsSchema(task), structuredClone(raw ?? {}), "recipe.options", { unknownKey: `unknown key for ${task.name}` }) as ClassifyOptions;
}

/** Argmax predictions of a model on a builder's examples, in order (no shuffle, last batch kept). */
export async function predict(net: TaskNet, spec: BuilderSpec<TaskBatch, TaskMeta>, o: { batchSize: number; quiet?: boolean; progress?: ProgressFactory; label?: string }): Promise<{ ids: (number | string)[]; index: number[] }> {
  const loader = await Loader.create(spec, { batchSize: o.batchSize, seed: 0, shuffle: false, dropLast: false, workers: 1 });
  const n = loader.batchesPerEpoch();
  const bar = o.quiet ? null : (o.progress?.(n, o.label ?? "eval") ?? null);
  const ids: (number | string)[] = [];
  const index: number[] = [];
  const wasTraining = net.model.training;
  const device = moduleDevice(net.model);
  net.model.eval();
  try {
    for (let i = 0; i < n; i++) {
      const host = await loader.next();
      index.push(...tidy(() => noGrad(() => net.logits(toTensors(host, device)).argmax(-1).toArray())));
      ids.push(...host.meta.ids);
      bar?.update(i + 1);
    }
  } finally {
    bar?.finish();
    net.model.train(wasTraining);
    await loader.close();
  }
  return { ids, index };
}

interface Setup {
  /** The recipe's data (a world or sources), or the world `vlp eval --world` names. */
  data: TaskRecipeData;
  labels?: string[];
  answersFile?: string;
  options: ClassifyOptions;
}

function dataSpec(task: ClassifyTask, net: TaskNet, s: Setup, split: string, extra: Partial<TaskDataArgs> = {}): BuilderSpec<TaskBatch, TaskMeta> {
  const sp = classifySplit(task.name, s.data, split);
  const need = (v: string | string[] | undefined, what: string) => {
    if (v === undefined) throw new Error(`the ${split} split of ${task.name} has no ${what}, which a ${net.method} model reads (the source's ${what === "region features" ? "regions" : "images"} key)`);
    return v;
  };
  const args: TaskDataArgs = {
    format: task.format,
    examples: sp.examples,
    answers: s.answersFile,
    label2ans: s.answersFile ? undefined : s.labels,
    maxTextLen: s.options.maxTextLen!,
    regions: net.input.kind === "regions" ? { path: need(sp.regions, "region features"), maxBoxes: s.options.maxBoxes, featDim: net.input.featDim } : undefined,
    images: net.input.kind === "pixels" ? { dir: need(sp.images, "image folder") as string, size: net.input.size } : undefined,
    ...extra,
  };
  return { module: DATA_MODULE, args };
}

function taskStep(net: TaskNet, head: TaskHead): Source<TaskBatch, TaskMeta>["step"] {
  return (batch) => {
    const logits = net.logits(batch);
    // VQA / GQA: BCE-with-logits (mean) x number of answers against the soft scores (LXMERT, VLMo)
    if (head.kind === "qa") return computeQa(logits, need(batch, "target", "the QA loss"), undefined, "soft");
    const label = need(batch, "label", "the NLVR2 loss");
    const loss = F.crossEntropy(logits, label);
    // metrics stay on the device: the trainer reads them when it logs a row
    return { loss, metrics: noGrad(() => ({ nlvr2_loss: loss.detach(), nlvr2_acc: logits.argmax(-1).eq(label).float().mean() })) };
  };
}

async function evaluateSplit(task: ClassifyTask, net: TaskNet, s: Setup, split: string, o: { batchSize: number; quiet?: boolean; progress?: ProgressFactory; limit?: number; dump?: string }): Promise<Record<string, number>> {
  const spec = dataSpec(task, net, s, split, { limit: o.limit });
  const { ids, index } = await predict(net, spec, { batchSize: o.batchSize, quiet: o.quiet, progress: o.progress, label: `${task.name} ${split}` });
  const args = spec.args as TaskDataArgs;
  let examples = readTaskInputs(task.format, args.examples);
  if (o.limit) examples = examples.slice(0, o.limit);
  const named = typeof args.examples === "string" ? args.examples : args.examples.map(inputFile).join(", ");
  const preds: Prediction[] = ids.map((id, i) => {
    if (examples[i]?.id !== id) throw new Error(`${named}: prediction ${i} is for ${id}, the file's example ${i} is ${examples[i]?.id}`);
    return { id, index: index[i], example: examples[i] };
  });
  if (o.dump) task.dump(o.dump, preds, s.labels);
  return task.score(preds, { annotations: classifySplit(task.name, s.data, split).annotations, split, labels: s.labels, limit: o.limit });
}

/** `vlp finetune <task>`: train, then evaluate the full val split; returns its metrics. */
export async function runFinetune(task: ClassifyTask, a: FinetuneArgs): Promise<Record<string, number>> {
  const r = a.recipe;
  if (r.task !== task.name) throw new Error(`a ${r.task} recipe given to the ${task.name} task`);
  const options = classifyOptions(task, r.options);
  const pre = a.from ? readRunInfo(a.from) : null;
  if (!pre && (!r.method || !r.model)) throw new Error("recipe.method and recipe.model are required with --scratch (there is no pre-trained run to take them from)");
  const method = pre ? pre.method : r.method!;
  const spec = pre ? pre.model : r.model!;
  const vocab = task.answersDir ? answerVocab(task.name as "vqa" | "gqa", task.answersDir, r.data) : null;
  const head: TaskHead = vocab ? { kind: "qa", answers: vocab.label2ans.length } : { kind: "nlvr2" };
  const def = getMethod(method, "recipe.method");
  const modes: (SemVLPMode | undefined)[] = !def.modes ? [undefined] : options.mode === "best" ? [...def.modes] : [options.mode as SemVLPMode];
  const results: { mode?: SemVLPMode; dir: string; metrics: Record<string, number>; info: RunInfo }[] = [];

  for (const mode of modes) {
    const dir = modes.length > 1 ? join(a.out, `mode-${mode}`) : a.out;
    mkdirSync(dir, { recursive: true });
    manualSeed(r.train.seed);
    let net: TaskNet;
    if (pre) {
      if (options.answerHead === "pretrained" && vocab && def.pretrainedAnswerHead && !pre.answers) throw new Error(`recipe.options.answerHead: "pretrained", but ${a.from}'s recipe names no answer vocabulary (its lxmert source's answers)`);
      const answerHeadFrom = options.answerHead === "pretrained" && vocab && def.pretrainedAnswerHead
        ? { pretrained: readAnswers(pre.answers!), task: vocab.label2ans } : undefined;
      const loaded = await pretrainedTaskNet(a.from!, head, { mode, answerHeadFrom });
      net = loaded.net;
      for (const line of loaded.report) log(a.quiet, `  ${line}`);
    } else {
      net = scratchTaskNet(method, spec, head, mode);
      log(a.quiet, `  ${method} from scratch (random initialisation)`);
    }
    try {
      const opts: ClassifyOptions = { ...options, mode: mode ?? options.mode, maxTextLen: options.maxTextLen ?? def.textLen(net.model) };
      const setup: Setup = { data: r.data, labels: vocab?.label2ans, answersFile: vocab?.file, options: opts };
      const info: RunInfo = { kind: "finetune", task: task.name, method, model: spec, world: r.data.world, labels: vocab?.label2ans, from: a.from ? resolve(a.from) : null, recipe: { ...r, options: opts } };
      writeRunInfo(dir, info);
      writeRunConfig(dir, { kind: "finetune", method, spec, model: net.model, task: task.name, labels: vocab?.label2ans });
      const ctx: StageContext = {
        recipe: r,
        options: opts,
        spec: (split, extra) => dataSpec(task, net, setup, split, extra),
        source: (name, data) => ({ name, data, batchSize: r.train.batchSize, evalData: dataSpec(task, net, setup, "val"), step: taskStep(net, head) }),
        log: (s) => log(a.quiet, s),
      };
      const betas = def.betas;
      const stages = task.stages?.(ctx) ?? [{ name: task.name, sources: [ctx.source(task.name, ctx.spec("train"))], lr: r.train.lr, warmup: r.train.warmup, epochs: r.train.epochs, steps: r.train.steps, weightDecay: r.train.weightDecay }];
      // the official lr_mult: the task head (what the method's pre-trained backbone does not hold) at lr x headLrMult
      const mult = r.train.headLrMult;
      const lrScale = mult === 1 ? undefined : (name: string) => (def.backbone(name) ? 1 : mult);
      for (const st of stages) {
        st.betas ??= betas;
        st.lrScale ??= lrScale;
      }
      // LP-FT (Kumar et al. 2022): the head alone first, on the first stage's data, so that the
      // fine-tuning proper starts from a head that reads the backbone instead of a random one
      if (r.train.probeSteps > 0) stages.unshift({ ...stages[0], name: `${stages[0].name}-probe`, steps: r.train.probeSteps, epochs: undefined, frozen: (name) => def.backbone(name) });
      log(a.quiet, `vlp finetune ${task.name}: ${method}${mode ? ` (${mode}-stream)` : ""}, ${net.model.numParameters().toLocaleString()} parameters, stages ${stages.map((s) => s.name).join(" -> ")}${mult === 1 ? "" : `, head lr x${mult}`}, run ${dir}`);
      await train(net.model, stages, { runDir: dir, seed: r.train.seed, clip: r.train.clip, checkpointEvery: r.train.checkpointEvery, keepCheckpoints: r.train.keepCheckpoints, evalEvery: r.train.evalEvery, workers: r.train.workers, precision: r.train.precision, device: r.train.device, resume: a.resume, quiet: a.quiet, progress: a.progress });
      const metrics = await evaluateSplit(task, net, setup, "val", { batchSize: Math.max(r.train.batchSize, 64), quiet: a.quiet, progress: a.progress });
      log(a.quiet, `  val: ${Object.entries(metrics).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`).join(", ")}`);
      results.push({ mode, dir, metrics, info });
    } finally {
      net.model.dispose();
    }
  }
  if (results.length === 1) return results[0].metrics;
  // SemVLP "best": the paper keeps the mode that does better on the dev set
  const best = results.reduce((x, y) => ((y.metrics[task.main] ?? 0) > (x.metrics[task.main] ?? 0) ? y : x));
  copyFileSync(join(best.dir, "model.safetensors"), join(a.out, "model.safetensors"));
  copyFileSync(join(best.dir, "config.json"), join(a.out, "config.json"));
  const scores = Object.fromEntries(results.map((x) => [x.mode!, x.metrics[task.main]]));
  writeRunInfo(a.out, { ...best.info, recipe: { ...(best.info.recipe as object), modeSelection: { metric: task.main, ...scores, chosen: best.mode } } });
  log(a.quiet, `  SemVLP mode on val ${task.main}: ${results.map((x) => `${x.mode} ${x.metrics[task.main]?.toFixed(4)}`).join(", ")} -> ${best.mode}`);
  return { ...best.metrics, ...Object.fromEntries(results.map((x) => [`${task.main}_${x.mode}`, x.metrics[task.main]])), two_stream: best.mode === "two" ? 1 : 0 };
}

/** `vlp eval <task>`: a fine-tuning run on a split of its world (or another); writes the official dump. */
export async function runEvaluate(task: ClassifyTask, a: EvalArgs): Promise<Record<string, number>> {
  const { net, info } = await loadTaskRun(a.checkpoint);
  net.model.to(placeDevice(a.device ?? "cpu"));
  try {
    if (info.task !== task.name) throw new Error(`${a.checkpoint}: a ${info.task} run, not a ${task.name} one`);
    const recipe = info.recipe as FinetuneRecipe;
    // the run's recipe names its data (a world or sources); --world evaluates on another world
    const data: TaskRecipeData = a.world ? { world: resolve(a.world) } : recipe.data;
    const options = classifyOptions(task, recipe.options);
    // predictions are scored by answer string: the data's own answer set is not needed
    const setup: Setup = { data, labels: info.labels, options };
    const t0 = performance.now();
    const metrics = await evaluateSplit(task, net, setup, a.split, { batchSize: a.batchSize || 64, quiet: a.quiet, progress: a.progress, limit: a.limit, dump: a.dump });
    log(a.quiet, `vlp eval ${task.name}: ${metrics.n} examples of ${a.split} in ${((performance.now() - t0) / 1000).toFixed(1)} s${a.dump ? `; results written to ${a.dump}` : ""}`);
    return metrics;
  } finally {
    net.model.dispose();
  }
}
