// scripts/libtorch.mjs: which libtorch the addon builds against (LIBTORCH unset / a path / auto), over
// fake directory layouts of PyTorch pip wheels (CPU and CUDA), Debian's packages and a libtorch zip,
// and over this machine's real Python.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { spawnSync } from "node:child_process";
import { resolveLibtorch, gypList, probeTorch, describe, isSystemLibDir, type TorchProbe } from "../scripts/libtorch.mjs";

const root = mkdtempSync(join(tmpdir(), "vlp-libtorch-"));
const SCRIPT = new URL("../scripts/libtorch.mjs", import.meta.url).pathname;

/** Files (path -> content) under `base`; a value {link} makes a symlink. */
function layout(base: string, files: Record<string, string | { link: string }>): string {
  for (const [rel, v] of Object.entries(files)) {
    const p = join(base, rel);
    mkdirSync(dirname(p), { recursive: true });
    if (typeof v === "string") writeFileSync(p, v);
    else symlinkSync(v.link, p);
  }
  return base;
}

const HEADERS = { "include/torch/csrc/api/include/torch/torch.h": "", "include/torch/csrc/distributed/autograd/context/context.h": "" };
const CPU_LIBS = { "lib/libtorch.so": "", "lib/libtorch_cpu.so": "", "lib/libc10.so": "St7__cxx11 symbols" };
const probeOf = (p: TorchProbe) => () => p;
/** A fake filesystem root standing for "/": absolute paths the resolver checks outside `base` are looked up under it. */
const under = (fake: string) => ({
  exists: (p: string) => existsSync(p.startsWith(root) ? p : join(fake, p)),
  realpath: (p: string) => realpathSync(p).replace(fake, ""),
});

test("a CPU pip wheel: the package's include/ and lib/, rpath, the old C++ ABI from torch._C", () => {
  const torch = layout(join(root, "cpu/site-packages/torch"), { ...HEADERS, ...CPU_LIBS });
  const r = resolveLibtorch({ env: { LIBTORCH: "auto", PYTHON: "/venv/bin/python" }, probe: probeOf({ dir: torch, version: "2.3.1+cpu", cuda: null, cxx11abi: 0, loaded: join(torch, "lib/libtorch_cpu.so") }) });
  assert.equal(r.source, "python");
  assert.equal(r.libDir, join(torch, "lib"));
  assert.deepEqual([r.cuda, r.nccl, r.gloo, r.distAutograd, r.cxx11abi], [false, false, false, true, 0]);
  assert.deepEqual(gypList(r, "include_dirs"), [join(torch, "include"), join(torch, "include/torch/csrc/api/include")]);
  assert.deepEqual(gypList(r, "libraries"), [`-L${torch}/lib`, `-Wl,-rpath,${torch}/lib`, "-ltorch", "-ltorch_cpu", "-lc10"]);
  assert.deepEqual(gypList(r, "defines"), []);
  assert.deepEqual(gypList(r, "cxx11abi"), ["0"]);
  assert.match(describe(r), /PyTorch 2\.3\.1\+cpu \(LIBTORCH=auto\)[\s\S]*CPU only[\s\S]*_GLIBCXX_USE_CXX11_ABI=0/);
});

test("a CUDA pip wheel: CUDA and NCCL (nccl.h from the nvidia-nccl wheel) compiled in, torch_cuda linked", () => {
  const site = join(root, "cuda/site-packages");
  const torch = layout(join(site, "torch"), { ...HEADERS, ...CPU_LIBS, "lib/libtorch_cuda.so": "", "lib/libc10_cuda.so": "", "include/gloo/algorithm.h": "" });
  layout(site, { "nvidia/nccl/include/nccl.h": "", "nvidia/cuda_runtime/include/cuda_runtime_api.h": "" });
  const r = resolveLibtorch({ env: { LIBTORCH: "auto" }, probe: probeOf({ dir: torch, version: "2.5.1+cu121", cuda: "12.1", cxx11abi: 1, loaded: join(torch, "lib/libtorch_cpu.so") }) });
  assert.deepEqual([r.cuda, r.nccl, r.gloo, r.cxx11abi], [true, true, true, 1]);
  assert.deepEqual(r.ncclInclude, [join(site, "nvidia/nccl/include"), join(site, "nvidia/cuda_runtime/include")]);
  assert.deepEqual(gypList(r, "defines"), ["VLP_WITH_CUDA", "USE_C10D_GLOO", "USE_C10D_NCCL"]);
  assert.deepEqual(gypList(r, "libraries").slice(-4), ["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed"]);
  assert.ok(gypList(r, "include_dirs").includes(join(site, "nvidia/nccl/include")));
  // torch.version.cuda set but the CUDA library missing: a CPU build, and the note says why
  const half = layout(join(root, "halfcuda/torch"), { ...HEADERS, ...CPU_LIBS });
  const h = resolveLibtorch({ env: { LIBTORCH: "auto" }, probe: probeOf({ dir: half, version: "2.1.0", cuda: "11.8", cxx11abi: 0, loaded: null }) });
  assert.equal(h.cuda, false);
  assert.ok(h.notes.some((n) => /torch\.version\.cuda is 11\.8 but .*libtorch_cuda\.so is missing/.test(n)), h.notes.join("; "));
  // CUDA without NCCL's header: CUDA compiled in, NCCL not, and the note names the missing header
  const bare = layout(join(root, "nonccl/torch"), { ...HEADERS, ...CPU_LIBS, "lib/libtorch_cuda.so": "" });
  const n = resolveLibtorch({ env: { LIBTORCH: "auto", CUDA_HOME: join(site, "nvidia/cuda_runtime") }, exists: (p) => existsSync(p) && !p.startsWith("/usr"), probe: probeOf({ dir: bare, version: "2.4.0", cuda: "12.4", cxx11abi: 0, loaded: null }) });
  assert.deepEqual([n.cuda, n.nccl], [true, false]);
  assert.ok(n.notes.includes("no NCCL: nccl.h (set NCCL_INCLUDE_DIR) not found"), n.notes.join("; "));
});

test("Debian's python3-torch: torch/lib links into /usr/lib/<triplet>, so gloo's headers come from /usr/include", () => {
  const fake = join(root, "debian-fs");
  layout(fake, { "usr/lib/x86_64-linux-gnu/libtorch.so.1.13": "", "usr/include/gloo/algorithm.h": "", "usr/include/torch/csrc/api/include/torch/torch.h": "" });
  const torch = layout(join(fake, "usr/lib/python3/dist-packages/torch"), {
    "include/torch/csrc/api/include/torch/torch.h": "",
    "lib/libtorch.so": { link: join(fake, "usr/lib/x86_64-linux-gnu/libtorch.so.1.13") },
  });
  const r = resolveLibtorch({ env: { LIBTORCH: "auto" }, ...under(fake), probe: probeOf({ dir: torch, version: "1.13.0a0", cuda: null, cxx11abi: 1, loaded: "/usr/lib/x86_64-linux-gnu/libtorch_cpu.so.1.13" }) });
  assert.equal(r.libDir, join(torch, "lib"));
  assert.equal(r.gloo, true);
  assert.equal(r.distAutograd, false, "Debian lacks the distributed-autograd header: the shim is used");
  assert.ok(gypList(r, "include_dirs").includes("src/shim"));
  // a distribution without torch/lib: the libraries importing torch loaded
  const bare = layout(join(fake, "opt/python/torch"), { "include/torch/csrc/api/include/torch/torch.h": "" });
  layout(fake, { "usr/lib/x86_64-linux-gnu/libtorch.so": "" });
  const b = resolveLibtorch({ env: { LIBTORCH: "auto" }, ...under(fake), probe: probeOf({ dir: bare, version: "1.13.0a0", cuda: null, cxx11abi: 1, loaded: "/usr/lib/x86_64-linux-gnu/libtorch_cpu.so.1.13" }) });
  assert.equal(b.libDir, "/usr/lib/x86_64-linux-gnu");
  assert.equal(b.rpath, false, "a system directory needs no -L or rpath");
  assert.deepEqual(gypList(b, "libraries"), ["-ltorch", "-ltorch_cpu", "-lc10"]);
  assert.ok(b.notes.some((n) => /a distribution package/.test(n)));
  assert.ok(isSystemLibDir("/usr/lib/x86_64-linux-gnu") && isSystemLibDir("/lib64") && !isSystemLibDir("/usr/lib/python3/dist-packages/torch/lib"));
});

test("no usable PyTorch: back to Debian's libtorch-dev with the reason; neither there: an error naming both", () => {
  const fake = layout(join(root, "fallback-fs"), { "usr/include/torch/csrc/api/include/torch/torch.h": "", "usr/include/gloo/algorithm.h": "" });
  const r = resolveLibtorch({ env: { LIBTORCH: "auto", PYTHON: "python3" }, ...under(fake), probe: probeOf({ error: "python3: ModuleNotFoundError: No module named 'torch'" }) });
  assert.equal(r.source, "debian");
  assert.deepEqual(r.notes, ["LIBTORCH=auto: no PyTorch (python3: ModuleNotFoundError: No module named 'torch')"]);
  // the default build's lists, as binding.gyp had them before LIBTORCH=auto
  assert.deepEqual(gypList(r, "defines"), ["USE_C10D_GLOO"]);
  assert.deepEqual(gypList(r, "include_dirs"), ["/usr/include/torch/csrc/api/include", "src/shim"]);
  assert.deepEqual(gypList(r, "libraries"), ["-ltorch", "-ltorch_cpu", "-lc10"]);
  const headerless = layout(join(root, "headerless/torch"), CPU_LIBS);
  const h = resolveLibtorch({ env: { LIBTORCH: "auto" }, ...under(fake), probe: probeOf({ dir: headerless, version: "2.2.0", cuda: null, cxx11abi: 0, loaded: null }) });
  assert.equal(h.source, "debian");
  assert.match(h.notes.join("; "), /PyTorch 2\.2\.0 at .*headerless\/torch.*; it has no C\+\+ headers/);
  const empty = join(root, "empty-fs");
  mkdirSync(empty);
  assert.throws(() => resolveLibtorch({ env: { LIBTORCH: "auto" }, ...under(empty), probe: probeOf({ error: "python3 could not be run (ENOENT)" }) }), /no PyTorch \(python3 could not be run \(ENOENT\)\); and Debian's libtorch-dev is not installed/);
});

test("LIBTORCH=/path: a libtorch zip; its C++ ABI read from libc10.so; missing pieces named", () => {
  const zip = layout(join(root, "libtorch"), { ...HEADERS, "lib/libtorch.so": "", "lib/libc10.so": "no new-ABI strings here", "lib/libtorch_cuda.so": "" });
  const r = resolveLibtorch({ env: { LIBTORCH: zip } });
  assert.deepEqual([r.source, r.cuda, r.cxx11abi, r.libDir], ["path", true, 0, join(zip, "lib")]);
  const empty = layout(join(root, "nolib"), HEADERS);
  assert.throws(() => resolveLibtorch({ env: { LIBTORCH: empty } }), /LIBTORCH=.*nolib: no .*nolib\/lib\/libtorch\.so/);
  assert.throws(() => resolveLibtorch({ env: { LIBTORCH: join(root, "nothing") } }), /no C\+\+ headers there/);
});

test("this machine: LIBTORCH=auto with PYTHON=/usr/bin/python3 finds its libtorch headers and libraries (or says why not)", (t) => {
  const probe = probeTorch("/usr/bin/python3");
  if (probe.error) {
    t.skip(`/usr/bin/python3 has no torch here (${probe.error})`);
    return;
  }
  const out = spawnSync(process.execPath, [SCRIPT, "json"], { env: { ...process.env, LIBTORCH: "auto", PYTHON: "/usr/bin/python3" }, encoding: "utf8" });
  assert.equal(out.status, 0, out.stderr);
  const r = JSON.parse(out.stdout);
  assert.equal(r.source, "python", r.notes.join("; "));
  assert.ok(existsSync(join(r.includeDirs[1], "torch/torch.h")), `${r.includeDirs[1]}/torch/torch.h`);
  assert.ok(existsSync(join(r.libDir, "libtorch.so")), `${r.libDir}/libtorch.so`);
  assert.equal(r.version, probe.version);
  // a Python that cannot be run: the fallback is said on stdout by `describe`
  const none = spawnSync(process.execPath, [SCRIPT, "describe"], { env: { ...process.env, LIBTORCH: "auto", PYTHON: join(root, "no-python") }, encoding: "utf8" });
  if (none.status === 0) assert.match(none.stdout, /LIBTORCH=auto: no PyTorch \(.*no-python could not be run \(ENOENT\)\)/);
  else assert.match(none.stderr, /no PyTorch .*and Debian's libtorch-dev is not installed/);
});
