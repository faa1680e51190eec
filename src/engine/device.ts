// Devices as vlpkit names them: "cpu", "cuda" or "cuda:N". Pure functions (no libtorch): recipes
// are validated with them before the engine loads; src/engine/placement.ts asks libtorch whether a
// device can be used and moves tensors and modules there.

/** What the addon says about CUDA (buildInfo()). */
export interface CudaInfo {
  torchVersion: string;
  /** CUDA compiled into the addon (it was built against a CUDA libtorch). */
  cuda: boolean;
  /** torch.cuda.is_available(): compiled in and a GPU visible. */
  cudaAvailable: boolean;
  cudaDeviceCount: number;
}

const DEVICE = /^(cpu|cuda)(?::(\d+))?$/;

/** A device string checked for its form: "cpu", "cuda" or "cuda:N" (throws naming `where`). */
export function parseDevice(device: unknown, where: string): string {
  const m = typeof device === "string" ? DEVICE.exec(device) : null;
  if (!m || (m[1] === "cpu" && m[2] !== undefined)) throw new Error(`${where}: expected "cpu", "cuda" or "cuda:N", got ${JSON.stringify(device)}`);
  return device as string;
}

export const isCuda = (device: string): boolean => device.startsWith("cuda");

/**
 * The concrete device a process uses: "cuda" is the GPU of this process's local rank (cuda:0 in a
 * single process, cuda:LOCAL_RANK among data-parallel workers), as libtorch names tensors' devices.
 */
export function placeDevice(device: string, localRank = 0): string {
  return device === "cuda" ? `cuda:${localRank}` : device;
}

/** Why `device` cannot be used with this build (null: it can); `where` names the flag or recipe key. */
export function deviceProblem(device: string, info: CudaInfo, where: string): string | null {
  if (!isCuda(device)) return null;
  if (!info.cuda) {
    return `${where}: this libtorch build has no CUDA (libtorch ${info.torchVersion}, CPU only: torch.cuda.is_available() is false); build the addon against a CUDA PyTorch: \`LIBTORCH=auto make setup\` with that PyTorch's python3 on PATH (or PYTHON=...), or LIBTORCH=/path/to/libtorch`;
  }
  if (!info.cudaAvailable || info.cudaDeviceCount === 0) {
    return `${where}: the addon has CUDA but no GPU is visible (torch.cuda.is_available() is false; check nvidia-smi and CUDA_VISIBLE_DEVICES)`;
  }
  const index = Number(device.split(":")[1] ?? 0);
  if (index >= info.cudaDeviceCount) return `${where}: there is no ${device} (${info.cudaDeviceCount} CUDA device${info.cudaDeviceCount > 1 ? "s" : ""} visible: cuda:0${info.cudaDeviceCount > 1 ? `..cuda:${info.cudaDeviceCount - 1}` : ""})`;
  return null;
}

/** The c10d backend for a device: NCCL carries CUDA tensors, gloo CPU ones (torch.distributed's default choice). */
export const backendForDevice = (device: string): "gloo" | "nccl" => (isCuda(device) ? "nccl" : "gloo");
