// VLMo (Wang et al. 2021): a Mixture-of-Modality-Experts (MoME) Transformer that encodes text
// only, images only, or image-text pairs with one set of shared self-attention weights and
// modality experts (V-FFN, L-FFN, VL-FFN) in place of the feed-forward network.
//
// Structure and parameter names follow the official implementation (microsoft/unilm `vlmo/`,
// built on ViLT and BEiT) so that its state_dicts load by name:
//   text_embeddings.{word_embeddings,position_embeddings,token_type_embeddings,LayerNorm}
//   token_type_embeddings.weight                  modality type: text 0, image 1 (NLVR2: 2)
//   relative_position_bias_table                  [rows, heads * layers]: one parameter and one gather
//                                                 for all layers; layer l reads columns [l*heads, (l+1)*heads)
//   transformer.{patch_embed.proj, cls_token, pos_embed?, blocks.N.*, norm}
//   transformer.patch_embed.stem.N.{conv,norm}    only with patchStem "conv" (a vlpkit departure)
//   transformer.blocks.N.{norm1, attn.{qkv.weight,q_bias,v_bias,proj}, gamma_1, gamma_2,
//                         norm2_text, mlp_text, norm2_imag, mlp_imag, norm2_vl?, mlp_vl?}
//   pooler.dense, itc_*_proj.fc, itm_score.fc, mlm_score.*, logit_scale, vqa_classifier, nlvr2_classifier
// Deviations of the official code from the paper that we follow: the image has no absolute
// position embedding by default (relative position bias only); the text embedding module owns a
// (never added) absolute position table and its own token-type table, both kept for checkpoints.
//
// One file per concept:
//   config.ts       VLMoConfig, the presets (base, large, small, tiny), vlmoConfig, validateConfig
//   mome.ts         the MoME block: shared self-attention and the modality experts V-FFN (mlp_imag),
//                   L-FFN (mlp_text), VL-FFN (mlp_vl) with their routing; the stacked Transformer
//   embeddings.ts   patch embedding (linear, or the convolutional stem) and text embeddings
//   relpos.ts       the relative position bias table's layout and index
//   model.ts        VLMoModel: the text-only, image-only and fusion passes and the head read-outs
//   heads.ts        the heads (pooler, ITC, ITM, MLM, classifiers) and the retrieval scorer
//   pretraining.ts  VLMoForPretraining: the model plus the stage-1 masked-patch head
//   checkpoint.ts   official checkpoints: name conversion and loading
//   params.ts       the parameter count of a config
//   init.ts         the official initialisation
export * from "./config.ts";
export { Mlp, Attention, MoMEBlock, MultiWayTransformer, type Modality } from "./mome.ts";
export { PatchEmbed, StemStage, stemChannels, TextEmbeddings } from "./embeddings.ts";
export * from "./relpos.ts";
export * from "./model.ts";
export * from "./heads.ts";
export * from "./pretraining.ts";
export * from "./checkpoint.ts";
export * from "./params.ts";
