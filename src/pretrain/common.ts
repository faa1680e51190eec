// Pieces the region-text strategies share: where the world's files are, the builder spec, MLM and
// region masking of a batch, and weighted sums of losses.
import { join } from "node:path";
import { existsSync } from "node:fs";
import { Tensor, tensor, zeros, arange, type Generator } from "../engine/index.ts";
import { maskTokens, maskRegions, IGNORE } from "../objectives/masking.ts";
import { where } from "../engine/index.ts";
import type { BuilderSpec } from "../data/loader.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import { readAns2Label } from "../data/formats/vqa.ts";
import type { RegionTextArgs, RegionTextBatch, RegionTextMeta } from "./builder.ts";
import { computeMlm, computeItcKeyed, computeObjectPrediction, targetPositions, type LossOut, type LossMetrics, type ObjectLossWeighting, type ObjectTargets } from "../objectives/losses.ts";

export const BUILDER_MODULE = new URL("./builder.ts", import.meta.url).href;

export function worldFile(world: string, rel: string): string {
  const p = join(world, rel);
  if (!existsSync(p)) throw new Error(`${p}: not found (is ${world} a world written by \`vlp data synth\`?)`);
  return p;
}

export function regionTextSpec(args: RegionTextArgs): BuilderSpec<RegionTextBatch, RegionTextMeta> {
  return { module: BUILDER_MODULE, args };
}

export function answerCount(path: string): number {
  return readAns2Label(path).size;
}

/** What MLM masking needs to know about the vocabulary: its size (the model's) and the tokenizer's special ids. */
export interface MlmVocab {
  /** Rows of the model's word embeddings: random replacement tokens are drawn from [0, vocabSize). */
  vocabSize: number;
  padId: number;
  clsId: number;
  sepId: number;
  maskId: number;
}

/**
 * The MLM vocabulary of a model: `vocabSize` from its config (its text embeddings), the special ids
 * from the tokenizer the data builders encode with (bert-base-uncased unless another is given).
 */
export function mlmVocab(vocabSize: number, tok: Pick<MlmVocab, "padId" | "clsId" | "sepId" | "maskId"> = BertTokenizer.load()): MlmVocab {
  const v: MlmVocab = { vocabSize, padId: tok.padId, clsId: tok.clsId, sepId: tok.sepId, maskId: tok.maskId };
  if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new Error(`mlmVocab: vocabSize must be a positive integer, got ${vocabSize}`);
  if (v.maskId >= vocabSize) throw new Error(`mlmVocab: the tokenizer's [MASK] id ${v.maskId} is outside the model's vocabulary of ${vocabSize}`);
  return v;
}

/**
 * MLM inputs of a batch: [MASK]/random/kept per BERT; no targets on mismatched pairs when `matched`
 * is given. Whole-word masking (`wholeWord`) needs the batch's `word_ids` and, to draw without a
 * host read, its word count `words` (the builder's metadata: TextExtent).
 */
export function maskText(batch: { input_ids: Tensor; word_ids?: Tensor }, g: Generator, vocab: MlmVocab, o: { wholeWord?: boolean; words?: number; matched?: Tensor } = {}): { inputIds: Tensor; labels: Tensor } {
  const ids = batch.input_ids;
  const special = ids.eq(vocab.padId).logicalOr(ids.eq(vocab.clsId)).logicalOr(ids.eq(vocab.sepId));
  if (o.wholeWord && !batch.word_ids) throw new Error("maskText: whole-word masking needs the batch's word_ids");
  const m = maskTokens(ids, { vocabSize: vocab.vocabSize, maskId: vocab.maskId, special, wordIds: o.wholeWord ? batch.word_ids : undefined, words: o.words, generator: g });
  const labels = o.matched ? where(o.matched.unsqueeze(1), m.labels, IGNORE) : m.labels;
  return { inputIds: m.inputIds, labels };
}

/**
 * The batch with its text tensors (input_ids, attention_mask, word_ids) cut to the longest text of
 * the batch: builders pad every text to maxTextLen (official VLMo pads to 40), and the positions
 * past the longest one are padding in every row, masked out of attention and pooling, so every
 * unpadded output is the same; only the work shrinks (the synthetic captions fill about half of
 * 40). Not for data-parallel steps that gather text across ranks (the lengths would differ).
 * `longest`: the longest text's token count, as the builder counted it on the host (TextExtent), so
 * the cut needs no host read; without it, it is read from the mask.
 */
export function trimTextPadding<B extends { input_ids: Tensor; attention_mask: Tensor; word_ids?: Tensor }>(batch: B, longest?: number): B {
  const mask = batch.attention_mask;
  if (mask.ndim !== 2) return batch;
  // right padding: the longest row's length covers every row's tokens
  longest ??= mask.sum(1).max().item();
  if (longest >= mask.size(1) || longest === 0) return batch;
  const out = { ...batch, input_ids: batch.input_ids.slice(1, 0, longest), attention_mask: mask.slice(1, 0, longest) };
  if (batch.word_ids) out.word_ids = batch.word_ids.slice(1, 0, longest);
  return out;
}

export function maskVisual(batch: { feats: Tensor; region_valid: Tensor }, g: Generator): { feats: Tensor; mask: Tensor } {
  return maskRegions(batch.feats, { valid: batch.region_valid, generator: g });
}

/** The multi-hot topic targets [B, V] from the builder's padded topic ids; V = the model's vocabulary size. */
export function topicTargets(topicIds: Tensor, vocab: number): Tensor {
  const b = topicIds.size(0);
  const valid = topicIds.ge(0);
  const out = zeros([b, vocab + 1], { device: topicIds.device });
  // padding (-1) scatters into an extra column that is dropped
  const idx = where(valid, topicIds, vocab);
  return out.scatter(1, idx, 1).slice(1, 0, vocab);
}

/** The same loss with every metric name prefixed (e.g. "text_" for a text-only stage's MLM). */
export function renameMetrics<T extends { metrics: LossMetrics }>(o: T, prefix: string): T {
  return { ...o, metrics: Object.fromEntries(Object.entries(o.metrics).map(([k, x]) => [prefix + k, x])) };
}

/** Σ w_k · loss_k over the losses present; metrics merged. */
export function weighted(parts: Record<string, LossOut | undefined>, weights: Record<string, number>): { loss: Tensor; metrics: LossMetrics } {
  let total: Tensor | null = null;
  const metrics: LossMetrics = {};
  for (const [k, part] of Object.entries(parts)) {
    if (!part) continue;
    const w = weights[k] ?? 1;
    Object.assign(metrics, part.metrics);
    if (w === 0) continue;
    const l = part.loss.mul(w);
    total = total ? total.add(l) : l;
  }
  return { loss: total ?? tensor([0]), metrics };
}

/**
 * MLM on the masked positions only: the vocabulary projection (hidden x 30,522) runs on the ~15% of
 * positions that have a target instead of on every token, the bulk of a small model's step.
 */
export function maskedLm(hidden: Tensor, labels: Tensor, head: (x: Tensor) => Tensor): LossOut {
  const idx = targetPositions(labels);
  const h = hidden.size(-1);
  return computeMlm(head(hidden.reshape(-1, h).indexSelect(0, idx)), labels.reshape(-1).indexSelect(0, idx));
}

/**
 * The masked-object losses (MRFR, MOC) with the visual head run on the masked regions only, as
 * maskedLm does for the vocabulary. Under weighting "mask" every other region weighs 0: the official
 * LXMERT code runs obj_predict_head on all 36 regions and zero-weights the rest, which gives the same
 * loss and gradients as ~15% of the rows (the head's 1,600 + 400-way decoders on every region took ~30 ms
 * of a tiny model's ~330 ms step). The other weightings read every region, so the head runs on all.
 * `head` maps regions [K, 1, h] (and their images' pooled outputs [K, h]) to predictions.
 */
export function maskedObjectPrediction(
  head: (regions: Tensor, pooled?: Tensor) => { feat?: Tensor; obj?: Tensor; attr?: Tensor },
  regions: Tensor,
  pooled: Tensor | undefined,
  t: ObjectTargets,
  o: { weighting?: ObjectLossWeighting; weights?: { feat?: number; obj?: number; attr?: number } } = {},
): LossOut {
  if ((o.weighting ?? "mask") !== "mask") return computeObjectPrediction(head(regions, pooled), t, o);
  const [b, n] = regions.shape;
  const rows = t.mask.reshape(-1).nonzero().squeeze(1);
  const image = arange(b, undefined, 1, { device: regions.device }).unsqueeze(1).expand(b, n).reshape(-1).indexSelect(0, rows);
  // [B, N, ...] -> the selected rows as [K, 1, ...]
  const at = (x: Tensor) => x.reshape(b * n, ...x.shape.slice(2)).indexSelect(0, rows).unsqueeze(1);
  // the selected rows are the masked ones, so their mask is all true
  const sel: ObjectTargets = { feats: at(t.feats), objLabels: at(t.objLabels), objConf: at(t.objConf), attrLabels: at(t.attrLabels), attrConf: at(t.attrConf), mask: at(t.mask), matched: t.matched?.indexSelect(0, image) };
  return computeObjectPrediction(head(at(regions), pooled?.indexSelect(0, image)), sel, { ...o, denom: b * n });
}

/**
 * vlpkit's align-before-fuse ITC over the batch rows `rows` ([R] int64, the matched pairs): `features`
 * encodes those rows alone (`pick` selects them from any batch tensor) into unit-norm text and image
 * embeddings; rows showing the same image (`img_key`) are all positives. Undefined with fewer than 2 rows.
 */
export function matchedItc(batch: RegionTextBatch, rows: Tensor, logitScale: Tensor, features: (pick: (t: Tensor) => Tensor) => { text: Tensor; image: Tensor }): LossOut | undefined {
  if (rows.size(0) < 2) return undefined;
  const pick = (t: Tensor) => t.indexSelect(0, rows);
  const f = features(pick);
  return computeItcKeyed(f.image, f.text, logitScale, pick(batch.img_key));
}
