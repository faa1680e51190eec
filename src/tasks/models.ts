// Task models of the classification tasks for the three methods, and how they are made:
// from a pre-trained run (backbone loaded, new heads random), from scratch, or from a fine-tuning run.
//
// Names keep the pre-training ones so pre-trained weights load by name:
//   SemVLP / LXMERT-S: `bert.*` (the backbone), `answer_head.logit_fc.{0,2,3}` (VQA/GQA, LXMERT's
//   BertVisualAnswerHead) or `logit_fc.{0,2,3}` (NLVR2, LXMERT's pair classifier);
//   VLMo: the official names, with `vqa_classifier.*` or `nlvr2_classifier.*`.
// What a task reads: SemVLP's pooled output is pooler(h_CLS) in single-stream mode and pooler(o_IMG)
// in two-stream mode; LXMERT-S's is its product pooler; VLMo's the pooled text [CLS] of the fusion pass.
import { Module, Sequential, tidy, noGrad, type Tensor } from "../engine/index.ts";
import { loadStateDictFile } from "../engine/checkpoint.ts";
import { initBertWeights } from "../models/bert.ts";
import { BertVisualAnswerHead, NLVR2Head } from "../models/heads.ts";
import { SemVLPModel, semvlpConfig, type SemVLPConfig, type SemVLPMode, type SemVLPPreset } from "../models/semvlp.ts";
import { LxmertModel, lxmertConfig, type LxmertConfig, type LxmertPreset } from "../models/lxmert.ts";
import { VLMoModel, vlmoConfig, type VLMoHeadsConfig, type VLMoPreset } from "../models/vlmo.ts";
import { loadVLMoRun, modelFile, readRunInfo, type Method, type RunInfo } from "./checkpoint.ts";

export type TaskHead = { kind: "qa"; answers: number } | { kind: "nlvr2" };

/** SemVLP or LXMERT-S backbone + a QA or NLVR2 head. */
export class RegionTaskModel extends Module {
  readonly bert: SemVLPModel | LxmertModel;
  readonly answer_head: BertVisualAnswerHead | null = null;
  readonly logit_fc: Sequential | null = null;
  private readonly pair: NLVR2Head | null = null;

  constructor(readonly method: "semvlp" | "msp", readonly config: SemVLPConfig | LxmertConfig, readonly head: TaskHead, readonly mode: SemVLPMode = "single") {
    super();
    const c = config;
    this.bert = this.module("bert", method === "semvlp" ? new SemVLPModel(c as SemVLPConfig) : new LxmertModel(c as LxmertConfig));
    if (head.kind === "qa") this.answer_head = this.module("answer_head", new BertVisualAnswerHead(c.hiddenSize, head.answers, c.layerNormEps));
    else {
      this.pair = new NLVR2Head(c.hiddenSize, c.layerNormEps);
      this.logit_fc = this.module("logit_fc", this.pair.logit_fc);
    }
    initBertWeights(this, c.initializerRange);
  }

  pooled(b: Record<string, Tensor>): Tensor {
    const x = { inputIds: b.input_ids, attentionMask: b.attention_mask, positionIds: b.word_position_ids, visualFeats: b.feats, visualPos: b.boxes, visualAttentionMask: b.region_valid };
    return this.bert instanceof SemVLPModel ? this.bert.forward(x, this.mode).pooledOutput : this.bert.forward(x).pooledOutput;
  }

  /** [B, answers] (QA) or [B, 2] (NLVR2, from 2B rows with each statement's two images adjacent). */
  forward(b: Record<string, Tensor>): Tensor {
    const p = this.pooled(b);
    return this.answer_head ? this.answer_head.forward(p) : this.pair!.forwardInterleaved(p);
  }
}

/** A task model with what its batches must hold. */
export interface TaskNet {
  method: Method;
  model: Module;
  input: { kind: "regions"; featDim: number } | { kind: "pixels"; size: number };
  /** SemVLP: the mode the task reads. */
  mode?: SemVLPMode;
  logits(b: Record<string, Tensor>): Tensor;
}

function regionConfig(method: "semvlp" | "msp", spec: RunInfo["model"]): SemVLPConfig | LxmertConfig {
  const o = (spec.overrides ?? {}) as Record<string, unknown>;
  return method === "semvlp" ? semvlpConfig(spec.preset as SemVLPPreset, o) : lxmertConfig(spec.preset as LxmertPreset, { taskQa: false, topicHead: true, ...o });
}

const vlmoHeads = (head: TaskHead): Partial<VLMoHeadsConfig> => ({ mlm: false, itm: false, itc: false, itcVl: false, vqaLabels: head.kind === "qa" ? head.answers : 0, nlvr2: head.kind === "nlvr2" });

function vlmoNet(model: VLMoModel, head: TaskHead): TaskNet {
  return {
    method: "vlmo",
    model,
    input: { kind: "pixels", size: model.config.imageSize },
    logits: head.kind === "qa"
      ? (b) => model.vqaLogits(model.inferFusion(b.input_ids, b.attention_mask, b.pixels))
      : (b) => model.nlvr2Logits(b.input_ids, b.attention_mask, b.pixels0, b.pixels1),
  };
}

function regionNet(model: RegionTaskModel): TaskNet {
  return { method: model.method, model, input: { kind: "regions", featDim: model.config.visualFeatDim }, mode: model.method === "semvlp" ? model.mode : undefined, logits: (b) => model.forward(b) };
}

/** A randomly initialised task model (fine-tuning from scratch). */
export function scratchTaskNet(method: Method, spec: RunInfo["model"], head: TaskHead, mode: SemVLPMode = "single"): TaskNet {
  if (method === "vlmo") {
    const o = (spec.overrides ?? {}) as Parameters<typeof vlmoConfig>[1];
    return vlmoNet(new VLMoModel(vlmoConfig(spec.preset as VLMoPreset, { ...o, heads: { ...(o?.heads ?? {}), ...vlmoHeads(head) } })), head);
  }
  return regionNet(new RegionTaskModel(method, regionConfig(method, spec), head, mode));
}

export interface PretrainedLoad {
  net: TaskNet;
  info: RunInfo;
  /** Human-readable: what was loaded, what starts random. */
  report: string[];
}

/**
 * The task model on a pre-trained run's backbone. SemVLP / LXMERT-S: every `bert.*` tensor must be in
 * the run's weights, the pre-training heads are dropped, the task head starts random unless
 * `answerHeadFrom` maps the pre-trained QA head onto the task's answers (LXMERT's --loadLXMERTQA: the
 * first layers copied, the output rows copied for every answer both sets share). VLMo: through
 * loadVLMoRun, the new classifier random, NLVR2's third modality type a copy of the image type.
 */
export async function pretrainedTaskNet(dir: string, head: TaskHead, o: { mode?: SemVLPMode; answerHeadFrom?: { pretrained: Map<string, number>; task: string[] } } = {}): Promise<PretrainedLoad> {
  const info = readRunInfo(dir);
  if (info.kind !== "pretrain") throw new Error(`${dir}: a fine-tuning run; --from takes a pre-training run (recipe.json + model.safetensors)`);
  if (info.method === "vlmo") {
    const isNew = (k: string) => k.startsWith("vqa_classifier.") || k.startsWith("nlvr2_classifier.");
    const { model, missing } = await loadVLMoRun(dir, { heads: vlmoHeads(head), allowMissing: isNew });
    const report = [`VLMo backbone loaded from ${modelFile(dir)}`, `random init: ${summarize(missing)}`];
    if (head.kind === "nlvr2") report.push("token_type_embeddings row 2 (second image) initialised from row 1 (image)");
    return { net: vlmoNet(model, head), info, report };
  }
  const model = new RegionTaskModel(info.method, regionConfig(info.method, info.model), head, o.mode ?? "single");
  const file = modelFile(dir);
  const sd = loadStateDictFile(file);
  try {
    const own = model.stateDict();
    const backbone = [...own.keys()].filter((k) => k.startsWith("bert."));
    const absent = backbone.filter((k) => !sd.has(k));
    if (absent.length) throw new Error(`${file}: ${absent.length} backbone tensors missing (not a ${info.method} run of this model?), e.g. ${absent.slice(0, 5).join(", ")}`);
    model.loadStateDict(new Map(backbone.map((k) => [k, sd.get(k)!])), { strict: false, where: file });
    const fresh = [...own.keys()].filter((k) => !k.startsWith("bert."));
    const report = [`${info.method === "semvlp" ? "SemVLP" : "LXMERT-S"} backbone (bert.*, ${backbone.length} tensors) loaded from ${file}`];
    if (o.answerHeadFrom && model.answer_head && sd.has("answer_head.logit_fc.3.weight")) {
      const n = copyAnswerHead(model, sd, o.answerHeadFrom.pretrained, o.answerHeadFrom.task);
      report.push(`answer_head initialised from the pre-trained QA head (${n} of ${o.answerHeadFrom.task.length} answers shared; the others random)`);
    } else {
      report.push(`random init: ${summarize(fresh)}`);
    }
    return { net: regionNet(model), info, report };
  } finally {
    for (const t of sd.values()) t.dispose();
  }
}

function copyAnswerHead(model: RegionTaskModel, sd: Map<string, Tensor>, pretrained: Map<string, number>, task: string[]): number {
  const own = model.stateDict();
  const same = ["0.weight", "0.bias", "2.weight", "2.bias"].map((s) => `answer_head.logit_fc.${s}`);
  for (const k of same) if (sd.get(k)!.shape.join() !== own.get(k)!.shape.join()) throw new Error(`answer_head: ${k} has shape [${sd.get(k)!.shape}], the task head [${own.get(k)!.shape}]`);
  model.loadStateDict(new Map(same.map((k) => [k, sd.get(k)!])), { strict: false, where: "pre-trained QA head" });
  const w = sd.get("answer_head.logit_fc.3.weight")!;
  const bias = sd.get("answer_head.logit_fc.3.bias")!;
  const ow = own.get("answer_head.logit_fc.3.weight")!;
  const ob = own.get("answer_head.logit_fc.3.bias")!;
  let n = 0;
  tidy(() => noGrad(() => task.forEach((ans, i) => {
    const j = pretrained.get(ans);
    if (j === undefined || j >= w.size(0)) return;
    ow.select(0, i).copy_(w.select(0, j));
    ob.select(0, i).copy_(bias.select(0, j));
    n++;
  })));
  return n;
}

/** The model of a fine-tuning run, with its head and (SemVLP) mode, loaded strictly. */
export async function loadTaskRun(dir: string): Promise<{ net: TaskNet; info: RunInfo }> {
  const info = readRunInfo(dir);
  if (info.kind !== "finetune" || !info.task) throw new Error(`${dir}: not a fine-tuning run (no finetune.json)`);
  const head: TaskHead = info.task === "nlvr2" ? { kind: "nlvr2" } : { kind: "qa", answers: info.labels?.length ?? 0 };
  if (head.kind === "qa" && head.answers === 0) throw new Error(`${dir}/finetune.json: no answer labels`);
  if (info.method === "vlmo") return { net: vlmoNet((await loadVLMoRun(dir)).model, head), info };
  const mode = ((info.recipe as { options?: { mode?: string } } | undefined)?.options?.mode ?? "single") as SemVLPMode;
  const model = new RegionTaskModel(info.method, regionConfig(info.method, info.model), head, mode);
  const file = modelFile(dir);
  const sd = loadStateDictFile(file);
  try {
    model.loadStateDict(sd, { strict: true, where: file });
  } finally {
    for (const t of sd.values()) t.dispose();
  }
  return { net: regionNet(model), info };
}

/** "answer_head.logit_fc.* (4 tensors)" style summary of tensor names by their module. */
function summarize(names: string[]): string {
  if (names.length === 0) return "nothing";
  const groups = new Map<string, number>();
  for (const n of names) {
    const g = n.split(".").slice(0, -2).join(".") || n;
    groups.set(g, (groups.get(g) ?? 0) + 1);
  }
  return [...groups].map(([g, c]) => `${g}.* (${c})`).join(", ");
}
