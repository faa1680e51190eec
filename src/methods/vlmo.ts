// VLMo (Bao et al. 2022): a mixture-of-modality-experts transformer pre-trained stagewise
// (src/pretrain/vlmo.ts, src/models/vlmo/). Every downstream model
// is a VLMoModel with other heads (the official names); retrieval fine-tunes it as a dual encoder (ITC).
import { need, type RetrievalBatch, type RetrievalMeta } from "../data/batches.ts";
import { computeItc } from "../objectives/losses.ts";
import { VLMoModel, vlmoConfig, convertOfficialStateDict, VLMO_PRESETS, type VLMoConfig, type VLMoHeadsConfig, type VLMoPreset } from "../models/vlmo/index.ts";
import { VLMoForPretraining, type MimTarget } from "../models/vlmo/pretraining.ts";
import type { TaskHead } from "../models/region_tasks.ts";
import { buildVLMo, VLMO_SECTION } from "../pretrain/vlmo.ts";
import { registerMethod, type ModelSpec, type TaskNet } from "./method.ts";
import { idxTensor } from "./region.ts";

type Overrides = Partial<Omit<VLMoConfig, "heads">> & { heads?: Partial<VLMoHeadsConfig> };
const overrides = (spec: ModelSpec) => (spec.overrides ?? {}) as Overrides;

/** A task model's heads: its classifier alone. */
const taskHeads = (head: TaskHead): Partial<VLMoHeadsConfig> => ({ mlm: false, itm: false, itc: false, itcVl: false, vqaLabels: head.kind === "qa" ? head.answers : 0, nlvr2: head.kind === "nlvr2" });

/** Retrieval: the ITC projections (the dual encoder) and the ITM head (re-ranking). */
const RETRIEVAL_HEADS: VLMoHeadsConfig = { mlm: false, itm: true, itc: true, itcVl: false, vqaLabels: 0, nlvr2: false };

/** The heads a run's weights hold, read off the tensor names (runs without config.json). */
function headsOf(shapes: Map<string, number[]>): VLMoHeadsConfig {
  const names = [...shapes.keys()];
  const has = (p: string) => names.some((k) => k.startsWith(p));
  const vqa = names.filter((k) => /^vqa_classifier\.\d+\.weight$/.test(k)).sort().pop();
  return { mlm: has("mlm_score."), itm: has("itm_score."), itc: has("itc_text_proj."), itcVl: has("itc_vl_text_proj."), vqaLabels: vqa ? shapes.get(vqa)![0] : 0, nlvr2: has("nlvr2_classifier.") };
}

function vlmoNet(model: VLMoModel, head: TaskHead): TaskNet {
  return {
    method: "vlmo",
    model,
    input: { kind: "pixels", size: model.config.imageSize },
    logits: head.kind === "qa"
      ? (b) => model.vqaLogits(model.inferFusion(b.input_ids, b.attention_mask, need(b, "pixels", "VLMo's VQA")))
      : (b) => model.nlvr2Logits(b.input_ids, b.attention_mask, need(b, "pixels0", "VLMo's NLVR2"), need(b, "pixels1", "VLMo's NLVR2")),
  };
}

export const VLMO = registerMethod({
  name: "vlmo",
  title: "VLMo",
  presets: Object.keys(VLMO_PRESETS),
  input: "pixels",
  section: VLMO_SECTION,
  buildStrategy: buildVLMo,
  // VLMo's Table 5 ablation is set outside `model` (recipe.vlmo.standard) but changes the network
  modelSpec: (r) => (r.vlmo?.standard !== undefined ? { ...r.model, overrides: { standard: r.vlmo.standard, ...(r.model.overrides ?? {}) } } : r.model),
  describe: (model) => ({
    config: { ...(model as VLMoModel).config },
    heads: model instanceof VLMoForPretraining ? { model: "pretraining", mimTarget: model.mimTarget, ...(model.label_head ? { labels: model.label_head.outFeatures } : {}) } : { model: "vlmo" },
  }),
  runModel(run, shapes) {
    if (run.config) {
      const config = run.config as unknown as VLMoConfig;
      return run.heads?.model === "pretraining" ? new VLMoForPretraining(config, run.heads.mimTarget as MimTarget, (run.heads.labels as number | undefined) ?? 0) : new VLMoModel(config);
    }
    // a run without config.json: the heads its weights hold (pre-training extras, mim_*, are left out)
    return new VLMoModel(vlmoConfig(run.model.preset as VLMoPreset, { ...overrides(run.model), heads: headsOf(shapes) }));
  },
  adaptWeights: (sd, model) => convertOfficialStateDict(sd, model as VLMoModel),
  taskNet: (spec, head) => {
    const o = overrides(spec);
    return vlmoNet(new VLMoModel(vlmoConfig(spec.preset as VLMoPreset, { ...o, heads: { ...(o?.heads ?? {}), ...taskHeads(head) } })), head);
  },
  wrapTaskNet: (model, head) => vlmoNet(model as VLMoModel, head),
  backbone: (name) => !name.startsWith("vqa_classifier.") && !name.startsWith("nlvr2_classifier."),
  textLen: (model) => (model as VLMoModel).config.maxTextLen,
  betas: [0.9, 0.98],
  loadNote: (head) => (head.kind === "nlvr2" ? "token_type_embeddings row 2 (second image) initialised from row 1 (image)" : undefined),
  retrievalModel: (spec) => ({ kind: "dual", method: "vlmo", model: new VLMoModel(vlmoConfig(spec.preset as VLMoPreset, { ...overrides(spec), heads: RETRIEVAL_HEADS })), hasItm: false }),
  wrapRetrievalModel: (model, missing) => ({ kind: "dual", method: "vlmo", model: model as VLMoModel, hasItm: !missing.some((n) => n.startsWith("itm_score.")) }),
  // an ITM head is only needed for re-ranking: a run without one (an ITC-only ablation) still fine-tunes
  retrievalOptional: (name) => name.startsWith("itm_score."),
  retrievalStep: (rm) => (batch, meta) => vlmoItcStep(rm.model as VLMoModel, batch, meta),
  retrievalSummary: () => "ITC dual encoder",
});

// ---- retrieval fine-tuning ----------------------------------------------------------------------

/** VLMo: ITC between image-only and text-only embeddings; repeated images in a batch keep their first caption only. */
export function vlmoItcStep(model: VLMoModel, batch: RetrievalBatch, meta: RetrievalMeta) {
  const imgIds = meta.imgIds;
  const first = imgIds.map((id, k) => (imgIds.indexOf(id) === k ? k : -1)).filter((k) => k >= 0);
  let ids = batch.input_ids, mask = batch.attention_mask, pixels = need(batch, "pixels", "VLMo's retrieval");
  if (first.length < imgIds.length) {
    const idx = idxTensor(first, ids.device);
    ids = ids.indexSelect(0, idx);
    mask = mask.indexSelect(0, idx);
    pixels = pixels.indexSelect(0, idx);
  }
  const txt = model.inferText(ids, mask, { vlBranch: false });
  const img = model.inferImage(pixels, { vlBranch: false });
  const itc = computeItc(img.itc!, txt.itc!, model.logit_scale!);
  return { loss: itc.loss, metrics: { ...itc.metrics, itc_batch: first.length } };
}

