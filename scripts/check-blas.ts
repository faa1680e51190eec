// Setup check: which BLAS kernels libtorch runs, their float32 matmul speed through the addon as a
// fraction of this CPU's peak (cores × clock × FLOP/cycle from its flags), and, whenever a core type
// is in force (set by vlpkit or the user), a matmul checked against a naive reference.
// Exits 1 when matmul runs below VLP_BLAS_MIN_FRACTION (default 0.25) of peak, with advice.
import { randn, tensor, tidy, getNumThreads } from "../src/engine/index.ts";
import { native, blasConfig } from "../src/engine/native.ts";
import { cpuInfo, peakGflops, bestCoretype, coretypeRank } from "../src/engine/cpu.ts";

const cpu = cpuInfo();
const corename = native.blasCorename?.() ?? null;
const threads = getNumThreads();
const peak = peakGflops(cpu, threads);
const flags = cpu ? ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"].filter((f) => cpu.flags.has(f)).join(" ") : "?";
console.log(`[setup] CPU: ${cpu?.modelName ?? "unknown"} (${cpu?.vendor ?? "?"} family ${cpu?.family} model ${cpu?.model}; ${flags})`);
console.log(
  `[setup] BLAS kernels: ${corename ?? "not OpenBLAS (reference BLAS?)"}; OPENBLAS_CORETYPE ${blasConfig.coretype ?? "unset"} (${blasConfig.source}` +
    `${blasConfig.detected !== undefined ? `; OpenBLAS alone picks ${blasConfig.detected}` : ""}${blasConfig.best ? `; best for these flags ${blasConfig.best}` : ""}${blasConfig.note ? `; ${blasConfig.note}` : ""})`,
);

// correctness: a small odd-shaped matmul against a naive float64 one
if (process.env.OPENBLAS_CORETYPE || process.env.VLP_BLAS_VERIFY === "1") {
  const [m, k, n] = [37, 53, 29];
  const a = Array.from({ length: m * k }, (_, i) => Math.sin(i * 0.37) * 2);
  const b = Array.from({ length: k * n }, (_, i) => Math.cos(i * 0.11));
  const got = tidy(() => tensor(Float32Array.from(a), { shape: [m, k] }).mm(tensor(Float32Array.from(b), { shape: [k, n] })).toFloat32Array());
  let worst = 0;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      let mag = 0;
      for (let p = 0; p < k; p++) {
        s += Math.fround(a[i * k + p]) * Math.fround(b[p * n + j]);
        mag += Math.abs(a[i * k + p] * b[p * n + j]);
      }
      worst = Math.max(worst, Math.abs(got[i * n + j] - s) / (mag + 1e-30));
    }
  }
  if (!(worst < 1e-5)) {
    console.error(`[setup] ERROR: with OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE} matmul is WRONG (relative error ${worst.toExponential(2)}); unset it or set VLPKIT_AUTO_CORETYPE=0`);
    process.exit(1);
  }
  console.log(`[setup] matmul with ${process.env.OPENBLAS_CORETYPE ?? "the default"} kernels matches a naive reference (relative error ${worst.toExponential(1)})`);
}

const [M, K, N] = [1024, 768, 3072];
const a = randn([M, K]);
const b = randn([K, N]);
tidy(() => a.mm(b));
const times: number[] = [];
for (let i = 0; i < 8; i++) {
  const t0 = performance.now();
  tidy(() => a.mm(b));
  times.push((performance.now() - t0) / 1000);
}
times.sort((x, y) => x - y);
const gflops = (2 * M * K * N) / times[Math.floor(times.length / 2)] / 1e9;
const frac = peak.fp32 > 0 ? gflops / peak.fp32 : NaN;
const min = Number(process.env.VLP_BLAS_MIN_FRACTION ?? 0.25);
console.log(
  `[setup] float32 matmul ${M}x${K}x${N}: ${gflops.toFixed(0)} GFLOP/s on ${threads} threads = ${(frac * 100).toFixed(0)}% of peak ` +
    `${peak.fp32.toFixed(0)} GFLOP/s (${threads} × ${peak.ghz.toFixed(2)} GHz [${peak.clockSource}] × ${cpu ? peak.fp32 / threads / peak.ghz : "?"} FLOP/cycle)`,
);
if (Number.isFinite(frac) && frac < min) {
  const best = cpu ? bestCoretype(cpu.flags, cpu.vendor) : null;
  const advice =
    corename === null
      ? "libblas.so.3 is not OpenBLAS (the reference BLAS is ~40x slower): install libopenblas0-openmp and point the libblas.so.3 alternative at it (scripts/setup.sh does)"
      : best && coretypeRank(corename) < coretypeRank(best)
        ? `OpenBLAS runs its "${corename}" kernels on a CPU that supports "${best}": run with OPENBLAS_CORETYPE=${best} (vlpkit sets it itself unless OPENBLAS_CORETYPE or VLPKIT_AUTO_CORETYPE=0 is set)`
        : "the kernels fit the CPU: the machine is probably busy (rerun), or threads are capped (VLP_NUM_THREADS, OMP_NUM_THREADS); VLP_CPU_GHZ corrects the clock used for the peak";
  console.error(`[setup] ERROR: matmul runs at ${(frac * 100).toFixed(0)}% of this CPU's peak (below ${(min * 100).toFixed(0)}%). ${advice}`);
  process.exit(1);
}
console.log(`[setup] ok: BLAS at ${(frac * 100).toFixed(0)}% of peak`);
