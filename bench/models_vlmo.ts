/**
 * VLMo forward + backward benchmark against the same model in PyTorch, in one run (float32; for
 * bf16 autocast against torch.autocast, run `bench/models.ts --only vlmo-base --precision fp32,bf16`,
 * which times this model through vlmoBench below).
 *
 *   node --import tsx bench/models_vlmo.ts [--preset base] [--batch 8] [--text 40] [--iters 3] [--threads N]
 *
 * One fusion pass ([text; image], L/V-FFN below layer 10, VL-FFN above) with loss = mean(h^2),
 * then backward, per batch. Dropout and drop-path are off on both sides (the PyTorch model,
 * test/fixtures/vlmo_reference.py in its "fast" formulation, has none). PyTorch (Debian's
 * /usr/bin/python3) runs in a child process with the same thread count, its iterations
 * interleaved with ours; one warm-up pair is dropped. Prints per-iteration times, medians and the
 * ratio vlpkit / PyTorch (target <= 1.10).
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { randint, ones, randn, tidy, setNumThreads, getNumThreads, manualSeed } from "../src/engine/index.ts";
import { VLMoModel, vlmoConfig, type VLMoPreset, type VLMoConfig } from "../src/models/vlmo/index.ts";
import type { ModelBench } from "./models.ts";

const PYTHON = process.env.VLP_TORCH_PYTHON ?? "/usr/bin/python3";
const REF = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "test", "fixtures", "vlmo_reference.py");

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export interface VlmoBenchResult {
  preset: string;
  batch: number;
  textLen: number;
  imageTokens: number;
  threads: number;
  params: number;
  vlpkitMs: number[];
  torchMs: number[] | null;
  /** median(vlpkit) / median(PyTorch) */
  ratio: number | null;
  /** median over the interleaved pairs of vlpkit / PyTorch */
  pairedRatio: number | null;
}

/** The backbone config the benchmarks time: no task heads, dropout and drop-path off (the PyTorch model has none). */
function benchConfig(preset: VLMoPreset, textLen: number): VLMoConfig {
  return vlmoConfig(preset, { dropPathRate: 0, textDropout: 0, maxTextLen: Math.max(textLen, 40), heads: { mlm: false, itm: false, itc: false, itcVl: false, vqaLabels: 0, nlvr2: false } });
}

const PY_VLMO_SETUP = String.raw`
def setup(cfg):
    MODE["style"] = "fast"
    c = cfg["model"]
    m = VLMoRef(c).train()
    b, t = cfg["batch"], cfg["textLen"]
    ids = torch.randint(1, c["vocabSize"], (b, t))
    mask = torch.ones(b, t, dtype=torch.long)
    px = torch.randn(b, 3, c["imageSize"], c["imageSize"])
    def loss():
        return m.fusion(ids, mask, px)["hidden"].pow(2).mean()
    return loss, sum(p.numel() for p in m.parameters()), m
`;

/**
 * VLMo for bench/models.ts: one fusion forward + backward (loss mean(h^2)) per batch of
 * `shape.batch` pairs of 40 text tokens and a 224 px image (196 patches + [CLS]); the shape's
 * words/regions do not apply.
 */
export function vlmoBench(preset: VLMoPreset = "base", textLen = 40): ModelBench {
  return {
    name: `vlmo-${preset}`,
    prelude: fs.readFileSync(REF, "utf8"),
    python: PY_VLMO_SETUP,
    pyConfig: {},
    ts(s) {
      const cfg = benchConfig(preset, textLen);
      this.pyConfig = { model: cfg, textLen };
      const m = new VLMoModel(cfg).train();
      const ids = randint(1, cfg.vocabSize, [s.batch, textLen]).keep();
      const mask = ones([s.batch, textLen], { dtype: "int64" }).keep();
      const px = randn([s.batch, 3, cfg.imageSize, cfg.imageSize]).keep();
      return {
        loss: () => m.inferFusion(ids, mask, px).hidden.pow(2).mean(),
        reset: () => m.zeroGrad(),
        dispose: () => {
          for (const x of [ids, mask, px]) x.dispose();
          m.dispose();
        },
        parameters: { total: m.numParameters(), backboneWithEmbeddings: m.numParameters((n) => !n.startsWith("pooler.")) },
      };
    },
  };
}

/** A PyTorch worker doing one iteration per request, so both sides can be interleaved. */
async function startTorch(cfgJson: string, B: number, T: number, threads: number) {
  const child = spawn(PYTHON, [REF, "bench", cfgJson, String(B), String(T), "0", String(threads)], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, number>> => {
    const r = await lines.next();
    if (r.done) throw new Error(`PyTorch worker (${PYTHON}) exited`);
    return JSON.parse(r.value) as Record<string, number>;
  };
  await next(); // ready
  return {
    async step(): Promise<number> {
      child.stdin.write("step\n");
      return (await next()).ms;
    },
    stop(): void {
      child.stdin.end();
    },
  };
}

/**
 * Interleaves PyTorch and vlpkit iterations (PyTorch, vlpkit, PyTorch, ...) so that load from
 * other processes on the machine hits both alike; the first pair is a warm-up and dropped.
 */
export async function benchVlmo(opts: { preset?: VLMoPreset; batch?: number; textLen?: number; iters?: number; threads?: number } = {}): Promise<VlmoBenchResult> {
  const preset = opts.preset ?? "base";
  const B = opts.batch ?? 8;
  const T = opts.textLen ?? 40;
  const iters = opts.iters ?? 3;
  if (opts.threads) setNumThreads(opts.threads);
  const threads = getNumThreads();
  const cfg = benchConfig(preset, T);

  let torch: Awaited<ReturnType<typeof startTorch>> | null = null;
  try {
    torch = await startTorch(JSON.stringify(cfg), B, T, threads);
  } catch (e) {
    console.error(`no PyTorch side: ${(e as Error).message}`);
  }
  manualSeed(0);
  const model = new VLMoModel(cfg).eval();
  const ids = randint(1, cfg.vocabSize, [B, T]).keep();
  const mask = ones([B, T], { dtype: "int64" }).keep();
  const px = randn([B, 3, cfg.imageSize, cfg.imageSize]).keep();
  const ms: number[] = [];
  const tms: number[] = [];
  for (let i = 0; i < iters + 1; i++) {
    if (torch) tms.push(await torch.step());
    const t0 = performance.now();
    tidy(() => {
      const o = model.inferFusion(ids, mask, px);
      o.hidden.pow(2).mean().backward();
    });
    ms.push(performance.now() - t0);
    model.zeroGrad();
  }
  torch?.stop();
  const v = ms.slice(1);
  const t = torch ? tms.slice(1) : null;
  const result: VlmoBenchResult = {
    preset, batch: B, textLen: T, imageTokens: model.imageTokens, threads, params: model.numParameters(),
    vlpkitMs: v, torchMs: t,
    ratio: t ? median(v) / median(t) : null,
    pairedRatio: t ? median(v.map((x, i) => x / t[i])) : null,
  };
  for (const x of [ids, mask, px]) x.dispose();
  model.dispose();
  return result;
}

async function main(): Promise<void> {
  const res = await benchVlmo({
    preset: arg("preset", "base") as VLMoPreset,
    batch: Number(arg("batch", "8")),
    textLen: Number(arg("text", "40")),
    iters: Number(arg("iters", "3")),
    threads: Number(arg("threads", "0")) || undefined,
  });
  const f = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(", ");
  console.log(`VLMo-${res.preset} fusion forward+backward, batch ${res.batch}, ${res.textLen} text + ${res.imageTokens} image tokens, ${res.threads} threads, ${(res.params / 1e6).toFixed(1)}M parameters`);
  console.log(`  vlpkit : ${f(res.vlpkitMs)} ms (median ${median(res.vlpkitMs).toFixed(0)})`);
  if (res.torchMs) console.log(`  PyTorch: ${f(res.torchMs)} ms (median ${median(res.torchMs).toFixed(0)})`);
  console.log(`  ratio vlpkit/PyTorch: ${res.ratio === null ? "n/a" : res.ratio.toFixed(3)} of medians, ${res.pairedRatio === null ? "n/a" : res.pairedRatio.toFixed(3)} median of pairs (target <= 1.10)`);
  console.log(JSON.stringify(res));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
