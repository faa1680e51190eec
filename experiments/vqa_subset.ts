// A world whose VQA splits keep only some question types, for diagnosing what a VQA fine-tune learns
// (README "What VQA fine-tuning learns"): every other folder and file of the world is linked, not copied.
//   node --import tsx experiments/vqa_subset.ts --world data/world-demo --types "is there a" --out DIR
// --types: comma-separated VQA question types (the annotations' question_type: "is there a", "how many",
// "what color is the", "what is the", "is the", "what is").
import { parseArgs } from "node:util";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, copyFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { writeJsonAtomic } from "../src/engine/serialize/atomic.ts";

const { values } = parseArgs({ options: { world: { type: "string" }, types: { type: "string" }, out: { type: "string" } }, strict: true });
if (!values.world || !values.types || !values.out) throw new Error('usage: vqa_subset.ts --world DIR --types "is there a,how many" --out DIR');
const src = resolve(values.world), out = resolve(values.out);
const types = new Set(values.types.split(",").map((t) => t.trim()).filter(Boolean));
if (!types.size) throw new Error("--types: no question type given");
if (!existsSync(join(src, "vqa", "v2_synth_train_annotations.json"))) throw new Error(`${src}: not a synthetic world (no vqa/v2_synth_train_annotations.json)`);

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "vqa"), { recursive: true });
mkdirSync(join(out, "lxmert"), { recursive: true });
for (const f of readdirSync(src)) if (f !== "vqa" && f !== "lxmert") symlinkSync(join(src, f), join(out, f));
for (const f of readdirSync(join(src, "lxmert"))) if (!f.startsWith("vqa_")) symlinkSync(join(src, "lxmert", f), join(out, "lxmert", f));
for (const f of ["trainval_ans2label.json", "trainval_label2ans.json"]) copyFileSync(join(src, "vqa", f), join(out, "vqa", f));

const read = (p: string) => JSON.parse(readFileSync(p, "utf8"));
for (const split of ["train", "val", "test", "test_comp"]) {
  const annFile = join(src, "vqa", `v2_synth_${split}_annotations.json`);
  if (!existsSync(annFile)) continue;
  const ann = read(annFile) as { annotations: { question_id: number; question_type: string }[] };
  ann.annotations = ann.annotations.filter((a) => types.has(a.question_type));
  const keep = new Set(ann.annotations.map((a) => a.question_id));
  writeJsonAtomic(join(out, "vqa", `v2_synth_${split}_annotations.json`), ann);
  const qs = read(join(src, "vqa", `v2_OpenEnded_synth_${split}_questions.json`)) as { questions: { question_id: number }[] };
  qs.questions = qs.questions.filter((q) => keep.has(q.question_id));
  writeJsonAtomic(join(out, "vqa", `v2_OpenEnded_synth_${split}_questions.json`), qs);
  const lx = (read(join(src, "lxmert", `vqa_${split}.json`)) as { question_id: number }[]).filter((q) => keep.has(q.question_id));
  writeJsonAtomic(join(out, "lxmert", `vqa_${split}.json`), lx);
  console.log(`${split}: ${keep.size} questions`);
}
console.log(`wrote ${out} (question types: ${[...types].join(", ")})`);
