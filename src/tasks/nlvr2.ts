// NLVR2 (issue 6.3): the statement encoded with each of its two images, the two pooled outputs
// concatenated into a pair classifier (LXMERT's logit_fc; VLMo's nlvr2_classifier, the second image
// with modality type 2), cross-entropy; accuracy; `--dump` writes the CSV "identifier,True|False".
import { accuracy, writeNlvr2Results } from "./metrics.ts";
import { runEvaluate, runFinetune, classifyOptionsSchema, type ClassifyTask } from "./classify.ts";
import type { EvalArgs, FinetuneArgs } from "./task.ts";

export const NLVR2: ClassifyTask = {
  name: "nlvr2",
  format: "nlvr2",
  main: "acc",
  score(preds) {
    const labelled = preds.filter((p) => p.example.label !== undefined);
    const out: Record<string, number> = { n: preds.length };
    if (labelled.length) out.acc = accuracy(labelled.map((p) => p.index), labelled.map((p) => p.example.label!));
    return out;
  },
  dump: (path, preds) => writeNlvr2Results(path, preds.map((p) => ({ identifier: String(p.id), prediction: p.index === 1 }))),
};

export const options = classifyOptionsSchema(NLVR2);
export const finetune = (a: FinetuneArgs) => runFinetune(NLVR2, a);
export const evaluate = (a: EvalArgs) => runEvaluate(NLVR2, a);
