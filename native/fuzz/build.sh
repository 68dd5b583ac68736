#!/usr/bin/env bash
# Builds and runs the decoder fuzz target (libFuzzer + ASan + UBSan, clang from Debian: apt-get install -y clang).
# usage: native/fuzz/build.sh [SECONDS=60] [WORKDIR=/tmp/gradzip-fuzz] [JOBS=1]
# Exits non-zero when the fuzzer finds a crash, a sanitizer report, a leak or a timeout (artifacts in WORKDIR).
set -euo pipefail
SECS="${1:-60}"
WORK="${2:-/tmp/gradzip-fuzz}"
JOBS="${3:-1}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CXX="${CXX_FUZZ:-clang++}"
command -v "$CXX" >/dev/null || { echo "clang++ not found: apt-get install -y clang" >&2; exit 2; }
mkdir -p "$WORK/seeds" "$WORK/corpus" "$WORK/obj"
SRCS=$(ls "$ROOT"/native/core/*.cc "$ROOT"/native/codecs/*.cc)
COMMON=(-std=c++17 -g -O1 -ffp-contract=off -fno-fast-math -pthread -I"$ROOT/native")
SAN=(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined)
# library objects (instrumented), compiled two at a time
objs=()
for s in $SRCS; do objs+=("$WORK/obj/$(basename "${s%.cc}").o"); done
printf '%s\n' $SRCS | xargs -P 2 -I{} sh -c 'o="'"$WORK"'/obj/$(basename {} .cc).o"; if [ ! -f "$o" ] || [ {} -nt "$o" ] || [ -n "$(find '"$ROOT"'/native/core '"$ROOT"'/native/codecs -name "*.h" -newer "$o")" ]; then '"$CXX"' '"${COMMON[*]} ${SAN[*]}"' -c {} -o "$o"; fi'
"$CXX" "${COMMON[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  "$ROOT/native/fuzz/fuzz_decode.cc" "${objs[@]}" -o "$WORK/fuzz_decode"
# seed corpus generator (same library, no fuzzer main)
"$CXX" "${COMMON[@]}" -fsanitize=address,undefined -DGZ_FUZZ_GEN "$ROOT/native/fuzz/fuzz_decode.cc" \
  "${objs[@]}" -fsanitize=fuzzer-no-link -o "$WORK/gen_corpus"
"$WORK/gen_corpus" "$WORK/seeds"
cd "$WORK"
PAR=()
if [ "$JOBS" -gt 1 ]; then PAR=(-fork="$JOBS"); fi
exec ./fuzz_decode -max_total_time="$SECS" -max_len=8192 -timeout=10 -rss_limit_mb=2048 "${PAR[@]}" \
  -print_final_stats=1 -artifact_prefix="$WORK/" corpus seeds
