// VQA v2: official question/annotation files, the standard answer normalisation, the
// answer vocabulary (trainval_ans2label.json / trainval_label2ans.json), soft scores, and
// the LXMERT-style VQA json derived from them.

import { join } from "node:path";
import {
  type Json, type ReadOptions, type ReadResult, FieldError, idLabel, int, isObject, nested, optional, parseRecords,
  readJson, scoreMap, str, topArray, withoutUndefined, writeJson,
} from "./util.ts";

export interface VqaQuestion { image_id: number; question: string; question_id: number }
export interface VqaAnswer { answer: string; answer_confidence: string; answer_id: number }
export interface VqaAnnotation {
  question_id: number;
  image_id: number;
  question_type: string;
  answer_type: string;
  multiple_choice_answer: string;
  answers: VqaAnswer[];
}
/** Top-level fields of the official files besides the record list. */
export interface VqaFileMeta { info?: unknown; license?: unknown; task_type?: string; data_type?: string; data_subtype?: string }
export type VqaRead<T> = ReadResult<T> & { meta: VqaFileMeta };

const META_KEYS = ["info", "license", "task_type", "data_type", "data_subtype"] as const;
const metaOf = (data: unknown): VqaFileMeta =>
  isObject(data) ? Object.fromEntries(META_KEYS.filter((k) => k in data).map((k) => [k, data[k]])) : {};

const parseQuestion = (r: Json): VqaQuestion => ({ image_id: int(r, "image_id"), question: str(r, "question"), question_id: int(r, "question_id") });

const parseAnswer = (r: Json): VqaAnswer => ({ answer: str(r, "answer"), answer_confidence: str(r, "answer_confidence"), answer_id: int(r, "answer_id") });

const parseAnnotation = (r: Json): VqaAnnotation => ({
  question_id: int(r, "question_id"),
  image_id: int(r, "image_id"),
  question_type: str(r, "question_type"),
  answer_type: str(r, "answer_type"),
  multiple_choice_answer: str(r, "multiple_choice_answer"),
  answers: nested(r, "answers", parseAnswer),
});

/** e.g. v2_OpenEnded_mscoco_train2014_questions.json */
export function readVqaQuestions(path: string, opts: ReadOptions = {}): VqaRead<VqaQuestion> {
  const data = readJson(path);
  const res = parseRecords(path, topArray(path, data, "questions"), parseQuestion, { ...opts, id: idLabel("question_id") });
  return { ...res, meta: metaOf(data) };
}

export function writeVqaQuestions(path: string, questions: VqaQuestion[], meta: VqaFileMeta = {}): void {
  writeJson(path, { task_type: "Open-Ended", data_type: "mscoco", ...meta, questions });
}

/** e.g. v2_mscoco_train2014_annotations.json */
export function readVqaAnnotations(path: string, opts: ReadOptions = {}): VqaRead<VqaAnnotation> {
  const data = readJson(path);
  const res = parseRecords(path, topArray(path, data, "annotations"), parseAnnotation, { ...opts, id: idLabel("question_id") });
  return { ...res, meta: metaOf(data) };
}

export function writeVqaAnnotations(path: string, annotations: VqaAnnotation[], meta: VqaFileMeta = {}): void {
  writeJson(path, { data_type: "mscoco", ...meta, annotations });
}

// ---- answer normalisation (official VQA eval processPunctuation / processDigitArticle) ----

const PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"];
const NUMBER_WORDS = new Map(Object.entries({
  none: "0", zero: "0", one: "1", two: "2", three: "3", four: "4", five: "5", six: "6", seven: "7", eight: "8", nine: "9", ten: "10",
}));
const ARTICLES = new Set(["a", "an", "the"]);
// Apostrophe-less spellings -> contractions. The eval's capitalised keys (Im, Ive, ...)
// can never match lower-cased text and are left out. "somebody'd" -> "somebodyd" is the
// eval's own (reversed) entry, kept as is.
const CONTRACTIONS = new Map(
  ("aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've couldnt've=couldn't've " +
    "didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've hadn'tve=hadn't've hasnt=hasn't " +
    "havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's howd=how'd howll=how'll hows=how's isnt=isn't " +
    "itd=it'd itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't mightnt've=mightn't've " +
    "mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've neednt=needn't notve=not've oclock=o'clock " +
    "oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't shed've=she'd've " +
    "she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't shouldnt've=shouldn't've " +
    "shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've somebody'dve=somebody'd've " +
    "somebodyll=somebody'll somebodys=somebody's someoned=someone'd someoned've=someone'd've " +
    "someone'dve=someone'd've someonell=someone'll someones=someone's somethingd=something'd " +
    "somethingd've=something'd've something'dve=something'd've somethingll=something'll thats=that's " +
    "thered=there'd thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd " +
    "theyd've=they'd've they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas wasnt=wasn't " +
    "wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll whatre=what're whats=what's " +
    "whatve=what've whens=when's whered=where'd wheres=where's whereve=where've whod=who'd whod've=who'd've " +
    "who'dve=who'd've wholl=who'll whos=who's whove=who've whyll=why'll whyre=why're whys=why's wont=won't " +
    "wouldve=would've wouldnt=wouldn't wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll " +
    "y'allll=y'all'll yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've " +
    "you'dve=you'd've youll=you'll youre=you're youve=you've")
    .split(" ").map((pair) => pair.split("=") as [string, string]),
);

/**
 * Each listed punctuation mark is deleted if the text has it next to a space (or has a
 * digit,digit comma anywhere), otherwise replaced by a space; then periods not followed by
 * a digit are deleted (the eval passes re.UNICODE as the count, so at most 32 of them).
 */
export function processPunctuation(text: string): string {
  const digitComma = /\d,\d/.test(text);
  let out = text;
  for (const p of PUNCT) {
    const drop = digitComma || text.includes(`${p} `) || text.includes(` ${p}`);
    out = out.split(p).join(drop ? "" : " ");
  }
  let periods = 0;
  return out.replace(/\.(?!\d)/g, (m) => (periods++ < 32 ? "" : m));
}

/** Lower-case, number words -> digits, drop articles, restore contractions. */
export function processDigitArticle(text: string): string {
  return text.toLowerCase().split(/\s+/).filter((w) => w !== "")
    .map((w) => NUMBER_WORDS.get(w) ?? w)
    .filter((w) => !ARTICLES.has(w))
    .map((w) => CONTRACTIONS.get(w) ?? w)
    .join(" ");
}

/** The normalisation used for the answer vocabulary and soft scores (plus: commas removed). */
export function normalizeVqaAnswer(answer: string): string {
  return processDigitArticle(processPunctuation(answer)).replace(/,/g, "");
}

/** Soft score of an answer given by n of the 10 annotators: 0, 0.3, 0.6, 0.9, 1. */
export function vqaSoftScore(n: number): number {
  return n <= 0 ? 0 : n === 1 ? 0.3 : n === 2 ? 0.6 : n === 3 ? 0.9 : 1;
}

// ---- answer vocabulary ----

export interface AnswerVocab { ans2label: Record<string, number>; label2ans: string[] }

/**
 * Standard rule: normalised multiple_choice_answer values that are the answer of at least
 * `minCount` distinct questions (9 over train+val gives 3129 answers). Labels follow first
 * appearance in `annotations`.
 */
export function buildAnswerVocab(annotations: VqaAnnotation[], minCount = 9): AnswerVocab {
  const questions = new Map<string, Set<number>>();
  for (const a of annotations) {
    const ans = normalizeVqaAnswer(a.multiple_choice_answer);
    if (!questions.has(ans)) questions.set(ans, new Set());
    questions.get(ans)!.add(a.question_id);
  }
  const label2ans = [...questions].filter(([, q]) => q.size >= minCount).map(([ans]) => ans);
  return { ans2label: Object.fromEntries(label2ans.map((a, i) => [a, i])), label2ans };
}

export function writeAnswerVocab(dir: string, vocab: AnswerVocab): void {
  writeJson(join(dir, "trainval_ans2label.json"), vocab.ans2label);
  writeJson(join(dir, "trainval_label2ans.json"), vocab.label2ans);
}

/**
 * An ans2label file ({answer: label}) as a Map, checked: labels are distinct integers in [0, n).
 * A vocabulary cut short (or from another model) otherwise reaches the loss as a bare
 * "Target 3120 is out of bounds", far from the file.
 */
export function readAns2Label(path: string): Map<string, number> {
  const raw = readJson(path);
  if (!isObject(raw)) throw new Error(`${path}: expected {answer: label index}`);
  const n = Object.keys(raw).length;
  const seen = new Map<number, string>();
  for (const [ans, label] of Object.entries(raw)) {
    if (typeof label !== "number" || !Number.isInteger(label) || label < 0 || label >= n) {
      throw new Error(`${path}: answer ${JSON.stringify(ans)} has label ${JSON.stringify(label)}, not an integer in [0, ${n}) (${n} answers: a truncated or mismatched vocabulary?)`);
    }
    const other = seen.get(label);
    if (other !== undefined) throw new Error(`${path}: answers ${JSON.stringify(other)} and ${JSON.stringify(ans)} both have label ${label}`);
    seen.set(label, ans);
  }
  return new Map(Object.entries(raw as Record<string, number>));
}

export function readAnswerVocab(dir: string): AnswerVocab {
  const ansPath = join(dir, "trainval_ans2label.json");
  const labelPath = join(dir, "trainval_label2ans.json");
  const ans2label = readJson(ansPath);
  const label2ans = topArray(labelPath, readJson(labelPath));
  if (!isObject(ans2label)) throw new Error(`${ansPath}: expected a JSON object`);
  label2ans.forEach((a, i) => {
    if (typeof a !== "string" || ans2label[a] !== i) {
      throw new Error(`${labelPath}: label ${i} (${JSON.stringify(a)}) does not map back to ${i} in ${ansPath}`);
    }
  });
  if (Object.keys(ans2label).length !== label2ans.length) {
    throw new Error(`${ansPath}: ${Object.keys(ans2label).length} answers but ${labelPath} has ${label2ans.length}`);
  }
  return { ans2label: ans2label as Record<string, number>, label2ans: label2ans as string[] };
}

/** {answer: soft score} over the vocabulary answers among the 10 annotator answers. */
export function vqaLabel(annotation: VqaAnnotation, ans2label: Record<string, number>): Record<string, number> {
  const counts = new Map<string, number>();
  for (const a of annotation.answers) {
    const ans = normalizeVqaAnswer(a.answer);
    counts.set(ans, (counts.get(ans) ?? 0) + 1);
  }
  const label: Record<string, number> = {};
  for (const [ans, n] of counts) if (Object.hasOwn(ans2label, ans)) label[ans] = vqaSoftScore(n);
  return label;
}

// ---- LXMERT-style VQA json ----

/** label / answer_type / question_type are absent for test questions. */
export interface LxmertVqaDatum {
  answer_type?: string;
  img_id: string;
  label?: Record<string, number>;
  question_id: number;
  question_type?: string;
  sent: string;
}

/** COCO image name stem, e.g. cocoImgId("train2014", 9) = "COCO_train2014_000000000009". */
export function cocoImgId(cocoSplit: string, imageId: number): string {
  return `COCO_${cocoSplit}_${String(imageId).padStart(12, "0")}`;
}

/** Join questions with their annotations (when given) into LXMERT's VQA records. */
export function toLxmertVqa(
  questions: VqaQuestion[], annotations: VqaAnnotation[] | undefined, ans2label: Record<string, number>, cocoSplit: string,
): LxmertVqaDatum[] {
  const byQid = new Map(annotations?.map((a) => [a.question_id, a]));
  return questions.map((q) => {
    const sent = q.question;
    const img_id = cocoImgId(cocoSplit, q.image_id);
    if (!annotations) return { img_id, question_id: q.question_id, sent };
    const a = byQid.get(q.question_id);
    if (!a) throw new Error(`VQA question_id ${q.question_id} has no annotation`);
    return {
      answer_type: a.answer_type, img_id, label: vqaLabel(a, ans2label),
      question_id: q.question_id, question_type: a.question_type, sent,
    };
  });
}

const parseLxmertVqa = (r: Json): LxmertVqaDatum => {
  const label = optional(r, "label", scoreMap);
  if (label && Object.values(label).some((s) => s < 0 || s > 1)) throw new FieldError("label scores must be in [0, 1]");
  return withoutUndefined({
    answer_type: optional(r, "answer_type", str),
    img_id: str(r, "img_id"),
    label,
    question_id: int(r, "question_id"),
    question_type: optional(r, "question_type", str),
    sent: str(r, "sent"),
  });
};

export function readLxmertVqa(path: string, opts: ReadOptions = {}): ReadResult<LxmertVqaDatum> {
  return parseRecords(path, topArray(path, readJson(path)), parseLxmertVqa, { ...opts, id: idLabel("question_id") });
}

export function writeLxmertVqa(path: string, data: LxmertVqaDatum[]): void {
  writeJson(path, data);
}
