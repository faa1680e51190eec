// MSP (multi-stage pre-training of LXMERT-S): token -> phrase -> sentence stages
// (src/pretrain/msp.ts, src/models/lxmert_msp.ts). Downstream: LXMERT-S's product pooler feeds the
// task heads; retrieval fine-tunes ViLBERT-style (four pairs per example, BCE on the ITM head).
import { cat, ones, zeros, noGrad, F } from "../engine/index.ts";
import { LxmertModel, lxmertConfig, LXMERT_PRESETS, type LxmertConfig, type LxmertPreset } from "../models/lxmert.ts";
import { LxmertSForMSP } from "../models/lxmert_msp.ts";
import type { RegionMatcher } from "../models/region_tasks.ts";
import { buildMSP, MSP_SECTION } from "../pretrain/msp.ts";
import { registerMethod } from "./method.ts";
import { regionMethod, catText, catRegions, textOf, regionsOf } from "./region.ts";
import type { RetrievalBatch } from "../data/batches.ts";

/** LXMERT-S as MSP pre-trains it: no QA head, the topic head of TITP/TITS. */
const lxmertS = (spec: { preset: string; overrides?: Record<string, unknown> }) => lxmertConfig(spec.preset as LxmertPreset, { taskQa: false, topicHead: true, ...(spec.overrides ?? {}) } as Partial<LxmertConfig>);

export const MSP = registerMethod({
  name: "msp",
  title: "LXMERT-S",
  presets: Object.keys(LXMERT_PRESETS),
  section: MSP_SECTION,
  buildStrategy: buildMSP,
  modelSpec: (r) => r.model,
  ...regionMethod({
    name: "msp",
    taskConfig: lxmertS,
    retrievalConfig: lxmertS,
    backbone: (c) => new LxmertModel(c as LxmertConfig),
    pretrainingModel: (config) => new LxmertSForMSP(config as unknown as LxmertConfig),
    // msp.itc (a recipe setting outside `model`) sizes the ITC projections: read it off the weights
    legacyPretrainingConfig: (spec, shapes) => ({ ...lxmertConfig(spec.preset as LxmertPreset, { taskQa: false, topicHead: true, ...(spec.overrides ?? {}), itcDim: shapes.get("itc_text_proj.weight")?.[0] ?? (spec.overrides?.itcDim as number | undefined) } as Partial<LxmertConfig>) }),
  }),
  retrievalStep: (rm) => (batch) => mspFourWayStep(rm.model as RegionMatcher, batch),
  retrievalData: { fourWay: {} },
  retrievalSummary: () => "4 pairs per example, BCE on the ITM head",
});

// ---- retrieval fine-tuning ----------------------------------------------------------------------

/** LXMERT-S (ViLBERT-style): 4 pairs per example, BCE on the ITM log-odds with labels 1, 0, 0, 0. */
export function mspFourWayStep(m: RegionMatcher, batch: RetrievalBatch) {
  const t = textOf(batch);
  const r = regionsOf(batch);
  const B = t.ids.size(0);
  const s = m.score(catText([t, t, textOf(batch, "hard_"), textOf(batch, "rand_")]), catRegions([r, regionsOf(batch, "neg_"), r, r]));
  const labels = cat([ones([B], { device: s.device }), zeros([3 * B], { device: s.device })]);
  const loss = F.binaryCrossEntropyWithLogits(s, labels);
  const metrics = noGrad(() => {
    const correct = s.gt(0).float().eq(labels).float();
    return { itm_loss: loss.detach(), itm_acc: correct.mean(), pos_acc: correct.narrow(0, 0, B).mean() };
  });
  return { loss, metrics };
}

