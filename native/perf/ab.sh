#!/usr/bin/env bash
# Paired A/B of the native core: A = native/ at a git revision (default HEAD), B = the working tree. Builds both as
# shared objects with the addon's flags (-O3, -ffp-contract=off), then ab.cc loads them in one process, checks that
# they make the same packets and floats, and alternates single calls (see ab.cc).
# Usage: bash native/perf/ab.sh [REV] [filter] [n] [rounds] [threads]
#   e.g. bash native/perf/ab.sh HEAD qsgd-sparse 16777216 21 1
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
rev="${1:-HEAD}"
filter="${2:-}"
n="${3:-16777216}"
rounds="${4:-15}"
threads="${5:-1}"
out="${GZ_PERF_OUT:-$root/build/perf}/ab"
rm -rf "$out/a"
mkdir -p "$out/a"
git -C "$root" archive "$rev" native | tar -x -C "$out/a"
build() {  # build SRC_ROOT OUT.so
  g++ -std=c++17 -O3 -ffp-contract=off -fno-fast-math -pthread -fPIC -shared -fvisibility=hidden -Wl,-Bsymbolic \
    -I"$1/native" "$1"/native/core/*.cc "$1"/native/codecs/*.cc "$root/native/perf/ab_api.cc" -o "$2"
}
echo "building A ($rev) and B (working tree) ..."
build "$out/a" "$out/a.so" &
pa=$!
build "$root" "$out/b.so"
wait "$pa"
g++ -std=c++17 -O2 "$root/native/perf/ab.cc" -o "$out/ab" -ldl
exec "$out/ab" "$out/a.so" "$out/b.so" "$n" "$rounds" "$threads" "$filter"
