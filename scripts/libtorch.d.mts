// Types of scripts/libtorch.mjs (plain JavaScript so that gyp can run it before anything is built).
export interface TorchProbe {
  dir?: string;
  version?: string;
  cuda?: string | null;
  cxx11abi?: 0 | 1 | null;
  loaded?: string | null;
  error?: string;
}

export interface Libtorch {
  source: "debian" | "path" | "python";
  version: string | null;
  includeDirs: [string, string];
  libDir: string | null;
  /** libDir is outside the linker's default path: -L and -Wl,-rpath. */
  rpath: boolean;
  cuda: boolean;
  cxx11abi: 0 | 1 | null;
  gloo: boolean;
  glooInclude: string | null;
  distAutograd: boolean;
  nccl: boolean;
  /** The directories of nccl.h and the CUDA runtime's headers, when NCCL is compiled in. */
  ncclInclude: string[] | null;
  notes: string[];
}

export function probeTorch(python: string, run?: (cmd: string, args: string[], o: object) => { stdout?: string; stderr?: string; status: number | null; error?: Error }): TorchProbe;
export function abiOfLibrary(lib: string, read?: (p: string) => Buffer): 0 | 1 | null;
export function isSystemLibDir(dir: string): boolean;
export function resolveLibtorch(o?: {
  env?: Record<string, string | undefined>;
  exists?: (p: string) => boolean;
  realpath?: (p: string) => string;
  read?: (p: string) => Buffer;
  probe?: (python: string) => TorchProbe;
}): Libtorch;
export function gypList(r: Libtorch, what: "defines" | "include_dirs" | "libraries" | "cxx11abi"): string[];
export function describe(r: Libtorch): string;
