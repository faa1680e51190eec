/**
 * Text at MSP's three granularities: token level (detected labels in box order), phrase
 * level (Visual Genome-style region descriptions, no verbs, joined by commas) and sentence
 * level (five COCO-style captions: coarse, counting, relations, occlusion). Every word is a
 * whole token of BERT's uncased vocabulary (checked in the tests).
 */
import { NUMBER_WORDS, OBJECT_VOCAB, PLURALS, article, type Category } from "./catalog.ts";
import type { Detection } from "./detector.ts";
import { describe, mainRelation, relationPhrase, type Attr } from "./relations.ts";
import type { Rendered } from "./render.ts";
import { Rng } from "../../engine/rng.ts";
import type { Scene, SceneObject } from "./scene.ts";

export interface RegionPhrase {
  phrase: string;
  /** Object index in the scene, or -1 for the whole background. */
  object: number;
  /** x, y, w, h (pixels). */
  box: [number, number, number, number];
}

export const withArticle = (words: string): string => `${article(words)} ${words}`;
const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
const sentence = (s: string): string => `${capitalize(s)}.`;

/** "a ball" / "two balls" */
export function countNoun(n: number, cat: Category, adjectives = ""): string {
  const pre = adjectives ? `${adjectives} ` : "";
  return n === 1 ? withArticle(`${pre}${cat}`) : `${NUMBER_WORDS[n]} ${pre}${PLURALS[cat]}`;
}

/** "x, y and z" */
export function listJoin(items: string[]): string {
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

export function tokenText(dets: Detection[]): string {
  return dets.map((d) => OBJECT_VOCAB[d.label]).join(" ");
}

const ATTR_SETS: Attr[][] = [["size", "color", "style"], ["color"], ["size", "color"], ["color", "style"], ["size", "color", "style"]];

function attrPhrase(o: SceneObject, attrs: Attr[]): string {
  // "solid" is rarely said by people; drop it most of the time.
  return describe(o, o.style === "solid" ? attrs.filter((a) => a !== "style") : attrs);
}

/** VG-style region descriptions: one attribute phrase per object, some relation phrases, the background. */
export function regionPhrases(scene: Scene, r: Rendered, rng: Rng): RegionPhrase[] {
  const out: RegionPhrase[] = [];
  const xywh = (k: number): [number, number, number, number] => {
    const b = r.visibleBox[k];
    return [b[0], b[1], b[2] - b[0], b[3] - b[1]];
  };
  scene.objects.forEach((o, k) => {
    if (r.visible[k] === 0) return;
    out.push({ phrase: attrPhrase(o, rng.pick(ATTR_SETS)), object: k, box: xywh(k) });
  });
  scene.objects.forEach((o, k) => {
    if (r.visible[k] === 0 || !rng.chance(0.4)) return;
    const others = scene.objects.map((_, j) => j).filter((j) => j !== k && r.visible[j] > 0);
    if (others.length === 0) return;
    const j = rng.pick(others);
    const rel = mainRelation(o, scene.objects[j]);
    if (!rel) return;
    const phrase = `${attrPhrase(o, ["color"])} ${relationPhrase(rel)} ${withArticle(attrPhrase(scene.objects[j], ["color"]))}`;
    out.push({ phrase, object: k, box: xywh(k) });
  });
  out.push({ phrase: `${scene.background.name} background`, object: -1, box: [0, 0, scene.width, scene.height] });
  return out;
}

export function phraseText(phrases: RegionPhrase[]): string {
  return phrases.map((p) => p.phrase).join(", ");
}

const BG_ADJ = { plain: "plain", gradient: "shaded", noise: "noisy" } as const;

function coarseCaption(scene: Scene, rng: Rng): string {
  const n = NUMBER_WORDS[scene.objects.length];
  const bg = scene.background;
  return rng.pick([
    `there are ${n} objects on ${withArticle(bg.name)} background`,
    `${n} shapes on ${withArticle(`${BG_ADJ[bg.kind]} ${bg.name}`)} background`,
    `a picture of several colorful shapes on ${withArticle(bg.name)} background`,
    `an image with ${n} objects`,
  ]);
}

/** "two balls, a star and a box" (optionally with colours: "two red balls, ..."). */
function countingCaption(scene: Scene, rng: Rng): string {
  const withColor = rng.chance(0.5);
  const groups = new Map<string, { n: number; cat: Category; adj: string }>();
  for (const o of scene.objects) {
    const adj = withColor ? o.color : "";
    const key = `${adj} ${o.category}`;
    const g = groups.get(key) ?? { n: 0, cat: o.category, adj };
    g.n++;
    groups.set(key, g);
  }
  const items = [...groups.values()].map((g) => countNoun(g.n, g.cat, g.adj));
  return rng.chance(0.5) ? listJoin(items) : `the image shows ${listJoin(items)}`;
}

function relationCaption(scene: Scene, rng: Rng, attrs: Attr[]): string | null {
  const n = scene.objects.length;
  for (let tries = 0; tries < 10; tries++) {
    const i = rng.int(n);
    const j = rng.int(n);
    if (i === j) continue;
    const a = scene.objects[i];
    const b = scene.objects[j];
    const rel = mainRelation(a, b);
    if (!rel) continue;
    return `${withArticle(attrPhrase(a, attrs))} is ${relationPhrase(rel)} ${withArticle(attrPhrase(b, ["color"]))}`;
  }
  return null;
}

function occlusionCaption(scene: Scene, r: Rendered, rng: Rng): string | null {
  const hidden = scene.objects.map((_, k) => k).filter((k) => r.occluder[k] >= 0);
  if (hidden.length === 0) return null;
  const k = rng.pick(hidden);
  const a = attrPhrase(scene.objects[k], ["color"]);
  const b = attrPhrase(scene.objects[r.occluder[k]], ["color"]);
  return `${withArticle(a)} is partly hidden behind ${withArticle(b)}`;
}

function categoryCountCaption(scene: Scene, rng: Rng): string {
  const o = rng.pick(scene.objects);
  const n = scene.objects.filter((x) => x.category === o.category && x.color === o.color).length;
  return n === 1
    ? `there is only one ${o.color} ${o.category} in the image`
    : `there are ${NUMBER_WORDS[n]} ${o.color} ${PLURALS[o.category]} in the image`;
}

/** Five captions, from coarse to detailed. */
export function captions(scene: Scene, r: Rendered, rng: Rng): string[] {
  const out = [
    coarseCaption(scene, rng),
    countingCaption(scene, rng),
    relationCaption(scene, rng, rng.pick(ATTR_SETS)) ?? categoryCountCaption(scene, rng),
    (rng.chance(0.5) ? occlusionCaption(scene, r, rng) : null) ?? relationCaption(scene, rng, ["size", "color"]) ?? coarseCaption(scene, rng),
    categoryCountCaption(scene, rng),
  ];
  return out.map(sentence);
}

/** Lower-cased words without punctuation (Karpathy "tokens"). */
export function karpathyTokens(text: string): string[] {
  return text.toLowerCase().split(/[^a-z0-9]+/).filter((w) => w !== "");
}
