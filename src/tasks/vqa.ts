// VQA v2 (issue 6.1): a classifier over the answer vocabulary on the pooled output (SemVLP: h_CLS or
// o_IMG by mode; LXMERT-S: the product pooler; VLMo: the pooled text [CLS] of the fusion pass),
// trained with BCE-with-logits x the number of answers against the soft scores. Evaluated with the
// official VQA accuracy (min(1, n/3) over the 10 leave-one-out annotator subsets) when the split's
// official annotations exist (a world's vqa/v2_synth_<split>_annotations.json, a vqa source's
// annotation files) (the predictions must then
// answer exactly the annotated questions, as the official code requires), else with the soft score;
// `--dump` writes the official results file [{question_id, answer}].
import { readVqaAnnotations, type VqaAnnotation } from "../data/formats/vqa.ts";
import { vqaMetrics, writeVqaResults } from "./metrics.ts";
import { runEvaluate, runFinetune, classifyOptionsSchema, type ClassifyTask, type Prediction } from "./classify.ts";
import type { EvalArgs, FinetuneArgs } from "./task.ts";

const answersOf = (preds: Prediction[], labels?: string[]) => preds.map((p) => ({ question_id: p.id, answer: labels![p.index], label: p.example.scores }));

export const VQA: ClassifyTask = {
  name: "vqa",
  format: "vqa",
  answersDir: "vqa",
  main: "vqa_acc",
  score(preds, { annotations: files, split, labels, limit }) {
    const annotations = files?.length ? new Map<number | string, VqaAnnotation>(files.flatMap((f) => readVqaAnnotations(f).records.map((a) => [a.question_id, a] as const))) : undefined;
    return vqaMetrics(answersOf(preds, labels), annotations, { where: `${split} predictions against ${files?.join(", ") ?? "the soft scores"}`, subset: limit !== undefined && limit > 0 });
  },
  dump: (path, preds, labels) => writeVqaResults(path, answersOf(preds, labels)),
};

export const options = classifyOptionsSchema(VQA);
export const finetune = (a: FinetuneArgs) => runFinetune(VQA, a);
export const evaluate = (a: EvalArgs) => runEvaluate(VQA, a);
