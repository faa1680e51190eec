// Loading foreign pre-trained weights into vlpkit's models: a Hugging Face BERT or LXMERT
// `pytorch_model.bin` / `.safetensors`, an official LXMERT / LXMERT-S checkpoint (pre-training or
// fine-tuning), or an official VLMo checkpoint. The file is read by the engine's readers
// (safetensors, or torch.save'd zip / pickle through the safe unpickler), its names are mapped by
// the name maps of namemap.ts (official VLMo: vlmo/checkpoint.ts), and the result is checked
// against the model before anything is copied: names of the checkpoint that match no tensor of the
// model, tensors of the model the checkpoint lacks, and shape mismatches are all listed in one error.
//
//   loadPretrained(new SemVLPForPreTraining(cfg), "bert-base-uncased/pytorch_model.bin",
//                  { allowMissing: (n) => /crossattention|visn_fc|img_embedding|_head\./.test(n) });
//   loadPretrained(new LxmertForPreTraining(lxmertConfig("lxmert")), "lxmert-base-uncased/model.safetensors");
import { Module, type Tensor } from "../engine/index.ts";
import { loadStateDictFile } from "../engine/checkpoint.ts";
import {
  composeMaps, hfBertToVlpkit, hfLxmertToOfficial, lxmertFinetuneToBackbone, stripModulePrefix, type NameMap,
} from "./namemap.ts";
import { VLMoModel } from "./vlmo/model.ts";
import { convertOfficialStateDict } from "./vlmo/checkpoint.ts";

/** How a checkpoint names its tensors. */
export type CheckpointLayout = "hf-bert" | "hf-lxmert" | "lxmert-finetune" | "vlmo-official";

const TITLES: Record<CheckpointLayout, string> = {
  "hf-bert": "BERT (Hugging Face / Google) names",
  "hf-lxmert": "Hugging Face LXMERT names",
  "lxmert-finetune": "official LXMERT fine-tuning names",
  "vlmo-official": "official VLMo names",
};

const MAPS: Record<Exclude<CheckpointLayout, "vlmo-official">, NameMap> = {
  // also the identity for official LXMERT / LXMERT-S and SemVLP names (bert.*, cls.*, ...)
  "hf-bert": hfBertToVlpkit,
  "hf-lxmert": composeMaps(stripModulePrefix, hfLxmertToOfficial),
  "lxmert-finetune": lxmertFinetuneToBackbone,
};

/** The layout of a checkpoint from its names (and the model it goes into). */
export function detectLayout(names: Iterable<string>, model: Module): CheckpointLayout {
  if (model instanceof VLMoModel) return "vlmo-official";
  const ns = [...names].map((n) => (n.startsWith("module.") ? n.slice("module.".length) : n));
  if (ns.some((n) => n.startsWith("lxrt_encoder."))) return "lxmert-finetune";
  if (ns.some((n) => n.startsWith("lxmert.") || /^encoder\.(x_layers|r_layers|visn_fc)\./.test(n))) return "hf-lxmert";
  return "hf-bert";
}

export interface LoadPretrainedOptions {
  /** The checkpoint's naming (default: detected from its names, see detectLayout). */
  layout?: CheckpointLayout;
  /** Tensors of the model (vlpkit names) the checkpoint may lack; they keep their initialisation. true = any. */
  allowMissing?: boolean | ((name: string) => boolean);
  /** Tensors of the checkpoint (after mapping) that the model may lack; they are dropped. true = any. */
  allowUnmatched?: boolean | ((name: string) => boolean);
}

export interface PretrainedLoad {
  layout: CheckpointLayout;
  /** Model tensors filled from the checkpoint (vlpkit names). */
  loaded: string[];
  /** Model tensors left as initialised (allowed by allowMissing). */
  missing: string[];
  /** Checkpoint tensors dropped (allowed by allowUnmatched), under their names in the file. */
  unmatched: string[];
}

/** A checkpoint that does not fit the model; every problem is listed. */
export class PretrainedLoadError extends Error {
  constructor(
    readonly missing: string[],
    readonly unmatched: string[],
    readonly mismatched: { name: string; expected: number[]; got: number[] }[],
    where: string,
  ) {
    const parts: string[] = [];
    if (unmatched.length) parts.push(`${unmatched.length} checkpoint tensors match no tensor of the model (allowUnmatched to drop them): ${list(unmatched)}`);
    if (missing.length) parts.push(`${missing.length} tensors of the model are not in the checkpoint (allowMissing to keep their initialisation): ${list(missing)}`);
    if (mismatched.length) parts.push(`${mismatched.length} shapes differ: ${list(mismatched.map((m) => `${m.name} model [${m.expected}] checkpoint [${m.got}]`))}`);
    super(`${where}: ${parts.join("; ")}`);
  }
}
const list = (xs: string[]) => xs.slice(0, 40).join(", ") + (xs.length > 40 ? `, ... (${xs.length - 40} more)` : "");

const allowed = (a: boolean | ((name: string) => boolean) | undefined, name: string) => (typeof a === "function" ? a(name) : !!a);

/**
 * Loads a foreign pre-trained checkpoint (`.bin` / `.pth` / `.safetensors`) into `model` through the
 * name map of its layout. A model without the `bert.` wrapper (a bare LxmertModel or SemVLPModel)
 * takes the checkpoint's `bert.*` tensors without the prefix. Tied weights count as present when
 * any of their names is (Hugging Face's safetensors store a tied decoder once). Throws a
 * PretrainedLoadError listing every unmatched, missing or mis-shaped tensor before copying anything.
 */
export function loadPretrained(model: Module, file: string, opts: LoadPretrainedOptions = {}): PretrainedLoad {
  const sd = loadStateDictFile(file);
  const made: Tensor[] = [];
  try {
    const layout = opts.layout ?? detectLayout(sd.keys(), model);
    const where = `loadPretrained ${file} (${TITLES[layout]}) into ${model.constructor.name}`;
    const own = model.stateDict();
    // the checkpoint under the model's names, with each name's origin in the file
    const mapped = new Map<string, { tensor: Tensor; from: string }>();
    if (layout === "vlmo-official") {
      const conv = convertOfficialStateDict(sd, model as VLMoModel);
      const origin = new Map([...sd].map(([k, t]) => [t, k]));
      for (const [k, t] of conv) {
        if (!origin.has(t)) made.push(t);
        mapped.set(k, { tensor: t, from: origin.get(t) ?? k });
      }
    } else {
      const bare = ![...own.keys()].some((k) => k.startsWith("bert."));
      const map = bare ? composeMaps(MAPS[layout], (n) => (n.startsWith("bert.") ? n.slice("bert.".length) : n)) : MAPS[layout];
      for (const [k, t] of sd) {
        const n = map(k);
        if (n === null) continue;
        const prev = mapped.get(n);
        if (prev) throw new Error(`${where}: ${prev.from} and ${k} both map to ${n}`);
        mapped.set(n, { tensor: t, from: k });
      }
    }
    // tied weights: one tensor under several names is present when any of them is
    const aliases = new Map<Tensor, string[]>();
    for (const [k, t] of own) aliases.set(t, [...(aliases.get(t) ?? []), k]);
    const present = (k: string) => aliases.get(own.get(k)!)!.some((a) => mapped.has(a));
    const missing = [...own.keys()].filter((k) => !present(k));
    const unmatched = [...mapped].filter(([k]) => !own.has(k)).map(([k, m]) => ({ name: k, from: m.from }));
    const mismatched: { name: string; expected: number[]; got: number[] }[] = [];
    for (const [k, t] of own) {
      const s = mapped.get(k)?.tensor;
      if (s && (s.shape.length !== t.shape.length || s.shape.some((d, i) => d !== t.shape[i]))) mismatched.push({ name: k, expected: t.shape, got: s.shape });
    }
    const badMissing = missing.filter((k) => !allowed(opts.allowMissing, k));
    const badUnmatched = unmatched.filter((u) => !allowed(opts.allowUnmatched, u.name)).map((u) => (u.from === u.name ? u.name : `${u.from} (as ${u.name})`));
    if (badMissing.length || badUnmatched.length || mismatched.length) throw new PretrainedLoadError(badMissing, badUnmatched, mismatched, where);
    const take = new Map<string, Tensor>();
    for (const [k] of own) {
      const m = mapped.get(k);
      if (m) take.set(k, m.tensor);
    }
    model.loadStateDict(take, { strict: false, where });
    return { layout, loaded: [...take.keys()], missing, unmatched: unmatched.map((u) => u.from) };
  } finally {
    for (const t of [...sd.values(), ...made]) t.dispose();
  }
}
