// Batch preparation shared by the objectives: masked tokens (MLM), masked regions (MRFR/MOC),
// all drawn from a seeded libtorch Generator so runs are reproducible and resumable. The generator
// is a CPU one: draws are made on the host and sent to the batch's device, so a seed masks the same
// tokens and regions on every device.
import { Tensor, Generator, rand, randint, where, zerosLike, arange, bernoulli, full, tensor, cat, type Device } from "../engine/index.ts";
import { toDevice } from "../engine/placement.ts";

/** Label value for positions that carry no target (LXMERT's convention). */
export const IGNORE = -1;

export interface TokenMaskOptions {
  vocabSize: number;
  maskId: number;
  /** true at [CLS]/[SEP]/[PAD] and other positions that are never masked. */
  special: Tensor;
  prob?: number;
  /** Whole-word masking: per-token word index (-1 for specials); all pieces of a word are masked together. */
  wordIds?: Tensor;
  /**
   * With `wordIds`: the batch's word count (its largest word index + 1), when the caller knows it on
   * the host (the builder's metadata); otherwise it is read from `wordIds` (a host read: the draw's
   * shape depends on it).
   */
  words?: number;
  generator?: Generator;
}

/** BERT masking: choose 15% of tokens (or words); of those 80% -> [MASK], 10% -> a random token, 10% kept. */
export function maskTokens(ids: Tensor, o: TokenMaskOptions): { inputIds: Tensor; labels: Tensor } {
  const p = o.prob ?? 0.15;
  const g = o.generator;
  const dev = ids.device;
  let chosen: Tensor;
  if (o.wordIds) {
    const words = o.words ?? o.wordIds.max().item() + 1;
    const wordPick = toDevice(bernoulli(full([ids.size(0), Math.max(words, 1)], p), g).bool(), dev);
    chosen = wordPick.gather(1, o.wordIds.clampMin(0)).logicalAnd(o.wordIds.ge(0));
  } else {
    chosen = toDevice(bernoulli(full(ids.shape, p), g).bool(), dev);
  }
  chosen = chosen.logicalAnd(o.special.logicalNot());
  const labels = where(chosen, ids, IGNORE);
  const r = toDevice(rand(ids.shape, { generator: g }), dev);
  const toMask = chosen.logicalAnd(r.lt(0.8));
  const toRandom = chosen.logicalAnd(r.ge(0.8)).logicalAnd(r.lt(0.9));
  const randomIds = toDevice(randint(0, o.vocabSize, ids.shape, { generator: g }), dev);
  const inputIds = where(toMask, o.maskId, where(toRandom, randomIds, ids));
  return { inputIds, labels };
}

export interface RegionMaskOptions {
  prob?: number;
  /** true for regions that may be masked (e.g. false for a visual [CLS] or padding). */
  valid?: Tensor;
  generator?: Generator;
}

/**
 * LXMERT's region masking: choose 15% of regions; of those 80% -> zero vector, 10% -> the feature of
 * a random region of another image in the batch, 10% kept. Returns the new features and the mask.
 */
export function maskRegions(feats: Tensor, o: RegionMaskOptions = {}): { feats: Tensor; mask: Tensor } {
  const [b, n] = feats.shape;
  const g = o.generator;
  const dev = feats.device;
  let mask = toDevice(bernoulli(full([b, n], o.prob ?? 0.15), g).bool(), dev);
  if (o.valid) mask = mask.logicalAnd(o.valid);
  const r = toDevice(rand([b, n], { generator: g }), dev);
  const zero = mask.logicalAnd(r.lt(0.8)).unsqueeze(-1);
  const swap = mask.logicalAnd(r.ge(0.8)).logicalAnd(r.lt(0.9)).unsqueeze(-1);
  // another image: b' = (b + k) mod B with k in [1, B); any region of it
  const otherImage = toDevice(b > 1 ? arange(b).unsqueeze(1).add(randint(1, b, [b, n], { generator: g })).remainder(b) : arange(b).unsqueeze(1).expand(b, n).contiguous(), dev);
  const otherRegion = toDevice(randint(0, n, [b, n], { generator: g }), dev);
  const other = feats.index([otherImage, otherRegion]);
  const out = where(zero, zerosLike(feats), where(swap, other, feats));
  return { feats: out, mask };
}

/**
 * MSP's IFRS input: regions are split into consecutive triplets (r_i, r_i+1, r_i+2), i = 0, 3, 6, ...;
 * each triplet is shuffled with probability p (a random non-identity permutation). Features move,
 * boxes stay, so a shuffled feature sits at another region's position. Returns, per image, the
 * gather index for the features and the mask of positions whose feature changed place.
 * `offset` skips leading tokens (LXMERT-S's visual [CLS]).
 */
export function shuffleTriplets(b: number, n: number, o: { prob?: number; offset?: number; generator?: Generator; device?: Device } = {}): { index: Tensor; shuffled: Tensor } {
  const offset = o.offset ?? 0;
  const triplets = Math.floor((n - offset) / 3);
  const t = Math.max(triplets, 1);
  const perms = tensor([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]], { dtype: "int64" });
  // the draws as before (one shuffle flag and one of the 5 non-identity permutations per triplet), applied with tensor ops: no host read
  const pick = bernoulli(full([b, t], o.prob ?? 0.05), o.generator).bool();
  const which = randint(0, 5, [b, t], { generator: o.generator }).add(1);
  const perm = perms.indexSelect(0, where(pick, which, 0).reshape(-1)).reshape(b, t * 3).slice(1, 0, triplets * 3);
  const base = arange(triplets).mul(3).add(offset).repeatInterleave(3);
  const rest = (from: number, to: number) => arange(from, to).unsqueeze(0).expand(b, to - from);
  const index = cat([rest(0, offset), perm.add(base), rest(offset + triplets * 3, n)], 1).contiguous();
  const shuffled = index.ne(arange(n).unsqueeze(0));
  const dev = o.device ?? "cpu";
  return { index: toDevice(index, dev), shuffled: toDevice(shuffled, dev) };
}

/**
 * MSP's topic words of one text: the token ids present both in the text (W) and in the words of its
 * image's detected object labels (L), topic = W ∩ L, each once, in text order. Ids below `firstWordId`
 * are never topics (BERT's vocabulary: [PAD], [unused*], [UNK], [CLS], [SEP], [MASK] all sit at or below
 * the tokenizer's [MASK] id, so the builder passes maskId + 1). The builder sends these ids padded with
 * -1; `topicTargets` (pretrain/common.ts) turns them into the multi-hot over the vocabulary.
 */
export function topicWords(textIds: readonly number[], labelIds: ReadonlySet<number>, firstWordId: number): number[] {
  return [...new Set(textIds.filter((t) => t >= firstWordId && labelIds.has(t)))];
}
