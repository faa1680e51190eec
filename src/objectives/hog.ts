// Histograms of oriented gradients (HOG) as masked-image-modelling targets, as MaskFeat (Wei et al.
// 2022, "Masked Feature Prediction for Self-Supervised Visual Pre-Training") predicts them in place
// of BEiT's dVAE tokens: a target made of edge orientations, not of colours, so that the image-only
// stage has to model shapes. Used by VLMo's stage 1 with `vlmo.mimTarget: "hog"` (vlpkit's stand-in
// for the BEiT tokenizer we do not have; raw pixels are the other choice).
//
// Per RGB channel: central-difference gradients (gx, gy; 0 on the image border); each pixel votes into `bins` unsigned
// orientations θ_k = kπ/bins with weight relu(cos 2(θ - θ_k)) · |g| (a soft binning written with
// products only: |g|² cos 2(θ - θ_k) = (gx² - gy²) cos 2θ_k + 2 gx gy sin 2θ_k); votes are averaged
// over `cell` × `cell` cells; a patch's target is its cells' histograms, L2-normalised (MaskFeat
// normalises per patch too).
import { Tensor, tensor, cat, noGrad, F } from "../engine/index.ts";
import { toDevice } from "../engine/placement.ts";

export interface HogOptions {
  /** Cell side in pixels (MaskFeat: 8). */
  cell?: number;
  /** Unsigned orientation bins (MaskFeat: 9). */
  bins?: number;
}

/** The target width per patch: channels × bins × (patch / cell)². */
export function hogDim(patch: number, channels = 3, o: HogOptions = {}): number {
  const cell = o.cell ?? 8, bins = o.bins ?? 9;
  if (patch % cell !== 0) throw new Error(`HOG targets: the patch size ${patch} is not a multiple of the cell size ${cell}`);
  return channels * bins * (patch / cell) ** 2;
}

/** Pixels [B, C, S, S] -> per-patch HOG targets [B, (S/patch)², hogDim], in the patch grid's order. */
export function hogPatches(pixels: Tensor, patch: number, o: HogOptions = {}): Tensor {
  const cell = o.cell ?? 8, bins = o.bins ?? 9;
  const [b, c, s] = pixels.shape;
  if (s % patch !== 0) throw new Error(`HOG targets: the image side ${s} is not a multiple of the patch size ${patch}`);
  hogDim(patch, c, o);
  return noGrad(() => {
    const dev = pixels.device;
    const kx = toDevice(tensor(Array.from({ length: c }, () => [-1, 0, 1]).flat(), { shape: [c, 1, 1, 3] }), dev);
    const ky = kx.reshape(c, 1, 3, 1);
    const x = pixels.float();
    // central differences inside the image, 0 on its border (as skimage's hog: no edge from padding)
    const inner = toDevice(tensor(Array.from({ length: s }, (_, i) => (i === 0 || i === s - 1 ? 0 : 1))), dev);
    const gx = F.conv2d(x, kx, null, 1, [0, 1], 1, c).mul(inner.reshape(1, 1, 1, s));
    const gy = F.conv2d(x, ky, null, 1, [1, 0], 1, c).mul(inner.reshape(1, 1, s, 1));
    const cos2 = gx.square().sub(gy.square());
    const sin2 = gx.mul(gy).mul(2);
    const mag = gx.square().add(gy.square()).sqrt().add(1e-6);
    const votes = Array.from({ length: bins }, (_, k) => {
      const t = (2 * Math.PI * k) / bins;
      return cos2.mul(Math.cos(t)).add(sin2.mul(Math.sin(t))).relu().div(mag).unsqueeze(2);
    });
    // [B, C, bins, S, S] -> cells [B, C, bins, S/cell, S/cell]
    const h = F.avgPool2d(cat(votes, 2).reshape(b, c * bins, s, s), cell).reshape(b, c, bins, s / cell, s / cell);
    const g = s / patch, k = patch / cell;
    const perPatch = h.reshape(b, c, bins, g, k, g, k).permute(0, 3, 5, 1, 2, 4, 6).reshape(b, g * g, c * bins * k * k);
    return F.normalize(perPatch, 2, -1);
  });
}
