// The tables of README "What VQA fine-tuning learns" from experiments/vqa.sh's runs:
//   node --import tsx experiments/vqa_table.ts [--out experiments/runs/vqa] [--table FILE]
// Percentages of the official VQA accuracy (NLVR2: accuracy) on test and test_comp, mean ± sample std
// over the runs of a row (their seeds), and the transfer (pre-trained − scratch) against twice the
// larger std. Rows whose runs are missing are left out.
import { parseArgs } from "node:util";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { meanStd, transferVerdict } from "./stats.ts";

const { values } = parseArgs({ options: { out: { type: "string", default: "experiments/runs/vqa" }, table: { type: "string" } }, strict: true });
const out = values.out!;
const read = (p: string): Record<string, number> | null => (existsSync(p) ? JSON.parse(readFileSync(p, "utf8")) : null);
const row = (cells: string[]) => `| ${cells.join(" | ")} |`;

/**
 * One metric of each seed's run `name-s<seed>` (fine-tunes: <name>-s<k>-<split>.json; the baseline:
 * metrics.json), or of the runs `a|b|...` (fine-tunes <a>-<split>.json, ...: one per pre-training run).
 */
function seeds(name: string, key: string, split: "test" | "test_comp"): number[] {
  if (name.includes("|")) return name.split("|").map((r) => read(join(out, `${r}-${split}.json`))?.[key]).filter((v): v is number => v !== undefined);
  const xs: number[] = [];
  for (let s = 0; s < 5; s++) {
    const m = name.startsWith("baseline") ? read(join(out, `${name}-s${s}`, "metrics.json")) : read(join(out, `${name}-s${s}-${split}.json`));
    const k = name.startsWith("baseline") && split === "test_comp" ? `${key}_test_comp` : key;
    if (m && m[k] !== undefined) xs.push(m[k]);
  }
  return xs;
}

const lines: string[] = [`Measured by \`experiments/vqa.sh\` on data/world-demo (= data/world-small); table by \`node --import tsx experiments/vqa_table.ts\`, ${new Date().toISOString().slice(0, 10)}.`, ""];
const TYPES: [string, string][] = [["vqa_acc", "VQA"], ["vqa_acc_yesno", "yes/no"], ["vqa_acc_number", "number"], ["vqa_acc_other", "other"]];
const VQA_ROWS: [string, string][] = [
  ["baseline-world-demo", "question-attention baseline (`vlp baseline vqa`)"],
  ["s4", "SemVLP-tiny pre-trained (S4, 4,000 steps)"],
  ["semvlp-scratch", "SemVLP-tiny from scratch"],
  ["m8", "MSP LXMERT-S pre-trained (M8, 9,000 sentence steps)"],
  ["msp-scratch", "MSP LXMERT-S from scratch"],
  ["s4-s0|s4b-s0", "SemVLP-tiny, S4's recipe: pre-training seeds 0, 1 (fine-tuning seed 0)"],
  ["m6-s0|m6b-s0", "MSP, recipes/msp-small.json as shipped (3,000 sentence steps): pre-training seeds 0, 1"],
];
lines.push("**VQA, 3,000 fine-tuning steps** (percent; test, then test_comp)", "");
lines.push(row(["model", "runs", ...TYPES.map(([, t]) => t), ...TYPES.map(([, t]) => `${t} comp`)]), row(Array(2 + 2 * TYPES.length).fill("---")));
for (const [name, title] of VQA_ROWS) {
  const n = seeds(name, "vqa_acc", "test").length;
  if (!n) continue;
  lines.push(row([title, String(n), ...TYPES.map(([k]) => meanStd(seeds(name, k, "test"))), ...TYPES.map(([k]) => meanStd(seeds(name, k, "test_comp")))]));
}
const verdict = (pre: string, scratch: string, key: string, split: "test" | "test_comp"): string => transferVerdict(seeds(pre, key, split), seeds(scratch, key, split));
lines.push("", "Transfer (pre-trained − scratch, points) against twice the larger seed std:", "");
lines.push(row(["method", "VQA", "VQA comp", "NLVR2", "NLVR2 comp"]), row(Array(5).fill("---")));
for (const [m, pre, scratch, npre, nscratch] of [["SemVLP", "s4", "semvlp-scratch", "nlvr2-s4", "nlvr2-semvlp-scratch"], ["MSP", "m8", "msp-scratch", "nlvr2-m8", "nlvr2-msp-scratch"]]) {
  lines.push(row([m, verdict(pre, scratch, "vqa_acc", "test"), verdict(pre, scratch, "vqa_acc", "test_comp"), verdict(npre, nscratch, "acc", "test"), verdict(npre, nscratch, "acc", "test_comp")]));
}
const NLVR2_ROWS: [string, string][] = [["baseline-nlvr2", "statement-attention baseline (`vlp baseline nlvr2`)"], ["nlvr2-s4", "SemVLP-tiny pre-trained (S4)"], ["nlvr2-semvlp-scratch", "SemVLP-tiny from scratch"], ["nlvr2-m8", "MSP pre-trained (M8)"], ["nlvr2-msp-scratch", "MSP from scratch"]];
/** The accuracy's key: the baseline's metrics.json names it nlvr2_acc, `vlp eval nlvr2` acc. */
const nlvr2Key = (name: string) => (name.startsWith("baseline") ? "nlvr2_acc" : "acc");
if (NLVR2_ROWS.some(([n]) => seeds(n, nlvr2Key(n), "test").length)) {
  lines.push("", "**NLVR2, 1,000 fine-tuning steps** (accuracy, percent)", "", row(["model", "runs", "test", "test_comp"]), row(Array(4).fill("---")));
  for (const [name, title] of NLVR2_ROWS) {
    const key = nlvr2Key(name);
    const n = seeds(name, key, "test").length;
    if (n) lines.push(row([title, String(n), meanStd(seeds(name, key, "test")), meanStd(seeds(name, key, "test_comp"))]));
  }
}

// the existence questions alone: one run each, the val soft score over steps and the test accuracy
const EXIST: [string, string][] = [
  ["exist-semvlp-scratch", "SemVLP-tiny from scratch, 1,000 steps"],
  ["exist-semvlp-scratch-3000", "SemVLP-tiny from scratch, 3,000 steps"],
  ["exist-semvlp-scratch-cls", "the same, [CLS] pooling"],
  ["exist-semvlp-scratch-init02", "the same, initializer range 0.2"],
  ["exist-semvlp-both", "SemVLP-tiny pre-trained (group A's semvlp-both, held-out ITM 0.747)"],
  ["exist-s4", "SemVLP-tiny pre-trained (S4, held-out ITM 0.854)"],
  ["exist-msp-scratch", "MSP LXMERT-S from scratch"],
  ["exist-m8", "MSP LXMERT-S pre-trained (M8, held-out ITM 0.877)"],
  ["exist-m8-lr1e-4", "M8, lr 1e-4"],
];
lines.push("", '**"Is there a ...?" questions alone** (4,300 train questions; val: soft score every 250 steps; test: official accuracy, always "no" scores 69.4)', "");
lines.push(row(["run", "val soft score at 250 / 500 / ... steps", "test", "test comp"]), row(Array(4).fill("---")));
const base = read(join(out, "baseline-exist", "metrics.json"));
if (base) lines.push(row(["question-attention baseline, 3,000 steps", "–", meanStd([base.vqa_acc]), meanStd([base.vqa_acc_test_comp])]));
for (const [name, title] of EXIST) {
  const f = join(out, name, "metrics.jsonl");
  if (!existsSync(f)) continue;
  const val = readFileSync(f, "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((r) => r.source === "val").map((r) => (100 * r.val_qa_score).toFixed(1));
  const t = read(join(out, `${name}-test.json`)), c = read(join(out, `${name}-test_comp.json`));
  lines.push(row([title, val.join(" / "), t ? meanStd([t.vqa_acc]) : "–", c ? meanStd([c.vqa_acc]) : "–"]));
}
const text = lines.join("\n") + "\n";
if (values.table) writeFileSync(values.table, text);
console.log(text);
