#!/usr/bin/env bash
# Builds native/perf/perf.cc against the core + codec sources with the addon's flags (-O3, -ffp-contract=off)
# and runs it. Usage: bash native/perf/run.sh [n] [reps] [threads] [codec-filter]   (default n = 2^24 = 64 MiB)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${GZ_PERF_OUT:-$root/build/perf}"
mkdir -p "$out"
srcs=("$root"/native/core/*.cc "$root"/native/codecs/*.cc "$root"/native/perf/perf.cc)
newest=$(ls -t "${srcs[@]}" "$root"/native/core/*.h "$root"/native/codecs/*.h 2>/dev/null | head -1)
if [ ! -x "$out/perf" ] || [ "$newest" -nt "$out/perf" ]; then
  g++ -std=c++17 -O3 -ffp-contract=off -fno-fast-math -pthread -I"$root/native" "${srcs[@]}" -o "$out/perf"
fi
exec "$out/perf" "$@"
