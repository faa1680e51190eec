// The VQA and NLVR2 baselines of the region models: no transformer, one attention from the text's bag
// of words onto each image's regions, trained on a world's train split with the fine-tunes' loss and
// scored with their metric (official VQA accuracy; NLVR2 accuracy). They answer "how much of the
// world's VQA / NLVR2 can a simple model learn?", the yardstick for the fine-tuned fusion models
// (README "Baselines").
//
//   text     q = mean of learned word embeddings (BowText, dim d; unit variance at init)
//   regions  r_k = Linear(d) . ReLU . Linear(d) of [standardised feature, box]
//   read-out v = sum_k softmax_k(r_k . q / sqrt d) r_k over the valid boxes, per image
//   count    (--count) c = sum_k sigmoid(r_k . Wq / sqrt d + b) over the valid boxes, per image: an
//            unnormalised read that keeps how many boxes match (a softmax's weights sum to 1 whatever
//            the number of matching boxes, so v alone cannot count; Zhang et al. 2018), fed to the
//            head as Linear(1, d) of c
//   head     logits = Linear(out) . ReLU . Linear(d) of [q, q * v] (NLVR2: [q, q * v_0, q * v_1]),
//            with the count embeddings after them
//   loss     VQA: BCE-with-logits (mean) x the number of answers against the soft scores (as
//            `vlp finetune vqa`); NLVR2: cross-entropy on the label
import { join } from "node:path";
import { Module, Linear, tensor, cat, tidy, noGrad, manualSeed, F, type Tensor } from "../engine/index.ts";
import { openRegions } from "../data/regions/index.ts";
import { readAnswerVocab, readVqaAnnotations, type VqaAnnotation } from "../data/formats/vqa.ts";
import { regionArrays, readTaskExamples, softTargets, type TaskExample } from "../tasks/data.ts";
import { vqaMetrics } from "../tasks/metrics.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import { WordVocab, BowText, indexTensor, trainLoop, type BaselineOptions } from "./common.ts";
import { regionTensors, type BaselineRun } from "./bow.ts";

export type QaTask = "vqa" | "nlvr2";

export interface QuestionAttentionOptions extends BaselineOptions {
  task: QaTask;
  maxBoxes: number;
  /** Also a count-preserving read-out (sigmoid-gated sum over the boxes), per image. */
  count: boolean;
}

export const QUESTION_ATTENTION_DEFAULTS: Omit<QuestionAttentionOptions, "world"> = { task: "vqa", steps: 3000, seed: 0, batchSize: 32, lr: 1e-3, dim: 128, maxTextLen: 20, maxBoxes: 36, logEvery: 0, count: false };

export class QuestionAttention extends Module {
  readonly text: BowText;
  readonly box1: Linear;
  readonly box2: Linear;
  readonly out1: Linear;
  readonly out2: Linear;
  readonly countQuery?: Linear;
  readonly countBias?: Tensor;
  readonly countEmb?: Linear;
  /** `images` images per example (VQA 1, NLVR2 2), `outputs` logits; `count`: the count read-out too. */
  constructor(vocabSize: number, inDim: number, readonly dim: number, outputs: number, images = 1, count = false) {
    super();
    this.text = this.module("text", new BowText(vocabSize, dim));
    // unit-variance word embeddings (PyTorch's default), not BowText's 0.1: with small question vectors
    // the attention starts uniform and the model sits on the language-prior plateau far longer
    F.normal_(this.text.emb.weight, 0, 1);
    this.box1 = this.module("box1", new Linear(inDim, dim));
    this.box2 = this.module("box2", new Linear(dim, dim));
    this.out1 = this.module("out1", new Linear((1 + (count ? 2 : 1) * images) * dim, dim));
    if (count) {
      this.countQuery = this.module("countQuery", new Linear(dim, dim));
      // the gates start near sigmoid(-3) = 0.05, so that 36 boxes count ~2 rather than 18
      this.countBias = this.param("countBias", tensor(new Float32Array([-3]), { shape: [1] }));
      this.countEmb = this.module("countEmb", new Linear(1, dim));
    }
    this.out2 = this.module("out2", new Linear(dim, outputs));
  }
  /** Logits [B, outputs] of texts `ids` [B, L] on each image's regions `x` [B, N, D+4] with `valid` [B, N]. */
  forward(ids: Tensor, images: { x: Tensor; valid: Tensor }[]): Tensor {
    const q = this.text.forward(ids);
    const rs = images.map(({ x }) => this.box2.forward(this.box1.forward(x).relu()));
    const reads = images.map(({ valid }, i) => {
      const att = rs[i].matmul(q.unsqueeze(-1)).squeeze(-1).div(Math.sqrt(this.dim)).maskedFill(valid.logicalNot(), -1e4).softmax(-1);
      return q.mul(att.unsqueeze(1).matmul(rs[i]).squeeze(1));
    });
    const counts = !this.countQuery ? [] : images.map(({ valid }, i) => {
      const gate = rs[i].matmul(this.countQuery!.forward(q).unsqueeze(-1)).squeeze(-1).div(Math.sqrt(this.dim)).add(this.countBias!).sigmoid();
      return this.countEmb!.forward(gate.mul(valid.to(gate.dtype)).sum([1], true));
    });
    return this.out2.forward(this.out1.forward(cat([q, ...reads, ...counts], -1)).relu());
  }
}

/** The examples of a world's split (lxmert/<task>_<split>.json). */
const worldExamples = (world: string, task: QaTask, split: string): TaskExample[] => readTaskExamples(task, join(world, "lxmert", `${task}_${split}.json`));

/**
 * Train the baseline on a world's train split; the metrics of val, test and test_comp (where the world
 * has it): VQA `vqa_acc*` (official, by answer type too), NLVR2 `nlvr2_acc*`; keys of val and
 * test_comp end in `_val` / `_test_comp`.
 */
export async function runQuestionAttention(opts: Partial<QuestionAttentionOptions> & { world: string }): Promise<BaselineRun> {
  const o: QuestionAttentionOptions = { ...QUESTION_ATTENTION_DEFAULTS, ...opts };
  const t0 = performance.now();
  manualSeed(o.seed);
  const nImages = o.task === "nlvr2" ? 2 : 1;
  const label2ans = o.task === "vqa" ? readAnswerVocab(join(o.world, "vqa")).label2ans : [];
  const ans2label = new Map(label2ans.map((a, i) => [a, i]));
  const train = worldExamples(o.world, o.task, "train");
  const tok = BertTokenizer.load();
  const vocab = new WordVocab(tok, train.map((e) => e.text));
  const regions = await openRegions(join(o.world, "features", "obj36.tsv"));
  // each split's images once, standardised with the train images' statistics
  const imagesOf = (exs: TaskExample[]) => [...new Set(exs.flatMap((e) => e.imgIds))];
  const trainImages = imagesOf(train);
  const tr = tidy(() => {
    const t = regionTensors(regionArrays(regions, trainImages, o.maxBoxes));
    return { x: t.x.keep(), valid: t.valid.keep(), mean: t.stats.mean.keep(), std: t.stats.std.keep() };
  });
  const splitData = (exs: TaskExample[], images: string[], img: { x: Tensor; valid: Tensor }) => {
    const row = new Map(images.map((id, i) => [id, i]));
    return { exs, img, rows: exs.map((e) => e.imgIds.map((id) => row.get(id)!)), ids: vocab.encode(exs.map((e) => e.text), o.maxTextLen).keep() };
  };
  const model = new QuestionAttention(vocab.size, tr.x.size(-1), o.dim, o.task === "vqa" ? label2ans.length : 2, nImages, o.count);
  /** The model on examples `ks` of a split's data. */
  const forward = (d: ReturnType<typeof splitData>, ks: number[]): Tensor => model.forward(d.ids.indexSelect(0, indexTensor(ks)), Array.from({ length: nImages }, (_, j) => {
    const im = indexTensor(ks.map((k) => d.rows[k][j]));
    return { x: d.img.x.indexSelect(0, im), valid: d.img.valid.indexSelect(0, im) };
  }));
  const trainData = splitData(train, trainImages, tr);
  const target = o.task === "vqa"
    ? tensor(softTargets(train, ans2label, label2ans.length), { shape: [train.length, label2ans.length] }).keep()
    : tensor(BigInt64Array.from(train, (e) => BigInt(e.label ?? 0))).keep();
  trainLoop(model, o, 0x7a5e11, { name: `${o.task} baseline`, what: "loss" }, (rng) => {
    const pick = Array.from({ length: o.batchSize }, () => rng.int(train.length));
    const logits = forward(trainData, pick);
    const y = target.indexSelect(0, indexTensor(pick));
    return o.task === "vqa" ? F.binaryCrossEntropyWithLogits(logits, y).mul(label2ans.length) : F.crossEntropy(logits, y);
  });

  const metrics: Record<string, number> = {};
  for (const split of ["val", "test", "test_comp"]) {
    let exs: TaskExample[];
    try {
      exs = worldExamples(o.world, o.task, split);
    } catch (e) {
      if (split === "test_comp") continue; // a world without held-out compositions
      throw e;
    }
    const images = imagesOf(exs);
    const d = tidy(() => {
      const t = regionTensors(regionArrays(regions, images, o.maxBoxes), { mean: tr.mean, std: tr.std });
      return splitData(exs, images, { x: t.x.keep(), valid: t.valid.keep() });
    });
    const pred = tidy(() => noGrad(() => forward(d, exs.map((_, k) => k)).argmax(-1).toArray()));
    const key = split === "test" ? "" : `_${split}`;
    if (o.task === "vqa") {
      const annFile = join(o.world, "vqa", `v2_synth_${split}_annotations.json`);
      const annotations = new Map<number | string, VqaAnnotation>(readVqaAnnotations(annFile).records.map((a) => [a.question_id, a]));
      const m = vqaMetrics(exs.map((e, k) => ({ question_id: e.id, answer: label2ans[pred[k]], label: e.scores })), annotations, { where: `vqa baseline ${split} predictions against ${annFile}` });
      for (const [k, v] of Object.entries(m)) if (k.startsWith("vqa_acc")) metrics[`${k}${key}`] = v;
    } else {
      metrics[`nlvr2_acc${key}`] = exs.reduce((n, e, k) => n + Number(pred[k] === e.label), 0) / exs.length;
      // chance: always the split's more frequent label
      const ones = exs.filter((e) => e.label === 1).length / exs.length;
      metrics[`nlvr2_chance${key}`] = Math.max(ones, 1 - ones);
    }
    for (const t of [d.ids, d.img.x, d.img.valid]) t.dispose();
  }
  regions.close();
  for (const t of [tr.x, tr.valid, tr.mean, tr.std, trainData.ids, target]) t.dispose();
  metrics.steps = o.steps;
  metrics.seconds = (performance.now() - t0) / 1000;
  return {
    metrics,
    description: `${o.task}: the text's bag of words attends the regions of ${nImages === 2 ? "each image" : "the image"}${o.count ? " and counts them" : ""} (d ${o.dim}), ${o.steps} steps x ${o.batchSize}, lr ${o.lr}, seed ${o.seed}; train ${train.length} examples on ${trainImages.length} images`,
  };
}
