// Training runs for the dashboard: every folder under the runs root (up to 3 levels deep) that
// holds a metrics.jsonl. A request names a run by its relative name ("demo/vlmo-tiny"), and the
// name is looked up in the list found by scanning: no path from a request is ever joined.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import { parseMetrics } from "../train/plot.ts";

export interface RunSummary {
  name: string;
  method: string | null;
  kind: "pretrain" | "finetune" | null;
  steps: number;
  stages: string[];
  modified: number;
}

export interface RunMetrics {
  name: string;
  method: string | null;
  /** Training rows (downsampled to at most maxPoints per source), then held-out ("val") rows. */
  rows: Record<string, number | string>[];
  /** First step of each stage, in order. */
  stages: { name: string; start: number; end: number }[];
  /** The sources / modes of the training rows (SemVLP: single, two; MSP/VLMo: the stage's source). */
  sources: string[];
  /** Metric keys (numbers) present in the rows. */
  metrics: string[];
  totalRows: number;
}

const NAME_PART = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const NOT_METRICS = new Set(["step", "stage", "stage_step", "source", "time"]);

function readMeta(dir: string): { method: string | null; kind: RunSummary["kind"] } {
  for (const [f, kind] of [["finetune.json", "finetune"], ["recipe.json", "pretrain"]] as const) {
    const p = join(dir, f);
    if (!existsSync(p)) continue;
    try {
      const j = JSON.parse(readFileSync(p, "utf8")) as { method?: string };
      return { method: typeof j.method === "string" ? j.method : null, kind };
    } catch {
      return { method: null, kind };
    }
  }
  return { method: null, kind: null };
}

export class RunsFolder {
  readonly root: string;
  constructor(root: string, readonly maxDepth = 3) {
    this.root = resolve(root);
  }

  /** Run directories (relative names, "/"-separated) under the root, newest first. */
  list(): RunSummary[] {
    const out: RunSummary[] = [];
    const walk = (dir: string, depth: number) => {
      let entries: string[];
      try {
        entries = readdirSync(dir);
      } catch {
        return;
      }
      if (entries.includes("metrics.jsonl") && dir !== this.root) {
        const file = join(dir, "metrics.jsonl");
        const text = readFileSync(file, "utf8");
        const lines = text.split("\n").filter((l) => l.trim() && !l.includes('"source":"val"'));
        const stages: string[] = [];
        for (const l of lines) {
          const m = /"stage":"([^"]*)"/.exec(l);
          if (m && stages[stages.length - 1] !== m[1]) stages.push(m[1]);
        }
        out.push({ name: relative(this.root, dir).split(sep).join("/"), ...readMeta(dir), steps: lines.length, stages, modified: statSync(file).mtimeMs });
      }
      if (depth >= this.maxDepth) return;
      for (const e of entries.sort()) {
        if (!NAME_PART.test(e) || /^ckpt-\d+$/.test(e)) continue;
        const p = join(dir, e);
        try {
          if (statSync(p).isDirectory()) walk(p, depth + 1);
        } catch {
          // vanished between readdir and stat
        }
      }
    };
    walk(this.root, 0);
    return out.sort((a, b) => b.modified - a.modified);
  }

  /** The curves of one run, found by name among the listed runs (undefined when there is none). */
  metrics(name: string, maxPoints = 2000): RunMetrics | undefined {
    if (!name.split("/").every((p) => NAME_PART.test(p))) return undefined;
    const found = this.list().find((r) => r.name === name);
    if (!found) return undefined;
    const dir = join(this.root, ...found.name.split("/"));
    const all = parseMetrics(readFileSync(join(dir, "metrics.jsonl"), "utf8")) as unknown as Record<string, number | string>[];
    const train = all.filter((r) => r.source !== "val");
    const val = all.filter((r) => r.source === "val");
    const stages: RunMetrics["stages"] = [];
    for (const r of train) {
      const last = stages[stages.length - 1];
      if (!last || last.name !== r.stage) stages.push({ name: String(r.stage), start: Number(r.step), end: Number(r.step) });
      else last.end = Number(r.step);
    }
    const sources = [...new Set(train.map((r) => String(r.source)))];
    // downsample long runs: every n-th row of each source, keeping each stage's first and last rows
    const stride = Math.max(1, Math.ceil(train.length / maxPoints));
    const edges = new Set<number>(stages.flatMap((s) => [s.start, s.end]));
    const seen = new Map<string, number>();
    const kept = train.filter((r) => {
      const n = seen.get(String(r.source)) ?? 0;
      seen.set(String(r.source), n + 1);
      return n % stride === 0 || edges.has(Number(r.step));
    });
    const metrics = [...new Set(all.flatMap((r) => Object.keys(r).filter((k) => !NOT_METRICS.has(k) && typeof r[k] === "number")))];
    return { name: found.name, method: found.method, rows: [...kept, ...val], stages, sources, metrics, totalRows: all.length };
  }
}
