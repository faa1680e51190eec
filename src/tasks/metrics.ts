// Metrics of the classification tasks and their official results files.
//   VQA accuracy (the official evaluation): a predicted answer scores min(1, #matching annotators / 3)
//   against each leave-one-out subset of 9 of the 10 annotators, averaged over the 10 subsets.
//   Without the annotators' answers, the soft score of the predicted answer (0 / 0.3 / 0.6 / 0.9 / 1)
//   stands in for it (the two agree whenever the 10 answers produced the soft scores).
//   GQA and NLVR2: plain accuracy.
import { processDigitArticle, processPunctuation, type VqaAnnotation } from "../data/formats/vqa.ts";
import { writeNlvr2Predictions } from "../data/formats/nlvr2.ts";
import { writeJson } from "../data/formats/util.ts";

/** The official normalisation of a predicted answer (newlines/tabs to spaces, punctuation, digits, articles). */
export function normalizePrediction(answer: string): string {
  return processDigitArticle(processPunctuation(answer.replace(/[\n\t]/g, " ").trim()));
}

/**
 * VQA accuracy of one prediction against the annotators' answers (the official rule): for each
 * annotator i, min(1, (#other annotators who gave the predicted answer) / 3), averaged over i. As in
 * the official code, the annotators' answers get the punctuation step only when they disagree.
 */
export function vqaAccuracy(predicted: string, annotatorAnswers: string[]): number {
  if (annotatorAnswers.length === 0) throw new Error("vqaAccuracy: no annotator answers");
  const pred = normalizePrediction(predicted);
  const gts = new Set(annotatorAnswers).size > 1 ? annotatorAnswers.map(processPunctuation) : annotatorAnswers;
  let sum = 0;
  for (let i = 0; i < gts.length; i++) {
    let matching = 0;
    for (let j = 0; j < gts.length; j++) if (j !== i && gts[j] === pred) matching++;
    sum += Math.min(1, matching / 3);
  }
  return sum / gts.length;
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
 * VQA metrics of a set of predictions: `vqa_acc` by the official rule when `annotations` covers
 * every question (plus per answer type: yes/no, number, other), else the soft score;
 * `vqa_soft` (soft score of the prediction) whenever labels are present; `n`.
 */
export function vqaMetrics(preds: VqaPrediction[], annotations?: Map<number | string, VqaAnnotation>): Record<string, number> {
  const out: Record<string, number> = { n: preds.length };
  if (preds.length === 0) return out;
  const labelled = preds.filter((p) => p.label);
  if (labelled.length) out.vqa_soft = labelled.reduce((s, p) => s + softScore(p.answer, p.label), 0) / labelled.length;
  if (annotations && preds.every((p) => annotations.has(p.question_id))) {
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
