/**
 * Writing the synthetic world's annotations in the official layouts (COCO captions,
 * Karpathy split, VQA v2 questions/annotations, LXMERT json, NLVR2 jsonl, Visual Genome,
 * hard-negative pools, MSP granularities). See README.md for the directory layout.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { ATTRIBUTE_VOCAB, OBJECT_VOCAB } from "./catalog.ts";
import type { AnnotatorAnswer, QA } from "./questions.ts";
import type { Scene, SceneObject } from "./scene.ts";
import { karpathyTokens, type RegionPhrase } from "./text.ts";

export const SPLITS = ["train", "val", "test", "test_comp"] as const;
export type Split = (typeof SPLITS)[number];

export interface ImageEntry {
  index: number;
  /** Numeric id (COCO/VQA/VG image_id). */
  id: number;
  /** String id (obj36 img_id, LXMERT img_id, file stem). */
  imgId: string;
  file: string;
  split: Split;
  width: number;
  height: number;
  scene: Scene;
  objects: SceneObject[];
  /** Visible boxes of the objects, x, y, w, h. */
  objectBoxes: [number, number, number, number][];
  tokenText: string;
  phrases: RegionPhrase[];
  phraseText: string;
  captions: string[];
  vqa: { qa: QA; answers: AnnotatorAnswer[]; mc: string }[];
  gqa: QA[];
}

export interface PairEntry {
  identifier: string;
  split: Split;
  left: ImageEntry;
  right: ImageEntry;
  sentence: string;
  label: boolean;
}

export function writeJsonFile(root: string, rel: string, data: unknown): void {
  const path = join(root, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(data));
}

const INFO = { description: "vlpkit synthetic scene world", version: "1.0" };
const vqaQid = (e: ImageEntry, k: number): number => e.id * 10 + k;

export function writeCaptions(root: string, images: ImageEntry[]): void {
  for (const [name, splits] of [["train", ["train"]], ["val", ["val", "test", "test_comp"]]] as const) {
    const sel = images.filter((e) => (splits as readonly string[]).includes(e.split));
    writeJsonFile(root, `coco/captions_${name}.json`, {
      info: INFO, licenses: [],
      images: sel.map((e) => ({ id: e.id, file_name: e.file, width: e.width, height: e.height })),
      annotations: sel.flatMap((e) => e.captions.map((caption, k) => ({ id: e.id * 10 + k, image_id: e.id, caption }))),
    });
  }
  // The Karpathy format knows train/val/test/restval only: the compositional split goes to
  // its own file, with split "test".
  const karpathy = (sel: ImageEntry[], split: (e: ImageEntry) => string) => ({
    dataset: "synth",
    images: sel.map((e) => ({
      filename: e.file, imgid: e.index, cocoid: e.id, split: split(e),
      sentids: e.captions.map((_, k) => e.index * 5 + k),
      sentences: e.captions.map((raw, k) => ({ tokens: karpathyTokens(raw), raw, imgid: e.index, sentid: e.index * 5 + k })),
    })),
  });
  writeJsonFile(root, "karpathy/dataset_synth.json", karpathy(images.filter((e) => e.split !== "test_comp"), (e) => e.split));
  writeJsonFile(root, "karpathy/dataset_synth_comp.json", karpathy(images.filter((e) => e.split === "test_comp"), () => "test"));
}

/** Soft score of an answer given by n of the 10 annotators (LXMERT/VQA convention). */
const softScore = (n: number): number => (n >= 4 ? 1 : [0, 0.3, 0.6, 0.9][n]);

export function vqaLabel(answers: AnnotatorAnswer[], vocab: ReadonlySet<string> | ReadonlyMap<string, number>): Record<string, number> {
  const counts = new Map<string, number>();
  for (const a of answers) counts.set(a.answer, (counts.get(a.answer) ?? 0) + 1);
  const label: Record<string, number> = {};
  for (const [a, n] of counts) if (vocab.has(a)) label[a] = softScore(n);
  return label;
}

/** Answer vocabulary (first-appearance order) written as trainval_{ans2label,label2ans}.json. */
function writeVocab(root: string, dir: string, answers: string[]): Map<string, number> {
  const label2ans = [...new Set(answers)];
  writeJsonFile(root, `${dir}/trainval_label2ans.json`, label2ans);
  writeJsonFile(root, `${dir}/trainval_ans2label.json`, Object.fromEntries(label2ans.map((a, i) => [a, i])));
  return new Map(label2ans.map((a, i) => [a, i]));
}

/** Writes VQA/GQA/LXMERT/MSP files; returns the VQA answer vocabulary (answer -> label). */
export function writeQuestions(root: string, images: ImageEntry[]): Map<string, number> {
  const trainval = images.filter((e) => e.split === "train" || e.split === "val");
  const vqaVocab = writeVocab(root, "vqa", trainval.flatMap((e) => e.vqa.map((v) => v.mc)));
  const gqaVocab = writeVocab(root, "gqa", trainval.flatMap((e) => e.gqa.map((q) => q.answer)));
  for (const split of SPLITS) {
    const sel = images.filter((e) => e.split === split);
    const meta = { info: INFO, license: {}, data_type: "synth", data_subtype: split };
    writeJsonFile(root, `vqa/v2_OpenEnded_synth_${split}_questions.json`, {
      ...meta, task_type: "Open-Ended",
      questions: sel.flatMap((e) => e.vqa.map((v, k) => ({ image_id: e.id, question: v.qa.question, question_id: vqaQid(e, k) }))),
    });
    writeJsonFile(root, `vqa/v2_synth_${split}_annotations.json`, {
      ...meta,
      annotations: sel.flatMap((e) => e.vqa.map((v, k) => ({
        question_type: v.qa.questionType, multiple_choice_answer: v.mc, answers: v.answers,
        image_id: e.id, answer_type: v.qa.answerType, question_id: vqaQid(e, k),
      }))),
    });
    writeJsonFile(root, `lxmert/vqa_${split}.json`, sel.flatMap((e) => e.vqa.map((v, k) => ({
      answer_type: v.qa.answerType, img_id: e.imgId, label: vqaLabel(v.answers, vqaVocab),
      question_id: vqaQid(e, k), question_type: v.qa.questionType, sent: v.qa.question,
    }))));
    writeJsonFile(root, `lxmert/gqa_${split}.json`, sel.flatMap((e) => e.gqa.map((q, k) => ({
      img_id: e.imgId, label: gqaVocab.has(q.answer) ? { [q.answer]: 1 } : {}, question_id: String(e.id * 10 + k), sent: q.question,
    }))));
    writeJsonFile(root, `lxmert/mscoco_${split}.json`, sel.map((e) => ({
      img_id: e.imgId,
      sentf: { mscoco: e.captions, vqa: e.vqa.map((v) => v.qa.question), gqa: e.gqa.map((q) => q.question) },
      labelf: { vqa: e.vqa.map((v) => vqaLabel(v.answers, vqaVocab)), gqa: e.gqa.map((q) => (gqaVocab.has(q.answer) ? { [q.answer]: 1 } : {})) },
    })));
    for (const [gran, sents] of [
      ["token", (e: ImageEntry) => [e.tokenText]],
      ["phrase", (e: ImageEntry) => [e.phraseText]],
      ["sentence", (e: ImageEntry) => e.captions],
    ] as const) {
      writeJsonFile(root, `msp/${gran}_${split}.json`, sel.map((e) => ({ img_id: e.imgId, sents: sents(e) })));
    }
  }
  return vqaVocab;
}

export function writeNlvr2(root: string, pairs: PairEntry[]): void {
  for (const split of SPLITS) {
    const sel = pairs.filter((p) => p.split === split);
    const lines = sel.map((p) => JSON.stringify({
      identifier: p.identifier, sentence: p.sentence, label: p.label ? "True" : "False",
      left_url: `images/${p.left.file}`, right_url: `images/${p.right.file}`,
      img0: p.left.imgId, img1: p.right.imgId,
    }));
    mkdirSync(join(root, "nlvr2"), { recursive: true });
    writeFileSync(join(root, `nlvr2/${split}.json`), lines.map((l) => l + "\n").join(""));
    writeJsonFile(root, `lxmert/nlvr2_${split}.json`, sel.map((p, i) => ({
      identifier: p.identifier, img0: p.left.imgId, img1: p.right.imgId, label: p.label ? 1 : 0,
      sent: p.sentence, uid: `nlvr2_${split}_${i}`,
    })));
  }
}

export function writeVisualGenome(root: string, images: ImageEntry[]): void {
  const objId = (e: ImageEntry, k: number): number => e.id * 100 + k;
  const base = (e: ImageEntry, k: number) => {
    const [x, y, w, h] = e.objectBoxes[k];
    const cat = e.objects[k].category;
    return { object_id: objId(e, k), x, y, w, h, names: [cat], synsets: [`${cat}.n.01`] };
  };
  writeJsonFile(root, "vg/image_data.json", images.map((e) => ({
    image_id: e.id, url: `images/${e.file}`, width: e.width, height: e.height, coco_id: e.id, flickr_id: null,
  })));
  writeJsonFile(root, "vg/objects.json", images.map((e) => ({ image_id: e.id, objects: e.objects.map((_, k) => base(e, k)) })));
  writeJsonFile(root, "vg/attributes.json", images.map((e) => ({
    image_id: e.id,
    attributes: e.objects.map((o, k) => ({ ...base(e, k), attributes: [o.size, o.color, o.style] })),
  })));
  writeJsonFile(root, "vg/region_descriptions.json", images.map((e) => ({
    id: e.id,
    regions: e.phrases.map((p, k) => ({
      region_id: e.id * 100 + k, width: p.box[2], height: p.box[3], image_id: e.id, phrase: p.phrase, y: p.box[1], x: p.box[0],
    })),
  })));
  mkdirSync(join(root, "vocab"), { recursive: true });
  writeFileSync(join(root, "vocab/objects_vocab.txt"), OBJECT_VOCAB.join("\n") + "\n");
  writeFileSync(join(root, "vocab/attributes_vocab.txt"), ATTRIBUTE_VOCAB.join("\n") + "\n");
}
