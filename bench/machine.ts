// What the benchmarks print about the machine, shared by bench/engine.ts and bench/models.ts: the
// CPU model and its bf16 features (AVX512-BF16, AMX), the BLAS kernels in use, the peak GFLOP/s of
// the cores the benchmark uses (src/engine/cpu.ts: cores x clock x FLOP/cycle from the CPU's flags)
// and the load average, so that a figure can be read as a fraction of what the CPU can do.
import os from "node:os";
import { native, blasConfig } from "../src/engine/native.ts";
import { cpuInfo, peakGflops } from "../src/engine/cpu.ts";

export type Peak = ReturnType<typeof peakGflops>;

/** Peak GFLOP/s (float32 and bfloat16) of `threads` cores of this CPU. */
export function machinePeak(threads: number): Peak {
  return peakGflops(cpuInfo(), threads);
}

/** A fraction as a percentage ("?" when the peak is unknown). */
export const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(0)}%` : "?");

/** The header lines (without a leading "# "): CPU, its bf16 features, BLAS kernels, peak. */
export function machineLines(threads: number, peak: Peak = machinePeak(threads)): string[] {
  const cpu = cpuInfo();
  const has = (f: string) => (cpu?.flags.has(f) ? "yes" : "no");
  return [
    `CPU: ${cpu?.modelName ?? "?"} (${cpu?.vendor} family ${cpu?.family} model ${cpu?.model}); AVX-512 ${has("avx512f")}, AVX512-BF16 ${has("avx512_bf16")}, AMX-BF16 ${has("amx_bf16")}`,
    `BLAS: OpenBLAS corename ${native.blasCorename?.() ?? "?"}; OPENBLAS_CORETYPE ${process.env.OPENBLAS_CORETYPE ?? "unset"} (${blasConfig.source}; inherited by PyTorch)`,
    `peak (${threads} cores x ${peak.ghz.toFixed(2)} GHz, ${peak.clockSource}): float32 ${peak.fp32.toFixed(0)} GFLOP/s, bfloat16 ${peak.bf16.toFixed(0)} GFLOP/s`,
  ];
}

/** "load average 6.6 6.7 7.9 on 2 cores": other processes slow both engines alike, but make wall times noisy. */
export function loadLine(): string {
  return `load average ${os.loadavg().map((x) => x.toFixed(1)).join(" ")} on ${os.cpus().length} cores`;
}
