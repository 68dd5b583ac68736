#!/usr/bin/env bash
# Builds every native/tests/*.cc against all core + codec sources under ASan + UBSan and runs them.
# Exit status non-zero on any build or test failure. Usage: bash native/tests/run.sh [test-name-filter]
# Env: GZ_TEST_OUT (binary dir, default native/tests/bin), CXX (default g++), GZ_TEST_JOBS (default 2).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${GZ_TEST_OUT:-$root/native/tests/bin}"
cxx="${CXX:-g++}"
jobs="${GZ_TEST_JOBS:-2}"
flags=(-std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
       -ffp-contract=off -fno-fast-math -pthread -Wall -Wextra -I"$root/native")
mkdir -p "$out/obj"
srcs=("$root"/native/core/*.cc "$root"/native/codecs/*.cc)
# compile library objects (incremental on mtime)
objs=()
pids=()
for s in "${srcs[@]}"; do
  o="$out/obj/$(basename "$(dirname "$s")")_$(basename "${s%.cc}").o"
  objs+=("$o")
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ -n "$(find "$root/native/core" "$root/native/codecs" -name '*.h' -newer "$o" -print -quit)" ]; then
    "$cxx" "${flags[@]}" -c "$s" -o "$o" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
status=0
shopt -s nullglob
for t in "$root"/native/tests/*.cc; do
  name="$(basename "${t%.cc}")"
  bin="$out/$name"
  echo "== build $name"
  if ! "$cxx" "${flags[@]}" "$t" "${objs[@]}" -o "$bin"; then echo "BUILD FAILED: $name"; status=1; continue; fi
  echo "== run $name"
  if ! ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" UBSAN_OPTIONS="print_stacktrace=1" "$bin" "$@"; then
    echo "TEST FAILED: $name"; status=1
  fi
done
exit $status
