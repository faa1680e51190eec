/**
 * Rendering scenes straight into RGB (HWC, uint8) buffers, plus an object-id map
 * (255 = background) from which visibility and tight visible boxes are measured.
 */
import type { Category } from "./catalog.ts";
import { Rng } from "../../engine/rng.ts";
import type { Scene, SceneObject } from "./scene.ts";

export const BG_ID = 255;

export interface Rendered {
  rgb: Uint8Array;
  ids: Uint8Array;
  width: number;
  height: number;
  /** Per object: pixels drawn, pixels still visible, visible box [x1, y1, x2, y2] (x2/y2 exclusive). */
  drawn: number[];
  visible: number[];
  visibleBox: [number, number, number, number][];
  /** Per object: the later object hiding most of its pixels (-1 if under 10% is hidden). */
  occluder: number[];
}

/** Shape membership in object-local unit coordinates (u right, v down, extent about [-1, 1]). */
export function insideShape(cat: Category, u: number, v: number): boolean {
  const au = Math.abs(u);
  const av = Math.abs(v);
  switch (cat) {
    case "ball": return u * u + v * v <= 1;
    case "box": return au <= 0.82 && av <= 0.82;
    case "ring": { const d = u * u + v * v; return d <= 1 && d >= 0.3; }
    case "cross": return (au <= 0.32 && av <= 0.95) || (av <= 0.32 && au <= 0.95);
    case "diamond": return au / 0.72 + av <= 1;
    case "tent": return v <= 0.8 && v >= -0.95 && au <= (0.95 * (v + 0.95)) / 1.75;
    case "bar": return au <= 1 && av <= 0.36;
    case "egg": { const w = 0.64 + 0.1 * v; return (u / w) ** 2 + v * v <= 1; }
    case "moon": return u * u + v * v <= 1 && (u - 0.45) ** 2 + (v + 0.15) ** 2 > 0.72;
    case "house":
      if (v >= -0.1 && v <= 0.85) return au <= 0.72;
      return v < -0.1 && v >= -0.95 && au <= (0.9 * (v + 0.95)) / 0.85;
    case "shield":
      if (v >= -0.9 && v <= 0.1) return au <= 0.8;
      return v > 0.1 && v <= 1 && au <= 0.8 * Math.sqrt(Math.max(0, 1 - ((v - 0.1) / 0.9) ** 2));
    case "arrow":
      if (u >= -1 && u <= 0.2) return av <= 0.22;
      return u > 0.2 && u <= 1 && av <= (0.75 * (1 - u)) / 0.8;
    case "heart": {
      const x = u * 1.14;
      const y = -v * 1.125 + 0.125;
      const a = x * x + y * y - 1;
      return a * a * a - x * x * y * y * y <= 0;
    }
    case "star": return insideStar(u, v);
  }
}

const STAR: [number, number][] = Array.from({ length: 10 }, (_, i) => {
  const a = -Math.PI / 2 + (i * Math.PI) / 5;
  const rad = i % 2 === 0 ? 1 : 0.45;
  return [rad * Math.cos(a), rad * Math.sin(a)];
});

function insideStar(u: number, v: number): boolean {
  let inside = false;
  for (let i = 0, j = STAR.length - 1; i < STAR.length; j = i++) {
    const [xi, yi] = STAR[i];
    const [xj, yj] = STAR[j];
    if (yi > v !== yj > v && u < ((xj - xi) * (v - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function paintBackground(scene: Scene, rgb: Uint8Array, rng: Rng): void {
  const { width: W, height: H, background: bg } = scene;
  const [r0, g0, b0] = bg.rgb;
  const [dr, dg, db] = [bg.rgb2[0] - r0, bg.rgb2[1] - g0, bg.rgb2[2] - b0];
  const gradient = bg.kind === "gradient";
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const t = gradient ? (bg.vertical ? y / (H - 1) : x / (W - 1)) : 0;
      const o = (y * W + x) * 3;
      rgb[o] = r0 + dr * t;
      rgb[o + 1] = g0 + dg * t;
      rgb[o + 2] = b0 + db * t;
    }
  }
  if (bg.noise <= 0) return;
  let state = (rng.int(0x7fffffff) | 1) >>> 0; // xorshift32 for the per-pixel noise
  const amp = (2 * bg.noise) / 4294967296;
  for (let i = 0; i < rgb.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const v = rgb[i] + (state >>> 0) * amp - bg.noise;
    rgb[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
}

/** Pixel colour of an object at (x, y), or null when the pixel is not covered. */
function objectPixel(o: SceneObject, x: number, y: number, out: number[]): boolean {
  const u = (x + 0.5 - o.cx) / o.r;
  const v = (y + 0.5 - o.cy) / o.r;
  if (!insideShape(o.category, u, v)) return false;
  const [r, g, b] = o.rgb;
  if (o.style === "outlined") {
    // Keep only pixels within ~2 px of the shape's border (outer and inner).
    const d = 2 / o.r;
    const c = o.category;
    if (insideShape(c, u + d, v) && insideShape(c, u - d, v) && insideShape(c, u, v + d) && insideShape(c, u, v - d)) return false;
  }
  let f = 1;
  let mix = 0;
  if (o.style === "striped" && Math.floor((x + y) / 4) % 2 === 0) f = 0.45;
  if (o.style === "dotted") {
    const dx = (x % 6) - 2.5;
    const dy = (y % 6) - 2.5;
    if (dx * dx + dy * dy < 2.6) {
      if (r + g + b > 540) f = 0.4;
      else mix = 0.65;
    }
  }
  out[0] = r * f + (255 - r * f) * mix;
  out[1] = g * f + (255 - g * f) * mix;
  out[2] = b * f + (255 - b * f) * mix;
  return true;
}

export function renderScene(scene: Scene, rng: Rng): Rendered {
  const { width: W, height: H } = scene;
  const rgb = new Uint8Array(W * H * 3);
  const ids = new Uint8Array(W * H).fill(BG_ID);
  paintBackground(scene, rgb, rng);
  const n = scene.objects.length;
  const drawn = scene.objects.map(() => 0);
  const hidden = new Int32Array(n * n); // hidden[i * n + j]: pixels of i painted over by j
  const px = [0, 0, 0];
  scene.objects.forEach((o, k) => {
    const x0 = Math.max(0, Math.floor(o.cx - o.r - 1));
    const x1 = Math.min(W, Math.ceil(o.cx + o.r + 1));
    const y0 = Math.max(0, Math.floor(o.cy - o.r - 1));
    const y1 = Math.min(H, Math.ceil(o.cy + o.r + 1));
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        if (!objectPixel(o, x, y, px)) continue;
        const p = y * W + x;
        if (ids[p] !== BG_ID) hidden[ids[p] * n + k]++;
        ids[p] = k;
        rgb[p * 3] = px[0];
        rgb[p * 3 + 1] = px[1];
        rgb[p * 3 + 2] = px[2];
        drawn[k]++;
      }
    }
  });
  const visible = scene.objects.map(() => 0);
  const visibleBox = scene.objects.map((): [number, number, number, number] => [W, H, 0, 0]);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const k = ids[y * W + x];
      if (k === BG_ID) continue;
      visible[k]++;
      const b = visibleBox[k];
      if (x < b[0]) b[0] = x;
      if (y < b[1]) b[1] = y;
      if (x + 1 > b[2]) b[2] = x + 1;
      if (y + 1 > b[3]) b[3] = y + 1;
    }
  }
  const occluder = scene.objects.map((_, i) => {
    let best = -1;
    for (let j = 0; j < n; j++) if (hidden[i * n + j] > (best < 0 ? 0 : hidden[i * n + best])) best = j;
    return best >= 0 && drawn[i] - visible[i] > 0.1 * drawn[i] ? best : -1;
  });
  return { rgb, ids, width: W, height: H, drawn, visible, visibleBox, occluder };
}
