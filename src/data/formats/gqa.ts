// GQA: the official questions files ({qid: {imageId, question, answer, fullAnswer, ...}},
// e.g. testdev_balanced_questions.json) and LXMERT's GQA json (list of
// {img_id, label: {answer: score}, question_id (string), sent}).

import {
  type Json, type ReadOptions, type ReadResult, FieldError, bool, idLabel, isObject, obj, optional, parseRecords, readJson, scoreMap, str,
  topArray, topObject, withoutUndefined, writeJson,
} from "./util.ts";

/** label is absent for the submission split. */
export interface LxmertGqaDatum { img_id: string; label?: Record<string, number>; question_id: string; sent: string }

export interface GqaQuestion {
  qid: string;
  imageId: string;
  question: string;
  /** Absent in the test / challenge questions. */
  answer?: string;
  fullAnswer?: string;
  isBalanced?: boolean;
  types?: { structural?: string; semantic?: string; detailed?: string };
}

const parseLxmertGqa = (r: Json): LxmertGqaDatum => withoutUndefined({
  img_id: str(r, "img_id"),
  label: optional(r, "label", scoreMap),
  question_id: str(r, "question_id"),
  sent: str(r, "sent"),
});

export function readLxmertGqa(path: string, opts: ReadOptions = {}): ReadResult<LxmertGqaDatum> {
  return parseRecords(path, topArray(path, readJson(path)), parseLxmertGqa, { ...opts, id: idLabel("question_id") });
}

export function writeLxmertGqa(path: string, data: LxmertGqaDatum[]): void {
  writeJson(path, data);
}

const parseTypes = (o: Json, name: string) => {
  const t = obj(o, name);
  return withoutUndefined({
    structural: optional(t, "structural", str), semantic: optional(t, "semantic", str), detailed: optional(t, "detailed", str),
  });
};

/** Official questions file: an object keyed by question id; records keep file order. */
export function readGqaQuestions(path: string, opts: ReadOptions = {}): ReadResult<GqaQuestion> {
  const entries = Object.entries(topObject(path, readJson(path)));
  const items = entries.map(([qid, v]) => ({ qid, v }));
  return parseRecords(path, items, ({ qid, v }) => {
    if (!isObject(v)) throw new FieldError("not a JSON object");
    return withoutUndefined({
      qid: qid as string,
      imageId: str(v, "imageId"),
      question: str(v, "question"),
      answer: optional(v, "answer", str),
      fullAnswer: optional(v, "fullAnswer", str),
      isBalanced: optional(v, "isBalanced", bool),
      types: optional(v, "types", parseTypes),
    });
  }, { ...opts, id: (raw) => `question_id ${(raw as { qid: string }).qid}` });
}

/** LXMERT-style records from official questions: label {answer: 1} when the answer is known. */
export function gqaToLxmert(questions: GqaQuestion[]): LxmertGqaDatum[] {
  return questions.map((q) => withoutUndefined({
    img_id: q.imageId,
    label: q.answer === undefined ? undefined : { [q.answer]: 1 },
    question_id: q.qid,
    sent: q.question,
  }));
}
