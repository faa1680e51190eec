// Held-out alignment of pre-training runs (src/tasks/pretrain_eval.ts): ITM accuracy on balanced test
// caption pairs and zero-shot retrieval, with chance levels. The fusion models (SemVLP, LXMERT-S) score
// every pair with the ITM head, so they are evaluated on the first 100 test images (--limit).
// Usage: node --import tsx experiments/heldout.ts [--split test] [--limit 100] [--mode single|two] [--out FILE.json] RUN_DIR...
// (--mode: SemVLP's scoring mode; default the mode the run pre-trained in)
// (--out: one run; its metrics are written there, atomically)
import { parseArgs } from "node:util";
import { renameSync, writeFileSync } from "node:fs";
import { evaluatePretraining } from "../src/tasks/pretrain_eval.ts";

const { values, positionals } = parseArgs({ options: { split: { type: "string", default: "test" }, limit: { type: "string" }, out: { type: "string" }, mode: { type: "string" } }, allowPositionals: true });
if (values.out && positionals.length !== 1) throw new Error("--out takes one run");
if (values.mode !== undefined && values.mode !== "single" && values.mode !== "two") throw new Error(`--mode: expected single or two, got "${values.mode}"`);
for (const run of positionals) {
  const m = await evaluatePretraining(run, { split: values.split, limit: values.limit ? Number(values.limit) : undefined, quiet: true, ...(values.mode ? { mode: values.mode as "single" | "two" } : {}) });
  const f = (k: string) => (m[k] === undefined ? "-" : m[k].toFixed(3));
  console.log(`${run}: ${m.images} images, ITM ${f("itm_acc")} (chance ${f("itm_chance")}), ITM_HS ${f("itm_hs_acc")} (k ${m.itm_hs_k ?? "-"}), IR R@1 ${f("zs_ir_r1")} R@10 ${f("zs_ir_r10")} (chance ${f("zs_chance_r1")} / ${f("zs_chance_r10")}), TR R@1 ${f("zs_tr_r1")} R@10 ${f("zs_tr_r10")}`);
  console.log(JSON.stringify(m));
  if (values.out) {
    writeFileSync(`${values.out}.tmp`, JSON.stringify(m, null, 1) + "\n");
    renameSync(`${values.out}.tmp`, values.out);
  }
}
