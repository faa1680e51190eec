/**
 * Spatial relations between scene objects and unique referring expressions.
 * A relation is only asserted with a margin; near the boundary it is "ambiguous" (null)
 * and question generators skip it.
 */
import type { Scene, SceneObject } from "./scene.ts";

export const RELATIONS = ["left of", "right of", "above", "below", "next to"] as const;
export type Relation = (typeof RELATIONS)[number];

/** How a relation reads inside a sentence: "to the left of", "above", "next to". */
export function relationPhrase(rel: Relation): string {
  return rel === "left of" || rel === "right of" ? `to the ${rel}` : rel;
}

/** Whether `a rel b` holds: true, false, or null when too close to call. */
export function holds(rel: Relation, a: SceneObject, b: SceneObject): boolean | null {
  const margin = 0.3 * (a.r + b.r);
  const dx = b.cx - a.cx;
  const dy = b.cy - a.cy;
  const d = rel === "left of" ? dx : rel === "right of" ? -dx : rel === "above" ? dy : rel === "below" ? -dy : NaN;
  if (rel === "next to") {
    const dist = Math.hypot(dx, dy) / (a.r + b.r);
    return dist < 1.4 ? true : dist > 2.2 ? false : null;
  }
  return d > margin ? true : d < -margin ? false : null;
}

/** The clearer of the horizontal/vertical relations of a to b, or null. */
export function mainRelation(a: SceneObject, b: SceneObject): Relation | null {
  const horizontal = Math.abs(b.cx - a.cx) >= Math.abs(b.cy - a.cy);
  const order: Relation[] = horizontal ? ["left of", "right of"] : ["above", "below"];
  for (const rel of order) if (holds(rel, a, b) === true) return rel;
  return null;
}

export type Attr = "size" | "color" | "style";
const DETAILS: Attr[][] = [[], ["color"], ["size"], ["size", "color"], ["color", "style"], ["size", "color", "style"]];
const DETAILS_NO_COLOR: Attr[][] = [[], ["size"], ["style"], ["size", "style"]];

/** Words describing an object with the given attributes, in the order size, colour, style. */
export function describe(o: SceneObject, attrs: readonly Attr[]): string {
  const words: string[] = [];
  if (attrs.includes("size")) words.push(o.size);
  if (attrs.includes("color")) words.push(o.color);
  if (attrs.includes("style")) words.push(o.style);
  words.push(o.category);
  return words.join(" ");
}

const matches = (o: SceneObject, ref: SceneObject, attrs: readonly Attr[]): boolean =>
  o.category === ref.category && attrs.every((a) => o[a] === ref[a]);

/**
 * The shortest description (optionally without colour) that picks out object k alone,
 * or null if none does.
 */
export function uniqueRef(scene: Scene, k: number, opts: { noColor?: boolean } = {}): string | null {
  const o = scene.objects[k];
  for (const attrs of opts.noColor ? DETAILS_NO_COLOR : DETAILS) {
    if (scene.objects.filter((x) => matches(x, o, attrs)).length === 1) return describe(o, attrs);
  }
  return null;
}
