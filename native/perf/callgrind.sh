#!/usr/bin/env bash
# Instructions per element of encode, decode and decode-add for one codec configuration (valgrind --tool=callgrind,
# one thread, Gaussian floats; the measured call is the second, after the tables are built: a run that stops
# after the first calls is subtracted). Per-function counts: callgrind_annotate build/perf/cg/CONFIG.OP.out. Usage: bash native/perf/callgrind.sh [config] [n]   (default qsgd-fixed, 2^20)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cfg="${1:-qsgd-fixed}"
n="${2:-1048576}"
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install -y valgrind)"; exit 2; }
out="${GZ_PERF_OUT:-$root/build/perf}/cg"
mkdir -p "$out"
g++ -std=c++17 -O3 -ffp-contract=off -fno-fast-math -pthread -g -I"$root/native" "$root"/native/core/*.cc \
  "$root"/native/codecs/*.cc "$root/native/perf/cg.cc" -o "$out/cg"
valgrind --tool=callgrind --callgrind-out-file="$out/$cfg.none.out" --toggle-collect='gz::encode*' \
  --toggle-collect='gz::decode*' "$out/cg" "$cfg" none "$n" >/dev/null 2>&1
base=$(callgrind_annotate "$out/$cfg.none.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
for op in encode decode add; do
  f="$out/$cfg.$op.out"
  valgrind --tool=callgrind --callgrind-out-file="$f" --toggle-collect='gz::encode*' --toggle-collect='gz::decode*' \
    "$out/cg" "$cfg" "$op" "$n" >/dev/null 2>&1
  tot=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  python3 -c "import sys; b=int('${base:-0}'); t=int('$tot'); print(f'$cfg $op: {(t-b)/$n:.2f} instructions/element ({t-b} for n = $n)')"
done
