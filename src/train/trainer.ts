// One readable training loop for every strategy: stages run in order, each with its own data,
// objectives, frozen parameters, optimizer and schedule; checkpoints are atomic and a killed run
// resumes bit-identically (model, optimizer, RNG states and loader positions are all saved).
import { appendFileSync, mkdirSync, writeFileSync, existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { tidy, noGrad, Generator, manualSeed, type Tensor, type Module, type Device } from "../engine/index.ts";
import { checkDevice, placeDevice } from "../engine/placement.ts";
import { AdamW, paramGroupsNoDecay } from "../engine/optim.ts";
import { makeSchedule, type ScheduleConfig } from "../engine/schedule.ts";
import { withPrecision, precisionDtype, type Precision } from "../engine/precision.ts";
import { clipGradNormTensor } from "../engine/grad.ts";
import { GradScaler, type ScalerState } from "../engine/scaler.ts";
import { saveCheckpoint, loadCheckpoint, latestCheckpoint, checkpointDir, saveStateDict, readTrainerState, pruneCheckpoints } from "../engine/checkpoint.ts";
import { writeFileAtomic, writingTo } from "../engine/serialize/atomic.ts";
import { runFiles } from "./rundir.ts";
import { runSettings, checkResumeSettings, summarizeHistory, pushRecent, stageSummary, stepsBelow, type Settings, type MetricsRow } from "./resume.ts";
import { Loader, toTensors, type BuilderSpec, type BatchMeta, type TensorBatch, type LoaderPosition } from "../data/loader.ts";
import type { ProgressFactory } from "./progress.ts";
import { Rng, mixSeed, stepRng } from "../engine/rng.ts";
import { MetricSums, readScalars, type Metrics } from "./metric_sums.ts";
import { renderRunPlot } from "./plot.ts";
import type { Dist } from "../engine/dist.ts";
import { DataParallel, broadcastModule, broadcastOptimizer, reduceMetrics, type DDPOptions } from "../engine/ddp.ts";

/** Appends a metrics line; a full disk names the file rather than a bare "ENOSPC ... write". */
const appendTo = (path: string, text: string) => writingTo(path, () => appendFileSync(path, text));

export interface StepContext {
  /** PRNG for this step's choices (mode, source), seeded by (seed, global step). */
  rng: Rng;
  /** libtorch generator for masking and negatives; its state is checkpointed. */
  generator: Generator;
  step: number;
  /** The process group when training data-parallel on more than one process (VLMo gathers ITC features from every rank). */
  dist?: Dist;
  /** Where the model and the batch are ("cpu" when absent); tensors a step makes go to its batch's device. */
  device?: Device;
}

export interface StepResult {
  loss: Tensor;
  /**
   * Detached 0-d tensors (read to the host only when a metrics row is logged) or host numbers; NaN:
   * not measured on this step (metric_sums.ts).
   */
  metrics: Metrics;
  /** What this step trained, when a source has several kinds of step (SemVLP's "single"/"two" mode). */
  tag?: string;
}

/**
 * A data source of a stage: a batch builder and the step function that turns its batches into
 * losses. `B` and `M` are the builder's batch and metadata interfaces (its spec carries them), so a
 * step reads the fields its builder makes, by name and type; a stage holds sources of any builders.
 */
export interface Source<B extends TensorBatch = TensorBatch, M extends BatchMeta = BatchMeta> {
  name: string;
  data: BuilderSpec<B, M>;
  batchSize: number;
  /** Relative sampling weight when a stage has several sources (MSP's joint T+P+S). */
  weight?: number;
  /** Held-out data for the periodic evaluation (the same objectives, without gradients). */
  evalData?: BuilderSpec<B, M>;
  step(batch: B, meta: M, ctx: StepContext): StepResult;
}

/** A source whose step takes its builder's batch type (inferred from `data`). */
export function defineSource<B extends TensorBatch = Record<string, Tensor>, M extends BatchMeta = Record<string, unknown>>(s: Source<B, M>): Source<B, M> {
  return s;
}

export interface Stage {
  name: string;
  sources: Source[];
  /** Optimizer steps, or epochs over the first source (converted with its loader's length). */
  steps?: number;
  epochs?: number;
  lr: number;
  warmup: number; // fraction of the stage's steps
  schedule?: "linear" | "cosine" | "constant";
  weightDecay?: number;
  betas?: [number, number];
  /** A parameter's learning-rate factor (default 1), e.g. a fine-tuning head's lr_mult. */
  lrScale?: (name: string) => number;
  /** Names of parameters kept frozen during this stage (e.g. VLMo stage 2: attention and V-FFN). */
  frozen?: (name: string) => boolean;
}

export interface TrainOptions {
  runDir: string;
  seed: number;
  clip?: number;
  accumulate?: number;
  checkpointEvery?: number;
  /** Keep only the newest N checkpoints (0 or absent: keep all). */
  keepCheckpoints?: number;
  /** Evaluate on each source's evalData every N optimizer steps (and at the end of each stage). */
  evalEvery?: number;
  /** Batches per evaluation (default 10). */
  evalBatches?: number;
  /**
   * Write a metrics row every N optimizer steps (default 1), with the means of the loss, the gradient
   * norm and each metric over those steps; also at each checkpoint and at the end of each stage.
   * Between rows the step's measurements stay on the device: the step path reads nothing to the host.
   */
  logEvery?: number;
  workers?: number;
  resume?: boolean;
  /** Stop after this many optimizer steps in total (for tests: simulate a kill). */
  stopAfter?: number;
  quiet?: boolean;
  /** Draws each stage's progress (steps done, current loss), unless `quiet`; none when absent. */
  progress?: ProgressFactory;
  /**
   * Data-parallel training over this group (world > 1): each source's batchSize is the global batch,
   * split evenly over the ranks; gradients and metrics are averaged over them; rank 0 alone reads
   * and writes the run directory (checkpoints, metrics, model) and the others get its state.
   */
  dist?: Dist;
  /** How gradients are averaged with `dist` (src/engine/ddp.ts). */
  ddp?: DDPOptions;
  /**
   * "bf16": each source's step (forward and loss) and the evaluation run under libtorch's autocast
   * to bfloat16; backward, clipping and the optimizer run outside it, on float32 weights and
   * gradients. "fp16" (CUDA only): the same in float16, with dynamic loss scaling. Default "fp32".
   */
  precision?: Precision;
  /** Dynamic loss scaling (src/engine/scaler.ts); default: with "fp16" only. */
  lossScaling?: boolean;
  /**
   * "cpu" (default), "cuda" or "cuda:N": the model is moved there before training and every batch is
   * sent there (pinned memory, non-blocking copies); checkpoints also save that GPU's RNG state.
   */
  device?: Device;
}

// ---- data-parallel hooks (o.dist) ------------------------------------------------------------
const distOf = (o: TrainOptions): Dist | undefined => (o.dist && o.dist.world > 1 ? o.dist : undefined);
/** A source's per-rank batch: the recipe's batch size is the global batch. */
function localBatch(src: Source, d: Dist | undefined): number {
  if (!d) return src.batchSize;
  if (src.batchSize % d.world !== 0) throw new Error(`source ${src.name}: batch size ${src.batchSize} does not split evenly over ${d.world} processes`);
  return src.batchSize / d.world;
}
/**
 * With several ranks the masking generator and libtorch's default generator (dropout) are reseeded
 * every step from (seed, step, rank): ranks draw different masks, and a resumed run draws what an
 * uninterrupted one would without saving every rank's generator states.
 */
function reseedRank(generator: Generator, seed: number, step: number, rank: number): void {
  // the global step is 1-based, mixSeed's step index 0-based
  generator.manualSeed(mixSeed(seed, step - 1, { rank }));
  manualSeed(mixSeed(seed, step - 1, { rank, salt: 0x27d4eb2f }));
}
// -------------------------------------------------------------------------------------------------

interface RunState {
  stage: number;
  stageStep: number;
  globalStep: number;
  positions: Record<string, LoaderPosition>;
  /** The loss scaler's state (fp16). */
  scaler?: ScalerState;
}

const log = (o: TrainOptions, s: string) => {
  if (!o.quiet) console.log(s);
};

/** The sources' objectives on held-out batches, without gradients and with dropout off; metrics averaged. */
async function evaluate(model: Module, stage: Stage, o: TrainOptions, step: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const dist = distOf(o);
  const wasTraining = model.training;
  model.eval();
  try {
    for (const src of stage.sources) {
      if (!src.evalData) continue;
      const loader = await Loader.create(src.evalData, { batchSize: localBatch(src, dist), seed: 0, shuffle: false, dropLast: false, workers: 0, rank: dist?.rank, world: dist?.world });
      const n = Math.min(o.evalBatches ?? 10, loader.batchesPerEpoch());
      const sums: Record<string, number> = {};
      // a fixed generator state, so every evaluation masks the same tokens and regions
      const g = new Generator(1234);
      const device = o.device ?? "cpu";
      for (let i = 0; i < n; i++) {
        const host = await loader.next();
        // read batch by batch: the evaluation's numbers are its result
        const m = tidy(() => noGrad(() => {
          const r = withPrecision(o.precision, () => src.step(toTensors(host, device), host.meta, { rng: new Rng(1000 + i), generator: g, step, dist, device }), device);
          return readMetrics({ loss: r.loss, ...r.metrics });
        }));
        for (const [k, v] of Object.entries(m)) sums[k] = (sums[k] ?? 0) + v / n;
      }
      await loader.close();
      const prefix = stage.sources.length > 1 ? `val_${src.name}_` : "val_";
      for (const [k, v] of Object.entries(dist ? reduceMetrics(dist, sums) : sums)) out[prefix + k] = v;
    }
  } finally {
    model.train(wasTraining);
  }
  return out;
}

/**
 * A step's measurements as host numbers, with one read for all the tensors; NaN (not measured) is
 * left out, as a step without the measurement would have left it.
 */
export function readMetrics(m: Metrics): Record<string, number> {
  const names = Object.keys(m);
  const ts = names.map((k) => m[k]).filter((v): v is Tensor => typeof v !== "number");
  const host = readScalars(ts);
  let j = 0;
  const out: Record<string, number> = {};
  for (const k of names) {
    const v = m[k];
    const x = typeof v === "number" ? v : host[j++];
    if (!Number.isNaN(x) || k === "loss") out[k] = x;
  }
  return out;
}

/** Trains `model` through `stages`; returns the final metrics of each stage (averaged over its last steps). */
export async function train(model: Module, stages: Stage[], o: TrainOptions): Promise<Record<string, Record<string, number>>> {
  const dist = distOf(o);
  // "cuda" is this process's GPU: cuda:LOCAL_RANK among data-parallel workers
  const device = placeDevice(o.device ?? "cpu", dist?.localRank);
  o = { ...o, device };
  checkDevice(device, `train: device "${device}"`);
  precisionDtype(o.precision ?? "fp32", device); // fp16 on the CPU fails here, before any work
  if (dist?.backend === "nccl" && device === "cpu") throw new Error("train: an NCCL process group carries CUDA tensors only: train on a CUDA device, or use gloo (VLP_DIST_BACKEND=gloo)");
  model.to(device);
  const main = !dist || dist.isMain; // the rank that owns the run directory
  if (!main) o = { ...o, quiet: true };
  if (dist) {
    dist.checkSame("the model (parameter names and shapes)", model.namedParameters().map(([n, p]) => [n, p.shape]));
    dist.checkSame("the stages", stages.map((st) => [st.name, st.steps, st.epochs, st.sources.map((x) => [x.name, x.batchSize])]));
  }
  if (main) mkdirSync(o.runDir, { recursive: true });
  const metricsFile = join(o.runDir, "metrics.jsonl");
  const generator = new Generator(o.seed);
  let state: RunState = { stage: 0, stageStep: 0, globalStep: 0, positions: {} };
  if (main) pruneCheckpoints(o.runDir); // temp files of killed writers
  const settings = runSettings(stages, o);
  let history: MetricsRow[] = [];
  let resumeFrom = o.resume && main ? latestCheckpoint(o.runDir) : null;
  if (main && o.resume && resumeFrom) {
    const saved = readTrainerState(resumeFrom);
    state = saved.run as RunState;
    checkResumeSettings(saved.settings as Settings | undefined, settings, { runDir: o.runDir, checkpoint: resumeFrom, step: state.globalStep, stage: state.stage, stageStep: state.stageStep, warn: (s) => console.warn(`warning: ${s}`) });
    log(o, `resuming from ${resumeFrom} (stage ${stages[state.stage]?.name ?? "done"}, step ${state.stageStep})`);
    // steps logged after the checkpoint will be trained again: drop their lines (atomically: a failed
    // write leaves the old file, never an empty one)
    if (existsSync(metricsFile)) {
      const parse = (l: string): MetricsRow | null => {
        try {
          return JSON.parse(l) as MetricsRow;
        } catch {
          return null; // a line cut by the kill
        }
      };
      const kept = readFileSync(metricsFile, "utf8").split("\n").filter((l) => {
        const row = l.trim() ? parse(l) : null;
        return row !== null && row.step <= state.globalStep;
      });
      writeFileAtomic(metricsFile, kept.map((l) => l + "\n").join(""));
      history = kept.map((l) => JSON.parse(l) as MetricsRow);
    }
  } else if (main) {
    const old = runFiles(o.runDir).filter((n) => n.startsWith("ckpt-") || (n === "metrics.jsonl" && statSync(metricsFile).size > 0));
    if (!o.resume && old.length) throw new Error(`train: ${o.runDir} already holds a run (${old.join(", ")}); resume it, or remove it first`);
    if (existsSync(metricsFile)) writeFileSync(metricsFile, "");
  }
  // the other ranks take rank 0's checkpoint choice and run state
  if (dist) [resumeFrom, state] = dist.broadcastObject<[string | null, RunState]>([resumeFrom, state]);
  const scaler = (o.lossScaling ?? o.precision === "fp16") ? new GradScaler() : null;
  if (scaler && state.scaler) scaler.loadStateDict(state.scaler);
  // after a resume the summary covers the whole run: stages done before it come from metrics.jsonl
  const summary: Record<string, Record<string, number>> = {};
  for (let si = 0; si < state.stage; si++) summary[stages[si].name] = summarizeHistory(history, stages[si].name);
  for (let si = state.stage; si < stages.length; si++) {
    const stage = stages[si];
    // freezing: the stage's frozen parameters get no gradient and stay out of the optimizer
    for (const [name, p] of model.namedParameters()) p.requiresGrad_(!(stage.frozen?.(name) ?? false));
    const loaders = await Promise.all(
      stage.sources.map((s, k) => Loader.create(s.data, { batchSize: localBatch(s, dist), seed: o.seed * 31 + si * 7 + k, workers: o.workers ?? 0, rank: dist?.rank, world: dist?.world })),
    );
    const steps = stage.steps ?? Math.max(1, Math.round((stage.epochs ?? 1) * loaders[0].batchesPerEpoch()));
    const opt = new AdamW(paramGroupsNoDecay(model, stage.weightDecay ?? 0.01, { trainableOnly: true, lrScale: stage.lrScale }), { lr: stage.lr, betas: stage.betas ?? [0.9, 0.999], eps: 1e-6 });
    // warmup is a fraction of the stage's updates; schedules take the number of updates done so far
    const schedule: ScheduleConfig = { kind: stage.schedule ?? "linear", warmupRatio: stage.warmup, total: steps } as ScheduleConfig;
    const sched = makeSchedule(schedule);
    const resuming = si === state.stage && state.stageStep > 0 && resumeFrom;
    if (resuming && state.stageStep > steps) {
      await Promise.all(loaders.map((l) => l.close()));
      throw stepsBelow(stage.name, steps, resumeFrom as string, state.stageStep);
    }
    if (resuming) {
      if (main) loadCheckpoint(resumeFrom!, { model, optimizer: opt, generators: { trainer: generator }, device });
      stage.sources.forEach((s, k) => loaders[k].seek(state.positions[s.name] ?? { epoch: 0, batch: 0 }));
    }
    // data parallel: every replica starts from rank 0's weights (and optimizer state after a resume)
    let ddp: DataParallel | null = null;
    if (dist) {
      broadcastModule(dist, model);
      if (resuming) broadcastOptimizer(dist, opt, 0, device);
      ddp = new DataParallel(dist, model.namedParameters().filter(([, p]) => p.requiresGrad), o.ddp);
    }
    const first = resuming ? state.stageStep + 1 : 1;
    const bar = o.quiet ? null : (o.progress?.(steps, stage.name) ?? null);
    bar?.update(first - 1);
    const recent: Record<string, number[]> = {};
    const evalSummary: Record<string, number> = {};
    if (resuming) summarizeHistory(history, stage.name, { recent, evalSummary });
    const weights = stage.sources.map((s) => s.weight ?? 1);
    const wsum = weights.reduce((a, b) => a + b, 0);
    const accumulate = o.accumulate ?? 1;
    const logEvery = Math.max(1, Math.floor(o.logEvery ?? 1));
    // the loss, gradient norm and metrics since the last row, on the device
    const sums = new MetricSums(accumulate);
    let lastLogged = first - 1;
    // fp16: the steps the loss scaler skipped since the last row, and its scale on the last step
    let skippedSteps = 0;
    let lastScale: number | undefined;
    try {
      for (let step = first; step <= steps; step++) {
        const global = state.globalStep + 1;
        const rng = stepRng(o.seed, global - 1);
        if (dist) reseedRank(generator, o.seed, global, dist.rank);
        const lrFactor = sched(step - 1);
        opt.setLrFactor(lrFactor);
        let source = stage.sources[0];
        let tag = "";
        for (let micro = 0; micro < accumulate; micro++) {
          let r = rng.next() * wsum;
          let k = 0;
          while (k < weights.length - 1 && (r -= weights[k]) > 0) k++;
          source = stage.sources[k];
          const host = await loaders[k].next();
          tag = tidy(() => {
            const batch = toTensors(host, device);
            // forward and loss under autocast (o.precision); backward outside it, as with torch.autocast
            const out = withPrecision(o.precision, () => source.step(batch, host.meta, { rng, generator, step: global, dist, device }), device);
            // a non-finite loss is found when the row is read (below), before any checkpoint
            const loss = (scaler ? scaler.scaleLoss(out.loss) : out.loss).div(accumulate);
            if (ddp) ddp.backward(loss);
            else loss.backward();
            sums.add(out.loss, out.metrics);
            return out.tag ?? source.name;
          });
        }
        if (ddp) ddp.finish();
        const params = model.parameters().filter((p) => p.requiresGrad);
        // loss scaling: gradients back to their size, or (an inf or NaN among them) no update this step;
        // the scaler reads whether it found one on every step (as torch.cuda.amp.GradScaler.step does)
        const lossScale = scaler?.scale;
        const stepped = scaler ? scaler.unscale(params) : true;
        const gradNorm = o.clip && stepped ? clipGradNormTensor(params, o.clip) : NaN;
        sums.endStep(gradNorm);
        if (typeof gradNorm !== "number") gradNorm.dispose();
        if (stepped) noGrad(() => opt.step());
        opt.zeroGrad();
        scaler?.update(stepped);
        if (scaler) {
          skippedSteps += stepped ? 0 : 1;
          lastScale = lossScale;
        }
        state = { ...state, stage: si, stageStep: step, globalStep: global, positions: { ...state.positions, ...Object.fromEntries(stage.sources.map((s, k) => [s.name, loaders[k].position])) }, ...(scaler ? { scaler: scaler.stateDict() } : {}) };
        const last = step === steps;
        const checkpoint = main && ((o.checkpointEvery && global % o.checkpointEvery === 0) || last);
        const stopping = !!o.stopAfter && global >= o.stopAfter;
        // a row every logEvery steps, and before a checkpoint (whose weights it vouches for) or the end
        if (step % logEvery === 0 || last || stopping || (o.checkpointEvery && global % o.checkpointEvery === 0)) {
          const row = sums.read();
          const from = lastLogged + 1;
          lastLogged = step;
          const norm = row.gradNorm;
          let { loss, metrics } = row;
          if (dist) {
            const { loss: meanLoss, ...meanMetrics } = reduceMetrics(dist, { loss, ...metrics });
            loss = meanLoss;
            metrics = meanMetrics;
          }
          const when = from === step ? `step ${step}` : `steps ${from}-${step}`;
          if (!Number.isFinite(loss)) {
            throw new Error(`non-finite loss (${loss}) at stage ${stage.name}, ${when} (source ${source.name}); the last good checkpoint is ${latestCheckpoint(o.runDir) ?? "none (no checkpoint written yet)"}`);
          }
          if (o.clip && !Number.isFinite(norm) && !scaler) {
            throw new Error(`non-finite gradient norm at stage ${stage.name}, ${when}; the last good checkpoint is ${latestCheckpoint(o.runDir) ?? "none"}`);
          }
          const scaling = scaler ? { loss_scale: lastScale, skipped: skippedSteps } : {};
          skippedSteps = 0;
          const line = { step: global, stage: stage.name, stage_step: step, source: tag, lr: stage.lr * lrFactor, loss, grad_norm: norm, ...scaling, time: Date.now(), ...metrics };
          if (main) appendTo(metricsFile, JSON.stringify(line) + "\n");
          pushRecent(recent, { loss, ...metrics });
          bar?.update(step, `loss ${loss.toFixed(3)}`);
        } else {
          bar?.update(step);
        }
        if (stage.sources.some((x) => x.evalData) && ((o.evalEvery && global % o.evalEvery === 0) || last)) {
          const val = await evaluate(model, stage, o, global);
          if (main) appendTo(metricsFile, JSON.stringify({ step: global, stage: stage.name, stage_step: step, source: "val", time: Date.now(), ...val }) + "\n");
          Object.assign(evalSummary, val);
        }
        if (checkpoint) {
          saveCheckpoint(checkpointDir(o.runDir, global), { step: global, run: state, settings }, { model, optimizer: opt, generators: { trainer: generator }, device });
          if (o.keepCheckpoints) pruneCheckpoints(o.runDir, o.keepCheckpoints);
        }
        if (stopping) return summary;
      }
    } finally {
      sums.reset();
      bar?.finish();
      await Promise.all(loaders.map((l) => l.close()));
      ddp?.dispose();
      opt.dispose();
    }
    summary[stage.name] = stageSummary(recent, evalSummary);
    state = { ...state, stage: si + 1, stageStep: 0 };
  }
  for (const p of model.parameters()) p.requiresGrad_(true);
  if (!main) return summary;
  saveStateDict(join(o.runDir, "model.safetensors"), model);
  if (existsSync(metricsFile)) writeFileSync(join(o.runDir, "metrics.html"), renderRunPlot(readFileSync(metricsFile, "utf8"), o.runDir));
  return summary;
}
