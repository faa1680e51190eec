// Parameter-name maps between foreign checkpoint layouts and vlpkit's models. vlpkit's LXMERT,
// LXMERT-S and SemVLP use the official names natively (bert.*, cls.*, obj_predict_head.*,
// answer_head.*), so official LXMERT / LXMERT-S pre-training checkpoints (Epoch20_LXRT.pth) load
// without any map. The maps below cover the layouts that differ:
//   - Hugging Face LxmertForPreTraining: the backbone prefix is `lxmert.` instead of `bert.`;
//   - official fine-tuning checkpoints (BEST.pth): backbone under `lxrt_encoder.model.bert.`;
//   - DataParallel dumps: a `module.` prefix;
//   - BERT checkpoints (for LXMERT's language layers or SemVLP's shared blocks): old TF-converted
//     dumps name LayerNorm parameters gamma/beta; newer Hugging Face files carry a
//     `bert.embeddings.position_ids` buffer and a `cls.predictions.decoder.bias` that is a tie of
//     `cls.predictions.bias`; a bare BertModel has no `bert.` prefix.
// A map returns the new name, or null to drop the entry. loadPretrained (pretrained.ts) picks the
// map of a checkpoint's layout and loads the file through it.

export type NameMap = (name: string) => string | null;

/** Apply a name map to a state dict. Throws if two entries land on the same name. */
export function renameStateDict<T>(sd: Map<string, T> | Record<string, T>, map: NameMap): Map<string, T> {
  const src = sd instanceof Map ? sd : new Map(Object.entries(sd));
  const out = new Map<string, T>();
  const from = new Map<string, string>();
  for (const [k, v] of src) {
    const n = map(k);
    if (n === null) continue;
    if (out.has(n)) throw new Error(`renameStateDict: ${k} and ${from.get(n)} both map to ${n}`);
    out.set(n, v);
    from.set(n, k);
  }
  return out;
}

/** Apply maps left to right (a null from any map drops the entry). */
export function composeMaps(...maps: NameMap[]): NameMap {
  return (name) => {
    let n: string | null = name;
    for (const m of maps) {
      if (n === null) return null;
      n = m(n);
    }
    return n;
  };
}

/** Replace a leading prefix (names without it pass through unchanged). */
export function replacePrefix(from: string, to: string): NameMap {
  return (n) => (n.startsWith(from) ? to + n.slice(from.length) : n);
}

/** Keep only names under `prefix`, with the prefix removed. */
export function selectPrefix(prefix: string): NameMap {
  return (n) => (n.startsWith(prefix) ? n.slice(prefix.length) : null);
}

/** DataParallel / DistributedDataParallel dumps: strip `module.`. */
export const stripModulePrefix: NameMap = replacePrefix("module.", "");

/** Hugging Face LxmertForPreTraining / LxmertModel -> official (and vlpkit) names. */
export const hfLxmertToOfficial: NameMap = (n) => {
  if (n.endsWith("embeddings.position_ids")) return null;
  if (n.startsWith("lxmert.")) return "bert." + n.slice("lxmert.".length);
  // A bare LxmertModel has no prefix at all.
  if (/^(embeddings|encoder|pooler)\./.test(n)) return "bert." + n;
  return n;
};

/** Official / vlpkit LXMERT names -> Hugging Face LxmertForPreTraining names. */
export const officialToHfLxmert: NameMap = replacePrefix("bert.", "lxmert.");

/**
 * An official LXMERT / LXMERT-S fine-tuning checkpoint (`lxrt_encoder.model.bert.*` + task head) ->
 * backbone names (`bert.*`); the task head keeps its own names (e.g. `logit_fc.0.weight`).
 */
export const lxmertFinetuneToBackbone: NameMap = composeMaps(stripModulePrefix, replacePrefix("lxrt_encoder.model.", ""));

/** Old BERT dumps: LayerNorm gamma/beta -> weight/bias. */
export const legacyLayerNormNames: NameMap = (n) => n.replace(/\.gamma$/, ".weight").replace(/\.beta$/, ".bias");

/**
 * A BERT checkpoint (Google/TF-converted, pytorch-pretrained-bert or Hugging Face BertForPreTraining
 * / BertModel) -> vlpkit names: gamma/beta renamed, the position_ids buffer and the tied
 * decoder bias dropped, a missing `bert.` prefix added. Load the result non-strictly.
 */
export const hfBertToVlpkit: NameMap = composeMaps(stripModulePrefix, legacyLayerNormNames, (n) => {
  if (n.endsWith("embeddings.position_ids")) return null;
  if (n === "cls.predictions.decoder.bias") return null;
  if (/^(embeddings|encoder|pooler)\./.test(n)) return "bert." + n;
  return n;
});
