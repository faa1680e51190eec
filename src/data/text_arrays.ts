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
