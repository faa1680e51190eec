/**
 * The data preparation tools: `vlp data convert-regions`, `vlp data inspect`, `vlp data vqa-vocab`.
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { convertTsvToStore } from "../data/regions/index.ts";
import { inspectPath, type InspectReport } from "../data/inspect/index.ts";
import { buildAnswerVocab, normalizeVqaAnswer, readVqaAnnotations, writeAnswerVocab, type VqaAnnotation } from "../data/formats/vqa.ts";
import { lazyProgress } from "./progress.ts";

const CONVERT_USAGE = `usage: vlp data convert-regions IN.tsv OUT.regions [--float16] [--skip-invalid] [--quiet]

Converts LXMERT's obj36 region-feature TSV (e.g. data/mscoco_imgfeat/train2014_obj36.tsv) into a
vlp.regions store: fixed-size records read with two positioned reads, never loaded whole.
  --float16       store features as float16 (half the size; values beyond 65504 are refused)
  --skip-invalid  skip malformed rows, repeated img_ids and rows of another feature dimension
                  (each is printed with the TSV's line) instead of stopping at the first
The store is written to OUT.regions.tmp-<pid> and renamed when complete.`;

const INSPECT_USAGE = `usage: vlp data inspect PATH [--json] [--max-problems N]

PATH is a file, a folder (every dataset file in it, up to 3 levels down; tar shards grouped
into one WebDataset) or a brace pattern of shards ("shards/train-{000..009}.tar").
Detects the format (obj36 TSV, .regions store, LXMERT pre-training/VQA/GQA/NLVR2 json, VQA v2
questions/annotations, answer vocabularies, GQA questions, official NLVR2 jsonl, COCO captions,
Karpathy splits, Visual Genome regions/objects/attributes, hard negatives, ViLT/VLMo Arrow tables,
WebDataset tars) and prints, per file: the format, counts, one decoded sample and the problems
found (malformed records, duplicate ids, feature-dimension mismatches; the first N, default 10).
  --json          print the reports as JSON`;

const VOCAB_USAGE = `usage: vlp data vqa-vocab ANNOTATIONS.json... --out DIR [--min-count 9]

Builds the VQA answer vocabulary the way LXMERT's and ViLT/VLMo's files were made: each
question's multiple_choice_answer, normalised like the VQA evaluation (punctuation, number
words, articles, contractions), kept when it is the answer of at least --min-count questions
(9; over VQA v2 train + val this gives the 3,129 answers of LXMERT's data/vqa/trainval_ans2label.json
and of ViLT's vqav2 tables). Labels follow first appearance in the files as given (ViLT's order).
Writes DIR/trainval_ans2label.json and DIR/trainval_label2ans.json.
(LXMERT's pre-training QA vocabulary, data/lxmert/all_ans.json with 9,500 answers over VQA, GQA
and Visual7W, is a different file and is not rebuilt here.)`;

export async function dataToolMain(sub: string, argv: string[]): Promise<void> {
  if (sub === "convert-regions") return convertRegionsMain(argv);
  if (sub === "inspect") return inspectMain(argv);
  if (sub === "vqa-vocab") return vqaVocabMain(argv);
  throw new Error(`unknown data tool "${sub}"`);
}

function wantsHelp(argv: string[], usage: string): boolean {
  if (!argv.includes("--help") && !argv.includes("-h")) return false;
  console.log(usage);
  return true;
}

export function positiveInt(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected a positive integer, got "${v}"`);
  return n;
}

async function convertRegionsMain(argv: string[]): Promise<void> {
  if (wantsHelp(argv, CONVERT_USAGE)) return;
  const { values, positionals } = parseArgs({
    args: argv,
    options: { float16: { type: "boolean", default: false }, "skip-invalid": { type: "boolean", default: false }, quiet: { type: "boolean", default: false } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 2) throw new Error(`expected IN.tsv and OUT.regions, got ${positionals.length} paths\n${CONVERT_USAGE}`);
  const [input, output] = positionals;
  if (!fs.existsSync(input)) throw new Error(`${input}: no such file`);
  const t0 = performance.now();
  const progress = lazyProgress("convert-regions", values.quiet);
  const skipped: string[] = [];
  const res = await convertTsvToStore(input, output, {
    dtype: values.float16 ? "float16" : "float32",
    skipInvalid: values["skip-invalid"],
    onSkip: (err) => skipped.push(err.message),
    onProgress: progress.onProgress,
  });
  progress.finish();
  const seconds = (performance.now() - t0) / 1000;
  for (const m of skipped.slice(0, 20)) console.error(`skipped: ${m}`);
  if (skipped.length > 20) console.error(`skipped: ... and ${skipped.length - 20} more`);
  console.log(
    `${output}: ${res.count} images, dim ${res.dim}, up to ${res.maxBoxes} boxes, ${res.dtype}, ` +
      `${(res.bytes / 2 ** 20).toFixed(1)} MiB in ${seconds.toFixed(1)} s${skipped.length > 0 ? ` (${skipped.length} rows skipped)` : ""}`,
  );
}

export function formatReport(r: InspectReport): string {
  const counts = Object.entries(r.counts).map(([k, v]) => `${k} ${v}`).join(", ") || "-";
  let sample = JSON.stringify(r.sample) ?? "null";
  if (sample.length > 800) sample = `${sample.slice(0, 800)}...`;
  const problems = r.problems.length === 0 ? "none" : r.problems.map((p) => `\n    - ${p}`).join("");
  return `${r.path}\n  format   ${r.format}: ${r.what}\n  counts   ${counts}\n  sample   ${sample}\n  problems ${problems}`;
}

async function inspectMain(argv: string[]): Promise<void> {
  if (wantsHelp(argv, INSPECT_USAGE)) return;
  const { values, positionals } = parseArgs({
    args: argv,
    options: { json: { type: "boolean", default: false }, "max-problems": { type: "string", default: "10" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new Error(`expected one PATH, got ${positionals.length}\n${INSPECT_USAGE}`);
  const reports = await inspectPath(positionals[0], { maxProblems: positiveInt(values["max-problems"]!, "--max-problems") });
  console.log(values.json ? JSON.stringify(reports, null, 2) : reports.map(formatReport).join("\n\n"));
}

async function vqaVocabMain(argv: string[]): Promise<void> {
  if (wantsHelp(argv, VOCAB_USAGE)) return;
  const { values, positionals } = parseArgs({
    args: argv,
    options: { out: { type: "string" }, "min-count": { type: "string", default: "9" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length === 0) throw new Error(`no annotation files given\n${VOCAB_USAGE}`);
  if (!values.out) throw new Error(`--out DIR is required\n${VOCAB_USAGE}`);
  const minCount = positiveInt(values["min-count"]!, "--min-count");
  const annotations: VqaAnnotation[] = positionals.flatMap((f) => readVqaAnnotations(f).records);
  const vocab = buildAnswerVocab(annotations, minCount);
  if (vocab.label2ans.length === 0) throw new Error(`no answer is given to ${minCount} or more of the ${annotations.length} questions; lower --min-count`);
  fs.mkdirSync(values.out, { recursive: true });
  writeAnswerVocab(values.out, vocab);
  const covered = annotations.filter((a) => Object.hasOwn(vocab.ans2label, normalizeVqaAnswer(a.multiple_choice_answer))).length;
  console.log(
    `${annotations.length} questions from ${positionals.length} files: ${vocab.label2ans.length} answers given to at least ${minCount} questions ` +
      `(the answer of ${((100 * covered) / annotations.length).toFixed(1)}% of the questions) -> ` +
      `${path.join(values.out, "trainval_ans2label.json")}, ${path.join(values.out, "trainval_label2ans.json")}`,
  );
}
