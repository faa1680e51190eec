// Where a fine-tuning run's data is: the recipe's `data.sources` (checked by src/pretrain/sources.ts,
// the same section as pre-training's) or `data.world`, the shorthand of one synthetic world. This
// module turns the one source of a task into the files of a split: LXMERT's converted task JSON,
// VQA v2's questions + annotations or NLVR2's official jsonl, with region features or an image
// folder (VQA, GQA, NLVR2); a Karpathy split file or COCO caption annotations with an image root
// and region features (retrieval); ViLT/VLMo Arrow tables (vqav2_*, nlvr2_*, coco_caption_karpathy_*)
// with the images in their rows. Nothing here parses a dataset file.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { arrowTables, asList, recipeSources, splitOf, TASK_FORMATS, type DataSource } from "../pretrain/sources.ts";
import { readAns2Label, readAnswerVocab } from "../data/formats/vqa.ts";
import { arrowAnswerVocab, type TaskExampleInput } from "./data.ts";
import type { RetrievalSource } from "./retrieval/data.ts";
import type { TaskName } from "../methods/index.ts";
import type { Static } from "../pretrain/schema.ts";
import type { FINETUNE_DATA } from "./task.ts";

/** A fine-tuning recipe's data section (its schema: FINETUNE_DATA), the sources as checkSources returns them. */
export type TaskRecipeData = Omit<Static<typeof FINETUNE_DATA>, "sources"> & { sources?: DataSource[] };

/** The one source a task reads (a world: its synth source); another format, or several sources, is an error naming the key. */
export function taskSource(task: TaskName, data: TaskRecipeData): { source: DataSource; where: string } {
  const all = recipeSources(data);
  if (all.length !== 1) throw new Error(`recipe.data.sources: fine-tuning reads one source, got ${all.length} (${all.map((s) => s.name).join(", ")}); list several files in its keys instead`);
  const formats = TASK_FORMATS[task];
  if (!formats.includes(all[0].format)) throw new Error(`recipe.data.sources[0].format: "${all[0].format}" does not feed ${task} fine-tuning (it reads ${formats.join(", ")})`);
  return { source: all[0], where: data.sources ? "recipe.data.sources[0]" : "recipe.data.world" };
}

/** A world's file; a missing one names the world and its splits. */
export function worldFile(world: string, rel: string): string {
  const p = join(world, rel);
  if (!existsSync(p)) throw new Error(`${p}: not found (is ${world} a world written by \`vlp data synth\`? splits: train, val, test, test_comp)`);
  return p;
}

/** The key of a source that holds a split's files: its own (train), `eval` (val) or `test`. */
function splitKey(split: string): "" | "eval" | "test" {
  if (split === "train") return "";
  if (split === "val") return "eval";
  if (split === "test") return "test";
  throw new Error(`split "${split}": a data source has train, val (its eval keys) and test (its test keys)`);
}

/** One split of a classification task: its example files, region features and image folder. */
export interface ClassifySplit {
  examples: TaskExampleInput[];
  regions?: string | string[];
  images?: string;
  /** VQA v2 annotation files of the split (the official accuracy), when it has them. */
  annotations?: string[];
}

/** The files of `split` of a VQA, GQA or NLVR2 source (a world: lxmert/<task>_<split>.json, features/obj36.tsv, images/). */
export function classifySplit(task: "vqa" | "gqa" | "nlvr2", data: TaskRecipeData, split: string): ClassifySplit {
  const { source: s, where } = taskSource(task, data);
  if (s.format === "synth") {
    const world = s.world!;
    const annotations = join(world, `vqa/v2_synth_${split}_annotations.json`);
    return {
      examples: [{ kind: "lxmert", path: worldFile(world, `lxmert/${task}_${split}.json`) }],
      regions: s.regions ?? join(world, "features/obj36.tsv"),
      images: join(world, "images"),
      annotations: task === "vqa" && existsSync(annotations) ? [annotations] : undefined,
    };
  }
  const key = splitKey(split);
  const sp = splitOf(s, split as "train" | "val" | "test");
  const at = key ? `${where}.${key}` : where;
  if (!sp) throw new Error(`${at}: not given; the ${split} split of a ${s.format} source is read from its ${key} keys (${key}.json, ...)`);
  if (s.format === "vilt-arrow") {
    // ViLT's vqav2_* / nlvr2_* tables: the images are in the rows (the root stands for the image folder)
    const tables = arrowTables(s.root!, sp.tables!, `${at}.tables`);
    return { examples: [{ kind: task === "nlvr2" ? "nlvr2-arrow" : "vqa-arrow", tables }], images: s.root };
  }
  let examples: TaskExampleInput[];
  if (sp.json) examples = asList(sp.json).map((path) => ({ kind: "lxmert", path }));
  else if (sp.questions) {
    const ann = sp.annotations ? asList(sp.annotations) : undefined;
    examples = asList(sp.questions).map((questions, i) => ({ kind: "vqa-v2", questions, annotations: ann?.[i], answers: s.answers! }));
  } else if (sp.jsonl) examples = asList(sp.jsonl).map((path) => ({ kind: "nlvr2-jsonl", path }));
  else throw new Error(`${at}: no examples for the ${split} split (give ${key ? `${key}.` : ""}json${s.format === "vqa" ? ` or ${key ? `${key}.` : ""}questions` : s.format === "nlvr2" ? ` or ${key ? `${key}.` : ""}jsonl` : ""})`);
  if (!sp.regions && !sp.images) throw new Error(`${at}: give regions (obj36 TSV or .regions: SemVLP, LXMERT-S) or images (VLMo)`);
  return { examples, regions: sp.regions, images: sp.images, annotations: !sp.json && sp.annotations ? asList(sp.annotations) : undefined };
}

/** Every table a vilt-arrow source names (train, eval, test). */
function allArrowTables(s: DataSource, where: string): string[] {
  const parts: [string, string[] | undefined][] = [["", s.tables], ["eval.", s.eval?.tables], ["test.", s.test?.tables]];
  return [...new Set(parts.flatMap(([k, t]) => (t ? arrowTables(s.root!, t, `${where}.${k}tables`) : [])))];
}

/**
 * The answer vocabulary of a QA task: the ans2label file and the answers by label. A vilt-arrow
 * source without `answers` has its tables' own (every table of its splits; no file).
 */
export function answerVocab(task: "vqa" | "gqa", answersDir: string, data: TaskRecipeData): { file?: string; label2ans: string[] } {
  const { source: s } = taskSource(task, data);
  if (s.format === "synth") {
    const dir = worldFile(s.world!, answersDir);
    return { file: join(dir, "trainval_ans2label.json"), label2ans: readAnswerVocab(dir).label2ans };
  }
  if (s.format === "vilt-arrow" && !s.answers) return { label2ans: arrowAnswerVocab(allArrowTables(s, taskSource(task, data).where)) };
  const file = s.answers!;
  const label2ans: string[] = [];
  for (const [ans, label] of readAns2Label(file)) label2ans[label] = ans;
  return { file, label2ans };
}

/** A retrieval split of a Karpathy or COCO-captions source; undefined for a world (its own layout). */
export function retrievalSource(data: TaskRecipeData, split: string): RetrievalSource | undefined {
  const { source: s, where } = taskSource("retrieval", data);
  if (s.format === "synth") return undefined;
  const key = splitKey(split);
  const sp = splitOf(s, split as "train" | "val" | "test");
  if (!sp) throw new Error(`${where}.${key}: not given; the ${split} split of a ${s.format} source is read from its ${key} keys (json, images)`);
  if (s.format === "vilt-arrow") {
    const tables = arrowTables(s.root!, sp.tables!, `${key ? `${where}.${key}` : where}.tables`);
    return { format: "vilt-arrow", json: tables.join(", "), tables, images: s.root! };
  }
  const base = { json: sp.json as string, images: sp.images!, regions: sp.regions, hardNegatives: s.hardNegatives, text: s.text === "tokens" ? "tokens" as const : undefined };
  if (s.format === "karpathy") return { format: "karpathy", ...base, splits: split === "train" ? (s.split ?? ["train", "restval"]) : sp.split! };
  return { format: "coco-captions", ...base };
}
