// The CPU, its peak arithmetic speed and the OpenBLAS kernels it should run. Nothing here loads
// libtorch: native.ts calls configureBlas() before the addon (and so libblas) is loaded, because
// OpenBLAS reads OPENBLAS_CORETYPE once, when it loads.
//
// Why: OpenBLAS 0.3.21 (Debian 12) picks its kernels from the CPU's family/model. A CPU it does not
// know (e.g. Intel Xeon family 6 model 207, with AVX-512 and AMX) gets the generic "Prescott"
// kernels: float32 matmul at ~15 GFLOP/s instead of 115-146 with OPENBLAS_CORETYPE=SkylakeX.
import { readFileSync, existsSync, mkdirSync, writeFileSync, renameSync, realpathSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join, dirname } from "node:path";
import { spawnSync } from "node:child_process";

export interface CpuInfo {
  vendor: string; // "GenuineIntel", "AuthenticAMD", ...
  family: number;
  model: number;
  modelName: string;
  flags: Set<string>;
  /** Nominal clock in MHz from /proc/cpuinfo (0 if unknown). */
  mhz: number;
}

/** Parses the first processor block of /proc/cpuinfo text. */
export function parseCpuinfo(text: string): CpuInfo {
  const field = (k: string): string => {
    const m = new RegExp(`^${k}\\s*:\\s*(.*)$`, "m").exec(text);
    return m ? m[1].trim() : "";
  };
  return {
    vendor: field("vendor_id"),
    family: Number(field("cpu family")) || 0,
    model: Number(field("model")) || 0,
    modelName: field("model name"),
    flags: new Set(field("flags").split(/\s+/).filter(Boolean)),
    mhz: Number(field("cpu MHz")) || 0,
  };
}

let cached: CpuInfo | null | undefined;
/** This machine's CPU (null where /proc/cpuinfo is absent: not Linux, or not x86). */
export function cpuInfo(): CpuInfo | null {
  if (cached === undefined) {
    try {
      cached = parseCpuinfo(readFileSync("/proc/cpuinfo", "utf8"));
    } catch {
      cached = null;
    }
  }
  return cached;
}

// OpenBLAS core types for float32 GEMM, weakest to strongest. Cooperlake is SkylakeX plus bf16
// kernels (same sgemm); Zen uses the Haswell kernels.
const CORE_RANK: Record<string, number> = {
  Katmai: 0, Coppermine: 0, Northwood: 0, Prescott: 0, Banias: 0, Atom: 0, Core2: 0, Penryn: 0, Dunnington: 0, Nehalem: 0,
  Athlon: 0, Opteron: 0, "Opteron(SSE3)": 0, Barcelona: 0, Bobcat: 0, Nano: 0,
  Sandybridge: 1, Bulldozer: 1, Piledriver: 1, Steamroller: 1, Excavator: 1,
  Haswell: 2, Zen: 2,
  SkylakeX: 3, Cooperlake: 3, SapphireRapids: 3,
};
/** Rank of an OpenBLAS core name for float32 GEMM (0: generic SSE kernels; unknown names rank 0). */
export const coretypeRank = (name: string | null | undefined): number => (name ? (CORE_RANK[name] ?? 0) : 0);

/**
 * The best OpenBLAS 0.3.21 core type the CPU's flags support (null: nothing better than generic).
 * AVX-512 (F, CD, BW, DQ, VL): SkylakeX, or Cooperlake when AVX512-BF16 is there too; AVX2 + FMA:
 * Zen on AMD, Haswell otherwise; AVX: Sandybridge.
 */
export function bestCoretype(flags: Iterable<string>, vendor = ""): string | null {
  const f = new Set(flags);
  const all = (...names: string[]) => names.every((n) => f.has(n));
  if (all("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma")) return f.has("avx512_bf16") ? "Cooperlake" : "SkylakeX";
  if (all("avx2", "fma")) return vendor === "AuthenticAMD" ? "Zen" : "Haswell";
  if (f.has("avx")) return "Sandybridge";
  return null;
}

/**
 * The core type to force, given what OpenBLAS picks by itself (`detected`, its corename without
 * OPENBLAS_CORETYPE) and what the flags allow: `best` when the library's own choice is weaker, else null.
 */
export function coretypeToForce(flags: Iterable<string>, vendor: string, detected: string | null): string | null {
  const best = bestCoretype(flags, vendor);
  if (!best || detected === null) return null; // not OpenBLAS, or nothing to gain
  return coretypeRank(detected) < coretypeRank(best) ? best : null;
}

/** float32 FLOP per cycle per core from the flags: FMA width × 2 units (Zen 4 runs AVX-512 on 2×256-bit datapaths). */
export function fp32FlopsPerCycle(cpu: Pick<CpuInfo, "flags" | "vendor" | "family" | "model">): number {
  const f = cpu.flags;
  const amd = cpu.vendor === "AuthenticAMD";
  if (f.has("avx512f")) return amd ? 32 : 64; // Intel Xeon: 2 AVX-512 FMA units; AMD Zen 4: 2×256-bit
  // AVX2: 2×256-bit FMA (Haswell and later, Zen 2 and later); Zen/Zen+ (family 0x17 before model 0x30): 2×128-bit
  if (f.has("avx2") && f.has("fma")) return amd && cpu.family === 0x17 && cpu.model < 0x30 ? 16 : 32;
  if (f.has("avx")) return 16;
  return 8;
}

/** bfloat16 FLOP per cycle per core: AMX tiles (1024), AVX512-BF16 dot products (2× float32), else float32's. */
export function bf16FlopsPerCycle(cpu: Pick<CpuInfo, "flags" | "vendor" | "family" | "model">): number {
  if (cpu.flags.has("amx_bf16")) return 1024;
  if (cpu.flags.has("avx512_bf16")) return 2 * fp32FlopsPerCycle(cpu);
  return fp32FlopsPerCycle(cpu);
}

/** The clock used for peaks, in GHz: VLP_CPU_GHZ, else cpufreq's maximum, else /proc/cpuinfo's nominal MHz (VMs: the base clock; turbo runs faster). */
export function clockGHz(cpu: CpuInfo | null): { ghz: number; source: string } {
  const env = Number(process.env.VLP_CPU_GHZ);
  if (env > 0) return { ghz: env, source: "VLP_CPU_GHZ" };
  try {
    const khz = Number(readFileSync("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "utf8"));
    if (khz > 0) return { ghz: khz / 1e6, source: "cpufreq max" };
  } catch {
    /* no cpufreq in most VMs */
  }
  return { ghz: (cpu?.mhz ?? 0) / 1000, source: "/proc/cpuinfo MHz (nominal; turbo can exceed it)" };
}

/** Peak GFLOP/s of `cores` cores in float32 and bfloat16. */
export function peakGflops(cpu: CpuInfo | null, cores: number): { fp32: number; bf16: number; ghz: number; clockSource: string } {
  const { ghz, source } = clockGHz(cpu);
  if (!cpu) return { fp32: 0, bf16: 0, ghz, clockSource: source };
  return { fp32: cores * ghz * fp32FlopsPerCycle(cpu), bf16: cores * ghz * bf16FlopsPerCycle(cpu), ghz, clockSource: source };
}

// ---- the start-up decision ----------------------------------------------------------------------

export interface BlasConfig {
  /** What OPENBLAS_CORETYPE is after configureBlas (undefined: unset). */
  coretype?: string;
  /** Why: "user" (set before start), "forced" (set here), "default" (OpenBLAS's own choice is already the best), "skipped" (reason in note). */
  source: "user" | "forced" | "default" | "skipped";
  /** OpenBLAS's own choice without OPENBLAS_CORETYPE, from the cached probe. */
  detected?: string | null;
  best?: string | null;
  note?: string;
}

/** The libblas.so.3 libtorch will load (Debian's alternatives link resolved), or null. */
export function libblasPath(): string | null {
  for (const d of ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]) {
    const p = join(d, "libblas.so.3");
    if (existsSync(p)) {
      try {
        return realpathSync(p);
      } catch {
        return p;
      }
    }
  }
  return null;
}

function cacheFile(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "vlpkit", "blas-coretype.json");
}

/** Runs the addon in a child process with OPENBLAS_CORETYPE = `force` (or unset) and returns its corename (undefined on failure). */
export function probeCorename(addonPath: string, force?: string): string | null | undefined {
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: "1" };
  delete env.OPENBLAS_CORETYPE;
  if (force) env.OPENBLAS_CORETYPE = force;
  const script = `const a = require(${JSON.stringify(addonPath)}); if (typeof a.blasCorename !== "function") process.exit(3); process.stdout.write(JSON.stringify(a.blasCorename()));`;
  const r = spawnSync(process.execPath, ["-e", script], { env, encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) return undefined;
  try {
    return JSON.parse(r.stdout) as string | null;
  } catch {
    return undefined;
  }
}

interface CacheEntry { detected: string | null; force: string | null }

/**
 * Sets OPENBLAS_CORETYPE before libtorch loads when OpenBLAS would run weaker kernels than the CPU
 * supports. The user's OPENBLAS_CORETYPE wins; VLPKIT_AUTO_CORETYPE=0 turns this off. OpenBLAS's own
 * choice comes from a probe (a child process loading the addon: once per CPU and libblas, then
 * cached under ~/.cache/vlpkit); the forced core type is validated by a second probe (the library
 * must report it back).
 */
export function configureBlas(addonPath: string): BlasConfig {
  if (process.env.OPENBLAS_CORETYPE) return { coretype: process.env.OPENBLAS_CORETYPE, source: "user" };
  if (process.env.VLPKIT_AUTO_CORETYPE === "0") return { source: "skipped", note: "VLPKIT_AUTO_CORETYPE=0" };
  const cpu = cpuInfo();
  if (!cpu || cpu.flags.size === 0) return { source: "skipped", note: "no /proc/cpuinfo flags" };
  const best = bestCoretype(cpu.flags, cpu.vendor);
  const blas = libblasPath();
  if (!best || !blas || !existsSync(addonPath)) return { source: "skipped", best, note: !best ? "no AVX" : !blas ? "no libblas.so.3 found" : "addon not built" };
  let st = "";
  try {
    const s = statSync(blas);
    st = `${s.size}:${Math.round(s.mtimeMs)}`;
  } catch {
    /* keyed by path alone */
  }
  const key = [cpu.vendor, cpu.family, cpu.model, cpu.modelName, [...cpu.flags].sort().join(" "), blas, st].join("|");
  const file = cacheFile();
  let cache: Record<string, CacheEntry> = {};
  try {
    cache = JSON.parse(readFileSync(file, "utf8")) as Record<string, CacheEntry>;
  } catch {
    /* first run */
  }
  let entry = cache[key];
  if (!entry) {
    const detected = probeCorename(addonPath);
    if (detected === undefined) return { source: "skipped", best, note: "probe failed (an addon without blasCorename?)" };
    let force = coretypeToForce(cpu.flags, cpu.vendor, detected);
    // validate: the library must accept the core type (older OpenBLAS lacks Cooperlake: fall back to SkylakeX)
    if (force && probeCorename(addonPath, force) !== force) {
      force = force === "Cooperlake" && probeCorename(addonPath, "SkylakeX") === "SkylakeX" ? "SkylakeX" : null;
    }
    entry = { detected, force };
    cache[key] = entry;
    try {
      mkdirSync(dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}`; // atomic: processes starting together (distributed ranks) may write at once
      writeFileSync(tmp, JSON.stringify(cache, null, 1));
      renameSync(tmp, file);
    } catch {
      /* read-only home: probe again next time */
    }
  }
  if (entry.force) {
    process.env.OPENBLAS_CORETYPE = entry.force;
    return { coretype: entry.force, source: "forced", detected: entry.detected, best };
  }
  return { source: "default", detected: entry.detected, best };
}
