// Prints, for each run directory given, its held-out evaluations over steps (val ITM, ITC, MLM, object
// accuracy) next to the training batches' ITM / ITC accuracy around the same step: the learning curves
// of the alignment experiments (experiments/alignment.sh, README "Pre-training that learns").
// Usage: node --import tsx experiments/curves.ts RUN_DIR...
import { readFileSync } from "node:fs";
import { join } from "node:path";

const KEYS = ["itm_acc", "itc_i2t_acc", "itc_t2i_acc", "mlm_acc", "obj_acc", "qa_acc", "text_mlm_acc", "mim_loss"];
for (const dir of process.argv.slice(2)) {
  const rows = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number | string>);
  const train = rows.filter((r) => r.source !== "val");
  console.log(`== ${dir}: ${train.length} steps`);
  for (const v of rows.filter((r) => r.source === "val")) {
    const s = v.step as number;
    const win = train.filter((t) => (t.step as number) > s - 50 && (t.step as number) <= s);
    const mean = (k: string) => {
      const xs = win.map((t) => t[k]).filter((x): x is number => typeof x === "number");
      return xs.length ? (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(3) : "-";
    };
    const val = KEYS.filter((k) => typeof v[`val_${k}`] === "number").map((k) => `${k}=${(v[`val_${k}`] as number).toFixed(3)}`);
    console.log(`${v.stage} step ${s}: val ${val.join(" ")} | train (last 50) itm_acc=${mean("itm_acc")} itm_loss=${mean("itm_loss")} itc_i2t_acc=${mean("itc_i2t_acc")}`);
  }
}
