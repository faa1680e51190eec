/**
 * Retrieval scoring cost: a dual encoder against a fusion encoder (the VLMo paper's argument), in one run.
 *
 *   node --import tsx bench/retrieval.ts [--preset small] [--images 1000] [--per-image 5] [--text 40]
 *        [--batch 128] [--fusion-pairs 2000] [--reps 3] [--threads N] [--no-torch]
 *
 * One VLMo model (random weights, dropout off) scores a test set of `images` x `images * per-image`
 * captions (1,000 x 5,000 = 5,000,000 pairs, the COCO 5K / Flickr30K 1K scale):
 *   dual encoder:   every image and every caption encoded once (image-only / text-only passes,
 *                   ITC projections), then one [images x captions] matrix product. Timed in full,
 *                   in vlpkit and in PyTorch 1.13 (test/fixtures/vlmo_reference.py, the same
 *                   weights and inputs; Debian's /usr/bin/python3), alternating `reps` times after one
 *                   unmeasured run each; medians are printed, and the
 *                   two score matrices are compared.
 *   fusion encoder: every pair through the fusion pass + ITM head. 5M passes do not fit in a CPU
 *                   benchmark: a random sample of `fusion-pairs` pairs is timed (in batches of
 *                   `batch` pairs) and the time per pair EXTRAPOLATED to every pair; the output says so.
 * Inputs are synthetic (random pixels, random token ids with random lengths); image decoding and
 * tokenisation are not timed on either side. Both engines use the same thread count.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { tensor, cat, tidy, noGrad, manualSeed, setNumThreads, getNumThreads, type Tensor } from "../src/engine/index.ts";
import { saveStateDict } from "../src/engine/checkpoint.ts";
import { VLMoModel, vlmoConfig, type VLMoPreset } from "../src/models/vlmo/index.ts";
import { itcScores } from "../src/models/vlmo/heads.ts";
import { Rng } from "../src/engine/rng.ts";
import { PY_LOAD_SAFETENSORS, PYTHON } from "../test/torchref.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const fmtS = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 1000).toFixed(2)} s`);
const human = (s: number) => (s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(1)} s`);

interface Inputs {
  pixelsU8: Uint8Array;
  ids: BigInt64Array;
  mask: BigInt64Array;
  pairs: BigInt64Array;
}

/** Random images (bytes), captions of 8..T tokens ([CLS] w... [SEP], zero padding) and a sample of pairs. */
function makeInputs(Ni: number, Nt: number, S: number, T: number, P: number, seed: number): Inputs {
  const rng = new Rng(seed);
  const pixelsU8 = new Uint8Array(Ni * 3 * S * S);
  for (let i = 0; i < pixelsU8.length; i++) pixelsU8[i] = rng.int(256);
  const ids = new BigInt64Array(Nt * T);
  const mask = new BigInt64Array(Nt * T);
  for (let t = 0; t < Nt; t++) {
    const len = Math.min(T, 8 + rng.int(T - 7));
    for (let j = 0; j < len; j++) {
      ids[t * T + j] = BigInt(j === 0 ? 101 : j === len - 1 ? 102 : 1000 + rng.int(29000));
      mask[t * T + j] = 1n;
    }
  }
  const pairs = new BigInt64Array(P * 2);
  for (let p = 0; p < P; p++) {
    pairs[2 * p] = BigInt(rng.int(Ni));
    pairs[2 * p + 1] = BigInt(rng.int(Nt));
  }
  return { pixelsU8, ids, mask, pairs };
}

async function startTorch(dir: string, threads: number) {
  const child = spawn(PYTHON, [path.join(HERE, "retrieval_torch.py"), dir, String(threads)], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, number>> => {
    const r = await lines.next();
    if (r.done) throw new Error(`PyTorch side (${PYTHON}) exited`);
    return JSON.parse(r.value) as Record<string, number>;
  };
  const ready = await next();
  return {
    ready,
    async run(cmd: "dual" | "fusion"): Promise<Record<string, number>> {
      child.stdin.write(`${cmd}\n`);
      return next();
    },
    stop(): void {
      child.stdin.end();
    },
  };
}

async function main(): Promise<void> {
  const preset = arg("preset", "small") as VLMoPreset;
  const Ni = Number(arg("images", "1000"));
  const perImage = Number(arg("per-image", "5"));
  const Nt = Ni * perImage;
  const T = Number(arg("text", "40"));
  const B = Number(arg("batch", "128"));
  const P = Number(arg("fusion-pairs", "2000"));
  const reps = Number(arg("reps", "3"));
  const threads = Number(arg("threads", "0"));
  const withTorch = !process.argv.includes("--no-torch");
  if (threads) setNumThreads(threads);
  const nThreads = getNumThreads();

  manualSeed(0);
  const cfg = vlmoConfig(preset, { dropPathRate: 0, textDropout: 0, maxTextLen: Math.max(T, 40), heads: { mlm: false, itm: true, itc: true, itcVl: false, vqaLabels: 0, nlvr2: false } });
  const model = new VLMoModel(cfg).eval();
  const S = cfg.imageSize;
  const inp = makeInputs(Ni, Nt, S, T, P, 1234);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vlp-bench-retrieval-"));
  saveStateDict(path.join(dir, "model.safetensors"), model);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model: cfg, images: Ni, captions: Nt, textLen: T, batch: B }));
  fs.writeFileSync(path.join(dir, "st.py"), PY_LOAD_SAFETENSORS);
  fs.writeFileSync(path.join(dir, "pixels.u8"), inp.pixelsU8);
  fs.writeFileSync(path.join(dir, "ids.i64"), new Uint8Array(inp.ids.buffer));
  fs.writeFileSync(path.join(dir, "mask.i64"), new Uint8Array(inp.mask.buffer));
  fs.writeFileSync(path.join(dir, "pairs.i64"), new Uint8Array(inp.pairs.buffer));

  const ids = tensor(inp.ids, { shape: [Nt, T], dtype: "int64" }).keep();
  const mask = tensor(inp.mask, { shape: [Nt, T], dtype: "int64" }).keep();
  const px = tensor(inp.pixelsU8, { shape: [Ni, 3, S, S] }).keep();
  const pixels = (a: number, n: number): Tensor => px.narrow(0, a, n).float().div(255).sub(0.5).div(0.5);

  /** The dual encoder: every image and caption once, one matrix product. */
  const dual = () => noGrad(() => {
    const t0 = performance.now();
    const img: Tensor[] = [];
    const txt: Tensor[] = [];
    for (let i = 0; i < Ni; i += B) tidy(() => void img.push(model.inferImage(pixels(i, Math.min(B, Ni - i)), { vlBranch: false }).itc!.keep()));
    const t1 = performance.now();
    for (let i = 0; i < Nt; i += B) tidy(() => void txt.push(model.inferText(ids.narrow(0, i, Math.min(B, Nt - i)), mask.narrow(0, i, Math.min(B, Nt - i)), { vlBranch: false }).itc!.keep()));
    const t2 = performance.now();
    const scores = tidy(() => new Float32Array(itcScores(cat(img), cat(txt)).data() as Float32Array));
    const t3 = performance.now();
    for (const t of [...img, ...txt]) t.dispose();
    return { ms: t3 - t0, images_ms: t1 - t0, captions_ms: t2 - t1, matmul_ms: t3 - t2, scores };
  });

  /** The fusion encoder on the sampled pairs, B pairs per pass. */
  const fusion = () => {
    const t0 = performance.now();
    noGrad(() => {
      for (let s = 0; s < P; s += B) {
        tidy(() => {
          const n = Math.min(B, P - s);
          const pi = tensor(Array.from({ length: n }, (_, k) => Number(inp.pairs[2 * (s + k)])), { dtype: "int64" });
          const ti = tensor(Array.from({ length: n }, (_, k) => Number(inp.pairs[2 * (s + k) + 1])), { dtype: "int64" });
          const pxAll = px.indexSelect(0, pi).float().div(255).sub(0.5).div(0.5);
          model.itmLogits(model.inferFusion(ids.indexSelect(0, ti), mask.indexSelect(0, ti), pxAll)).data();
        });
      }
    });
    return performance.now() - t0;
  };

  console.log(`VLMo-${preset} retrieval scoring: ${Ni.toLocaleString()} images x ${Nt.toLocaleString()} captions (${perImage} per image) = ${(Ni * Nt).toLocaleString()} pairs; ${S} px images (${model.imageTokens} tokens), captions of 8-${T} tokens; ${(model.numParameters() / 1e6).toFixed(1)}M parameters, random weights and inputs; batch ${B}; ${nThreads} thread(s)`);
  let torch: Awaited<ReturnType<typeof startTorch>> | null = null;
  if (withTorch) {
    try {
      torch = await startTorch(dir, nThreads);
    } catch (e) {
      console.log(`  (no PyTorch side: ${(e as Error).message})`);
    }
  }
  // warm-up (allocator, thread pools) on a slice, both sides excluded from the timings
  tidy(() => noGrad(() => void model.inferImage(pixels(0, Math.min(B, Ni)), { vlBranch: false })));

  const ours: number[] = [];
  const theirs: Record<string, number>[] = [];
  // one unmeasured full run on each side first (allocator, thread pool, caches)
  if (torch) await torch.run("dual");
  let last = dual();
  for (let r = 0; r < reps; r++) {
    if (torch) theirs.push(await torch.run("dual"));
    last = dual();
    ours.push(last.ms);
  }
  const v = median(ours);
  console.log(`\ndual encoder (${Ni.toLocaleString()} image passes + ${Nt.toLocaleString()} caption passes + one ${Ni}x${Nt} matrix product), measured in full, median of ${reps}:`);
  console.log(`  vlpkit   ${fmtS(v)}  (images ${fmtS(last.images_ms)}, captions ${fmtS(last.captions_ms)}, matmul ${last.matmul_ms.toFixed(1)} ms; runs ${ours.map(fmtS).join(", ")})`);
  let torchDual: number | null = null;
  if (torch && theirs.length) {
    torchDual = median(theirs.map((x) => x.ms));
    const t = theirs.at(-1)!;
    console.log(`  PyTorch  ${fmtS(torchDual)}  (images ${fmtS(t.images_ms)}, captions ${fmtS(t.captions_ms)}, matmul ${t.matmul_ms.toFixed(1)} ms; runs ${theirs.map((x) => fmtS(x.ms)).join(", ")}; torch ${torch.ready.torch})`);
    const ref = new Float32Array(fs.readFileSync(path.join(dir, "scores_torch.f32")).buffer.slice(0));
    let maxDiff = 0;
    let agree = 0;
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < ref.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(ref[i] - last.scores[i]));
      lo = Math.min(lo, ref[i]);
      hi = Math.max(hi, ref[i]);
    }
    if (ref.length !== last.scores.length) throw new Error(`PyTorch wrote ${ref.length} scores, expected ${last.scores.length}`);
    for (let t = 0; t < Nt; t++) {
      let a = 0, b = 0;
      for (let i = 1; i < Ni; i++) {
        if (last.scores[i * Nt + t] > last.scores[a * Nt + t]) a = i;
        if (ref[i * Nt + t] > ref[b * Nt + t]) b = i;
      }
      if (a === b) agree++;
    }
    console.log(`  ratio vlpkit / PyTorch ${(v / torchDual).toFixed(3)}; scores (PyTorch's in [${lo.toFixed(3)}, ${hi.toFixed(3)}]) agree: max |vlpkit - PyTorch| = ${maxDiff.toExponential(2)}, same top-1 image for ${((100 * agree) / Nt).toFixed(1)}% of captions`);
  }

  // warm-up on both sides
  if (torch) await torch.run("fusion");
  fusion();
  const fus: number[] = [];
  const tfus: number[] = [];
  for (let r = 0; r < reps; r++) {
    if (torch) tfus.push((await torch.run("fusion")).ms);
    fus.push(fusion());
  }
  const perPair = median(fus) / P;
  const total = (perPair * Ni * Nt) / 1000;
  console.log(`\nfusion encoder (one fusion pass + ITM head per pair; ${(Ni * Nt).toLocaleString()} pairs):`);
  console.log(`  vlpkit   measured ${P.toLocaleString()} random pairs in ${fmtS(median(fus))} (median of ${reps}) = ${(perPair * 1000).toFixed(0)} us/pair`);
  console.log(`           EXTRAPOLATED to all ${(Ni * Nt).toLocaleString()} pairs: ${total.toFixed(0)} s (${human(total)}) -- not run`);
  if (tfus.length) {
    const tp = median(tfus) / P;
    console.log(`  PyTorch  measured ${P.toLocaleString()} pairs in ${fmtS(median(tfus))} = ${(tp * 1000).toFixed(0)} us/pair, EXTRAPOLATED ${human((tp * Ni * Nt) / 1000)}; ratio vlpkit / PyTorch ${(perPair / tp).toFixed(3)}`);
  }
  console.log(`\nfusion / dual (vlpkit, same run): ${(total / (v / 1000)).toFixed(0)}x slower to score the whole test set with the fusion encoder`);
  if (torchDual !== null && tfus.length) console.log(`fusion / dual (PyTorch): ${(((median(tfus) / P) * Ni * Nt) / torchDual).toFixed(0)}x`);
  torch?.stop();
  for (const t of [ids, mask, px]) t.dispose();
  model.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
