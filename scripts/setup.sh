#!/usr/bin/env bash
# Installs what vlpkit needs on a Debian 12 machine and builds the native addon. Idempotent:
# each step runs only when its result is missing or stale. Run as root (or with sudo available).
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
if [ ! -f "$addon" ] || [ -n "$(find native/src native/binding.gyp -newer "$addon" 2>/dev/null | head -1)" ]; then
  echo "[setup] building the native addon against ${LIBTORCH:-Debian libtorch} (~1-2 min)"
  npx --no-install node-gyp rebuild --directory native -j "$(nproc)" --loglevel=error >/tmp/vlpkit-addon-build.log 2>&1 || {
    tail -40 /tmp/vlpkit-addon-build.log; echo "[setup] addon build failed (full log: /tmp/vlpkit-addon-build.log)"; exit 1; }
fi

# The BLAS check: which OpenBLAS kernels run (vlpkit forces OPENBLAS_CORETYPE when OpenBLAS picks generic
# kernels on an AVX2/AVX-512 CPU, see src/engine/cpu.ts) and matmul speed as a fraction of the CPU peak; fails below 25%.
node --import tsx scripts/check-blas.ts
