// Stores of decoded floats in groups of 16 (four xmm vectors in element order) for the table decoders of the
// fixed-width codecs (qsgd.cc W = 2/4, onebit.cc). MODE 0: plain stores; 1: out += f (f already holds alpha * value:
// the add after the multiply); 3: non-temporal 256-bit stores at 32-byte aligned addresses. A run of groups starts
// at w.o (a bucket's output); when w.o is 16 mod 32 (typical for JS Float32Arrays) each 256-bit store pairs the
// previous group's last xmm (the carry) with the next one; other alignments use plain stores.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/simd_philox.h"  // GZ_AVX2

namespace gz {
namespace {

struct Put16 {
  float* o;       // bucket output
  int phase;      // MODE 3: 0 (o 32-byte aligned), 4 (o 16 mod 32), -1 (plain stores)
  bool have = false;
  __m128 carry;
};

// The phase of put16 as a template argument: kPhaseRun reads w.phase at run time (one branch per group of 16, and
// the compiler's code for the 16 mod 32 case then takes two jumps per group: 8-15 % of a TernGrad decode);
// 0 / 4 / -1 state it for a range of buckets whose outputs all have that phase (store_phase).
constexpr int kPhaseRun = -2;

// The phase of a run of streaming stores that starts at p.
inline int phase_of(const float* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) & 31;
  return a == 0 ? 0 : a == 16 ? 4 : -1;
}

// The phase put_begin gives every bucket of [j0, j1) (bucket size b) of out, or kPhaseRun when they differ.
inline int store_phase(const float* out, uint64_t j0, uint64_t b) {
  if (b % 8 != 0) return kPhaseRun;  // 32-byte steps between bucket starts keep the phase
  return phase_of(out + j0 * b);
}

// Calls f(std::integral_constant<int, PH>()) with PH = ph (0, 4 or -1), else kPhaseRun: the one place that turns
// a store phase into a template argument.
template <class F>
inline void with_phase(int ph, F&& f) {
  switch (ph) {
    case 0: f(std::integral_constant<int, 0>()); break;
    case 4: f(std::integral_constant<int, 4>()); break;
    case -1: f(std::integral_constant<int, -1>()); break;
    default: f(std::integral_constant<int, kPhaseRun>()); break;
  }
}

GZ_AVX2 inline Put16 put_begin(float* o) {
  Put16 w;
  w.o = o;
  w.phase = phase_of(o);
  w.carry = _mm_setzero_ps();
  return w;
}

template <int MODE, int PH = kPhaseRun>
GZ_AVX2 inline void put16(Put16& w, uint64_t i, __m128 f0, __m128 f1, __m128 f2, __m128 f3) {
  float* p = w.o + i;
  const int phase = PH == kPhaseRun ? w.phase : PH;
  if (MODE == 1) {
    _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), f0));
    _mm_storeu_ps(p + 4, _mm_add_ps(_mm_loadu_ps(p + 4), f1));
    _mm_storeu_ps(p + 8, _mm_add_ps(_mm_loadu_ps(p + 8), f2));
    _mm_storeu_ps(p + 12, _mm_add_ps(_mm_loadu_ps(p + 12), f3));
  } else if (MODE == 3 && phase == 0) {
    _mm256_stream_ps(p, _mm256_insertf128_ps(_mm256_castps128_ps256(f0), f1, 1));
    _mm256_stream_ps(p + 8, _mm256_insertf128_ps(_mm256_castps128_ps256(f2), f3, 1));
  } else if (MODE == 3 && phase == 4) {
    if (w.have) _mm256_stream_ps(p - 4, _mm256_insertf128_ps(_mm256_castps128_ps256(w.carry), f0, 1));
    else _mm_stream_ps(p, f0);
    _mm256_stream_ps(p + 4, _mm256_insertf128_ps(_mm256_castps128_ps256(f1), f2, 1));
    w.carry = f3;
    w.have = true;
  } else {
    _mm_storeu_ps(p, f0);
    _mm_storeu_ps(p + 4, f1);
    _mm_storeu_ps(p + 8, f2);
    _mm_storeu_ps(p + 12, f3);
  }
}

// The first cnt (<= 16) of 16 floats at w.o + i with plain (masked) stores; flushes a streaming carry first.
template <int MODE>
GZ_AVX2 inline void put_tail(Put16& w, uint64_t i, const __m128* f, uint64_t cnt) {
  if (MODE == 3 && w.have) { _mm_stream_ps(w.o + i - 4, w.carry); w.have = false; }
  float* p = w.o + i;
  for (int v = 0; v < 4; ++v) {
    const uint64_t k = cnt > uint64_t(4 * v) ? std::min<uint64_t>(4, cnt - 4 * v) : 0;
    if (!k) break;
    if (k == 4) {
      if (MODE == 1) _mm_storeu_ps(p + 4 * v, _mm_add_ps(_mm_loadu_ps(p + 4 * v), f[v]));
      else _mm_storeu_ps(p + 4 * v, f[v]);
    } else {
      const __m128i tm = _mm_cmpgt_epi32(_mm_set1_epi32(int(k)), _mm_setr_epi32(0, 1, 2, 3));
      if (MODE == 1) _mm_maskstore_ps(p + 4 * v, tm, _mm_add_ps(_mm_maskload_ps(p + 4 * v, tm), f[v]));
      else _mm_maskstore_ps(p + 4 * v, tm, f[v]);
    }
  }
}

GZ_AVX2 inline void put_finish(Put16& w, uint64_t i) {
  if (w.have) { _mm_stream_ps(w.o + i - 4, w.carry); w.have = false; }
}

}  // namespace
}  // namespace gz
