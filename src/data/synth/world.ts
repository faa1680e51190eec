/**
 * Generating a whole synthetic world: images, detector features, text at three
 * granularities, questions, splits (with a held-out compositional split) and every
 * annotation file. Deterministic by seed: image i depends only on (seed, i).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { Obj36Writer } from "../formats/obj36.ts";
import { writeArrowTables } from "./arrowout.ts";
import { writeWdsShards } from "./wdsout.ts";
import { CATEGORIES, COLORS, OBJECT_VOCAB, type Category, type Color } from "./catalog.ts";
import {
  SPLITS, writeCaptions, writeJsonFile, writeNlvr2, writeQuestions, writeVisualGenome,
  type ImageEntry, type PairEntry, type Split,
} from "./files.ts";
import { hardNegativePools } from "./hardneg.ts";
import { makeRange, type Item, type ItemContext } from "./item.ts";
import { pairStatement, type StatementTemplate } from "./questions.ts";
import { Rng } from "../../engine/rng.ts";
import { comboKey, type Combo } from "./scene.ts";

export interface WorldOptions {
  images: number;
  seed: number;
  out: string;
  /** Image side in pixels (default 128). */
  size?: number;
  /** Region feature dimension computed from pixels (default 64). */
  featDim?: number;
  /**
   * Values of the detector's class/attribute code appended to each region's features (default 0:
   * pixel features only; see features.ts detectorCode). The obj36 features are featDim + codeDim wide.
   */
  codeDim?: number;
  /** Detector boxes per image (default 36). */
  boxes?: number;
  /** Neighbours per hard-negative pool (default 20). */
  hardPool?: number;
  /** Probability that an object repeats the category of one already in its scene (default 0; SceneOptions.repeat). */
  repeat?: number;
  /** Number of held-out (colour, category) combinations (default 6). */
  heldOutCombos?: number;
  /** Also write the ViLT Arrow tables (default false: they hold a second copy of every image). */
  arrow?: boolean;
  /** Also write WebDataset shards of the train, val and test images (wds/<split>/*.tar; default false: a second copy of every image). */
  wds?: boolean;
  /** Worker threads (default: min(2, cores) for 200+ images, else 0 = in process). Output is identical either way. */
  workers?: number;
  onProgress?: (done: number) => void;
}

export interface WorldSummary {
  images: number;
  splits: Record<Split, number>;
  heldOut: string[];
  questions: { vqa: number; gqa: number; nlvr2: number };
  /** Wall-clock seconds per phase: images (pixels, features, text), annotations, hardneg, arrow, wds. */
  phases: Record<string, number>;
}

/** Held-out combinations (distinct categories) and the split of each image index. */
export function planWorld(seed: number, n: number, nHeldOut: number): { heldOut: Combo[]; splits: Split[] } {
  const rng = Rng.derive(seed, "plan");
  const heldOut: Combo[] = rng.sample(CATEGORIES, nHeldOut).map((c): [Color, Category] => [rng.pick(COLORS), c]);
  const frac = (f: number) => (n >= 10 ? Math.max(1, Math.round(n * f)) : 0);
  const counts: [Split, number][] = [["test_comp", heldOut.length > 0 ? frac(0.04) : 0], ["val", frac(0.05)], ["test", frac(0.05)]];
  const order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
  const splits: Split[] = new Array(n).fill("train");
  let at = 0;
  for (const [split, k] of counts) for (let j = 0; j < k; j++) splits[order[at++]] = split;
  return { heldOut, splits };
}

function makePairs(seed: number, entries: ImageEntry[], heldOut: Set<string>): PairEntry[] {
  const pairs: PairEntry[] = [];
  for (const split of SPLITS) {
    const sel = entries.filter((e) => e.split === split);
    if (sel.length < 2) continue;
    const rng = Rng.derive(seed, "nlvr2", split);
    const held = split === "test_comp" ? new Set<string>() : heldOut;
    /** Per statement form: true labels minus false labels so far in this split. */
    const balance = new Map<StatementTemplate, number>();
    for (let p = 0; p < sel.length; p++) {
      const left = rng.pick(sel);
      let right = rng.pick(sel);
      while (right === left) right = rng.pick(sel);
      const seen = new Set<string>();
      for (let k = 0, tries = 0; k < 2 && tries < 60; tries++) {
        const st = pairStatement(left.scene, right.scene, rng, held);
        // each form's labels balanced within the split: a statement is taken when its label is the
        // one its form has had less of so far (or either on a tie), so that no form's label can be
        // guessed from its wording (unbalanced, "Exactly one image contains ..." was true 98% of the
        // time and a text-only prior scored 68%: experiments/nlvr2_templates.ts)
        if (!st || seen.has(st.sentence)) continue;
        const lead = balance.get(st.template) ?? 0;
        if ((st.label && lead > 0) || (!st.label && lead < 0)) continue;
        balance.set(st.template, lead + (st.label ? 1 : -1));
        seen.add(st.sentence);
        pairs.push({ identifier: `${split}-${p}-0-${k}`, split, left, right, sentence: st.sentence, label: st.label });
        k++;
      }
    }
  }
  return pairs;
}

/** Make all items in worker threads, handing them to `accept` in index order. */
async function makeInWorkers(ctx: ItemContext, n: number, count: number, accept: (item: Item) => void): Promise<void> {
  const batch = 32;
  // Workers load TypeScript through tsx's API, whichever way this process registered it.
  const boot = `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))})
    .then((tsx) => { tsx.register(); return import(${JSON.stringify(new URL("./worker.ts", import.meta.url).href)}); })`;
  const pool = Array.from({ length: count }, () => new Worker(boot, { eval: true, workerData: ctx }));
  const ready = new Map<number, Item[]>();
  let next = 0;
  let done = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const dispatch = (w: Worker): void => {
        if (next >= n) return;
        w.postMessage({ start: next, end: Math.min(n, next + batch) });
        next += batch;
      };
      for (const w of pool) {
        w.on("message", (msg: { items?: Item[]; error?: string }) => {
          if (msg.error || !msg.items) return reject(new Error(`synth worker: ${msg.error}`));
          ready.set(msg.items[0].entry.index, msg.items);
          for (let items = ready.get(done); items; items = ready.get(done)) {
            ready.delete(done);
            items.forEach(accept);
            done += items.length;
          }
          if (done >= n) resolve();
          else dispatch(w);
        });
        w.on("error", (e) => reject(new Error(`synth worker: ${e.message}`)));
        w.on("exit", (code) => done < n && reject(new Error(`synth worker exited with code ${code} before finishing`)));
        dispatch(w);
        dispatch(w); // two batches in flight per worker
      }
    });
  } finally {
    await Promise.all(pool.map((w) => w.terminate()));
  }
}

export async function generateWorld(opts: WorldOptions): Promise<WorldSummary> {
  const { images: n, seed, out } = opts;
  const size = opts.size ?? 128;
  const featDim = opts.featDim ?? 64;
  const codeDim = opts.codeDim ?? 0;
  if (!Number.isInteger(codeDim) || codeDim < 0) throw new Error(`synth: codeDim must be a non-negative integer, got ${codeDim}`);
  const boxes = opts.boxes ?? 36;
  if (!Number.isInteger(n) || n < 1) throw new Error(`synth: --images must be a positive integer, got ${n}`);
  if (!Number.isInteger(size) || size < 48) throw new Error(`synth: --size must be an integer >= 48, got ${size}`);
  if (!Number.isInteger(featDim) || featDim < 1) throw new Error(`synth: featDim must be a positive integer, got ${featDim}`);
  if (!Number.isInteger(boxes) || boxes < 1) throw new Error(`synth: boxes must be a positive integer, got ${boxes}`);
  const repeat = opts.repeat ?? 0;
  if (!(repeat >= 0 && repeat < 1)) throw new Error(`synth: repeat must be in [0, 1), got ${repeat}`);
  const { heldOut, splits } = planWorld(seed, n, opts.heldOutCombos ?? 6);
  const heldSet = new Set(heldOut.map(([c, k]) => comboKey(c, k)));
  for (const dir of ["images", "features"]) mkdirSync(join(out, dir), { recursive: true });
  const ctx: ItemContext = { seed, out, size, featDim, codeDim, boxes, heldOut, splits, repeat };
  const writer = new Obj36Writer(join(out, "features/obj36.tsv"));
  const entries: ImageEntry[] = [];
  const accept = (item: Item): void => {
    writer.write(item.record);
    entries.push(item.entry);
    opts.onProgress?.(entries.length);
  };
  const workers = opts.workers ?? (n >= 200 ? Math.min(2, availableParallelism()) : 0);
  const phases: Record<string, number> = {};
  let t0 = performance.now();
  const phase = (name: string): void => {
    const t = performance.now();
    phases[name] = Math.round(t - t0) / 1000;
    t0 = t;
  };
  try {
    if (workers > 0) await makeInWorkers(ctx, n, workers, accept);
    else for (let i = 0; i < n; i += 64) (await makeRange(ctx, i, Math.min(n, i + 64))).forEach(accept);
  } finally {
    await writer.close();
  }
  phase("images");
  writeCaptions(out, entries);
  const vqaVocab = writeQuestions(out, entries);
  writeVisualGenome(out, entries);
  const pairs = makePairs(seed, entries, heldSet);
  writeNlvr2(out, pairs);
  phase("annotations");
  const train = entries.filter((e) => e.split === "train");
  const pools = hardNegativePools(train.map((e) => ({ categories: e.objects.map((o) => o.category), colors: e.objects.map((o) => o.color) })), opts.hardPool ?? 20);
  writeJsonFile(out, "hardneg/hard_negative.json", { train_image_list: train.map((e) => e.imgId), train_hard_pool: pools });
  phase("hardneg");
  if (opts.arrow) {
    await writeArrowTables(out, entries, pairs, vqaVocab);
    phase("arrow");
  }
  if (opts.wds) {
    await writeWdsShards(out, entries);
    phase("wds");
  }
  const count = (s: Split) => entries.filter((e) => e.split === s).length;
  const summary: WorldSummary = {
    images: n,
    splits: { train: count("train"), val: count("val"), test: count("test"), test_comp: count("test_comp") },
    heldOut: [...heldSet],
    questions: { vqa: entries.reduce((a, e) => a + e.vqa.length, 0), gqa: entries.reduce((a, e) => a + e.gqa.length, 0), nlvr2: pairs.length },
    phases,
  };
  const { phases: _timing, ...stable } = summary; // meta.json stays byte-identical across runs
  writeFileSync(join(out, "meta.json"), JSON.stringify({
    ...stable, seed, size, featDim, codeDim, boxes, ...(repeat > 0 ? { repeat } : {}), objectVocab: OBJECT_VOCAB,
    imageSplits: Object.fromEntries(entries.map((e) => [e.imgId, e.split])),
  }, null, 1));
  return summary;
}
