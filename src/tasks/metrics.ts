// Metrics of the classification tasks and their official results files.
//   VQA accuracy (the official evaluation, GT-Vision-Lab/VQA vqaEval.py as of its 2021 fix): a
//   predicted answer scores min(1, #matching annotators / 3) against each leave-one-out subset of 9
//   of the 10 annotators, averaged over the 10 subsets; a results file must answer exactly the
//   annotated questions.
//   Without the annotators' answers, the soft score of the predicted answer (0 / 0.3 / 0.6 / 0.9 / 1)
//   stands in for it (the two agree whenever the 10 answers produced the soft scores).
//   GQA and NLVR2: plain accuracy.
import { processDigitArticle, processPunctuation, type VqaAnnotation } from "../data/formats/vqa.ts";
import { writeNlvr2Predictions } from "../data/formats/nlvr2.ts";
import { writeJson } from "../data/formats/util.ts";

/** Python's str.strip() on text: these are the characters it counts as white space (JS's trim differs slightly). */
const PY_SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const EDGE_SPACE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "g");

/** The first step, applied to every answer: tabs and newlines become spaces, white space at the ends goes. */
export function cleanAnswer(answer: string): string {
  return answer.replace(/[\n\t]/g, " ").replace(EDGE_SPACE, "");
}

/** The full normalisation (after cleanAnswer): punctuation, then lower case, number words to digits, no articles, contractions. */
export function normalizePrediction(answer: string): string {
  return processDigitArticle(processPunctuation(cleanAnswer(answer)));
}

/**
 * VQA accuracy of one prediction against the annotators' answers, as the current official code
 * computes it:
 *   1. every answer, predicted or annotated, is cleaned (tabs and newlines to spaces, ends stripped);
 *   2. only when the cleaned annotators' answers are not all the same do both sides get the full
 *      normalisation (punctuation, case, number words, articles, contractions); when the annotators
 *      agree, the prediction must equal their answer as it is;
 *   3. for each annotator i, the prediction scores min(1, (#other annotators whose answer equals it) / 3);
 *      the question's accuracy is the mean over the annotators.
 */
export function vqaAccuracy(predicted: string, annotatorAnswers: string[]): number {
  if (annotatorAnswers.length === 0) throw new Error("vqaAccuracy: no annotator answers");
  let gts = annotatorAnswers.map(cleanAnswer);
  let pred = cleanAnswer(predicted);
  if (new Set(gts).size > 1) {
    gts = gts.map((a) => processDigitArticle(processPunctuation(a)));
    pred = processDigitArticle(processPunctuation(pred));
  }
  let sum = 0;
  for (let i = 0; i < gts.length; i++) {
    let matching = 0;
    for (let j = 0; j < gts.length; j++) if (j !== i && gts[j] === pred) matching++;
    sum += Math.min(1, matching / 3);
  }
  return sum / gts.length;
}

/**
 * The official evaluation refuses results that do not answer exactly the annotated questions (a
 * missing or an extra question id, or one answered twice). `subset`: an evaluation of the first
 * N questions (--limit) may leave the others out, but still not add any.
 */
export function checkResultIds(ids: (number | string)[], annotations: Map<number | string, unknown>, where: string, subset = false): void {
  const seen = new Set<number | string>();
  const twice = ids.filter((id) => seen.has(id) || !seen.add(id));
  const extra = [...seen].filter((id) => !annotations.has(id));
  const missing = subset ? [] : [...annotations.keys()].filter((id) => !seen.has(id));
  const eg = (l: unknown[]) => `${l.length} (e.g. ${l.slice(0, 5).map((x) => JSON.stringify(x)).join(", ")})`;
  const problems = [
    missing.length ? `${eg(missing)} annotated question ids without a prediction` : "",
    extra.length ? `${eg(extra)} predicted question ids not in the annotations` : "",
    twice.length ? `${eg(twice)} question ids answered more than once` : "",
  ].filter(Boolean);
  if (problems.length) throw new Error(`${where}: the results do not correspond to the annotations: ${problems.join("; ")}`);
}

/** The soft score of the predicted answer in a {answer: score} label (0 when absent). */
export function softScore(predicted: string, label: Record<string, number> | undefined): number {
  return label?.[predicted] ?? 0;
}

/** Share of equal entries. */
export function accuracy<T>(predicted: T[], gold: T[]): number {
  if (predicted.length !== gold.length) throw new Error(`accuracy: ${predicted.length} predictions for ${gold.length} labels`);
  if (gold.length === 0) return 0;
  let ok = 0;
  for (let i = 0; i < gold.length; i++) if (predicted[i] === gold[i]) ok++;
  return ok / gold.length;
}

export interface VqaPrediction {
  question_id: number | string;
  answer: string;
  /** The LXMERT json's soft-score label, when the split has one. */
  label?: Record<string, number>;
}

/**
 * VQA metrics of a set of predictions: `vqa_acc` by the official rule when `annotations` are given
 * (their question ids and the predictions' must match: checkResultIds) (plus per answer type: yes/no, number, other), else the soft score;
 * `vqa_soft` (soft score of the prediction) whenever labels are present; `n`.
 */
export function vqaMetrics(preds: VqaPrediction[], annotations?: Map<number | string, VqaAnnotation>, o: { where?: string; subset?: boolean } = {}): Record<string, number> {
  if (annotations) checkResultIds(preds.map((p) => p.question_id), annotations, o.where ?? "vqaMetrics", o.subset);
  const out: Record<string, number> = { n: preds.length };
  if (preds.length === 0) return out;
  const labelled = preds.filter((p) => p.label);
  if (labelled.length) out.vqa_soft = labelled.reduce((s, p) => s + softScore(p.answer, p.label), 0) / labelled.length;
  if (annotations) {
    const byType: Record<string, number[]> = {};
    let sum = 0;
    for (const p of preds) {
      const a = annotations.get(p.question_id)!;
      const acc = vqaAccuracy(p.answer, a.answers.map((x) => x.answer));
      sum += acc;
      (byType[a.answer_type] ??= []).push(acc);
    }
    out.vqa_acc = sum / preds.length;
    out.official = 1;
    for (const [t, v] of Object.entries(byType)) out[`vqa_acc_${t.replace(/[^a-z]/gi, "")}`] = v.reduce((a, b) => a + b, 0) / v.length;
  } else if (labelled.length) {
    out.vqa_acc = out.vqa_soft;
    out.official = 0;
  }
  return out;
}

/** The official VQA results file: [{question_id, answer}]. */
export function writeVqaResults(path: string, preds: { question_id: number | string; answer: string }[]): void {
  writeJson(path, preds.map((p) => ({ question_id: p.question_id, answer: p.answer })));
}

/** The official GQA predictions file (read by GQA's eval.py): [{questionId, prediction}]. */
export function writeGqaResults(path: string, preds: { question_id: number | string; answer: string }[]): void {
  writeJson(path, preds.map((p) => ({ questionId: String(p.question_id), prediction: p.answer })));
}

/** The NLVR2 predictions CSV: one "identifier,True|False" line per statement. */
export function writeNlvr2Results(path: string, preds: { identifier: string; prediction: boolean }[]): void {
  writeNlvr2Predictions(path, preds);
}
