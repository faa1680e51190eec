/**
 * Questions: VQA v2-style (exist, count, colour, shape, relation; ten noisy annotator
 * answers), GQA-style compositional questions (one exact answer) and NLVR2-style
 * statements about image pairs (True/False).
 */
import { CATEGORIES, CATEGORY_CONFUSIONS, COLORS, COLOR_CONFUSIONS, NUMBER_WORDS, PLURALS, type Category, type Color } from "./catalog.ts";
import { RELATIONS, holds, relationPhrase, uniqueRef, type Relation } from "./relations.ts";
import { Rng } from "../../engine/rng.ts";
import { comboKey, type Scene, type SceneObject } from "./scene.ts";
import { withArticle } from "./text.ts";

export type VqaKind = "exist" | "count" | "color" | "shape" | "relation";
export type AnswerType = "yes/no" | "number" | "other";

export interface QA {
  question: string;
  answer: string;
  kind: VqaKind | string;
  answerType: AnswerType;
  /** VQA-style question-type prefix ("how many", "what color is the", ...). */
  questionType: string;
}

const yesNo = (b: boolean): string => (b ? "yes" : "no");
const count = (scene: Scene, f: (o: SceneObject) => boolean): number => scene.objects.filter(f).length;
const indices = (scene: Scene): number[] => scene.objects.map((_, k) => k);

function existQ(scene: Scene, rng: Rng, heldOut: Set<string>): QA | null {
  let color: Color;
  let cat: Category;
  if (rng.chance(0.5)) {
    ({ color, category: cat } = rng.pick(scene.objects));
  } else {
    color = rng.pick(COLORS);
    cat = rng.pick(CATEGORIES);
    if (heldOut.has(comboKey(color, cat))) return null;
  }
  const present = count(scene, (o) => o.color === color && o.category === cat) > 0;
  return { question: `Is there ${withArticle(`${color} ${cat}`)}?`, answer: yesNo(present), kind: "exist", answerType: "yes/no", questionType: "is there a" };
}

function countQ(scene: Scene, rng: Rng): QA {
  const o = rng.pick(scene.objects);
  const byColor = rng.chance(0.4);
  const n = byColor ? count(scene, (x) => x.color === o.color && x.category === o.category) : count(scene, (x) => x.category === o.category);
  const what = byColor ? `${o.color} ${PLURALS[o.category]}` : PLURALS[o.category];
  return { question: `How many ${what} are there?`, answer: String(n), kind: "count", answerType: "number", questionType: "how many" };
}

function colorQ(scene: Scene, rng: Rng): QA | null {
  const k = rng.pick(indices(scene));
  const ref = uniqueRef(scene, k, { noColor: true });
  if (!ref) return null;
  return { question: `What color is the ${ref}?`, answer: scene.objects[k].color, kind: "color", answerType: "other", questionType: "what color is the" };
}

function shapeQ(scene: Scene, rng: Rng): QA | null {
  const k = rng.pick(indices(scene));
  const o = scene.objects[k];
  for (const attrs of [[o.color], [o.size, o.color], [o.color, o.style], [o.size, o.color, o.style]]) {
    const same = count(scene, (x) => attrs.every((a) => x.color === a || x.size === a || x.style === a));
    if (same === 1) return { question: `What is the ${attrs.join(" ")} object?`, answer: o.category, kind: "shape", answerType: "other", questionType: "what is the" };
  }
  return null;
}

/** Index of the only object in `rel` to object k (all others clearly not), or -1. */
function onlyRelated(scene: Scene, k: number, rel: Relation): number {
  let found = -1;
  for (let j = 0; j < scene.objects.length; j++) {
    if (j === k) continue;
    const h = holds(rel, scene.objects[j], scene.objects[k]);
    if (h === null) return -1;
    if (h) {
      if (found >= 0) return -1;
      found = j;
    }
  }
  return found;
}

function relationQ(scene: Scene, rng: Rng): QA | null {
  const k = rng.pick(indices(scene));
  const ref = uniqueRef(scene, k);
  if (!ref) return null;
  const rel = rng.pick(RELATIONS.slice(0, 4));
  if (rng.chance(0.5)) {
    const j = onlyRelated(scene, k, rel);
    if (j < 0) return null;
    return { question: `What is ${relationPhrase(rel)} the ${ref}?`, answer: scene.objects[j].category, kind: "relation", answerType: "other", questionType: "what is" };
  }
  const j = rng.pick(indices(scene).filter((x) => x !== k));
  const ref2 = j === undefined ? null : uniqueRef(scene, j);
  const h = ref2 ? holds(rel, scene.objects[j], scene.objects[k]) : null;
  if (h === null) return null;
  return { question: `Is the ${ref2} ${relationPhrase(rel)} the ${ref}?`, answer: yesNo(h), kind: "relation", answerType: "yes/no", questionType: "is the" };
}

/** One question of each VQA kind where one can be asked. */
export function vqaQuestions(scene: Scene, rng: Rng, heldOut: Set<string>): QA[] {
  const makers: (() => QA | null)[] = [
    () => existQ(scene, rng, heldOut), () => countQ(scene, rng), () => colorQ(scene, rng),
    () => shapeQ(scene, rng), () => relationQ(scene, rng),
  ];
  const out: QA[] = [];
  for (const make of makers) {
    for (let tries = 0; tries < 4; tries++) {
      const q = make();
      if (q) {
        out.push(q);
        break;
      }
    }
  }
  return out;
}

function wrongAnswer(q: QA, rng: Rng): string {
  if (q.answerType === "yes/no") return q.answer === "yes" ? "no" : "yes";
  if (q.answerType === "number") return String(Math.max(0, Number(q.answer) + (rng.chance(0.5) ? 1 : -1)));
  if ((COLORS as readonly string[]).includes(q.answer)) return rng.pick(COLOR_CONFUSIONS[q.answer as Color]);
  if ((CATEGORIES as readonly string[]).includes(q.answer)) return rng.pick(CATEGORY_CONFUSIONS[q.answer as Category]);
  return q.answer;
}

export interface AnnotatorAnswer {
  answer: string;
  answer_confidence: "yes" | "maybe" | "no";
  answer_id: number;
}

/** Ten annotator answers: mostly right, sometimes a plausible confusion. */
export function annotatorAnswers(q: QA, rng: Rng): AnnotatorAnswer[] {
  const accuracy = rng.range(0.72, 0.98);
  return Array.from({ length: 10 }, (_, i) => {
    const right = rng.chance(accuracy);
    const conf = rng.next();
    return {
      answer: right ? q.answer : wrongAnswer(q, rng),
      answer_confidence: conf < 0.85 ? "yes" : conf < 0.96 ? "maybe" : "no",
      answer_id: i + 1,
    };
  });
}

/** Most frequent answer (ties: first given). */
export function majorityAnswer(answers: AnnotatorAnswer[]): string {
  const counts = new Map<string, number>();
  for (const a of answers) counts.set(a.answer, (counts.get(a.answer) ?? 0) + 1);
  let best = "";
  let bestN = 0;
  for (const [a, n] of counts) if (n > bestN) [best, bestN] = [a, n];
  return best;
}

// ---------------------------------------------------------------- GQA-style

function gqaRelAttr(scene: Scene, rng: Rng): QA | null {
  const k = rng.int(scene.objects.length);
  const ref = uniqueRef(scene, k);
  const rel = rng.pick(RELATIONS.slice(0, 4));
  const j = ref ? onlyRelated(scene, k, rel) : -1;
  if (j < 0) return null;
  const o = scene.objects[j];
  return rng.chance(0.5)
    ? { question: `What color is the object ${relationPhrase(rel)} the ${ref}?`, answer: o.color, kind: "relate_color", answerType: "other", questionType: "what color" }
    : { question: `Which kind of object is ${relationPhrase(rel)} the ${ref}?`, answer: o.category, kind: "relate_category", answerType: "other", questionType: "which kind" };
}

function gqaVerifyRel(scene: Scene, rng: Rng): QA | null {
  const [i, j] = rng.sample(scene.objects.map((_, k) => k), 2);
  const a = uniqueRef(scene, i);
  const b = uniqueRef(scene, j);
  const rel = rng.pick(RELATIONS);
  const h = a && b ? holds(rel, scene.objects[i], scene.objects[j]) : null;
  if (h === null) return null;
  return { question: `Is the ${a} ${relationPhrase(rel)} the ${b}?`, answer: yesNo(h), kind: "verify_relation", answerType: "yes/no", questionType: "is the" };
}

function gqaAnd(scene: Scene, rng: Rng): QA {
  const pickCat = (): Category => (rng.chance(0.6) ? rng.pick(scene.objects).category : rng.pick(CATEGORIES));
  const a = pickCat();
  let b = pickCat();
  if (b === a) b = CATEGORIES[(CATEGORIES.indexOf(a) + 1) % CATEGORIES.length];
  const has = (c: Category) => scene.objects.some((o) => o.category === c);
  const both = rng.chance(0.5);
  const ans = both ? has(a) && has(b) : has(a) || has(b);
  const q = both ? `Are there both ${PLURALS[a]} and ${PLURALS[b]} in the image?` : `Are there ${PLURALS[a]} or ${PLURALS[b]} in the image?`;
  return { question: q, answer: yesNo(ans), kind: both ? "logical_and" : "logical_or", answerType: "yes/no", questionType: "are there" };
}

function gqaCompare(scene: Scene, rng: Rng): QA | null {
  const [i, j] = rng.sample(scene.objects.map((_, k) => k), 2);
  const a = scene.objects[i];
  const b = scene.objects[j];
  const ra = uniqueRef(scene, i);
  const rb = uniqueRef(scene, j);
  if (!ra || !rb) return null;
  if (rng.chance(0.5)) {
    return { question: `Do the ${ra} and the ${rb} have the same color?`, answer: yesNo(a.color === b.color), kind: "same_color", answerType: "yes/no", questionType: "do the" };
  }
  if (a.size === b.size || a.category === b.category) return null;
  const bigger = (["small", "medium", "large"].indexOf(a.size) > ["small", "medium", "large"].indexOf(b.size) ? a : b).category;
  return { question: `Which is bigger, the ${ra} or the ${rb}?`, answer: bigger, kind: "compare_size", answerType: "other", questionType: "which is" };
}

function gqaCountRel(scene: Scene, rng: Rng): QA | null {
  const k = rng.int(scene.objects.length);
  const ref = uniqueRef(scene, k);
  const rel = rng.pick(RELATIONS.slice(0, 4));
  if (!ref) return null;
  let n = 0;
  for (let j = 0; j < scene.objects.length; j++) {
    if (j === k) continue;
    const h = holds(rel, scene.objects[j], scene.objects[k]);
    if (h === null) return null;
    if (h) n++;
  }
  return { question: `How many objects are ${relationPhrase(rel)} the ${ref}?`, answer: String(n), kind: "count_relation", answerType: "number", questionType: "how many" };
}

/** Up to `n` compositional questions with exact answers. */
export function gqaQuestions(scene: Scene, rng: Rng, n = 4): QA[] {
  const makers = [gqaRelAttr, gqaVerifyRel, gqaAnd, gqaCompare, gqaCountRel];
  const out: QA[] = [];
  const seen = new Set<string>();
  for (let tries = 0; tries < 20 && out.length < n; tries++) {
    const q = rng.pick(makers)(scene, rng);
    if (q && !seen.has(q.question)) {
      seen.add(q.question);
      out.push(q);
    }
  }
  return out;
}

// ---------------------------------------------------------------- NLVR2-style

/**
 * The six statement forms of `pairStatement`, in the order of its cases: three need counting
 * (exactly-n, more-left, n-in-total), two name an object's presence (exactly-one-image,
 * both-at-least-one), one a spatial relation.
 */
export const STATEMENT_TEMPLATES = ["exactly-n", "exactly-one-image", "both-at-least-one", "more-left", "n-in-total", "relation"] as const;
export type StatementTemplate = (typeof STATEMENT_TEMPLATES)[number];

export interface Statement {
  sentence: string;
  label: boolean;
  template: StatementTemplate;
}

const TEMPLATE_PATTERNS: [StatementTemplate, RegExp][] = [
  ["exactly-n", /^The (left|right) image contains exactly [a-z]+ [a-z]+\.$/],
  ["exactly-one-image", /^Exactly one image contains an? [a-z]+ [a-z]+\.$/],
  ["both-at-least-one", /^Both images contain at least one [a-z]+\.$/],
  ["more-left", /^There are more [a-z]+ in the left image than in the right image\.$/],
  ["n-in-total", /^There are [a-z]+ [a-z]+ in total in the two images\.$/],
  ["relation", /^In the (left|right) image, an? [a-z]+ [a-z]+ is [a-z ]+ an? [a-z]+ [a-z]+\.$/],
];

/**
 * The form of a world's NLVR2 statement, read from its sentence alone (the world's files do not
 * store it): per-form accuracy of a model's predictions (experiments/nlvr2_templates.ts).
 */
export function statementTemplate(sentence: string): StatementTemplate {
  const hit = TEMPLATE_PATTERNS.find(([, re]) => re.test(sentence));
  if (!hit) throw new Error(`statementTemplate: "${sentence}" is none of the synthetic world's NLVR2 statement forms (${STATEMENT_TEMPLATES.join(", ")})`);
  return hit[0];
}

/** Is some object like `a` (colour, category) in `rel` to some object like `b`? null if unclear. */
function existsRelation(s: Scene, a: SceneObject, b: SceneObject, rel: Relation): boolean | null {
  let unclear = false;
  for (const x of s.objects) {
    if (x.color !== a.color || x.category !== a.category) continue;
    for (const y of s.objects) {
      if (y === x || y.color !== b.color || y.category !== b.category) continue;
      const h = holds(rel, x, y);
      if (h) return true;
      if (h === null) unclear = true;
    }
  }
  return unclear ? null : false;
}

/** A statement about the (left, right) image pair and its truth value. */
export function pairStatement(left: Scene, right: Scene, rng: Rng, heldOut: Set<string>): Statement | null {
  const both = [left, right];
  const o = rng.pick(rng.pick(both).objects);
  const cat = rng.chance(0.8) ? o.category : rng.pick(CATEGORIES);
  const catCount = (s: Scene) => count(s, (x) => x.category === cat);
  const combo = (s: Scene) => count(s, (x) => x.category === o.category && x.color === o.color) > 0;
  const side = rng.chance(0.5) ? 0 : 1;
  const sideName = side === 0 ? "left" : "right";
  switch (rng.int(6)) {
    case 0: {
      const n = Math.max(1, catCount(both[side]) + rng.pick([-1, 0, 0, 1]));
      const what = n === 1 ? `one ${cat}` : `${NUMBER_WORDS[n]} ${PLURALS[cat]}`;
      return { sentence: `The ${sideName} image contains exactly ${what}.`, label: catCount(both[side]) === n, template: "exactly-n" };
    }
    case 1:
      if (heldOut.has(comboKey(o.color, o.category))) return null;
      return { sentence: `Exactly one image contains ${withArticle(`${o.color} ${o.category}`)}.`, label: combo(left) !== combo(right), template: "exactly-one-image" };
    case 2:
      return { sentence: `Both images contain at least one ${cat}.`, label: catCount(left) > 0 && catCount(right) > 0, template: "both-at-least-one" };
    case 3:
      return { sentence: `There are more ${PLURALS[cat]} in the left image than in the right image.`, label: catCount(left) > catCount(right), template: "more-left" };
    case 4: {
      const total = catCount(left) + catCount(right);
      const n = Math.max(1, total + rng.pick([-1, 0, 1]));
      const what = n === 1 ? `one ${cat}` : `${NUMBER_WORDS[n]} ${PLURALS[cat]}`;
      return { sentence: `There are ${what} in total in the two images.`, label: total === n, template: "n-in-total" };
    }
    default: {
      const s = both[side];
      const [i, j] = rng.sample(s.objects.map((_, k) => k), 2);
      if (j === undefined) return null;
      const rel = rng.pick(RELATIONS.slice(0, 4));
      const a = s.objects[i];
      const b = s.objects[j];
      const label = existsRelation(s, a, b, rel);
      if (label === null) return null;
      return { sentence: `In the ${sideName} image, ${withArticle(`${a.color} ${a.category}`)} is ${relationPhrase(rel)} ${withArticle(`${b.color} ${b.category}`)}.`, label, template: "relation" };
    }
  }
}
