// The Mixture-of-Modality-Experts (MoME) Transformer: self-attention shared by every modality, and
// in place of the feed-forward network one expert per modality, chosen by the input: V-FFN
// (`mlp_imag`) for image tokens, L-FFN (`mlp_text`) for text tokens, VL-FFN (`mlp_vl`) for fused
// image-text input in the top layers (config.vlffnStartLayer on). `MoMEBlock` is one layer (the
// routing is in its forward and `expertsFor`); `MultiWayTransformer` stacks them behind the patch
// embedding (`transformer.*`). Timm-style building blocks, official parameter names.
import {
  Module, Linear, LayerNorm, Dropout, DropPath, ModuleList,
  Tensor, zeros, ones, cat, zerosLike, linspace, F,
} from "../../engine/index.ts";
import type { VLMoConfig } from "./config.ts";
import { initLinear } from "./init.ts";
import { PatchEmbed } from "./embeddings.ts";

/** fc1 -> GELU (erf) -> dropout -> fc2 -> dropout. */
export class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly drop: Dropout;
  constructor(dim: number, hidden: number, drop = 0) {
    super();
    this.fc1 = this.module("fc1", initLinear(new Linear(dim, hidden)));
    this.fc2 = this.module("fc2", initLinear(new Linear(hidden, dim)));
    this.drop = this.module("drop", new Dropout(drop));
  }
  forward(x: Tensor): Tensor {
    return this.drop.forward(this.fc2.forward(this.drop.forward(this.fc1.forward(x).gelu())));
  }
}

/**
 * Multi-head self-attention shared by all modalities. `qkv` has no bias of its own: the bias is
 * [q_bias, 0, v_bias] (no key bias). Logits are computed in float32, the relative position bias
 * of this layer ([heads, N, N]) is added, padded keys are set to -inf.
 */
export class Attention extends Module {
  readonly qkv: Linear;
  readonly q_bias: Tensor | null;
  readonly v_bias: Tensor | null;
  readonly proj: Linear;
  readonly scale: number;
  readonly attnDrop: Dropout;
  readonly projDrop: Dropout;
  constructor(readonly dim: number, readonly numHeads: number, qkvBias = true, attnDrop = 0, projDrop = 0) {
    super();
    this.scale = (dim / numHeads) ** -0.5;
    this.qkv = this.module("qkv", new Linear(dim, 3 * dim, false));
    F.truncNormal_(this.qkv.weight, 0, 0.02, -2, 2);
    this.q_bias = this.param("q_bias", qkvBias ? zeros([dim]) : null);
    this.v_bias = this.param("v_bias", qkvBias ? zeros([dim]) : null);
    this.proj = this.module("proj", initLinear(new Linear(dim, dim)));
    this.attnDrop = this.module("attn_drop", new Dropout(attnDrop));
    this.projDrop = this.module("proj_drop", new Dropout(projDrop));
  }

  /**
   * x [B, N, C]; keyMasked: bool [B, N], true = padding (ignored as a key); relBias [heads, N, N].
   * Returns the output and, with `wantAttn`, the attention probabilities [B, heads, N, N].
   */
  forward(x: Tensor, keyMasked: Tensor | null, relBias: Tensor | null, wantAttn = false): { out: Tensor; attn: Tensor | null } {
    const [B, N, C] = x.shape;
    const bias = this.q_bias && this.v_bias ? cat([this.q_bias, zerosLike(this.v_bias), this.v_bias]) : null;
    const qkv = F.linear(x, this.qkv.weight, bias).reshape(B, N, 3, this.numHeads, C / this.numHeads).permute(2, 0, 3, 1, 4);
    const [q, k, v] = qkv.unbind(0);
    let logits = q.mul(this.scale).float().matmul(k.float().transpose(-2, -1));
    if (relBias) logits = logits.add(relBias.unsqueeze(0));
    if (keyMasked) logits = logits.maskedFill(keyMasked.unsqueeze(1).unsqueeze(1), -Infinity);
    let attn = logits.softmax(-1);
    if (attn.dtype !== x.dtype) attn = attn.to(x.dtype);
    const probs = attn;
    attn = this.attnDrop.forward(attn);
    const ctx = attn.matmul(v).transpose(1, 2).reshape(B, N, C);
    return { out: this.projDrop.forward(this.proj.forward(ctx)), attn: wantAttn ? probs : null };
  }
}

export type Modality = "text" | "image" | "vl";

/**
 * A MoME block: x + DropPath(γ1·Attn(LN1 x)), then x + DropPath(γ2·FFN_e(LN2_e x)) with the
 * expert e chosen by the modality: "text" -> L-FFN, "image" -> V-FFN, "vl" -> VL-FFN in layers that
 * have one, else L-FFN for the first `textLen` positions and V-FFN for the rest (text first).
 */
export class MoMEBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly dropPath: DropPath;
  readonly gamma_1: Tensor | null;
  readonly gamma_2: Tensor | null;
  readonly norm2_text: LayerNorm | null = null;
  readonly mlp_text: Mlp | null = null;
  readonly norm2_imag: LayerNorm | null = null;
  readonly mlp_imag: Mlp | null = null;
  readonly norm2_vl: LayerNorm | null = null;
  readonly mlp_vl: Mlp | null = null;
  /** Standard-Transformer ablation: the single FFN. */
  readonly norm2: LayerNorm | null = null;
  readonly mlp: Mlp | null = null;

  constructor(cfg: VLMoConfig, readonly withVlffn: boolean, dropPath: number) {
    super();
    const h = cfg.hiddenSize;
    const hidden = Math.floor(h * cfg.mlpRatio);
    this.norm1 = this.module("norm1", new LayerNorm(h, cfg.lnEps));
    this.attn = this.module("attn", new Attention(h, cfg.numHeads, cfg.qkvBias, cfg.attnDropRate, cfg.dropRate));
    this.dropPath = this.module("drop_path", new DropPath(dropPath));
    if (cfg.standard) {
      this.norm2 = this.module("norm2", new LayerNorm(h, cfg.lnEps));
      this.mlp = this.module("mlp", new Mlp(h, hidden, cfg.dropRate));
    } else {
      this.norm2_text = this.module("norm2_text", new LayerNorm(h, cfg.lnEps));
      this.norm2_imag = this.module("norm2_imag", new LayerNorm(h, cfg.lnEps));
      this.mlp_text = this.module("mlp_text", new Mlp(h, hidden, cfg.dropRate));
      this.mlp_imag = this.module("mlp_imag", new Mlp(h, hidden, cfg.dropRate));
      if (withVlffn) {
        this.mlp_vl = this.module("mlp_vl", new Mlp(h, hidden, cfg.dropRate));
        this.norm2_vl = this.module("norm2_vl", new LayerNorm(h, cfg.lnEps));
      }
    }
    const g = cfg.layerScaleInit;
    this.gamma_1 = this.param("gamma_1", g === null ? null : ones([h]).mul_(g));
    this.gamma_2 = this.param("gamma_2", g === null ? null : ones([h]).mul_(g));
  }

  /** The residual branch of an expert: DropPath(γ2 · FFN(LN(x))). */
  private ffn(x: Tensor, norm: LayerNorm, mlp: Mlp): Tensor {
    const y = mlp.forward(norm.forward(x));
    return this.dropPath.forward(this.gamma_2 ? y.mul(this.gamma_2) : y);
  }

  /** Which experts this block uses for a modality (for routing inspection). */
  expertsFor(modality: Modality): ("mlp" | "mlp_text" | "mlp_imag" | "mlp_vl")[] {
    if (this.mlp) return ["mlp"];
    if (modality === "text") return ["mlp_text"];
    if (modality === "image") return ["mlp_imag"];
    return this.mlp_vl ? ["mlp_vl"] : ["mlp_text", "mlp_imag"];
  }

  forward(x: Tensor, opts: { modality: Modality; keyMasked?: Tensor | null; relBias?: Tensor | null; textLen?: number; wantAttn?: boolean }): { out: Tensor; attn: Tensor | null } {
    const a = this.attn.forward(this.norm1.forward(x), opts.keyMasked ?? null, opts.relBias ?? null, !!opts.wantAttn);
    x = x.add(this.dropPath.forward(this.gamma_1 ? a.out.mul(this.gamma_1) : a.out));
    let out: Tensor;
    if (this.mlp && this.norm2) {
      out = x.add(this.ffn(x, this.norm2, this.mlp));
    } else if (opts.modality === "text") {
      out = x.add(this.ffn(x, this.norm2_text!, this.mlp_text!));
    } else if (opts.modality === "image") {
      out = x.add(this.ffn(x, this.norm2_imag!, this.mlp_imag!));
    } else if (this.mlp_vl && this.norm2_vl) {
      out = x.add(this.ffn(x, this.norm2_vl, this.mlp_vl));
    } else {
      const T = opts.textLen;
      if (T === undefined) throw new Error("MoMEBlock: a fusion input below the VL layers needs textLen");
      const xt = x.narrow(1, 0, T);
      const xi = x.narrow(1, T, x.size(1) - T);
      out = cat([xt.add(this.ffn(xt, this.norm2_text!, this.mlp_text!)), xi.add(this.ffn(xi, this.norm2_imag!, this.mlp_imag!))], 1);
    }
    return { out, attn: a.attn };
  }
}

/** The vision side and the shared blocks (`transformer.*`). */
export class MultiWayTransformer extends Module {
  readonly patch_embed: PatchEmbed;
  readonly cls_token: Tensor;
  readonly pos_embed: Tensor | null;
  readonly blocks: ModuleList<MoMEBlock>;
  readonly norm: LayerNorm;
  readonly posDrop: Dropout;
  constructor(readonly cfg: VLMoConfig) {
    super();
    const h = cfg.hiddenSize;
    this.patch_embed = this.module("patch_embed", new PatchEmbed(cfg.imageSize, cfg.patchSize, cfg.inChans, h, cfg.patchStem ?? "linear"));
    this.cls_token = this.param("cls_token", F.truncNormal_(zeros([1, 1, h]), 0, 0.02, -2, 2));
    this.pos_embed = this.param("pos_embed", cfg.useAbsPosEmb ? F.truncNormal_(zeros([1, this.patch_embed.numPatches + 1, h]), 0, 0.02, -2, 2) : null);
    this.posDrop = this.module("pos_drop", new Dropout(cfg.dropRate));
    const rates = linspace(0, cfg.dropPathRate, cfg.numLayers).toArray();
    this.blocks = this.module("blocks", new ModuleList(rates.map((r, i) => new MoMEBlock(cfg, !cfg.standard && i >= cfg.vlffnStartLayer, r))));
    this.norm = this.module("norm", new LayerNorm(h, cfg.lnEps));
  }

  /** Pixels [B, C, H, W] -> [B, 1 + patches, h]: image [CLS] first, then patches in raster order. */
  visualEmbed(pixels: Tensor): Tensor {
    const x = this.patch_embed.forward(pixels).flatten(2).transpose(1, 2);
    const B = x.size(0);
    let e = cat([this.cls_token.expand(B, -1, -1), x], 1);
    if (this.pos_embed) e = e.add(this.pos_embed);
    return this.posDrop.forward(e);
  }
}
