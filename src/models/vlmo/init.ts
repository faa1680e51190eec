// The official VLMo initialisation: truncated N(0, 0.02) for Linear weights, N(0, 0.02) for
// Embeddings, zero biases (LayerNorms keep their 1 / 0).
import { F, type Linear, type Embedding } from "../../engine/index.ts";

export function initLinear(l: Linear, std = 0.02): Linear {
  F.truncNormal_(l.weight, 0, std, -2, 2);
  if (l.bias) F.zeros_(l.bias);
  return l;
}
export function initEmbedding(e: Embedding, std = 0.02): Embedding {
  F.normal_(e.weight, 0, std);
  return e;
}
