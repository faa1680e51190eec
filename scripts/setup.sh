#!/usr/bin/env bash
# Installs what vlpkit needs on a Debian 12 machine and builds the native addon. Idempotent:
# each step runs only when its result is missing or stale. Run as root (or with sudo available).
#
# Which libtorch the addon is built against (scripts/libtorch.mjs decides and prints it):
#   bash scripts/setup.sh                      Debian's libtorch-dev (CPU, PyTorch 1.13), installed here
#   LIBTORCH=auto bash scripts/setup.sh        the PyTorch of the python3 on PATH (PYTHON=/path/to/python
#                                              picks another): <site-packages>/torch/include and lib, CPU or
#                                              CUDA as that wheel was built (torch.version.cuda), with its
#                                              C++ ABI (torch._C._GLIBCXX_USE_CXX11_ABI); without a usable
#                                              PyTorch it falls back to libtorch-dev and says why
#   LIBTORCH=/path/to/libtorch bash scripts/setup.sh   an unpacked libtorch (pytorch.org's zip)
# A CUDA build compiles no CUDA code; ProcessGroupNCCL needs nccl.h and the CUDA runtime's headers
# (the nvidia-* wheels', NCCL_INCLUDE_DIR, CUDA_HOME or /usr/local/cuda). Only Debian's 1.13 has been
# built and tested here (also through LIBTORCH=auto PYTHON=/usr/bin/python3); 2.x is guarded, not built.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libtorch-dev libopenblas0-openmp python3-torch libgloo-dev chromium fonts-liberation)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's libtorch links libblas.so.3 through the alternatives system; the reference BLAS is ~40x slower.
arch_triplet=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
openblas="/usr/lib/${arch_triplet}/openblas-openmp/libblas.so.3"
if [ -e "$openblas" ]; then
  current=$(readlink -f "/usr/lib/${arch_triplet}/libblas.so.3" || true)
  if [ "$current" != "$(readlink -f "$openblas")" ]; then
    echo "[setup] pointing libblas.so.3 at OpenBLAS (OpenMP)"
    $SUDO update-alternatives --set "libblas.so.3-${arch_triplet}" "$openblas" >/dev/null
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[setup] installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi

addon=native/build/Release/vlpkit.node
libtorch=$(node scripts/libtorch.mjs describe) || exit 1
built_for=native/build/libtorch.txt
if [ ! -f "$addon" ] || [ "$(cat "$built_for" 2>/dev/null)" != "$libtorch" ] || [ -n "$(find native/src native/binding.gyp scripts/libtorch.mjs -newer "$addon" 2>/dev/null | head -1)" ]; then
  echo "[setup] building the native addon (~1-2 min) against"
  echo "$libtorch" | sed 's/^/[setup]   /'
  npx --no-install node-gyp rebuild --directory native -j "$(nproc)" --loglevel=error >/tmp/vlpkit-addon-build.log 2>&1 || {
    tail -40 /tmp/vlpkit-addon-build.log; echo "[setup] addon build failed (full log: /tmp/vlpkit-addon-build.log)"; exit 1; }
  echo "$libtorch" > "$built_for"
fi

# The BLAS check: which OpenBLAS kernels run (vlpkit forces OPENBLAS_CORETYPE when OpenBLAS picks generic
# kernels on an AVX2/AVX-512 CPU, see src/engine/cpu.ts) and matmul speed as a fraction of the CPU peak; fails below 25%.
node --import tsx scripts/check-blas.ts
