// AVX2 Philox4x32-10, bit-identical to philox.h. Four blocks per 256-bit register with the 32-bit values in the
// even 32-bit lanes, so _mm256_mul_epu32 yields the full 64-bit products (odd lanes hold don't-care bits that never
// reach an even lane except through the intended >> 32). GZ_PHILOX_G registers (4 blocks each) are interleaved.
// The first two rounds are simplified: counter words 1 (j >> 32, constant over a batch that does not cross a 2^32
// block boundary), 2 (the stream) and 3 (zero) are constants, so round 0 has one varying product, round 1 one varying
// product and constant xors, round 2 one constant xor (the constants are computed once per batch with the scalar
// rounds). The output goes out as four 128-bit stores per register (no vperm2i128: 8 µops on Zen 1).
// Up to GZ_PHILOX_S blocks of every batch of 4 GZ_PHILOX_G are computed on the scalar integer units instead (64-bit
// imul of zero-extended words = the full 32x32->64 product), interleaved round by round with the vector rounds: on
// Zen 1 the vector pipes are the bottleneck (vpmuludq only on pipe 0, 2 µops per ymm) while the integer multiplier
// is idle. Measured there: L1-hot Philox -8 % (64 blocks per call) to -14 % (256 blocks).
// Callers must check cpu_info().avx2 (which implies BMI2 on every CPU this runs on; rorx is BMI2) before calling.
#pragma once
#include <immintrin.h>
#include <cstdint>
#include <algorithm>
#include <cstring>

#include "philox.h"

namespace gz {

#define GZ_AVX2 __attribute__((target("avx2,bmi2,fma,f16c")))
#ifndef GZ_PHILOX_G
#define GZ_PHILOX_G 2  // measured on the Zen 1 host: 2 registers hide the 6-cycle round latency; more spill
#endif
#ifndef GZ_PHILOX_S
#define GZ_PHILOX_S 2  // at most this many scalar blocks ride along per batch (measured: 1 and 3 are slower; 3 spills)
#endif
// High 32 bits of each 64-bit product into the even lane: by a shift (shift port) or a shuffle (odd lanes are
// don't-care).
#ifndef GZ_PHILOX_SHUF
#define GZ_PHILOX_SHUF 0
#endif
#if GZ_PHILOX_SHUF
#define GZ_HI32(p) _mm256_shuffle_epi32((p), 0xB1)
#else
#define GZ_HI32(p) _mm256_srli_epi64((p), 32)
#endif

namespace philox_detail {

// Key schedule and the batch constants of the simplified first rounds.
struct Sched {
  __m256i K0[10], K1[10];
  __m256i E0, E2, E3;  // round-1 xor into word 0, round-1 xor into word 2, round-2 xor into word 2
  uint32_t k0[10], k1[10];  // the same, scalar (scalar_block)
  uint32_t e0, e2, e3;
  uint64_t jhi;  // the batch constants hold for this counter high word and stream_ (jhi = 2^64-1: not yet computed)
  uint32_t stream_;
};

GZ_AVX2 inline void sched_init(Sched& s, uint64_t seed) {
  s.jhi = ~uint64_t(0);  // never equal to a 32-bit jhi: the first sched_batch always computes E0/E2/E3
  s.stream_ = 0;
  s.E0 = s.E2 = s.E3 = _mm256_setzero_si256();  // (set here only so the compiler can see they are initialised)
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    s.K0[r] = _mm256_set1_epi32(int(k0 + uint32_t(r) * 0x9E3779B9u));
    s.K1[r] = _mm256_set1_epi32(int(k1 + uint32_t(r) * 0xBB67AE85u));
    s.k0[r] = k0 + uint32_t(r) * 0x9E3779B9u;
    s.k1[r] = k1 + uint32_t(r) * 0xBB67AE85u;
  }
  s.e0 = s.e2 = s.e3 = 0;
}

// Constants for counter high word jhi (stream `stream`): scalar rounds on the constant words.
GZ_AVX2 inline void sched_batch(Sched& s, uint64_t seed, uint32_t jhi, uint32_t stream) {
  if (s.jhi == jhi && s.stream_ == stream) return;
  s.jhi = jhi;
  s.stream_ = stream;
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  const uint32_t k0r1 = k0 + 0x9E3779B9u, k1r1 = k1 + 0xBB67AE85u, k1r2 = k1 + 2u * 0xBB67AE85u;
  // round 0: c2 = stream, c3 = 0 -> p1 = M1 * stream; c0' = hi(p1) ^ jhi ^ k0, c1' = lo(p1)
  const uint64_t p1 = uint64_t(M1) * stream;
  const uint32_t c0r1 = uint32_t(p1 >> 32) ^ jhi ^ k0, c1r1 = uint32_t(p1);
  // round 1: p0 = M0 * c0' (constant): c2'' = hi(p0) ^ c3' ^ k1r1, c3'' = lo(p0); c0'' = hi(p1') ^ c1' ^ k0r1
  const uint64_t p0 = uint64_t(M0) * c0r1;
  s.e0 = c1r1 ^ k0r1;
  s.e2 = uint32_t(p0 >> 32) ^ k1r1;
  // round 2: c2''' = hi(p0'') ^ c3'' ^ k1r2
  s.e3 = uint32_t(p0) ^ k1r2;
  s.E0 = _mm256_set1_epi32(int(s.e0));
  s.E2 = _mm256_set1_epi32(int(s.e2));
  s.E3 = _mm256_set1_epi32(int(s.e3));
}

// Round 9 and the store of the 4 blocks of one register in block order (16 bytes each), complemented when NOT.
// The last products are used in place: a swap of the 32-bit halves puts hi in the even and lo in the odd lane, so
// one xor with [c ^ K9 ^ N, N] (N = 0 or ~0) gives [w0 w1] (resp. [w2 w3]) directly. K0f/K1f = K[9] ^ N.
template <bool NOT>
GZ_AVX2 inline void store4(uint32_t* out, __m256i c0, __m256i c1, __m256i c2, __m256i c3, __m256i K0f, __m256i K1f) {
  const __m256i M0 = _mm256_set1_epi32(int(0xD2511F53u)), M1 = _mm256_set1_epi32(int(0xCD9E8D57u));
  const __m256i N = NOT ? _mm256_set1_epi32(-1) : _mm256_setzero_si256();
  const __m256i p0 = _mm256_mul_epu32(c0, M0);
  const __m256i p1 = _mm256_mul_epu32(c2, M1);
  const __m256i A = _mm256_xor_si256(_mm256_shuffle_epi32(p1, 0xB1), _mm256_blend_epi32(_mm256_xor_si256(c1, K0f), N, 0xAA));
  const __m256i B = _mm256_xor_si256(_mm256_shuffle_epi32(p0, 0xB1), _mm256_blend_epi32(_mm256_xor_si256(c3, K1f), N, 0xAA));
  const __m256i lo = _mm256_unpacklo_epi64(A, B);  // blocks 0, 2
  const __m256i hi = _mm256_unpackhi_epi64(A, B);  // blocks 1, 3
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(lo));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4), _mm256_castsi256_si128(hi));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 8), _mm256_extracti128_si256(lo, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 12), _mm256_extracti128_si256(hi, 1));
}

// Upper 32 bits of a 64-bit product, rotated into the low half (rorx: one µop, non-destructive; the caller uses only
// the low 32 bits). Inline asm also keeps the scalar Philox in general-purpose registers.
GZ_AVX2 inline uint64_t hi_rot(uint64_t p) {
  uint64_t h;
  asm("rorx $32, %1, %0" : "=r"(h) : "r"(p));
  return h;
}

// The last round's output of a scalar block: words 0, 1 = rot(p1) ^ (c1 ^ K0[9]) as one 64-bit value (the rotation
// puts hi(p1) in the low and lo(p1) in the high half), words 2, 3 the same with p0 and c3 ^ K1[9]; NOT complements
// both halves with one 64-bit not. Two 8-byte stores.
template <bool NOT>
GZ_AVX2 inline void store_words(uint32_t* out, uint64_t p0, uint64_t p1, uint32_t x1, uint32_t x3) {
  uint64_t w01 = hi_rot(p1) ^ x1, w23 = hi_rot(p0) ^ x3;
  if (NOT) { w01 = ~w01; w23 = ~w23; }
  std::memcpy(out, &w01, 8);
  std::memcpy(out + 2, &w23, 8);
}

// One block on the scalar integer units (imul r64 of zero-extended 32-bit values = the full 32x32->64 product, one
// per cycle on Zen 1 next to vpmuludq on vector pipe 0), the same simplified rounds as the vector code (sched_batch done for
// the counter's high word). The empty asm statements keep the words in general-purpose registers: the compiler
// must not turn this into vector code, which would compete with the vector batches it runs beside.
template <bool NOT>
GZ_AVX2 inline void scalar_block(const Sched& s, uint32_t j, uint32_t* out) {
  const uint64_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  uint64_t p0 = M0 * j;                                         // round 0
  uint64_t c2 = uint32_t(p0 >> 32) ^ s.k1[0];
  asm("" : "+r"(c2));
  uint64_t p1 = M1 * c2;                                        // round 1
  uint64_t c0 = uint32_t(p1 >> 32) ^ s.e0;
  uint64_t c1 = uint32_t(p1);
  c2 = uint32_t(p0) ^ s.e2;
  asm("" : "+r"(c0), "+r"(c2));
  p0 = M0 * c0;                                                 // round 2
  p1 = M1 * c2;
  c0 = uint32_t(p1 >> 32) ^ uint32_t(c1 ^ s.k0[2]);
  c1 = uint32_t(p1);
  c2 = uint32_t(p0 >> 32) ^ s.e3;
  uint64_t c3 = uint32_t(p0);
  asm("" : "+r"(c0), "+r"(c1), "+r"(c2), "+r"(c3));
#pragma GCC unroll 6
  for (int r = 3; r < 9; ++r) {
    p0 = M0 * c0;
    p1 = M1 * c2;
    c0 = uint32_t(p1 >> 32) ^ uint32_t(c1 ^ s.k0[r]);
    c2 = uint32_t(p0 >> 32) ^ uint32_t(c3 ^ s.k1[r]);
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    asm("" : "+r"(c0), "+r"(c1), "+r"(c2), "+r"(c3));
  }
  p0 = M0 * c0;                                                 // round 9
  p1 = M1 * c2;
  store_words<NOT>(out, p0, p1, uint32_t(c1 ^ s.k0[9]), uint32_t(c3 ^ s.k1[9]));
}


// Rounds 0-8 of G vector registers of 4 blocks (counters jv[g], 64-bit lanes, low words used; c0..c3 = the state
// before the last round, even lanes valid; store4 does round 9) and all 10 rounds of S scalar blocks (counters
// js + q, output to sout + 4 q), round by round in program order: the in-order dispatch then feeds the integer
// multiplier and the vector pipes side by side. (Scalar blocks placed after the vector rounds, as whole blocks, gave
// nothing: their long dependency chains fill the integer schedulers and stall dispatch of the vector work behind
// them.) Rounds 0-2 are simplified as described at the top. Scalar state: a0, a2 = words 0, 2 (zero-extended);
// q1, q3 = the last products, whose low halves are words 1, 3.
template <int G, int S, bool NOT>
GZ_AVX2 inline void rounds_mixed(const Sched& s, const __m256i* jv, __m256i* c0, __m256i* c1, __m256i* c2, __m256i* c3,
                                 uint32_t js, uint32_t* sout) {
  const __m256i M0 = _mm256_set1_epi32(int(0xD2511F53u)), M1 = _mm256_set1_epi32(int(0xCD9E8D57u));
  const uint64_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  uint64_t a0[S > 0 ? S : 1], a2[S > 0 ? S : 1], q1[S > 0 ? S : 1], q3[S > 0 ? S : 1];
  // rounds 0 and 1
  for (int g = 0; g < G; ++g) {
    const __m256i p0 = _mm256_mul_epu32(jv[g], M0);
    const __m256i c2a = _mm256_xor_si256(GZ_HI32(p0), s.K1[0]);
    const __m256i p1 = _mm256_mul_epu32(c2a, M1);
    c0[g] = _mm256_xor_si256(GZ_HI32(p1), s.E0);
    c1[g] = p1;
    c2[g] = _mm256_xor_si256(p0, s.E2);
  }
  for (int q = 0; q < S; ++q) {
    const uint64_t p0 = m0 * uint32_t(js + uint32_t(q));
    const uint64_t c2a = uint32_t(hi_rot(p0)) ^ s.k1[0];
    const uint64_t p1 = m1 * c2a;
    a0[q] = uint32_t(hi_rot(p1)) ^ s.e0;
    q1[q] = p1;
    a2[q] = uint32_t(p0) ^ s.e2;
  }
  // round 2
  for (int g = 0; g < G; ++g) {
    const __m256i p0 = _mm256_mul_epu32(c0[g], M0);
    const __m256i p1 = _mm256_mul_epu32(c2[g], M1);
    const __m256i n0 = _mm256_xor_si256(GZ_HI32(p1), _mm256_xor_si256(c1[g], s.K0[2]));
    const __m256i n2 = _mm256_xor_si256(GZ_HI32(p0), s.E3);
    c0[g] = n0; c1[g] = p1; c2[g] = n2; c3[g] = p0;
  }
  for (int q = 0; q < S; ++q) {
    const uint64_t p0 = m0 * a0[q], p1 = m1 * a2[q];
    a0[q] = uint32_t(hi_rot(p1)) ^ uint32_t(q1[q] ^ s.k0[2]);
    a2[q] = uint32_t(hi_rot(p0)) ^ s.e3;
    q1[q] = p1; q3[q] = p0;
  }
#pragma GCC unroll 6
  for (int r = 3; r < 9; ++r) {
    for (int g = 0; g < G; ++g) {
      const __m256i p0 = _mm256_mul_epu32(c0[g], M0);
      const __m256i p1 = _mm256_mul_epu32(c2[g], M1);
      const __m256i n0 = _mm256_xor_si256(GZ_HI32(p1), _mm256_xor_si256(c1[g], s.K0[r]));
      const __m256i n2 = _mm256_xor_si256(GZ_HI32(p0), _mm256_xor_si256(c3[g], s.K1[r]));
      c0[g] = n0; c1[g] = p1; c2[g] = n2; c3[g] = p0;
    }
    for (int q = 0; q < S; ++q) {
      const uint64_t p0 = m0 * a0[q], p1 = m1 * a2[q];
      a0[q] = uint32_t(hi_rot(p1)) ^ uint32_t(q1[q] ^ s.k0[r]);
      a2[q] = uint32_t(hi_rot(p0)) ^ uint32_t(q3[q] ^ s.k1[r]);
      q1[q] = p1; q3[q] = p0;
    }
  }
  for (int q = 0; q < S; ++q) {  // round 9
    const uint64_t p0 = m0 * a0[q], p1 = m1 * a2[q];
    store_words<NOT>(sout + 4 * q, p0, p1, uint32_t(q1[q] ^ s.k0[9]), uint32_t(q3[q] ^ s.k1[9]));
  }
}

// `iters` batches of 4 G vector blocks followed by S scalar blocks, from block j (the batch constants
// of sched_batch hold for all of them). Writes 4 * (4 G + S) words per batch to o.
template <bool NOT, int S>
GZ_AVX2 inline void batches(const Sched& s, uint64_t j, uint64_t iters, uint32_t* o) {
  constexpr int G = GZ_PHILOX_G;
  constexpr uint32_t PER = 4 * G + S;
  __m256i jv[G];
  for (int g = 0; g < G; ++g)
    jv[g] = _mm256_add_epi64(_mm256_set1_epi64x(int64_t(j + 4 * g)), _mm256_setr_epi64x(0, 1, 2, 3));
  const __m256i step = _mm256_set1_epi64x(int64_t(PER));
  const __m256i N = NOT ? _mm256_set1_epi32(-1) : _mm256_setzero_si256();
  const __m256i K0f = _mm256_xor_si256(s.K0[9], N), K1f = _mm256_xor_si256(s.K1[9], N);
  uint32_t js = uint32_t(j) + uint32_t(4 * G);
  for (uint64_t it = 0; it < iters; ++it, o += 4 * PER, js += PER) {
    __m256i c0[G], c1[G], c2[G], c3[G];
    rounds_mixed<G, S, NOT>(s, jv, c0, c1, c2, c3, js, o + 16 * G);
    for (int g = 0; g < G; ++g) {
      store4<NOT>(o + 16 * g, c0[g], c1[g], c2[g], c3[g], K0f, K1f);
      jv[g] = _mm256_add_epi64(jv[g], step);
    }
  }
}

template <bool NOT>
GZ_AVX2 inline void batches_s(const Sched& s, int S, uint64_t j, uint64_t iters, uint32_t* o) {
  if (!iters) return;
  static_assert(GZ_PHILOX_S >= 0 && GZ_PHILOX_S <= 3, "GZ_PHILOX_S: 0 .. 3");
  switch (S) {
    case 0: batches<NOT, 0>(s, j, iters, o); break;
    case 1: batches<NOT, (GZ_PHILOX_S >= 1 ? 1 : 0)>(s, j, iters, o); break;
    case 2: batches<NOT, (GZ_PHILOX_S >= 2 ? 2 : 0)>(s, j, iters, o); break;
    default: batches<NOT, (GZ_PHILOX_S >= 3 ? 3 : 0)>(s, j, iters, o); break;
  }
}

// Blocks j0 .. j0+nblocks-1 with a schedule initialised by sched_init(s, seed) (reusable across calls, same seed).
// V batches of 4 G vector blocks; up to GZ_PHILOX_S scalar blocks ride along in each batch (spread evenly), so
// that no block is left to a slow tail when nblocks allows; what is left (fewer than 4 G blocks, or blocks beside a
// counter-word-1 boundary) goes to scalar_block.
template <bool NOT>
GZ_AVX2 inline void blocks_sched(Sched& s, uint64_t seed, uint64_t j0, uint64_t nblocks, uint32_t* out, uint32_t stream) {
  constexpr uint64_t G = GZ_PHILOX_G, SM = GZ_PHILOX_S;
  uint64_t done = 0;
  while (nblocks - done >= 4 * G) {
    const uint64_t j = j0 + done;
    // blocks before the next counter-word-1 boundary (no batch crosses it)
    const uint64_t to_wrap = (uint64_t(1) << 32) - (j & 0xFFFFFFFFu);
    const uint64_t avail = std::min(nblocks - done, to_wrap);
    if (avail < 4 * G) break;
    sched_batch(s, seed, uint32_t(j >> 32), stream);
    const uint64_t V = std::min((avail + 4 * G + SM - 1) / (4 * G + SM), avail / (4 * G));
    const uint64_t sc = std::min(avail - 4 * G * V, SM * V);  // scalar blocks inside the batches
    const uint64_t lo = sc / V, nhi = sc % V;
    batches_s<NOT>(s, int(lo + 1), j, nhi, out + 4 * done);
    batches_s<NOT>(s, int(lo), j + nhi * (4 * G + lo + 1), V - nhi, out + 4 * (done + nhi * (4 * G + lo + 1)));
    done += 4 * G * V + sc;
  }
  for (; done < nblocks; ++done) {
    const uint64_t j = j0 + done;
    sched_batch(s, seed, uint32_t(j >> 32), stream);
    scalar_block<NOT>(s, uint32_t(j), out + 4 * done);
  }
}

template <bool NOT>
GZ_AVX2 inline void blocks(uint64_t seed, uint64_t j0, uint64_t nblocks, uint32_t* out, uint32_t stream) {
  Sched s;
  sched_init(s, seed);
  blocks_sched<NOT>(s, seed, j0, nblocks, out, stream);
}

}  // namespace philox_detail

// Writes the four output words of blocks j0 .. j0+nblocks-1 (stream `stream`) to out[4*(j-j0) .. +3], in order.
// Viewed as uint16_t, out holds the 16-bit uniforms of elements 8*j0 .. 8*(j0+nblocks)-1 in element order.
GZ_AVX2 inline void philox_blocks_avx2(uint64_t seed, uint64_t j0, uint64_t nblocks, uint32_t* out,
                                       uint32_t stream = 0) {
  philox_detail::blocks<false>(seed, j0, nblocks, out, stream);
}

// Same, every word complemented: viewed as uint16_t, out holds 65535 - u for each 16-bit uniform u (the qsgd
// quantizer adds it: (t + 65535 - u) >> 16 = (t >> 16) + ((t & 0xFFFF) > u)).
GZ_AVX2 inline void philox_blocks_not_avx2(uint64_t seed, uint64_t j0, uint64_t nblocks, uint32_t* out,
                                           uint32_t stream = 0) {
  philox_detail::blocks<true>(seed, j0, nblocks, out, stream);
}

}  // namespace gz
