#!/usr/bin/env bash
# Builds the optional CUDA addon build-cuda/Release/gradzip_cuda.node with nvcc (no GPU or driver needed).
# GRADZIP_CUDA_ARCHS="90" (default) or e.g. "80;90". Serialized with the native build lock; -j 2 at most.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC="${CUDACXX:-$(command -v nvcc || true)}"
if [ -z "$NVCC" ]; then echo "build-cuda: nvcc not found; the CUDA addon is optional, skipping" >&2; exit 0; fi
ARCHS="${GRADZIP_CUDA_ARCHS:-90}"
exec flock /tmp/gradzip-build.lock bash -c "
  cmake -S native/cuda -B build-cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER='$NVCC' -DGRADZIP_CUDA_ARCHS='$ARCHS' >/dev/null &&
  cmake --build build-cuda -j \${GRADZIP_JOBS:-2}"
