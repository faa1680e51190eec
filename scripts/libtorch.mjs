// Which libtorch the native addon builds against, and the compiler and linker flags for it.
// native/binding.gyp asks it for `defines`, `include_dirs` and `libraries`; scripts/setup.sh runs
// `describe` first, which prints what was found and why.
//
//   LIBTORCH unset      Debian's libtorch-dev: headers in /usr/include, libraries on the default path
//   LIBTORCH=/path      a libtorch distribution (pytorch.org's zip or a build): /path/include, /path/lib
//   LIBTORCH=auto       the PyTorch of the Python on PATH ($PYTHON to pick another): the package's own
//                       <torch>/include and <torch>/lib; CUDA when torch.version.cuda is set and
//                       lib/libtorch_cuda.so exists; _GLIBCXX_USE_CXX11_ABI from torch._C (the pip wheels
//                       of 1.13 and most 2.x use the old ABI). A distribution package without torch/lib (Debian's
//                       python3-torch) links the libraries it loads. Without a usable PyTorch it falls
//                       back to Debian's libtorch-dev, saying why.
// Plain JavaScript: gyp runs it with node before anything is built.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const DEBIAN_INCLUDE = "/usr/include";

// Printed as one JSON line by the Python that owns the torch package.
const PROBE = `
import json, os, sys
try:
    import torch
except Exception as e:
    print(json.dumps({"error": type(e).__name__ + ": " + str(e)}))
    sys.exit(0)
loaded = None
try:
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if os.path.basename(path).startswith("libtorch_cpu.so"):
            loaded = path
            break
except OSError:
    pass
abi = getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", None)
print(json.dumps({"dir": os.path.dirname(torch.__file__), "version": torch.__version__, "cuda": torch.version.cuda,
                  "cxx11abi": None if abi is None else int(bool(abi)), "loaded": loaded}))
`;

/**
 * What `python` knows about its torch package: {dir, version, cuda, cxx11abi, loaded} (loaded: the
 * libtorch_cpu.so that importing torch mapped), or {error} saying why there is none.
 */
export function probeTorch(python, run = spawnSync) {
  const r = run(python, ["-c", PROBE], { encoding: "utf8", timeout: 120_000 });
  if (r.error) return { error: `${python} could not be run (${r.error.code ?? r.error.message})` };
  const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
  try {
    const out = JSON.parse(line);
    return out.error ? { error: `${python}: ${out.error}` } : out;
  } catch {
    return { error: `${python} exited with ${r.status}: ${(r.stderr ?? "").trim().split("\n").pop() ?? ""}` };
  }
}

/** 1 when the C++ library was built with the C++11 ABI of libstdc++ (its symbols mention std::__cxx11), else 0; null when it cannot be read. */
export function abiOfLibrary(lib, read = readFileSync) {
  try {
    return read(lib).includes("__cxx11") ? 1 : 0;
  } catch {
    return null;
  }
}

// the linker's default directories (/usr/lib, /lib64, /usr/lib/x86_64-linux-gnu, ...)
const SYSTEM_LIB = /^\/(usr\/)?lib(64)?(\/[^/]+-linux-[^/]+)?\/?$/;
export const isSystemLibDir = (d) => SYSTEM_LIB.test(d);

/**
 * The layout of a libtorch: its include directory and library directory (null: the linker's default
 * path), with the features the addon compiles in when their headers and libraries are there.
 */
function layout({ source, include, libDir, version = null, cuda, cxx11abi, notes, ncclDirs = [], cudaDirs = [], glooDirs }, { exists }) {
  const gloo = glooDirs.find((d) => exists(join(d, "gloo", "algorithm.h"))) ?? null;
  // ProcessGroupNCCL.hpp includes nccl.h and the CUDA runtime's headers
  const find = (dirs, file) => dirs.find((d) => d && exists(join(d, file))) ?? null;
  const ncclH = cuda ? find(ncclDirs, "nccl.h") : null;
  const cudaH = cuda ? find(cudaDirs, "cuda_runtime_api.h") : null;
  const missing = [...(ncclH ? [] : ["nccl.h (set NCCL_INCLUDE_DIR)"]), ...(cudaH ? [] : ["cuda_runtime_api.h (set CUDA_HOME)"])];
  if (cuda && missing.length) notes.push(`no NCCL: ${missing.join(" and ")} not found`);
  const nccl = ncclH && cudaH ? [...new Set([ncclH, cudaH])] : null;
  return {
    source,
    version,
    includeDirs: [include, join(include, "torch/csrc/api/include")],
    libDir,
    rpath: libDir !== null && !isSystemLibDir(libDir),
    cuda,
    cxx11abi,
    gloo: gloo !== null,
    glooInclude: gloo,
    // c10d/reducer.hpp includes the distributed-autograd context header, which Debian's libtorch-dev lacks (native/src/shim/)
    distAutograd: exists(join(include, "torch/csrc/distributed/autograd/context/context.h")),
    nccl: nccl !== null,
    ncclInclude: nccl,
    notes,
  };
}

const cudaDirs = (env, ...more) => [env.CUDA_HOME && join(env.CUDA_HOME, "include"), ...more, "/usr/local/cuda/include", "/usr/include"];

function debian(fs, notes = []) {
  if (!fs.exists(join(DEBIAN_INCLUDE, "torch/csrc/api/include/torch/torch.h"))) {
    throw new Error(`${notes.length ? notes.join("; ") + "; and " : ""}Debian's libtorch-dev is not installed (no ${DEBIAN_INCLUDE}/torch): install it (apt-get install libtorch-dev), or set LIBTORCH=/path/to/libtorch or LIBTORCH=auto`);
  }
  return layout({ source: "debian", include: DEBIAN_INCLUDE, libDir: null, cuda: false, cxx11abi: 1, notes, ncclDirs: [], glooDirs: [DEBIAN_INCLUDE] }, fs);
}

function prefix(root, env, fs) {
  const { exists } = fs;
  const include = join(root, "include");
  if (!exists(join(include, "torch/csrc/api/include/torch/torch.h"))) throw new Error(`LIBTORCH=${root}: no C++ headers there (${include}/torch/csrc/api/include/torch/torch.h)`);
  const libDir = join(root, "lib");
  if (!exists(join(libDir, "libtorch.so"))) throw new Error(`LIBTORCH=${root}: no ${libDir}/libtorch.so`);
  const cuda = exists(join(libDir, "libtorch_cuda.so"));
  const ncclDirs = [env.NCCL_INCLUDE_DIR, include, "/usr/include", "/usr/local/cuda/include"];
  return layout({ source: "path", include, libDir, cuda, cxx11abi: abiOfLibrary(join(libDir, "libc10.so"), fs.read), notes: [], ncclDirs, cudaDirs: cudaDirs(env), glooDirs: [include] }, fs);
}

function python(env, fs, probe) {
  const { exists } = fs;
  const py = env.PYTHON || "python3";
  const t = probe(py);
  if (t.error) return debian(fs, [`LIBTORCH=auto: no PyTorch (${t.error})`]);
  const include = join(t.dir, "include");
  const notes = [`LIBTORCH=auto: PyTorch ${t.version} at ${t.dir} (${py})`];
  if (!exists(join(include, "torch/csrc/api/include/torch/torch.h"))) {
    return debian(fs, [...notes, `it has no C++ headers (${include}/torch/csrc/api/include/torch/torch.h)`]);
  }
  let libDir = join(t.dir, "lib");
  if (!exists(join(libDir, "libtorch.so"))) {
    // a distribution package (Debian's python3-torch) keeps its libraries on the system path: link those
    const loaded = t.loaded ? dirname(t.loaded) : null;
    if (!loaded || !exists(join(loaded, "libtorch.so"))) {
      const seen = t.loaded ? `; importing torch loaded ${t.loaded}, but ${loaded}/libtorch.so (the link-time name) is missing` : "";
      return debian(fs, [...notes, `its lib/ has no libtorch.so${seen}`]);
    }
    notes.push(`${basename(t.dir)}/lib/ has no libtorch.so (a distribution package): linking the libraries importing torch loads, in ${loaded}`);
    libDir = loaded;
  }
  // a distribution's torch (Debian's python3-torch: torch/lib links to /usr/lib/<triplet>) was built against the system's gloo
  const packaged = isSystemLibDir(dirname(fs.realpath(join(libDir, "libtorch.so"))));
  const cudaLib = exists(join(libDir, "libtorch_cuda.so"));
  if (t.cuda && !cudaLib) notes.push(`torch.version.cuda is ${t.cuda} but ${libDir}/libtorch_cuda.so is missing: building without CUDA`);
  const cuda = !!t.cuda && cudaLib;
  notes.push(cuda ? `CUDA ${t.cuda}` : "CPU only (torch.version.cuda is None)");
  const site = dirname(t.dir);
  // the nvidia-* wheels CUDA builds of PyTorch depend on hold NCCL's and the CUDA runtime's headers
  const ncclDirs = [env.NCCL_INCLUDE_DIR, include, join(site, "nvidia/nccl/include"), "/usr/include", "/usr/local/cuda/include"];
  // the headers of the gloo the library was built with: its own, or (a distribution package) the system's
  const glooDirs = packaged ? [include, DEBIAN_INCLUDE] : [include];
  const cxx11abi = t.cxx11abi ?? abiOfLibrary(join(libDir, "libc10.so"), fs.read);
  return layout({ source: "python", include, libDir, version: t.version, cuda, cxx11abi, notes, ncclDirs, cudaDirs: cudaDirs(env, join(site, "nvidia/cuda_runtime/include")), glooDirs }, fs);
}

/** The libtorch to build against, from LIBTORCH (and PYTHON, NCCL_INCLUDE_DIR). Throws naming what is missing. */
export function resolveLibtorch({ env = process.env, exists = existsSync, realpath = realpathSync, read = readFileSync, probe = probeTorch } = {}) {
  const fs = { exists, realpath, read };
  const v = env.LIBTORCH ?? "";
  if (v === "") return debian(fs);
  if (v === "auto") return python(env, fs, probe);
  return prefix(v, env, fs);
}

/** The gyp list for `defines`, `include_dirs`, `libraries` or `cxx11abi` (include_dirs relative to native/). */
export function gypList(r, what) {
  switch (what) {
    case "defines":
      return [
        ...(r.cuda ? ["VLP_WITH_CUDA"] : []),
        ...(r.gloo ? ["USE_C10D_GLOO"] : []),
        ...(r.nccl ? ["USE_C10D_NCCL"] : []),
      ];
    case "cxx11abi":
      // node's common.gypi defines _GLIBCXX_USE_CXX11_ABI=1; binding.gyp swaps it for 0 when libtorch uses the old ABI
      return [String(r.cxx11abi ?? 1)];
    case "include_dirs":
      return [
        ...(r.source === "debian" ? [r.includeDirs[1]] : r.includeDirs),
        ...(r.gloo && r.glooInclude !== r.includeDirs[0] && r.glooInclude !== DEBIAN_INCLUDE ? [r.glooInclude] : []),
        ...(r.distAutograd ? [] : ["src/shim"]),
        ...(r.nccl ? r.ncclInclude : []),
      ];
    case "libraries":
      return [
        // a directory outside the linker's default path is searched at link time and at load time (rpath)
        ...(r.rpath ? [`-L${r.libDir}`, `-Wl,-rpath,${r.libDir}`] : []),
        "-ltorch",
        "-ltorch_cpu",
        "-lc10",
        ...(r.cuda ? ["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed"] : []),
      ];
    default:
      throw new Error(`unknown list "${what}" (expected defines, include_dirs, libraries or cxx11abi)`);
  }
}

/** Human-readable: where the headers and libraries are, what is compiled in, and the notes. */
export function describe(r) {
  const on = (b) => (b ? "yes" : "no");
  return [
    `libtorch: ${r.source === "debian" ? "Debian's libtorch-dev" : r.source === "path" ? `LIBTORCH=${dirname(r.includeDirs[0])}` : `PyTorch ${r.version} (LIBTORCH=auto)`}`,
    ...r.notes.map((n) => `  ${n}`),
    `  headers: ${r.includeDirs[0]}`,
    `  libraries: ${r.libDir ?? "the linker's default path"}${r.rpath ? " (rpath set)" : ""}`,
    `  CUDA: ${on(r.cuda)}, gloo: ${on(r.gloo)}, NCCL: ${on(r.nccl)}, _GLIBCXX_USE_CXX11_ABI=${r.cxx11abi ?? 1}`,
  ].join("\n");
}

// node scripts/libtorch.mjs describe | json | defines | include_dirs | libraries | cxx11abi
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const what = process.argv[2] ?? "describe";
  try {
    const r = resolveLibtorch();
    if (what === "describe") console.log(describe(r));
    else if (what === "json") console.log(JSON.stringify(r, null, 2));
    else console.log(gypList(r, what).join(" "));
  } catch (e) {
    console.error(`[libtorch] ${e.message}`);
    process.exit(1);
  }
}
