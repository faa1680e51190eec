// GQA (issue 6.2): the VQA head and loss over GQA's answer set, accuracy, `--dump` writes GQA's
// official predictions file [{questionId, prediction}]. Two-stage fine-tuning as SemVLP follows
// (OSCAR's): stage "all" on the whole ("all-split") train set, then stage "balanced" at a lower lr.
//
// The synthetic world has one GQA train set, so the balanced split is defined here (balancedSubset
// in data.ts), in the spirit of GQA's balancing: per question type (its first two words), answers
// are taken from rare to frequent and each is capped at `ratio` (1.5) x the next rarer answer's
// (capped) count, the capped ones subsampled with the recipe's seed; answers with fewer than
// `minTail` (10) examples are kept whole. On data/world-tiny it keeps 2,825 of the 3,440 questions
// ("do the ...": no 471 -> 83, yes 55; "are there ...": yes 734 -> 552, no 368; "how many": 0 207 -> 194).
import { softScore, writeGqaResults } from "./metrics.ts";
import { balancedSubset, readTaskInputs, type BalanceOptions, type TaskDataArgs } from "./data.ts";
import { runEvaluate, runFinetune, classifyOptionsSchema, type ClassifyTask, type StageContext } from "./classify.ts";
import { Type, choice, num, type Static } from "../pretrain/schema.ts";
import { TRAIN_RANGES } from "../pretrain/recipe.ts";
import type { Stage } from "../train/trainer.ts";
import type { EvalArgs, FinetuneArgs } from "./task.ts";

/** GQA's own options: the stages in order, and the balanced stage's settings. */
const GQA_OPTIONS = {
  stages: Type.Optional(Type.Array(choice(["all", "balanced"]), { minItems: 1, default: ["all", "balanced"], description: "the stages in order: all (the all-split train set), balanced (its balanced subset)" })),
  balanced: Type.Optional(Type.Object({
    epochs: Type.Optional(num(TRAIN_RANGES.epochs)),
    steps: Type.Optional(num(TRAIN_RANGES.steps)),
    lr: Type.Optional(num(TRAIN_RANGES.lr)),
    ratio: Type.Optional(num({ min: 1 }, { description: "each answer capped at this times the next rarer one's count (default 1.5)" })),
    minTail: Type.Optional(num({ int: true, min: 0 }, { description: "answers with fewer examples are kept whole (default 10)" })),
  }, { additionalProperties: false, default: {}, description: "the balanced stage's settings (default: the train section's)" })),
};
type GqaOptions = Required<Static<ReturnType<typeof Type.Object<typeof GQA_OPTIONS>>>>;

const answersOf = (preds: Parameters<ClassifyTask["dump"]>[1], labels?: string[]) => preds.map((p) => ({ question_id: p.id, answer: labels![p.index] }));

function gqaStages(c: StageContext): Stage[] {
  // checked by the options schema (classifyOptions)
  const o = c.options as unknown as GqaOptions;
  const t = c.recipe.train;
  const b = o.balanced;
  const balance: BalanceOptions = { ratio: b.ratio ?? 1.5, minTail: b.minTail ?? 10, seed: t.seed };
  return o.stages.map((name): Stage => {
    const common = { name, lr: t.lr, warmup: t.warmup, weightDecay: t.weightDecay, epochs: t.epochs, steps: t.steps };
    if (name === "all") return { ...common, sources: [c.source("gqa-all", c.spec("train"))] };
    const spec = c.spec("train", { balance });
    const args = spec.args as TaskDataArgs;
    const all = readTaskInputs("gqa", args.examples);
    c.log(`  GQA balanced split: ${balancedSubset(all, balance).length} of ${all.length} train questions (ratio ${balance.ratio}, minTail ${balance.minTail})`);
    return { ...common, lr: b.lr ?? t.lr, epochs: b.epochs ?? t.epochs, steps: b.steps ?? (b.epochs !== undefined ? undefined : t.steps), sources: [c.source("gqa-balanced", spec)] };
  });
}

export const GQA: ClassifyTask = {
  name: "gqa",
  format: "gqa",
  answersDir: "gqa",
  main: "acc",
  options: GQA_OPTIONS,
  stages: gqaStages,
  score(preds, { labels }) {
    const labelled = preds.filter((p) => p.example.scores);
    const out: Record<string, number> = { n: preds.length };
    if (labelled.length) {
      // GQA has one exact answer per question ({answer: 1}): the score of the prediction is its accuracy
      out.acc = labelled.reduce((s, p) => s + softScore(labels![p.index], p.example.scores), 0) / labelled.length;
    }
    return out;
  },
  dump: (path, preds, labels) => writeGqaResults(path, answersOf(preds, labels)),
};

export const options = classifyOptionsSchema(GQA);
export const finetune = (a: FinetuneArgs) => runFinetune(GQA, a);
export const evaluate = (a: EvalArgs) => runEvaluate(GQA, a);
