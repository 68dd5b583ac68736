// Philox4x32-10 (Salmon et al., SC'11, Random123), scalar reference. Counter layout: docs/FORMAT.md section 2.
#pragma once
#include <cstdint>

namespace gz {

struct Philox4 { uint32_t v[4]; };

#if defined(__CUDACC__)
#define GZ_HD __host__ __device__ __forceinline__
#else
#define GZ_HD inline
#endif

GZ_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = uint64_t(M0) * c0, p1 = uint64_t(M1) * c2;
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0), hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    k0 += W0; k1 += W1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Rounding-uniform block j (stream 0): words for elements 8j..8j+7.
GZ_HD Philox4 philox_block(uint64_t seed, uint64_t j, uint32_t stream = 0) {
  return philox4x32_10(uint32_t(j), uint32_t(j >> 32), stream, 0, uint32_t(seed), uint32_t(seed >> 32));
}

// 16-bit uniform of global element i (stream 0).
GZ_HD uint32_t uniform16(uint64_t seed, uint64_t i) {
  Philox4 w = philox_block(seed, i >> 3, 0);
  return (w.v[(i & 7) >> 1] >> (16 * (i & 1))) & 0xFFFFu;
}

// Random-k draw t (stream 1): 64-bit value.
GZ_HD uint64_t randomk_draw(uint64_t seed, uint64_t t) {
  Philox4 w = philox_block(seed, t, 1);
  return uint64_t(w.v[0]) | (uint64_t(w.v[1]) << 32);
}

}  // namespace gz
