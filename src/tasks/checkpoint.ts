// What a run directory holds and how downstream code finds its model.
//
// A pre-training run (`vlp pretrain`) writes `recipe.json` and `model.safetensors` (the
// pre-training model's names: `bert.*` + heads for SemVLP/LXMERT-S, VLMo's official names + `mim_*`).
// A fine-tuning run (`vlp finetune <task>`) writes `finetune.json` (below) and `model.safetensors`
// with the task model's names. Both may also hold `ckpt-<step>/` training checkpoints.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { latestCheckpoint, loadStateDictFile } from "../engine/checkpoint.ts";
import type { VLMoModel, VLMoHeadsConfig, VLMoPreset } from "../models/vlmo.ts";
import type { Tensor } from "../engine/index.ts";
import { writeJsonAtomic } from "../engine/serialize/atomic.ts";

export type Method = "semvlp" | "msp" | "vlmo";
export type TaskName = "vqa" | "gqa" | "nlvr2" | "retrieval";

export interface RunInfo {
  kind: "pretrain" | "finetune";
  /** The downstream task (fine-tuning runs only). */
  task?: TaskName;
  method: Method;
  /** Model preset and overrides, as in a recipe's `model` section (the task's heads are added by the task). */
  model: { preset: string; overrides?: Record<string, unknown> };
  /** The synthetic world (or dataset folder) the run read; absent for a run on data.sources (its recipe names them). */
  world?: string;
  /** Pre-training runs: the ans2label file of the run's QA head (a world's vqa/trainval_ans2label.json, an lxmert source's answers). */
  answers?: string;
  /** Pre-training runs: the recipe's Karpathy file (relative to `world`), when not the synthetic world's. */
  karpathy?: string;
  /** Answer labels by class index (VQA, GQA). */
  labels?: string[];
  /** The pre-trained run a fine-tuning run started from (null: from scratch). */
  from?: string | null;
  /** The fine-tuning recipe, as run. */
  recipe?: unknown;
}

/** Read what a run directory holds: `finetune.json` (fine-tuning) or `recipe.json` (pre-training). */
export function readRunInfo(dir: string): RunInfo {
  if (!existsSync(dir)) throw new Error(`${dir}: checkpoint directory not found`);
  const ft = join(dir, "finetune.json");
  const pre = join(dir, "recipe.json");
  const read = (p: string) => {
    try {
      return JSON.parse(readFileSync(p, "utf8"));
    } catch (e) {
      throw new Error(`${p}: invalid JSON (${(e as Error).message})`);
    }
  };
  if (existsSync(ft)) {
    const info = read(ft) as RunInfo;
    if (info.kind !== "finetune" || !info.task || !info.method) throw new Error(`${ft}: expected {kind: "finetune", task, method, model, world}`);
    return info;
  }
  if (existsSync(pre)) {
    const r = read(pre) as { method: Method; model: RunInfo["model"]; data: { world?: string; karpathy?: string; sources?: { format?: string; world?: string; answers?: string }[] }; vlmo?: { standard?: boolean } };
    const sources = Array.isArray(r.data?.sources) ? r.data.sources : undefined;
    if (!r.method || !r.model || (!r.data?.world && !sources)) throw new Error(`${pre}: not a vlp recipe (method, model, data.world or data.sources)`);
    // VLMo's Table 5 ablation is set outside `model` (recipe.vlmo.standard) but changes the network
    const model = r.method === "vlmo" && r.vlmo?.standard !== undefined ? { ...r.model, overrides: { standard: r.vlmo.standard, ...(r.model.overrides ?? {}) } } : r.model;
    // the model comes from the recipe's model section; the data is only needed for the QA head's answers
    // and as the default world of a zero-shot evaluation (a run on one synth source has one)
    const synth = sources?.length === 1 && sources[0].format === "synth" ? sources[0].world : undefined;
    const world = r.data.world ?? synth;
    const answers = world ? join(world, "vqa/trainval_ans2label.json") : sources?.find((s) => s.format === "lxmert" && s.answers)?.answers;
    return { kind: "pretrain", method: r.method, model, world, karpathy: r.data.karpathy, ...(answers ? { answers } : {}) };
  }
  throw new Error(`${dir}: neither finetune.json nor recipe.json there (not a vlp run directory)`);
}

export function writeRunInfo(dir: string, info: RunInfo): void {
  writeJsonAtomic(join(dir, "finetune.json"), info);
}

/** The weights of a run: its final `model.safetensors`, else the newest complete checkpoint's. */
export function modelFile(dir: string): string {
  const final = join(dir, "model.safetensors");
  if (existsSync(final)) return resolve(final);
  const ck = latestCheckpoint(dir);
  if (ck) return resolve(join(ck, "model.safetensors"));
  throw new Error(`${dir}: no model.safetensors and no checkpoint (has the run finished a step?)`);
}

/**
 * A VLMo model for a run directory, with the heads its weights hold (vqa_classifier, nlvr2_classifier,
 * itm_score, itc_*, mlm_score are read off the tensor names; `heads` adds or removes some). Pre-training
 * extras (`mim_*`) are skipped; every tensor of the model must be present unless `allowMissing` says so
 * (a new task head on a pre-trained backbone).
 */
export async function loadVLMoRun(dir: string, o: { heads?: Partial<VLMoHeadsConfig>; allowMissing?: (name: string) => boolean } = {}): Promise<{ model: VLMoModel; info: RunInfo; missing: string[] }> {
  const info = readRunInfo(dir);
  if (info.method !== "vlmo") throw new Error(`${dir}: a ${info.method} run, not a VLMo one`);
  const file = modelFile(dir);
  const sd = loadStateDictFile(file);
  const made: Tensor[] = [];
  try {
    const has = (p: string) => [...sd.keys()].some((k) => k.startsWith(p));
    const vqa = [...sd.keys()].filter((k) => /^vqa_classifier\.\d+\.weight$/.test(k)).sort().pop();
    const found: VLMoHeadsConfig = {
      mlm: has("mlm_score."),
      itm: has("itm_score."),
      itc: has("itc_text_proj."),
      itcVl: has("itc_vl_text_proj."),
      vqaLabels: vqa ? sd.get(vqa)!.size(0) : 0,
      nlvr2: has("nlvr2_classifier."),
    };
    const { vlmoConfig } = await import("../models/vlmo.ts");
    const overrides = (info.model.overrides ?? {}) as Parameters<typeof vlmoConfig>[1];
    const config = vlmoConfig(info.model.preset as VLMoPreset, { ...overrides, heads: { ...found, ...(o.heads ?? {}) } });
    const { VLMoModel, convertOfficialStateDict } = await import("../models/vlmo.ts");
    const model = new VLMoModel(config);
    const own = model.stateDict();
    // official conversions; with a new NLVR2 head, the third modality type starts as a copy of type 1 (image)
    const converted = convertOfficialStateDict(sd, model);
    for (const [k, t] of converted) if (sd.get(k) !== t) made.push(t);
    const kept = new Map([...converted].filter(([k]) => own.has(k)));
    const missing = [...own.keys()].filter((k) => !kept.has(k));
    const bad = missing.filter((k) => !(o.allowMissing?.(k) ?? false));
    if (bad.length) throw new Error(`${file}: missing ${bad.length} tensors of the model, e.g. ${bad.slice(0, 5).join(", ")}`);
    model.loadStateDict(kept, { strict: false, where: file });
    return { model, info, missing };
  } finally {
    for (const t of [...sd.values(), ...made]) t.dispose();
  }
}
