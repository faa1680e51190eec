// The CPU → OpenBLAS core type decision (src/engine/cpu.ts): pure, fed /proc/cpuinfo samples.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCpuinfo, bestCoretype, coretypeToForce, fp32FlopsPerCycle, bf16FlopsPerCycle } from "../src/engine/cpu.ts";

const BASE = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves";
const AVX512 = "avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq";

function cpuinfo(vendor: string, family: number, model: number, name: string, flags: string): string {
  return `processor\t: 0\nvendor_id\t: ${vendor}\ncpu family\t: ${family}\nmodel\t\t: ${model}\nmodel name\t: ${name}\ncpu MHz\t\t: 2100.000\nflags\t\t: ${flags}\n\nprocessor\t: 1\n`;
}

// the machines of issue 13: Intel Xeon family 6 model 207 (AMX; OpenBLAS 0.3.21 says "Prescott"), AMD EPYC Zen 4 (says "Cooperlake")
const INTEL = parseCpuinfo(cpuinfo("GenuineIntel", 6, 207, "INTEL(R) XEON(R) PLATINUM 8581C", `${BASE} ${AVX512} avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8 serialize tsxldtrk`));
const AMD = parseCpuinfo(cpuinfo("AuthenticAMD", 25, 17, "AMD EPYC 9B14", `${BASE} ${AVX512} avx512_bf16 clzero xsaveerptr`));
const AVX2_INTEL = parseCpuinfo(cpuinfo("GenuineIntel", 6, 79, "Intel(R) Xeon(R) CPU E5-2686 v4", BASE));
const AVX2_AMD = parseCpuinfo(cpuinfo("AuthenticAMD", 23, 49, "AMD EPYC 7B12", BASE));
const SSE_ONLY = parseCpuinfo(cpuinfo("GenuineIntel", 6, 15, "old", "fpu sse sse2 ssse3"));

test("parseCpuinfo reads the first processor's vendor, family, model, name, clock and flags", () => {
  assert.equal(INTEL.vendor, "GenuineIntel");
  assert.equal(INTEL.family, 6);
  assert.equal(INTEL.model, 207);
  assert.equal(INTEL.modelName, "INTEL(R) XEON(R) PLATINUM 8581C");
  assert.equal(INTEL.mhz, 2100);
  assert.ok(INTEL.flags.has("amx_bf16") && INTEL.flags.has("avx512f") && !INTEL.flags.has("processor"));
});

test("the best core type from the flags: AVX-512 (+BF16) -> SkylakeX/Cooperlake, AVX2 -> Haswell/Zen", () => {
  assert.equal(bestCoretype(INTEL.flags, INTEL.vendor), "Cooperlake");
  assert.equal(bestCoretype(AMD.flags, AMD.vendor), "Cooperlake");
  const noBf16 = new Set(INTEL.flags);
  noBf16.delete("avx512_bf16");
  assert.equal(bestCoretype(noBf16, "GenuineIntel"), "SkylakeX");
  assert.equal(bestCoretype(AVX2_INTEL.flags, AVX2_INTEL.vendor), "Haswell");
  assert.equal(bestCoretype(AVX2_AMD.flags, AVX2_AMD.vendor), "Zen");
  assert.equal(bestCoretype(SSE_ONLY.flags, SSE_ONLY.vendor), null);
  // AVX-512F alone (no BW/VL/DQ, e.g. Knights Landing) is not enough for SkylakeX kernels
  assert.equal(bestCoretype(new Set([...AVX2_INTEL.flags, "avx512f", "avx512cd"]), "GenuineIntel"), "Haswell");
});

test("a core type is forced only when OpenBLAS's own pick is weaker than the CPU supports", () => {
  // Intel family 6 model 207: OpenBLAS 0.3.21 falls back to Prescott -> force Cooperlake
  assert.equal(coretypeToForce(INTEL.flags, INTEL.vendor, "Prescott"), "Cooperlake");
  assert.equal(coretypeToForce(INTEL.flags, INTEL.vendor, "Haswell"), "Cooperlake");
  // Zen 4: OpenBLAS already says Cooperlake (SkylakeX would do as well) -> leave it
  assert.equal(coretypeToForce(AMD.flags, AMD.vendor, "Cooperlake"), null);
  assert.equal(coretypeToForce(AMD.flags, AMD.vendor, "SkylakeX"), null);
  // AVX2 machines: generic -> Haswell / Zen; already Haswell/Zen -> nothing
  assert.equal(coretypeToForce(AVX2_INTEL.flags, AVX2_INTEL.vendor, "Prescott"), "Haswell");
  assert.equal(coretypeToForce(AVX2_AMD.flags, AVX2_AMD.vendor, "Nehalem"), "Zen");
  assert.equal(coretypeToForce(AVX2_AMD.flags, AVX2_AMD.vendor, "Zen"), null);
  assert.equal(coretypeToForce(AVX2_INTEL.flags, AVX2_INTEL.vendor, "Haswell"), null);
  // not OpenBLAS (corename unavailable), or no AVX: nothing to force
  assert.equal(coretypeToForce(INTEL.flags, INTEL.vendor, null), null);
  assert.equal(coretypeToForce(SSE_ONLY.flags, SSE_ONLY.vendor, "Prescott"), null);
});

test("FLOP per cycle per core: Intel AVX-512 64, Zen 4 32, AVX2 32; bf16 with AMX / AVX512-BF16", () => {
  assert.equal(fp32FlopsPerCycle(INTEL), 64);
  assert.equal(fp32FlopsPerCycle(AMD), 32);
  assert.equal(fp32FlopsPerCycle(AVX2_INTEL), 32);
  assert.equal(fp32FlopsPerCycle(AVX2_AMD), 32);
  assert.equal(fp32FlopsPerCycle(parseCpuinfo(cpuinfo("AuthenticAMD", 23, 1, "EPYC 7601", BASE))), 16); // Zen 1: 2x128-bit
  assert.equal(bf16FlopsPerCycle(INTEL), 1024);
  assert.equal(bf16FlopsPerCycle(AMD), 64);
  assert.equal(bf16FlopsPerCycle(AVX2_INTEL), 32);
});
