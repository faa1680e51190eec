// What NLVR2 on the synthetic world measures: accuracy of NLVR2 fine-tuning runs per statement form
// (statementTemplate in src/data/synth/questions.ts: three forms need counting, two an object's
// presence, one a spatial relation), beside the accuracy of always answering each form's majority
// label on the same split (a text-only prior: the form and its label balance, no image).
// Usage: node --import tsx experiments/nlvr2_templates.ts [--split test] [--world data/world-demo] RUN_DIR...
import { parseArgs } from "node:util";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { evaluate } from "../src/tasks/nlvr2.ts";
import { readNlvr2Jsonl, readNlvr2Predictions } from "../src/data/formats/nlvr2.ts";
import { STATEMENT_TEMPLATES, statementTemplate, type StatementTemplate } from "../src/data/synth/questions.ts";

const { values, positionals: runs } = parseArgs({ options: { split: { type: "string", default: "test" }, world: { type: "string", default: "data/world-demo" } }, allowPositionals: true });
if (!runs.length) throw new Error("usage: experiments/nlvr2_templates.ts [--split test] [--world DIR] RUN_DIR...");
const file = join(values.world, "nlvr2", `${values.split}.json`);
const truth = new Map(readNlvr2Jsonl(file).records.map((r) => [r.identifier, { label: r.label === "True", form: statementTemplate(r.sentence) }]));

type Row = { n: number; right: number };
const tally = () => Object.fromEntries([...STATEMENT_TEMPLATES, "all"].map((k) => [k, { n: 0, right: 0 }])) as Record<StatementTemplate | "all", Row>;
const add = (t: Record<string, Row>, form: string, ok: boolean) => {
  for (const k of [form, "all"]) {
    t[k].n++;
    if (ok) t[k].right++;
  }
};

// the majority label of each form on this split, and what always answering it scores
const trues = tally();
for (const { label, form } of truth.values()) add(trues, form, label);
const majorityTrue = (form: StatementTemplate) => 2 * trues[form].right >= trues[form].n;
const prior = tally();
for (const { label, form } of truth.values()) add(prior, form, label === majorityTrue(form));

const tmp = mkdtempSync(join(tmpdir(), "nlvr2-forms-"));
const perRun: Record<string, Row>[] = [];
try {
  for (const [i, run] of runs.entries()) {
    const dump = join(tmp, `${i}.csv`);
    await evaluate({ checkpoint: run, split: values.split, world: values.world, dump, quiet: true });
    const t = tally();
    for (const { identifier, prediction } of readNlvr2Predictions(dump).records) {
      const g = truth.get(identifier);
      if (!g) throw new Error(`${run}: prediction for ${identifier}, which is not in ${file}`);
      add(t, g.form, prediction === g.label);
    }
    perRun.push(t);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const pct = (r: Row) => (r.n ? ((100 * r.right) / r.n).toFixed(1) : "-");
console.log(`NLVR2 accuracy per statement form, ${file} (percent)\n`);
console.log(`| form | n | true | majority label | ${runs.join(" | ")} |`);
console.log(`|---|---|---|---|${runs.map(() => "---").join("|")}|`);
for (const k of [...STATEMENT_TEMPLATES, "all"] as const) {
  console.log(`| ${k} | ${trues[k].n} | ${pct(trues[k])} | ${pct(prior[k])} | ${perRun.map((t) => pct(t[k])).join(" | ")} |`);
}
