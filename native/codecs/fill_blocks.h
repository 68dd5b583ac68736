// Dense output of a sparse decode (top-k, random-k): out[lo, hi) = zeros except the values at the sorted indices
// ix[j..k) below hi, written block by block from an L1 buffer with aligned 256-bit stores (NT: non-temporal).
// Preconditions: hi - lo is a multiple of 8 and out + lo is 32-byte aligned; ix is increasing and validated.
// value(j) gives the float of entry j (the codec's value decoding and scaling).
#pragma once
#include <immintrin.h>
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/threadpool.h"

namespace gz {

template <class I, bool NT, class Value>
__attribute__((target("avx2"))) void fill_blocks(float* out, uint64_t lo, uint64_t hi, const I* ix, uint64_t j,
                                                 uint64_t k, const Value& value) {
  constexpr uint64_t B = 2048;
  alignas(32) float buf[B];
  std::memset(buf, 0, sizeof buf);
  for (uint64_t b = lo; b < hi; b += B) {
    const uint64_t e = std::min(hi, b + B);
    const uint64_t j0 = j;
    while (j < k && uint64_t(ix[j]) < e) {
      buf[uint64_t(ix[j]) - b] = value(j);
      ++j;
    }
    float* o = out + b;
    const uint64_t len = e - b;
    uint64_t q = 0;
    for (; q + 32 <= len; q += 32) {
      const __m256 v0 = _mm256_load_ps(buf + q), v1 = _mm256_load_ps(buf + q + 8);
      const __m256 v2 = _mm256_load_ps(buf + q + 16), v3 = _mm256_load_ps(buf + q + 24);
      if (NT) {
        _mm256_stream_ps(o + q, v0);
        _mm256_stream_ps(o + q + 8, v1);
        _mm256_stream_ps(o + q + 16, v2);
        _mm256_stream_ps(o + q + 24, v3);
      } else {
        _mm256_store_ps(o + q, v0);
        _mm256_store_ps(o + q + 8, v1);
        _mm256_store_ps(o + q + 16, v2);
        _mm256_store_ps(o + q + 24, v3);
      }
    }
    for (; q < len; q += 8) {
      if (NT) _mm256_stream_ps(o + q, _mm256_load_ps(buf + q));
      else _mm256_store_ps(o + q, _mm256_load_ps(buf + q));
    }
    for (uint64_t q2 = j0; q2 < j; ++q2) buf[uint64_t(ix[q2]) - b] = 0.f;
  }
  if (NT) _mm_sfence();
}

// The whole output out[0, n) (n >= 64, out 4-byte aligned): plain stores up to a 32-byte boundary and after the
// last whole vector, fill_blocks in between, split over `threads` when n >= 2^18, non-temporal when n >= 2^20.
template <class I, class Value>
void fill_dense(float* out, uint64_t n, const I* ix, uint64_t k, int threads, const Value& value) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(out);
  const uint64_t head = ((32 - (addr & 31)) & 31) / 4;
  const uint64_t vend = head + ((n - head) & ~uint64_t(7));
  for (uint64_t i = 0; i < head; ++i) out[i] = 0.f;
  for (uint64_t i = vend; i < n; ++i) out[i] = 0.f;
  uint64_t j = 0;
  for (; j < k && uint64_t(ix[j]) < head; ++j) out[uint64_t(ix[j])] = value(j);
  for (uint64_t q = k; q > j && uint64_t(ix[q - 1]) >= vend; --q) out[uint64_t(ix[q - 1])] = value(q - 1);
  const bool nt = n >= (uint64_t(1) << 20);
  const uint64_t T = (threads > 1 && n >= (uint64_t(1) << 18)) ? uint64_t(threads) : 1;
  const uint64_t nv = (vend - head) / 8;
  par_for(int(T), T, [&](uint64_t t) {
    const uint64_t lo = head + 8 * (nv * t / T), hi = head + 8 * (nv * (t + 1) / T);
    if (lo >= hi) return;
    const uint64_t j0 = uint64_t(std::lower_bound(ix + j, ix + k, I(lo)) - ix);
    if (nt) fill_blocks<I, true>(out, lo, hi, ix, j0, k, value);
    else fill_blocks<I, false>(out, lo, hi, ix, j0, k, value);
  });
}

}  // namespace gz
