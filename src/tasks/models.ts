// Task models of the classification tasks, and how they are made: from a pre-trained run (backbone
// loaded, new heads random), from scratch, or from a fine-tuning run. What a method's task model is
// (its backbone, heads and names) is the method's (src/methods/); this file only loads runs into them.
import { tidy, noGrad, type Module, type Tensor } from "../engine/index.ts";
import type { RegionTaskModel, TaskHead } from "../models/region_tasks.ts";
import type { SemVLPMode } from "../models/semvlp.ts";
import { getMethod, loadRun, readRunInfo, type ModelSpec, type RunInfo, type TaskNet } from "../methods/index.ts";

export type { TaskHead, TaskNet };

/** A randomly initialised task model (fine-tuning from scratch). */
export function scratchTaskNet(method: string, spec: ModelSpec, head: TaskHead, mode: SemVLPMode = "single"): TaskNet {
  return getMethod(method).taskNet(spec, head, mode);
}

export interface PretrainedLoad {
  net: TaskNet;
  info: RunInfo;
  /** Human-readable: what was loaded, what starts random. */
  report: string[];
}

/**
 * The task model on a pre-trained run's backbone (the method's `backbone` tensors, every one of which
 * must be in the run's weights); the pre-training heads are dropped, the task head starts random
 * unless `answerHeadFrom` maps the pre-trained QA head onto the task's answers (LXMERT's
 * --loadLXMERTQA: the first layers copied, the output rows copied for every answer both sets share).
 * VLMo: the official conversions apply (NLVR2's third modality type a copy of the image type).
 */
export async function pretrainedTaskNet(dir: string, head: TaskHead, o: { mode?: SemVLPMode; answerHeadFrom?: { pretrained: Map<string, number>; task: string[] } } = {}): Promise<PretrainedLoad> {
  const info = readRunInfo(dir);
  if (info.kind !== "pretrain") throw new Error(`${dir}: a fine-tuning run; --from takes a pre-training run (recipe.json or config.json, and model.safetensors)`);
  const def = getMethod(info.method);
  let copied: number | undefined;
  const { model, file, fresh } = await loadRun(dir, {
    build: (run) => def.taskNet(run.model, head, o.mode ?? "single").model,
    keep: def.backbone,
    init: (m, sd) => {
      const rm = m as Module as RegionTaskModel;
      if (o.answerHeadFrom && rm.answer_head && sd.has("answer_head.logit_fc.3.weight")) copied = copyAnswerHead(rm, sd, o.answerHeadFrom.pretrained, o.answerHeadFrom.task);
    },
  });
  const loaded = [...model.stateDict().keys()].length - fresh.length;
  const report = [`${def.title} backbone (${loaded} tensors) loaded from ${file}`];
  if (copied !== undefined) report.push(`answer_head initialised from the pre-trained QA head (${copied} of ${o.answerHeadFrom!.task.length} answers shared; the others random)`);
  else report.push(`random init: ${summarize(fresh)}`);
  const note = def.loadNote?.(head);
  if (note) report.push(note);
  return { net: def.wrapTaskNet(model, head), info, report };
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

/** The model of a fine-tuning run, with its head and (SemVLP) mode, every tensor loaded. */
export async function loadTaskRun(dir: string): Promise<{ net: TaskNet; info: RunInfo }> {
  const info = readRunInfo(dir);
  if (info.kind !== "finetune" || !info.task) throw new Error(`${dir}: not a fine-tuning run (no finetune.json)`);
  const head: TaskHead = info.task === "nlvr2" ? { kind: "nlvr2" } : { kind: "qa", answers: info.labels?.length ?? 0 };
  if (head.kind === "qa" && head.answers === 0) throw new Error(`${dir}/finetune.json: no answer labels`);
  const { model, def } = await loadRun(dir);
  return { net: def.wrapTaskNet(model, head), info };
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
