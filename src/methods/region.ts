// What the two region-based methods (SemVLP, MSP's LXMERT-S) share downstream: their task model and
// retrieval matcher (src/models/region_tasks.ts) as TaskNet / RetrievalModel, how they describe
// themselves in config.json, and the row selection of their retrieval losses.
import { cat, tensor, type Module, type Tensor, type Device } from "../engine/index.ts";
import { toDevice } from "../engine/placement.ts";
import { RegionMatcher, RegionTaskModel, type RegionBackbone, type RegionBackboneConfig, type RegionInputs, type TaskHead, type TextInputs } from "../models/region_tasks.ts";
import type { SemVLPMode } from "../models/semvlp.ts";
import { need, type RetrievalBatch } from "../data/batches.ts";
import type { MethodDef, ModelDescription, ModelSpec, RetrievalModel, TaskNet } from "./method.ts";

type Backbone = (c: RegionBackboneConfig) => RegionBackbone;

/** The parts of a MethodDef that SemVLP and LXMERT-S share, given the backbone config of a spec (task models) and of a retrieval model. */
export function regionMethod(o: {
  name: string;
  taskConfig(spec: ModelSpec): RegionBackboneConfig;
  retrievalConfig(spec: ModelSpec): RegionBackboneConfig;
  backbone: Backbone;
  /** The pre-training model of a config.json. */
  pretrainingModel(config: Record<string, unknown>): Module;
  /** The pre-training config of a run without config.json: its recipe's spec and the shapes of its weights. */
  legacyPretrainingConfig(spec: ModelSpec, shapes: Map<string, number[]>): Record<string, unknown>;
  /** Its modes (SemVLP). */
  modes?: readonly SemVLPMode[];
}): Pick<MethodDef, "input" | "taskNet" | "wrapTaskNet" | "backbone" | "textLen" | "retrievalModel" | "wrapRetrievalModel" | "describe" | "runModel"> {
  const taskModel = (config: RegionBackboneConfig, head: TaskHead, mode: SemVLPMode = "single") => new RegionTaskModel(o.name, config, head, mode, o.backbone);
  const matcher = (config: RegionBackboneConfig, mode: SemVLPMode = "single") => new RegionMatcher(o.name, config, mode, o.backbone);
  return {
    input: "regions",
    taskNet: (spec, head, mode) => regionNet(taskModel(o.taskConfig(spec), head, mode), !!o.modes),
    wrapTaskNet: (model) => regionNet(model as RegionTaskModel, !!o.modes),
    backbone: (name) => name.startsWith("bert."),
    // LXMERT's pre-training length
    textLen: () => 20,
    retrievalModel: (spec, mode) => ({ kind: "fusion", method: o.name, model: matcher(o.retrievalConfig(spec), mode) }),
    wrapRetrievalModel: (model): RetrievalModel => ({ kind: "fusion", method: o.name, model: model as RegionMatcher }),
    describe(model): ModelDescription {
      if (model instanceof RegionTaskModel) return { config: { ...model.config }, heads: { model: "task", head: model.head, mode: model.mode } };
      if (model instanceof RegionMatcher) return { config: { ...model.config }, heads: { model: "retrieval", mode: model.mode } };
      return { config: { ...((model as Module & { config: object }).config) }, heads: { model: "pretraining" } };
    },
    runModel(run, shapes) {
      const h = run.heads ?? { model: "pretraining" };
      const config = (run.config ?? o.taskConfig(run.model)) as RegionBackboneConfig;
      if (h.model === "task") return taskModel(config, h.head as TaskHead, h.mode as SemVLPMode);
      if (h.model === "retrieval") return matcher(config, h.mode as SemVLPMode);
      return o.pretrainingModel(run.config ?? o.legacyPretrainingConfig(run.model, shapes));
    },
  };
}

function regionNet(model: RegionTaskModel, modes: boolean): TaskNet {
  return { method: model.method, model, input: { kind: "regions", featDim: model.config.visualFeatDim }, mode: modes ? model.mode : undefined, logits: (b) => model.forward(b) };
}

// ---- rows of retrieval batches ------------------------------------------------------------------

/** A retrieval batch's captions: its own (""), or fourWay's hard ("hard_") or random ("rand_") ones. */
export const textOf = (b: RetrievalBatch, p: "" | "hard_" | "rand_" = ""): TextInputs => ({ ids: need(b, `${p}input_ids`, "retrieval"), mask: need(b, `${p}attention_mask`, "retrieval"), wpos: need(b, `${p}word_position_ids`, "retrieval") });
/** A retrieval batch's images as regions: its own (""), or fourWay's negatives ("neg_"). */
export const regionsOf = (b: RetrievalBatch, p: "" | "neg_" = ""): RegionInputs => ({ feats: need(b, `${p}feats`, "retrieval"), boxes: need(b, `${p}boxes`, "retrieval"), valid: need(b, `${p}region_valid`, "retrieval") });
export const pickText = (t: TextInputs, idx: Tensor): TextInputs => ({ ids: t.ids.indexSelect(0, idx), mask: t.mask.indexSelect(0, idx), wpos: t.wpos.indexSelect(0, idx) });
export const pickRegions = (r: RegionInputs, idx: Tensor): RegionInputs => ({ feats: r.feats.indexSelect(0, idx), boxes: r.boxes.indexSelect(0, idx), valid: r.valid.indexSelect(0, idx) });
export const catText = (ts: TextInputs[]): TextInputs => ({ ids: cat(ts.map((t) => t.ids)), mask: cat(ts.map((t) => t.mask)), wpos: cat(ts.map((t) => t.wpos)) });
export const catRegions = (rs: RegionInputs[]): RegionInputs => ({ feats: cat(rs.map((r) => r.feats)), boxes: cat(rs.map((r) => r.boxes)), valid: cat(rs.map((r) => r.valid)) });
/** Row indices as an int64 tensor on `device` (that of the tensors they index). */
export const idxTensor = (xs: number[], device: Device) => toDevice(tensor(BigInt64Array.from(xs, BigInt), { shape: [xs.length], dtype: "int64" }), device);
