// AVX2 Philox4x32-10, bit-identical to philox.h. Four blocks per 256-bit register with the 32-bit values in the
// even 32-bit lanes, so _mm256_mul_epu32 yields the full 64-bit products (odd lanes hold don't-care bits that never
// reach an even lane except through the intended >> 32). Sixteen blocks are interleaved per iteration.
// Callers must check cpu_info().avx2 before calling.
#pragma once
#include <immintrin.h>
#include <cstdint>
#include <cstring>

#include "philox.h"

namespace gz {

#define GZ_AVX2 __attribute__((target("avx2,bmi2,fma,f16c")))
#ifndef GZ_PHILOX_G
#define GZ_PHILOX_G 4
#endif
// High 32 bits of each 64-bit product into the even lane: optionally by a shuffle (odd lanes are don't-care) on the shuffle
// port and leaves the shift/multiply ports to the multiplies.
#ifndef GZ_PHILOX_SHUF
#define GZ_PHILOX_SHUF 0  // measured: the shift is faster on the Intel device host (2.07 vs 1.61 G el/s)
#endif
#if GZ_PHILOX_SHUF
#define GZ_HI32(p) _mm256_shuffle_epi32((p), 0xB1)
#else
#define GZ_HI32(p) _mm256_srli_epi64((p), 32)
#endif

// Writes the four output words of blocks j0 .. j0+nblocks-1 (stream `stream`) to out[4*(j-j0) .. +3], in order.
// Viewed as uint16_t, out holds the 16-bit uniforms of elements 8*j0 .. 8*(j0+nblocks)-1 in element order.
GZ_AVX2 inline void philox_blocks_avx2(uint64_t seed, uint64_t j0, uint64_t nblocks, uint32_t* out,
                                       uint32_t stream = 0) {
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  __m256i K0[10], K1[10];
  for (int r = 0; r < 10; ++r) {
    K0[r] = _mm256_set1_epi32(int(k0 + uint32_t(r) * 0x9E3779B9u));
    K1[r] = _mm256_set1_epi32(int(k1 + uint32_t(r) * 0xBB67AE85u));
  }
  const __m256i M0 = _mm256_set1_epi32(int(0xD2511F53u)), M1 = _mm256_set1_epi32(int(0xCD9E8D57u));
  const __m256i S = _mm256_set1_epi32(int(stream));
  constexpr uint64_t G = GZ_PHILOX_G;  // registers (of 4 blocks) interleaved
  uint64_t done = 0;
  while (nblocks - done >= 4 * G) {
    __m256i c0[G], c1[G], c2[G], c3[G];
    const uint64_t j = j0 + done;
    for (uint64_t g = 0; g < G; ++g) {
      const uint64_t jb = j + 4 * g;
      // 64-bit lanes jb..jb+3: low word in the even lane, high word via >> 32.
      __m256i jv = _mm256_add_epi64(_mm256_set1_epi64x(int64_t(jb)), _mm256_setr_epi64x(0, 1, 2, 3));
      // round 0 with c2 = stream, c3 = 0: p1 = M1 * stream
      __m256i p0 = _mm256_mul_epu32(jv, M0);
      __m256i p1 = _mm256_mul_epu32(S, M1);
      c0[g] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), _mm256_srli_epi64(jv, 32)), K0[0]);
      c2[g] = _mm256_xor_si256(_mm256_srli_epi64(p0, 32), K1[0]);
      c1[g] = p1;
      c3[g] = p0;
    }
    for (int r = 1; r < 10; ++r) {
      for (uint64_t g = 0; g < G; ++g) {
        __m256i p0 = _mm256_mul_epu32(c0[g], M0);
        __m256i p1 = _mm256_mul_epu32(c2[g], M1);
        __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(GZ_HI32(p1), c1[g]), K0[r]);
        __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(GZ_HI32(p0), c3[g]), K1[r]);
        c0[g] = n0; c1[g] = p1; c2[g] = n2; c3[g] = p0;
      }
    }
    for (uint64_t g = 0; g < G; ++g) {
      __m256i A = _mm256_blend_epi32(c0[g], _mm256_slli_epi64(c1[g], 32), 0xAA);  // [w0 w1] per block
      __m256i B = _mm256_blend_epi32(c2[g], _mm256_slli_epi64(c3[g], 32), 0xAA);  // [w2 w3]
      __m256i lo = _mm256_unpacklo_epi64(A, B);  // blocks 0, 2
      __m256i hi = _mm256_unpackhi_epi64(A, B);  // blocks 1, 3
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4 * (done + 4 * g)), _mm256_permute2x128_si256(lo, hi, 0x20));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4 * (done + 4 * g) + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
    done += 4 * G;
  }
  for (; done < nblocks; ++done) {
    Philox4 w = philox_block(seed, j0 + done, stream);
    std::memcpy(out + 4 * done, w.v, 16);
  }
}

}  // namespace gz
