// Tokenised texts as a batch's host arrays: the one place builders turn a list of texts into int64
// [n, L] arrays (VLMo's image-text builder, the task builders and the retrieval scorer).
import type { BertTokenizer, Encoding } from "../text/tokenizer.ts";
import type { HostArray } from "./loader.ts";

type IdField = "inputIds" | "tokenTypeIds" | "attentionMask" | "wordIds" | "wordPositionIds";

/**
 * `fields` maps each output array's name to the encoding field it holds, e.g.
 * `{ input_ids: "inputIds", attention_mask: "attentionMask" }`; every text is padded or truncated to L.
 */
export function textArrays<K extends string>(tok: BertTokenizer, texts: string[], L: number, fields: Record<K, IdField>): Record<K, HostArray> {
  const n = texts.length;
  const names = Object.keys(fields) as K[];
  const data = names.map(() => new BigInt64Array(n * L));
  texts.forEach((text, k) => {
    const enc: Encoding = tok.encode(text, undefined, { maxLength: L, padding: true });
    names.forEach((name, f) => {
      const src = enc[fields[name]], dst = data[f];
      for (let j = 0; j < L; j++) dst[k * L + j] = BigInt(src[j]);
    });
  });
  return Object.fromEntries(names.map((name, f) => [name, { data: data[f], shape: [n, L], dtype: "int64" }])) as Record<K, HostArray>;
}

/** How far a batch's texts reach: what a step needs on the host to trim padding and draw whole-word masks without reading tensors. */
export interface TextExtent {
  /** Tokens of the longest text (its attention mask's count). */
  longest: number;
  /** Words of the batch: its largest word index + 1 (0 without words). */
  words: number;
}

/** The extent of texts encoded by textArrays: `mask` [n, L] attention mask, `wordIds` [n, L] word indices (-1 none). */
export function textExtent(mask: HostArray, wordIds?: HostArray): TextExtent {
  const [n, L] = mask.shape;
  const m = mask.data as BigInt64Array;
  let longest = 0;
  for (let k = 0; k < n; k++) {
    let c = 0;
    for (let j = 0; j < L; j++) c += Number(m[k * L + j]);
    longest = Math.max(longest, c);
  }
  let words = 0;
  if (wordIds) for (const w of wordIds.data as BigInt64Array) words = Math.max(words, Number(w) + 1);
  return { longest, words };
}
