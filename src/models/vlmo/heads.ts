// VLMo task heads, named as in the official implementation (microsoft/unilm vlmo/modules/heads.py
// and vlmo_module.py), and the retrieval scorer (ITC dot products, optional ITM re-ranking).
import { Module, Linear, LayerNorm, GELU, Sequential, Tensor, full, noGrad, tidy, F } from "../../engine/index.ts";

function initLinear(l: Linear): Linear {
  F.normal_(l.weight, 0, 0.02);
  if (l.bias) F.zeros_(l.bias);
  return l;
}

/** x / ||x||_2 over the last dim (as the official code: no epsilon). */
export function l2normalize(x: Tensor): Tensor {
  return x.div(x.norm(2, -1, true));
}

/** dense + tanh on position 0 (`pooler.dense`). */
export class Pooler extends Module {
  readonly dense: Linear;
  constructor(hidden: number) {
    super();
    this.dense = this.module("dense", initLinear(new Linear(hidden, hidden)));
  }
  forward(hidden: Tensor): Tensor {
    return this.poolVector(hidden.select(1, 0));
  }
  /** dense -> tanh of any [B, h] vector (the product read-out instead of the [CLS]). */
  poolVector(v: Tensor): Tensor {
    return this.dense.forward(v).tanh();
  }
}

/** ITC projection Linear(h, h) without bias (`itc_*_proj.fc`); the caller L2-normalises. */
export class ITCHead extends Module {
  readonly fc: Linear;
  constructor(hidden: number) {
    super();
    this.fc = this.module("fc", initLinear(new Linear(hidden, hidden, false)));
  }
  forward(x: Tensor): Tensor {
    return this.fc.forward(x);
  }
}

/** Linear(h, 2) on the pooled fusion [CLS] (`itm_score.fc`); class 1 = matched. */
export class ITMHead extends Module {
  readonly fc: Linear;
  constructor(hidden: number) {
    super();
    this.fc = this.module("fc", initLinear(new Linear(hidden, 2)));
  }
  forward(x: Tensor): Tensor {
    return this.fc.forward(x);
  }
}

/** BERT's prediction-head transform: dense -> GELU (erf) -> LayerNorm (eps 1e-12). */
export class PredictionHeadTransform extends Module {
  readonly dense: Linear;
  readonly LayerNorm: LayerNorm;
  constructor(hidden: number, eps = 1e-12) {
    super();
    this.dense = this.module("dense", initLinear(new Linear(hidden, hidden)));
    this.LayerNorm = this.module("LayerNorm", new LayerNorm(hidden, eps));
  }
  forward(x: Tensor): Tensor {
    return this.LayerNorm.forward(this.dense.forward(x).gelu());
  }
}

/** MLM head (`mlm_score`): transform, then an untied decoder Linear(h, vocab, no bias) + `bias`. */
export class MLMHead extends Module {
  readonly transform: PredictionHeadTransform;
  readonly decoder: Linear;
  readonly bias: Tensor;
  constructor(hidden: number, vocab: number) {
    super();
    this.transform = this.module("transform", new PredictionHeadTransform(hidden));
    this.decoder = this.module("decoder", initLinear(new Linear(hidden, vocab, false)));
    this.bias = this.param("bias", full([vocab], 0));
  }
  forward(x: Tensor): Tensor {
    return this.decoder.forward(this.transform.forward(x)).add(this.bias);
  }
}

/**
 * Linear(in, hidden) -> LayerNorm(hidden) -> GELU -> Linear(hidden, out) as an nn.Sequential
 * (parameter names 0, 1, 3): the VQA head (in = h, hidden = 2h, out = answers) and the NLVR2 head
 * (in = 2h, hidden = 2h, out = 2). The LayerNorm comes before the GELU (unlike LXMERT's) and has
 * PyTorch's default eps 1e-5.
 */
export class ClassifierHead extends Sequential {
  constructor(inDim: number, hidden: number, out: number) {
    super(initLinear(new Linear(inDim, hidden)), new LayerNorm(hidden, 1e-5), new GELU(), initLinear(new Linear(hidden, out)));
  }
}

// ---- retrieval ------------------------------------------------------------------------------------

/** Image-to-text similarities [Ni, Nt] of L2-normalised ITC embeddings (dot products). */
export function itcScores(imageEmb: Tensor, textEmb: Tensor): Tensor {
  return imageEmb.matmul(textEmb.transpose(0, 1));
}

/** What re-ranking needs from a model (VLMoModel satisfies it). */
export interface ItmScorer {
  inferFusion(ids: Tensor, mask: Tensor | null, pixels: Tensor): { pooled: Tensor };
  itmLogits(f: Tensor | { pooled: Tensor }): Tensor;
}

export interface RerankResult {
  /** [Ni, Nt]: ITC score + ITM matched logit for each image's top-k texts, ITC score - 100 elsewhere. */
  i2t: Tensor;
  /** [Nt, Ni]: the same for each text's top-k images. */
  t2i: Tensor;
}

/**
 * Re-ranks the top-k candidates of each query with the ITM head, as the official evaluation does:
 * the final score of a candidate in the top k is ITM logit[1] + ITC score, of any other candidate
 * -100 + ITC score. `pixels` [Ni, 3, H, W], `ids`/`mask` [Nt, T]. Runs without gradients.
 */
export function rerankWithItm(model: ItmScorer, scores: Tensor, pixels: Tensor, ids: Tensor, mask: Tensor, k: number): RerankResult {
  return noGrad(() => tidy(() => {
    const [Ni, Nt] = scores.shape;
    const itmRows = (n: number, m: number, kk: number, pair: (row: number, cand: Tensor) => { ids: Tensor; mask: Tensor; pixels: Tensor }, s: Tensor) => {
      const out = full([n, m], -100, { device: s.device });
      for (let r = 0; r < n; r++) {
        tidy(() => {
          const [, top] = s.select(0, r).topk(kk);
          const p = pair(r, top);
          const logit = model.itmLogits(model.inferFusion(p.ids, p.mask, p.pixels)).select(1, 1);
          out.select(0, r).indexPut_([top], logit);
        });
      }
      return out.add(s);
    };
    const kt = Math.min(k, Nt);
    const ki = Math.min(k, Ni);
    const i2t = itmRows(Ni, Nt, kt, (r, top) => ({
      ids: ids.indexSelect(0, top), mask: mask.indexSelect(0, top), pixels: pixels.select(0, r).unsqueeze(0).expand(kt, -1, -1, -1),
    }), scores);
    const st = scores.transpose(0, 1);
    const t2i = itmRows(Nt, Ni, ki, (r, top) => ({
      ids: ids.select(0, r).unsqueeze(0).expand(ki, -1), mask: mask.select(0, r).unsqueeze(0).expand(ki, -1), pixels: pixels.indexSelect(0, top),
    }), st);
    return { i2t, t2i };
  }));
}

