// Setup check: measures float32 matmul speed through the addon and warns when BLAS is slow.
import { randn, tidy } from "../src/engine/index.ts";

const a = randn([512, 768]);
const b = randn([768, 768]);
tidy(() => a.mm(b));
const n = 20;
const t0 = performance.now();
for (let i = 0; i < n; i++) tidy(() => a.mm(b));
const sec = (performance.now() - t0) / 1000 / n;
const gflops = (2 * 512 * 768 * 768) / sec / 1e9;
if (gflops < 20) {
  console.warn(`[setup] WARNING: matmul runs at ${gflops.toFixed(1)} GFLOP/s: libblas.so.3 is probably the reference BLAS; install libopenblas0-openmp`);
} else {
  console.log(`[setup] ok: matmul ${gflops.toFixed(0)} GFLOP/s through the addon`);
}
