// What the baselines share: the bag-of-words text encoder over a compact vocabulary of the BERT
// wordpiece ids seen in training captions, the caption/image sampling of a training step, held-out
// and the printed table (held-out ITM pairs and zero-shot metrics live in src/tasks/heldout.ts, which
// the pre-trained models' evaluation shares).
import { Module, Embedding, tensor, zeros, tidy, F, type Tensor } from "../engine/index.ts";
import { Adam } from "../engine/optim.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import { Rng } from "../engine/rng.ts";
import { sampleMismatched } from "../objectives/sampling.ts";
import type { EvalSet } from "../tasks/retrieval/data.ts";

/** What every baseline's options have (`vlp baseline` fills them from its flags). */
export interface BaselineOptions {
  world: string;
  steps: number;
  seed: number;
  batchSize: number;
  lr: number;
  /** The model's width (bow: the joint space; linear: patch projection and text embedding; vqa, nlvr2: everything). */
  dim: number;
  maxTextLen: number;
  /** Progress every N steps (0 = quiet). */
  logEvery: number;
}

/** Compact word ids: index 0 = padding / special / unseen word (ignored by the mean), 1.. = BERT ids seen in training. */
export class WordVocab {
  readonly index = new Map<number, number>();
  constructor(readonly tok: BertTokenizer, trainTexts: string[]) {
    const skip = new Set([tok.padId, tok.clsId, tok.sepId]);
    for (const t of trainTexts) {
      for (const id of tok.encode(t).inputIds) if (!skip.has(id) && !this.index.has(id)) this.index.set(id, this.index.size + 1);
    }
  }
  get size(): number {
    return this.index.size + 1;
  }
  /** [n, L] int64 compact ids (0 = nothing), truncated at L wordpieces. */
  encode(texts: string[], L: number): Tensor {
    const out = new BigInt64Array(texts.length * L);
    texts.forEach((t, k) => {
      let j = 0;
      for (const id of this.tok.encode(t).inputIds) {
        const c = this.index.get(id);
        if (c === undefined) continue;
        if (j >= L) break;
        out[k * L + j++] = BigInt(c);
      }
    });
    return tensor(out, { shape: [texts.length, L] });
  }
}

/** Mean of learned word embeddings over the non-zero ids of each row. */
export class BowText extends Module {
  readonly emb: Embedding;
  constructor(vocabSize: number, readonly dim: number) {
    super();
    this.emb = this.module("emb", new Embedding(vocabSize, dim, 0));
    F.normal_(this.emb.weight, 0, 0.1);
  }
  forward(ids: Tensor): Tensor {
    const mask = ids.ne(0).float().unsqueeze(-1);
    return this.emb.forward(ids).mul(mask).sum(1).div(mask.sum(1).clampMin(1));
  }
}

/** Captions of a split flattened with their image index (the EvalSet layout). */
export function captionTexts(set: EvalSet): string[] {
  return set.captions.map((c) => c.text);
}

/**
 * One training step's sample: `b` distinct images (fewer if the split is smaller), a random caption of
 * each, and for ITM a random other image for about half of them.
 */
export interface StepSample {
  images: number[];
  captions: number[];
  /** ITM: the image each caption is paired with, and whether that is its own. */
  itmImages: number[];
  matched: number[];
}

export function sampleStep(rng: Rng, set: EvalSet, byImage: number[][], b: number, negProb = 0.5): StepSample {
  const n = set.images.length;
  const chosen = new Set<number>();
  const m = Math.min(b, n);
  while (chosen.size < m) chosen.add(rng.int(n));
  const images = [...chosen];
  const captions = images.map((i) => byImage[i][rng.int(byImage[i].length)]);
  const itm = sampleMismatched(images, n, rng, negProb);
  return { images, captions, itmImages: itm.imageIndex, matched: itm.matched.map(Number) };
}

export function captionsByImage(set: EvalSet): number[][] {
  const by: number[][] = set.images.map(() => []);
  set.captions.forEach((c, t) => by[c.image].push(t));
  return by;
}

/** A fixed-width table of metrics with their chance levels. */
export function formatTable(title: string, rows: [string, number, number | undefined][]): string {
  const lines = [title, `${"metric".padEnd(16)} ${"value".padStart(8)} ${"chance".padStart(8)}`];
  for (const [k, v, c] of rows) lines.push(`${k.padEnd(16)} ${v.toFixed(4).padStart(8)} ${(c === undefined ? "" : c.toFixed(4)).padStart(8)}`);
  return lines.join("\n");
}

/** Rows of the printed table from a metrics record (each value next to its chance level). */
export function metricRows(m: Record<string, number>): [string, number, number | undefined][] {
  const rows: [string, number, number | undefined][] = [];
  if (m.itm_acc_val !== undefined) rows.push(["itm_acc_val", m.itm_acc_val, m.itm_chance_val]);
  if (m.itm_acc !== undefined) rows.push(["itm_acc (test)", m.itm_acc, m.itm_chance]);
  for (const p of ["zs_", "zs100_"]) {
    if (m[`${p}ir_r1`] === undefined) continue;
    for (const d of ["ir", "tr"]) {
      for (const k of [1, 5, 10]) rows.push([`${p}${d}_r${k}`, m[`${p}${d}_r${k}`], d === "ir" ? m[`${p}chance_r${k}`] : m[`${p}chance_tr_r${k}`]]);
    }
    rows.push([`${p}r_mean`, m[`${p}r_mean`], m[`${p}chance_r_mean`]]);
  }
  // the VQA and NLVR2 baselines: official VQA accuracies (all questions and by answer type), NLVR2 accuracy, of each split
  for (const [k, v] of Object.entries(m)) if (k.startsWith("vqa_acc") || k.startsWith("nlvr2_acc")) rows.push([k, v, k.startsWith("nlvr2_acc") ? m[k.replace("nlvr2_acc", "nlvr2_chance")] : undefined]);
  return rows;
}

/** An int64 index tensor of row numbers. */
export const indexTensor = (xs: number[]): Tensor => tensor(BigInt64Array.from(xs, BigInt));

/**
 * The training loop of every baseline: `o.steps` Adam steps (lr `o.lr`) over the model's parameters;
 * `lossOf` draws the step's batch with the generator (seeded by (o.seed, salt)) and builds its loss,
 * `after` runs after each update (e.g. a clamp). Every `o.logEvery` steps (0: never) it prints
 * `<name> step k/n <what> <mean loss>`.
 */
export function trainLoop(
  model: Module, o: { steps: number; seed: number; lr: number; logEvery: number },
  salt: number, log: { name: string; what: string }, lossOf: (rng: Rng) => Tensor, after?: () => void,
): void {
  const opt = new Adam(model.parameters(), { lr: o.lr });
  // the baselines' own seed form (a float product, not mixSeed's imul), kept so their published runs reproduce
  const rng = new Rng((o.seed * 0x9e3779b1) ^ salt);
  // the losses since the last printed line, summed on the device: read once per line, never per step
  let lossSum = zeros([], { dtype: "float64" }).keep();
  for (let step = 0; step < o.steps; step++) {
    const sum = tidy(() => {
      const loss = lossOf(rng);
      loss.backward();
      opt.step();
      opt.zeroGrad();
      after?.();
      return o.logEvery > 0 ? lossSum.add(loss.detach().to("float64")).keep() : null;
    });
    if (sum) {
      lossSum.dispose();
      lossSum = sum;
    }
    if (o.logEvery > 0 && (step + 1) % o.logEvery === 0) {
      console.log(`${log.name} step ${step + 1}/${o.steps} ${log.what} ${(lossSum.item() / o.logEvery).toFixed(4)}`);
      lossSum.dispose();
      lossSum = zeros([], { dtype: "float64" }).keep();
    }
  }
  lossSum.dispose();
}

/** `trainLoop` over caption batches: each step's loss on a `sampleStep` batch of the train split (bow, linear). */
export function trainBaseline(
  model: Module, set: EvalSet, o: { steps: number; seed: number; batchSize: number; lr: number; logEvery: number },
  salt: number, log: { name: string; what: string }, lossOf: (s: StepSample) => Tensor, after?: () => void,
): void {
  const byImage = captionsByImage(set);
  trainLoop(model, o, salt, log, (rng) => lossOf(sampleStep(rng, set, byImage, o.batchSize)), after);
}

/** Zero-shot metrics of a test score matrix (`zs_`), and of its first 100 images (`zs100_`) when the split is bigger. */
export function zeroShotWithSubset(test: Float32Array, set: EvalSet): Record<string, number> {
  const metrics = zeroShotMetrics("zs_", test, set);
  if (set.images.length > 100) {
    const sub = subMatrix(test, set, 100);
    Object.assign(metrics, zeroShotMetrics("zs100_", sub.i2t, sub.set));
  }
  return metrics;
}

import { zeroShotMetrics, subMatrix } from "../tasks/heldout.ts";
export { itmPairs, itmAccuracy, bestThreshold, itmChance, zeroShotMetrics, subMatrix, worldHardPairs, type ItmPairs } from "../tasks/heldout.ts";
