#!/usr/bin/env bash
# The whole GPU run on a device machine that has CUDA but no Node.js (node is carried in .device/ by
# ../shared/gpu/pack-for-device.sh). Build here first: scripts/build-native.sh, scripts/build-cuda.sh (sm_90),
# node scripts/build-ts.mjs; carry [".device", "build", "build-cuda", "dist"]. Logs go to $OUT (or ./gpu-out).
set -uo pipefail
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
source .device/node-env.sh
{ node --version; nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv; } 2>&1 | tee "$OUT/env.log"
node -e "console.log(JSON.stringify(require('./dist/cjs/cuda.js').cudaInfo()))" 2>&1 | tee -a "$OUT/env.log"
node --test --test-reporter=spec test/gpu/ 2>&1 | tee "$OUT/gpu-test.log"
node bench/gpu/codecs.mjs "${GPU_BENCH_LOG2N:-26}" "${GPU_BENCH_ITERS:-20}" 2>&1 | tee "$OUT/gpu-bench.log"
PYTHONUNBUFFERED=1 python3 bench/gpu/torch_topk.py 2>&1 | tee "$OUT/torch-topk.log"
