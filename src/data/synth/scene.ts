/**
 * Sampling scenes: 2-8 objects (category, colour, size, style, position) on a background.
 * Objects later in the list are drawn on top (occlusion by drawing order).
 */
import {
  BACKGROUNDS, BG_KINDS, CATEGORIES, COLORS, COLOR_RGB, SIZES, SIZE_RADIUS, STYLES,
  type BgKind, type Category, type Color, type Size, type Style,
} from "./catalog.ts";
import { Rng } from "../../engine/rng.ts";

export interface SceneObject {
  category: Category;
  color: Color;
  size: Size;
  style: Style;
  /** Centre and radius in pixels. */
  cx: number;
  cy: number;
  r: number;
  /** Actual fill colour (the palette colour with a small per-object shade jitter). */
  rgb: [number, number, number];
}

export interface Background {
  kind: BgKind;
  name: string;
  rgb: [number, number, number];
  /** Second tone for gradients. */
  rgb2: [number, number, number];
  vertical: boolean;
  noise: number;
}

export interface Scene {
  index: number;
  width: number;
  height: number;
  background: Background;
  objects: SceneObject[];
}

export type Combo = [Color, Category];
export const comboKey = (color: string, category: string): string => `${color} ${category}`;

export interface SceneOptions {
  size: number;
  /** (colour, category) combinations that must not be sampled. */
  heldOut: Set<string>;
  /** Force the first object to be this combination (used for the compositional test split). */
  force?: Combo;
  minObjects?: number;
  maxObjects?: number;
  /**
   * Probability that an object after the first takes the category of one already placed (default 0:
   * no draw is made, so the scene is the same as without the option). Counts above one are rare
   * otherwise (2-8 objects from 14 categories) and no model here learns counting from them.
   */
  repeat?: number;
}

const clamp255 = (v: number): number => Math.max(0, Math.min(255, Math.round(v)));

function sampleBackground(rng: Rng): Background {
  const tone = rng.pick(BACKGROUNDS);
  const kind = rng.pick(BG_KINDS);
  const shade = (k: number): [number, number, number] =>
    tone.rgb.map((v) => clamp255(v * k)) as [number, number, number];
  return {
    kind,
    name: tone.name,
    rgb: shade(rng.range(0.92, 1.08)),
    rgb2: shade(kind === "gradient" ? rng.range(0.55, 0.8) : 1),
    vertical: rng.chance(0.5),
    noise: kind === "noise" ? rng.range(12, 30) : 0,
  };
}

function colorDistance(a: readonly number[], b: readonly number[]): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

function sampleColor(rng: Rng, category: Category, bg: Background, heldOut: Set<string>): Color {
  for (let tries = 0; tries < 50; tries++) {
    const c = rng.pick(COLORS);
    if (heldOut.has(comboKey(c, category))) continue;
    if (colorDistance(COLOR_RGB[c], bg.rgb) < 90) continue;
    return c;
  }
  const allowed = COLORS.filter((c) => !heldOut.has(comboKey(c, category)));
  return rng.pick(allowed);
}

/** Place an object of radius r away from the others (partial overlap allowed). */
function place(rng: Rng, r: number, size: number, others: SceneObject[]): [number, number] | null {
  for (let tries = 0; tries < 40; tries++) {
    const cx = rng.range(r, size - r);
    const cy = rng.range(r, size - r);
    const ok = others.every((o) => Math.hypot(o.cx - cx, o.cy - cy) > 0.72 * (o.r + r));
    if (ok) return [cx, cy];
  }
  return null;
}

export function sampleScene(rng: Rng, index: number, opts: SceneOptions): Scene {
  const S = opts.size;
  const background = sampleBackground(rng);
  const n = rng.intIn(opts.minObjects ?? 2, opts.maxObjects ?? 8);
  const objects: SceneObject[] = [];
  for (let i = 0; i < n; i++) {
    const forced = i === 0 ? opts.force : undefined;
    const category = forced ? forced[1] : opts.repeat && objects.length > 0 && rng.chance(opts.repeat) ? rng.pick(objects).category : rng.pick(CATEGORIES);
    const color = forced ? forced[0] : sampleColor(rng, category, background, opts.heldOut);
    const size = rng.pick(SIZES);
    const r = SIZE_RADIUS[size] * S * rng.range(0.9, 1.1);
    const at = place(rng, r, S, objects);
    if (!at) continue;
    const style = rng.pick(STYLES);
    const jitter = rng.range(0.88, 1.08);
    const rgb = COLOR_RGB[color].map((v) => clamp255(v * jitter + rng.range(-8, 8))) as [number, number, number];
    objects.push({ category, color, size, style, cx: at[0], cy: at[1], r, rgb });
  }
  // Shuffle the drawing order so that the forced object is not always at the bottom.
  rng.shuffle(objects);
  return { index, width: S, height: S, background, objects };
}
