// QSGD fixed-width coding and TernGrad (= QSGD s = 1, l-inf, fixed). docs/FORMAT.md sections 2, 3.1, 3.2, 4.1.
// Scalar path: quant_ref.h literally. AVX2 path: one fused pass per bucket while it sits in L1 (max + non-finite
// check, l2 in the 32-lane order, Philox uniforms, one-conversion quantizer, shuffle/multiply-add packing), byte-identical. No pext/pdep (microcoded on Zen 1/2).
// Threads work on ranges of buckets; every bucket's output offset is computable, so bytes never depend on threads.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/bitio.h"
#include "core/codec.h"
#include "core/quant_ref.h"
#include "core/simd_philox.h"
#include "core/threadpool.h"
#include "codecs/put16.h"

namespace gz {
namespace {

using ref::f2u;
using ref::u2f;

struct QCfg {
  uint32_t s;
  Norm norm;
  uint32_t W;        // code width in bits
  uint64_t b, n, B;  // bucket size, elements, buckets
  uint64_t stride;   // bytes per full bucket
};

inline uint64_t code_bytes(uint64_t m, uint32_t W) { return (m * W + 7) / 8; }

QCfg make_cfg(const Params& p, uint64_t n) {
  QCfg c;
  if (p.codec == TERNGRAD) { c.s = 1; c.norm = NORM_LINF; }
  else { c.s = p.levels; c.norm = p.norm; }
  if (c.s < 1 || c.s > 65535) throw Error(ErrCode::INVALID_ARG, "qsgd levels must be in 1..65535");
  if (p.bucket < 1) throw Error(ErrCode::INVALID_ARG, "bucketSize must be >= 1");
  c.W = 1 + (32 - __builtin_clz(c.s));  // 1 + ceil(log2(s + 1))
  c.b = p.bucket;
  c.n = n;
  c.B = (n + c.b - 1) / c.b;
  c.stride = 4 + code_bytes(c.b, c.W);
  return c;
}


[[noreturn]] void throw_nonfinite(uint64_t bucket) {
  throw Error(ErrCode::NONFINITE, "input contains NaN or Inf (bucket " + std::to_string(bucket) + ")");
}
[[noreturn]] void throw_norm_overflow(uint64_t bucket) {
  throw Error(ErrCode::NONFINITE, "bucket " + std::to_string(bucket) + " l2 norm overflows float32");
}

// ------------------------------------------------------------------------------------------ scalar encoder
void enc_bucket_scalar(const QCfg& c, uint64_t seed, const float* x, uint64_t j, uint8_t* dst) {
  const uint64_t start = j * c.b, m = std::min(c.b, c.n - start);
  const float* v = x + start;
  uint32_t amax = 0;
  for (uint64_t i = 0; i < m; ++i) amax = std::max(amax, f2u(v[i]) & 0x7FFFFFFFu);
  if (amax >= 0x7F800000u) throw_nonfinite(j);
  const float N = c.norm == NORM_L2 ? ref::l2_norm(v, m) : ref::linf_norm(v, m);
  if (!(N <= 3.4028235e38f)) throw_norm_overflow(j);
  store_f32le(dst, N);
  float r65536, s65536, pre;
  ref::qsgd_bucket_consts(N, c.s, &r65536, &s65536, &pre);
  uint8_t* o = dst + 4;
  uint64_t acc = 0;
  unsigned nb = 0;
  uint64_t blk = ~uint64_t(0);
  Philox4 w{};
  for (uint64_t i = 0; i < m; ++i) {
    const uint64_t g = start + i;
    if ((g >> 3) != blk) { blk = g >> 3; w = philox_block(seed, blk, 0); }
    const uint32_t u = (w.v[(g & 7) >> 1] >> (16 * (g & 1))) & 0xFFFFu;
    const uint32_t z = ref::qsgd_zeta(v[i] * pre, r65536, s65536, u);
    const uint32_t sg = (v[i] < 0.f && z > 0) ? 1u : 0u;
    acc |= uint64_t((z << 1) | sg) << nb;
    nb += c.W;
    while (nb >= 8) { *o++ = uint8_t(acc); acc >>= 8; nb -= 8; }
  }
  if (nb) *o++ = uint8_t(acc);
}

// ------------------------------------------------------------------------------------------ AVX2 encoder
constexpr uint64_t kPiece = 2048;
constexpr uint64_t kStreamMin = uint64_t(1) << 21;  // elements: plain decodes of 8 MiB and more use streaming stores  // elements quantized per Philox batch (multiple of 32)

GZ_AVX2 inline uint32_t hmax_epu32(__m256i v) {
  __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4E));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xB1));
  return uint32_t(_mm_cvtsi128_si32(m));
}

GZ_AVX2 inline __m256i tail_mask(uint64_t cnt) {  // lanes < cnt set (cnt in 0..8)
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(cnt)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

GZ_AVX2 inline __m256 load_n(const float* p, uint64_t cnt) {  // cnt in 0..8, zeros beyond
  if (cnt >= 8) return _mm256_loadu_ps(p);
  if (cnt == 0) return _mm256_setzero_ps();
  return _mm256_maskload_ps(p, tail_mask(cnt));
}

// max |bits| over v[0..m); also prefetches pf[0..pm) (pm floats, one line per 16), pm <= m rounded to the loop.
GZ_AVX2 uint32_t amax_avx2(const float* v, uint64_t m, const float* pf = nullptr, uint64_t pm = 0) {
  const __m256i abs = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  uint64_t i = 0;
  for (; i + 32 <= m; i += 32) {
    if (i < pm) {
      _mm_prefetch(reinterpret_cast<const char*>(pf + i), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(pf + i + 16), _MM_HINT_T0);
    }
    a0 = _mm256_max_epu32(a0, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(v + i)), abs));
    a1 = _mm256_max_epu32(a1, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(v + i + 8)), abs));
    a2 = _mm256_max_epu32(a2, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(v + i + 16)), abs));
    a3 = _mm256_max_epu32(a3, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(v + i + 24)), abs));
  }
  for (; i < m; i += 8)
    a0 = _mm256_max_epu32(a0, _mm256_and_si256(_mm256_castps_si256(load_n(v + i, m - i)), abs));
  return hmax_epu32(_mm256_max_epu32(_mm256_max_epu32(a0, a1), _mm256_max_epu32(a2, a3)));
}

// l2 norm of FORMAT section 2 given amax (> 0, finite): four 8-lane accumulators = the 32 lanes, then the tree.
// No |.|: (x*f)^2 and (|x|*f)^2 are the same bits (IEEE products are sign-symmetric).
GZ_AVX2 float l2_avx2(const float* v, uint64_t m, uint32_t amax) {
  const int e = ref::floor_log2(u2f(amax));
  const int ne = -e;
  float f1, f2 = 1.f;
  bool two = false;
  if (ne >= -126 && ne <= 127) {
    f1 = ref::pow2f(ne);
  } else {
    const int e1 = ne < 0 ? -126 : 127;
    f1 = ref::pow2f(e1);
    f2 = ref::pow2f(ne - e1);
    two = true;
  }
  const __m256 F1 = _mm256_set1_ps(f1), F2 = _mm256_set1_ps(f2);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  uint64_t i = 0;
  if (!two) {
    for (; i + 32 <= m; i += 32)
      for (int k = 0; k < 4; ++k) {
        __m256 y = _mm256_mul_ps(_mm256_loadu_ps(v + i + 8 * k), F1);
        acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(y, y));
      }
  } else {
    for (; i + 32 <= m; i += 32)
      for (int k = 0; k < 4; ++k) {
        __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i + 8 * k), F1), F2);
        acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(y, y));
      }
  }
  if (i < m) {
    const uint64_t r = m - i;
    for (int k = 0; k < 4; ++k) {
      const uint64_t cnt = r > uint64_t(8 * k) ? std::min<uint64_t>(8, r - 8 * k) : 0;
      if (!cnt) break;
      __m256 y = _mm256_mul_ps(load_n(v + i + 8 * k, cnt), F1);
      if (two) y = _mm256_mul_ps(y, F2);
      acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(y, y));
    }
  }
  // tree: w = 16 (acc0 += acc2, acc1 += acc3), w = 8 (acc0 += acc1), then 4, 2, 1 inside the register
  __m256 t = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
  const float lane0 = _mm_cvtss_f32(q);
  return ref::mul_pow2(std::sqrt(lane0), e);
}

struct QuantConsts {
  __m256 c, r, s;
  bool pre;  // c != 1 (tiny-scale bucket)
};

// Level zeta of 8 elements (32-bit lanes; zeros beyond the loaded ones give level 0). nu: 8 complemented uniforms
// 65535 - u. One conversion: t = trunc(min(|x|*c*r65536, s65536)) = 65536*l + T exactly; then
// (t + 65535 - u) >> 16 = l + (T > u), the reference's (t >> 16) + (u < (t & 0xFFFF)). t <= 65535*65536, so the
// 32-bit sum cannot wrap. UNSIGNED_CVT: s >= 32768 (t may reach 2^31).
// CLAMP false: the caller showed (amax*c)*r65536 <= s65536 for the bucket, so min(., s65536) is the identity
// (products are monotone in |x| <= amax).
template <bool UNSIGNED_CVT, bool PRE, bool CLAMP>
GZ_AVX2 inline __m256i zeta8(__m256 xv, const uint16_t* nu, const QuantConsts& k) {
  const __m256 ax = _mm256_and_ps(xv, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
  const __m256 a0 = _mm256_mul_ps(PRE ? _mm256_mul_ps(ax, k.c) : ax, k.r);
  const __m256 a = CLAMP ? _mm256_min_ps(a0, k.s) : a0;
  __m256i t;
  if (UNSIGNED_CVT) {
    const __m256 two31 = _mm256_set1_ps(2147483648.f);
    const __m256 big = _mm256_cmp_ps(a, two31, _CMP_GE_OQ);
    t = _mm256_cvttps_epi32(_mm256_sub_ps(a, _mm256_and_ps(big, two31)));
    t = _mm256_xor_si256(t, _mm256_and_si256(_mm256_castps_si256(big), _mm256_set1_epi32(int(0x80000000u))));
  } else {
    t = _mm256_cvttps_epi32(a);
  }
  const __m256i uv = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(nu)));
  return _mm256_srli_epi32(_mm256_add_epi32(t, uv), 16);
}

// 32 codes (2 zeta + sign) as bytes in the order of the in-lane packs: byte 4q + e (e < 4) of the low half is element
// 8q + e, of the high half element 8q + 4 + e. z[q], xv[q]: zeta and input of elements 8q .. 8q+7 (zeta <= 127).
// Sign: packs keeps the sign of the float bits (only +0.0 packs to 0); sign_epi8 negates zeta where x < 0, so
// "negative" = (x < 0 and zeta > 0), the reference's sign bit (-0.0 and zeros have zeta 0).
GZ_AVX2 inline __m256i codes32(const __m256i* z, const __m256* xv) {
  const __m256i zb = _mm256_packus_epi16(_mm256_packs_epi32(z[0], z[1]), _mm256_packs_epi32(z[2], z[3]));
  const __m256i sb = _mm256_packs_epi16(_mm256_packs_epi32(_mm256_castps_si256(xv[0]), _mm256_castps_si256(xv[1])),
                                        _mm256_packs_epi32(_mm256_castps_si256(xv[2]), _mm256_castps_si256(xv[3])));
  const __m256i neg = _mm256_cmpgt_epi8(_mm256_setzero_si256(), _mm256_sign_epi8(zb, sb));
  return _mm256_sub_epi8(_mm256_add_epi8(zb, zb), neg);
}

// Quantizes and packs one bucket (m elements, global start g0) into dst (code bytes). W: 2 to 16 vector packing;
// 0: generic (scalar packing, W >= 17). ph: Philox schedule for `seed` (sched_init done by the caller, once per range).
template <int W, bool PRE, bool CLAMP>
GZ_AVX2 void quant_bucket_avx2(const QCfg& c, uint64_t seed, philox_detail::Sched& ph, const float* v, uint64_t m,
                               uint64_t g0, const QuantConsts& k, uint8_t* dst) {
  alignas(32) static thread_local uint16_t ubuf[kPiece + 64];
  alignas(32) uint32_t cbuf[32];
  for (uint64_t off = 0; off < m; off += kPiece) {
    const uint64_t len = std::min(kPiece, m - off), g = g0 + off;
    const uint64_t blk0 = g >> 3, nblk = ((g + len - 1) >> 3) - blk0 + 1;
    philox_detail::blocks_sched<true>(ph, seed, blk0, nblk, reinterpret_cast<uint32_t*>(ubuf), 0);
    const uint16_t* u = ubuf + (g & 7);
    const float* x = v + off;
    const uint32_t Wd = W ? W : c.W;
    uint8_t* d = dst + off / 8 * Wd;
    for (uint64_t i = 0; i < len; i += 32) {
      const uint64_t cnt = std::min<uint64_t>(32, len - i);
      __m256i z[4];
      __m256 xv[4];
      if (cnt == 32) {
        for (int q = 0; q < 4; ++q) xv[q] = _mm256_loadu_ps(x + i + 8 * q);
      } else {
        for (int q = 0; q < 4; ++q) {
          const uint64_t cq = cnt > uint64_t(8 * q) ? std::min<uint64_t>(8, cnt - 8 * q) : 0;
          xv[q] = load_n(x + i + 8 * q, cq);
        }
      }
      if (W || c.s < 32768) {
        for (int q = 0; q < 4; ++q) z[q] = zeta8<false, PRE, CLAMP>(xv[q], u + i + 8 * q, k);
      } else {
        for (int q = 0; q < 4; ++q) z[q] = zeta8<true, PRE, CLAMP>(xv[q], u + i + 8 * q, k);
      }
      if constexpr (W >= 9) {
        // codes 2 zeta + sign need 9..16 bits: in 32-bit lanes (element order), c_even | c_odd << W per 64-bit lane
        // (c_even is shifted out by the >> (32 - W)), then the low | high qwords of each 128-bit lane << 2W: 4W
        // bits (codes 4h..4h+3) per half; the two halves' qwords join in the scalar unit (4W may end mid-byte)
        alignas(16) uint8_t ob[4 * W + 16];
        uint8_t* o = ob;
        for (int q = 0; q < 4; ++q) {
          const __m256i nz = _mm256_cmpgt_epi32(z[q], _mm256_setzero_si256());
          const __m256i sg = _mm256_srli_epi32(_mm256_and_si256(_mm256_castps_si256(xv[q]), nz), 31);
          const __m256i cd = _mm256_or_si256(_mm256_slli_epi32(z[q], 1), sg);
          const __m256i pr = _mm256_or_si256(_mm256_and_si256(cd, _mm256_set1_epi64x(0xFFFF)), _mm256_srli_epi64(cd, 32 - W));
          const __m256i qd = _mm256_or_si256(pr, _mm256_slli_epi64(_mm256_srli_si256(pr, 8), 2 * W));
          const uint64_t lo = uint64_t(_mm_cvtsi128_si64(_mm256_castsi256_si128(qd)));
          const uint64_t hi = uint64_t(_mm_cvtsi128_si64(_mm256_extracti128_si256(qd, 1)));
          store_u64le(o, lo);
          if constexpr (W == 16) store_u64le(o + 8, hi);
          else store_u64le(o + (4 * W) / 8, (lo >> (8 * ((4 * W) / 8))) | (hi << ((4 * W) % 8)));
          o += W;
        }
        if (cnt == 32) std::memcpy(d, ob, 4 * W);
        else std::memcpy(d, ob, code_bytes(cnt, W));
        d += 4 * W;
      } else if (W) {
        const __m256i b = codes32(z, xv);
        uint8_t ob[32];
        if (W == 8) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(ob), _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        } else if (W == 4) {
          // pairs of adjacent elements are adjacent bytes: c0 + 16 c1 as words, to bytes, then interleave the halves
          const __m256i m = _mm256_maddubs_epi16(b, _mm256_set1_epi16(0x1001));
          const __m256i pk = _mm256_packus_epi16(m, m);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(ob),
                           _mm_unpacklo_epi16(_mm256_castsi256_si128(pk), _mm256_extracti128_si256(pk, 1)));
        } else if (W == 3) {
          // c0 + 8 c1 as words, then + 64 (c2 + 8 c3): 12 bits per dword (elements 8q..8q+3 in the low half,
          // 8q+4..8q+7 in the high half); low | high << 12 = the 24 bits of elements 8q..8q+7; bytes 0-2 of each
          // dword are the 3 bytes of that group
          const __m256i m = _mm256_maddubs_epi16(b, _mm256_set1_epi16(0x0801));
          const __m256i m2 = _mm256_madd_epi16(m, _mm256_set1_epi32(0x00400001));
          const __m128i g = _mm_or_si128(_mm256_castsi256_si128(m2), _mm_slli_epi32(_mm256_extracti128_si256(m2, 1), 12));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(ob),
                           _mm_shuffle_epi8(g, _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1)));
        } else if (W == 5 || W == 6 || W == 7) {
          // the same in 64-bit lanes: c0 + 2^W c1, then + 2^(2W) (c2 + 2^W c3) (4W bits per dword), low | high << 4W
          // = the 8W bits of elements 8q..8q+7 in qword q; bytes 0..W-1 of each qword, two qwords per 128-bit lane.
          // W = 7: maddubs would read the multiplier 128 as -128, so c0 | c1 << 7 = (w & 0xFF) | ((w >> 1) & 0x7F80)
          // on the 16-bit words w = c0 + 256 c1
          const __m256i m = W == 7 ? _mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi16(0x00FF)),
                                                     _mm256_and_si256(_mm256_srli_epi16(b, 1), _mm256_set1_epi16(0x7F80)))
                                   : _mm256_maddubs_epi16(b, _mm256_set1_epi16(int16_t(1 | (1 << ((8 + W) & 15)))));
          const __m256i m2 = _mm256_madd_epi16(m, _mm256_set1_epi32(int32_t(1 | (1 << (16 + 2 * W)))));
          const __m256i lo = _mm256_cvtepu32_epi64(_mm256_castsi256_si128(m2));
          const __m256i hi = _mm256_cvtepu32_epi64(_mm256_extracti128_si256(m2, 1));
          const __m256i g = _mm256_or_si256(lo, _mm256_slli_epi64(hi, 4 * W));
          const __m256i sel = W == 5 ? _mm256_setr_epi8(0, 1, 2, 3, 4, 8, 9, 10, 11, 12, -1, -1, -1, -1, -1, -1,
                                                        0, 1, 2, 3, 4, 8, 9, 10, 11, 12, -1, -1, -1, -1, -1, -1)
                              : W == 6 ? _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, -1, -1, -1, -1,
                                                        0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, -1, -1, -1, -1)
                                       : _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, -1, -1,
                                                        0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, -1, -1);
          const __m256i pk = _mm256_shuffle_epi8(g, sel);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(ob), _mm256_castsi256_si128(pk));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(ob + 2 * W), _mm256_extracti128_si256(pk, 1));
        } else {  // W == 2: four adjacent elements per byte
          const __m256i m = _mm256_maddubs_epi16(b, _mm256_set1_epi16(0x0401));   // c0 + 4 c1
          const __m256i m2 = _mm256_madd_epi16(m, _mm256_set1_epi32(0x00100001));  // + 16 (c2 + 4 c3), one byte per dword
          const __m128i lh = _mm_or_si128(_mm256_castsi256_si128(m2), _mm_slli_epi32(_mm256_extracti128_si256(m2, 1), 8));
          _mm_storel_epi64(reinterpret_cast<__m128i*>(ob), _mm_packus_epi32(lh, lh));
        }
        if (cnt == 32) std::memcpy(d, ob, 4 * W);
        else std::memcpy(d, ob, code_bytes(cnt, W));
        d += 4 * W;
      } else {
        for (int q = 0; q < 4; ++q) {
          const __m256i nz = _mm256_cmpgt_epi32(z[q], _mm256_setzero_si256());
          const __m256i sg = _mm256_srli_epi32(_mm256_and_si256(_mm256_castps_si256(xv[q]), nz), 31);
          _mm256_store_si256(reinterpret_cast<__m256i*>(cbuf + 8 * q), _mm256_or_si256(_mm256_slli_epi32(z[q], 1), sg));
        }
        uint64_t acc = 0;
        unsigned nb = 0;
        uint8_t* o = d;
        for (uint64_t e = 0; e < cnt; ++e) {
          acc |= uint64_t(cbuf[e]) << nb;
          nb += Wd;
          while (nb >= 8) { *o++ = uint8_t(acc); acc >>= 8; nb -= 8; }
        }
        if (nb) *o++ = uint8_t(acc);
        d += 4 * Wd;
      }
    }
  }
}

template <int W>
GZ_AVX2 void enc_range_avx2(const QCfg& c, uint64_t seed, const float* x, uint64_t j0, uint64_t j1, uint8_t* payload) {
  philox_detail::Sched ph;
  philox_detail::sched_init(ph, seed);
  for (uint64_t j = j0; j < j1; ++j) {
    const uint64_t start = j * c.b, m = std::min(c.b, c.n - start);
    const float* v = x + start;
    uint8_t* dst = payload + j * c.stride;
    // prefetch the bucket two ahead (inside the max pass)
    const float* pf = nullptr;
    uint64_t pm = 0;
    if (j + 2 < j1) {
      pf = x + (j + 2) * c.b;
      pm = std::min<uint64_t>(std::min<uint64_t>(c.b, c.n - (j + 2) * c.b), 4096);
    }
    const uint32_t amax = amax_avx2(v, m, pf, pm);
    if (amax >= 0x7F800000u) throw_nonfinite(j);
    float N;
    if (c.norm == NORM_LINF) N = u2f(amax);
    else N = amax ? l2_avx2(v, m, amax) : 0.f;
    if (!(N <= 3.4028235e38f)) throw_norm_overflow(j);
    store_f32le(dst, N);
    float r65536, s65536, pre;
    ref::qsgd_bucket_consts(N, c.s, &r65536, &s65536, &pre);
    QuantConsts k;
    k.c = _mm256_set1_ps(pre);
    k.pre = pre != 1.f;
    k.r = _mm256_set1_ps(r65536);
    k.s = _mm256_set1_ps(s65536);
    // No clamp needed when the largest element cannot exceed s (usual for l2 buckets; linf may round above)
    const bool clamp = !((u2f(amax) * pre) * r65536 <= s65536);
    if (k.pre) {
      if (clamp) quant_bucket_avx2<W, true, true>(c, seed, ph, v, m, start, k, dst + 4);
      else quant_bucket_avx2<W, true, false>(c, seed, ph, v, m, start, k, dst + 4);
    } else {
      if (clamp) quant_bucket_avx2<W, false, true>(c, seed, ph, v, m, start, k, dst + 4);
      else quant_bucket_avx2<W, false, false>(c, seed, ph, v, m, start, k, dst + 4);
    }
  }
}

using EncFn = void (*)(const QCfg&, uint64_t, const float*, uint64_t, uint64_t, uint8_t*);
EncFn pick_enc(uint32_t W) {
  switch (W) {
    case 2: return enc_range_avx2<2>;
    case 3: return enc_range_avx2<3>;
    case 4: return enc_range_avx2<4>;
    case 5: return enc_range_avx2<5>;
    case 6: return enc_range_avx2<6>;
    case 7: return enc_range_avx2<7>;
    case 8: return enc_range_avx2<8>;
    case 9: return enc_range_avx2<9>;
    case 10: return enc_range_avx2<10>;
    case 11: return enc_range_avx2<11>;
    case 12: return enc_range_avx2<12>;
    case 13: return enc_range_avx2<13>;
    case 14: return enc_range_avx2<14>;
    case 15: return enc_range_avx2<15>;
    case 16: return enc_range_avx2<16>;
    default: return enc_range_avx2<0>;
  }
}

// ------------------------------------------------------------------------------------------ decoders
// Scale and padding check of every bucket (before any output is written).
// Bucket j's scale is finite and not negative, and the padding bits after its last code are zero.
inline void check_bucket(const QCfg& c, const uint8_t* p, uint64_t j) {
  const uint32_t nb = f2u(load_f32le(p));
  if (nb >= 0x7F800000u)
    throw Error(ErrCode::CORRUPT, "corrupt packet: bucket " + std::to_string(j) + " scale is negative or not finite");
  const uint64_t m = std::min(c.b, c.n - j * c.b);
  const unsigned used = unsigned((m * c.W) & 7);
  if (used && (p[4 + code_bytes(m, c.W) - 1] >> used))
    throw Error(ErrCode::CORRUPT, "corrupt packet: non-zero padding bits in bucket " + std::to_string(j));
}

void check_scales(const QCfg& c, const uint8_t* payload, int threads) {
  const uint64_t T = bucket_tasks(c.B, c.n, threads);
  parallel_for(threads, T, [&](uint64_t t) {
    const uint64_t j0 = c.B * t / T, j1 = c.B * (t + 1) / T;
    for (uint64_t j = j0; j < j1; ++j) check_bucket(c, payload + j * c.stride, j);
  });
}

[[noreturn]] void throw_level(uint64_t j) {
  throw Error(ErrCode::CORRUPT, "corrupt packet: level above s in bucket " + std::to_string(j));
}

// mode 0: out = v; 1: out += alpha * v; 2: validate only (no stores); 3: as 0 with non-temporal stores (AVX2 only)
void dec_bucket_scalar(const QCfg& c, const uint8_t* payload, uint64_t j, float* out, int mode, float alpha) {
  const uint8_t* p = payload + j * c.stride;
  const uint64_t start = j * c.b, m = std::min(c.b, c.n - start);
  const float N = load_f32le(p);
  const float w = N / float(c.s);
  const uint8_t* q = p + 4;
  uint64_t acc = 0;
  unsigned nb = 0;
  const uint32_t mask = (1u << c.W) - 1;
  for (uint64_t i = 0; i < m; ++i) {
    while (nb < c.W) { acc |= uint64_t(*q++) << nb; nb += 8; }
    const uint32_t code = uint32_t(acc) & mask;
    acc >>= c.W;
    nb -= c.W;
    const uint32_t z = code >> 1;
    if (z > c.s) throw_level(j);
    if (mode == 2) continue;
    const float val = ref::qsgd_value(w, z, code & 1);
    if (mode == 0 || mode == 3) out[start + i] = val;
    else { const float av = alpha * val; out[start + i] = out[start + i] + av; }
  }
}

// 8 codes of W bits (LSB-first in the W bytes at the start of raw, W <= 16) into 32-bit lanes. Code e starts at
// bit W e. W <= 8: one pshufb puts bytes (W e) >> 3 and the next into 16-bit lane e, a multiply by
// 2^(16 - W - (W e & 7)) moves the code to the top of the lane, a shift by 16 - W brings it down. W > 8: the 16 bytes
// in both halves, one pshufb puts the (up to 3) bytes of code e into 32-bit lane e, a variable shift and a mask.
// (Variable 64-bit shifts and vpermd, the earlier way for W > 4, cost about 25 cycles per 8 codes on Zen 1.)
template <int W>
struct Unpack8 {
  static_assert(W >= 1 && W <= 16, "code width");
  __m128i sel, mul;   // W <= 8
  __m256i sel8, sh8;  // W > 8
  Unpack8() {
    alignas(32) int8_t sb[32] = {};
    alignas(32) int16_t mb[8] = {};
    alignas(32) int32_t shb[8] = {};
    for (int e = 0; e < 8; ++e) {
      const int bit = W * e, by = bit >> 3, sh = bit & 7;
      if (W <= 8) {
        sb[2 * e] = int8_t(by);
        sb[2 * e + 1] = sh + W > 8 ? int8_t(by + 1) : int8_t(-1);  // the second byte only when the code reaches it
        mb[e] = int16_t(uint16_t(1u << (16 - W - sh)));
      } else {
        for (int k = 0; k < 4; ++k) sb[4 * e + k] = 8 * k < sh + W ? int8_t(by + k) : int8_t(-1);
        shb[e] = sh;
      }
    }
    sel = _mm_load_si128(reinterpret_cast<const __m128i*>(sb));
    mul = _mm_load_si128(reinterpret_cast<const __m128i*>(mb));
    std::memcpy(&sel8, sb, 32);  // (memcpy: this constructor is not compiled for AVX)
    std::memcpy(&sh8, shb, 32);
  }
};
template <int W>
GZ_AVX2 inline __m256i unpack8(__m128i raw, const Unpack8<W>& u) {
  if (W <= 8) {
    const __m128i t = _mm_mullo_epi16(_mm_shuffle_epi8(raw, u.sel), u.mul);
    return _mm256_cvtepu16_epi32(_mm_srli_epi16(t, 16 - W));
  } else {
    const __m256i g = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(raw), u.sel8);
    return _mm256_and_si256(_mm256_srlv_epi32(g, u.sh8), _mm256_set1_epi32((1 << W) - 1));
  }
}
// The W bytes of 8 codes at q (W <= 16): one 8- or 16-byte load while it stays before pend (the bits past the W
// bytes are never used), else a copy of exactly `bytes`.
template <int W>
GZ_AVX2 inline __m128i load_codes(const uint8_t* q, const uint8_t* pend, uint64_t bytes) {
  constexpr int64_t L = W <= 8 ? 8 : 16;
  if (__builtin_expect(pend - q >= L, 1) && bytes == uint64_t(W))
    return W <= 8 ? _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)) : _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  alignas(16) uint8_t t[16] = {0};
  std::memcpy(t, q, size_t(bytes));
  return _mm_load_si128(reinterpret_cast<const __m128i*>(t));
}

// Validation only (the pass before a decode-add when a code can hold a level above s), W <= 8: two groups of 8
// codes per 256-bit register (one per half), unpacked to 16-bit lanes as in unpack8, and a running max; a code
// above 2s + 1 is a level above s. (The decoder's own loop widens to 32-bit lanes: twice the work per code.)
template <int W>
GZ_AVX2 void validate_range_w8(const QCfg& c, const uint8_t* payload, uint64_t j0, uint64_t j1, const uint8_t* pend) {
  static_assert(W <= 8, "16-bit lanes");
  const Unpack8<W> up;
  const __m256i sel = _mm256_broadcastsi128_si256(up.sel), mul = _mm256_broadcastsi128_si256(up.mul);
  const __m256i lim = _mm256_set1_epi16(int16_t(2 * c.s + 1));
  for (uint64_t j = j0; j < j1; ++j) {
    const uint64_t m = std::min(c.b, c.n - j * c.b);
    const uint8_t* q = payload + j * c.stride + 4;
    __m256i mx = _mm256_setzero_si256();
    uint64_t i = 0;
    for (; i + 16 <= m; i += 16, q += 2 * W) {
      const __m256i raw = _mm256_inserti128_si256(_mm256_castsi128_si256(load_codes<W>(q, pend, W)),
                                                  load_codes<W>(q + W, pend, W), 1);
      mx = _mm256_max_epu16(mx, _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(raw, sel), mul), 16 - W));
    }
    for (; i < m; i += 8, q += W) {  // lanes past the bucket's end decode as 0 (zero padding, checked before)
      const __m128i raw = i + 8 <= m ? load_codes<W>(q, pend, W) : load_codes<W>(q, q, code_bytes(m - i, W));
      const __m128i t = _mm_srli_epi16(_mm_mullo_epi16(_mm_shuffle_epi8(raw, up.sel), up.mul), 16 - W);
      mx = _mm256_max_epu16(mx, _mm256_zextsi128_si256(t));  // (upper half: max with 0, unchanged)
    }
    const __m256i over = _mm256_subs_epu16(mx, lim);
    if (!_mm256_testz_si256(over, over)) throw_level(j);
  }
}

// MODE 3 (streaming) stores 8 floats at a time at the bucket's phase (put16.h): PH 0 one 256-bit non-temporal
// store, 4 two 128-bit ones, -1 plain stores; kPhaseRun reads the phase per bucket.
template <int W, int MODE, int PH = kPhaseRun>
GZ_AVX2 void dec_range_avx2(const QCfg& c, const uint8_t* payload, uint64_t j0, uint64_t j1, float* out, float alpha) {
  // 8 codes are W bytes, read by load_codes. (A W-byte memcpy into a zeroed word went through the stack: the 4-byte
  // load that followed spanned three small stores, which cannot be forwarded, and stalled every group: 2.2 ns per
  // element for s = 2.)
  const uint8_t* const pend = payload + (c.n / c.b) * c.stride + (c.n % c.b ? 4 + code_bytes(c.n % c.b, W) : 0);
  if constexpr (MODE == 2 && W <= 8) {
    validate_range_w8<W>(c, payload, j0, j1, pend);
    return;
  }
  const __m256i sv = _mm256_set1_epi32(int(c.s));
  const __m256 av = _mm256_set1_ps(alpha);
  const __m256i one = _mm256_set1_epi32(1);
  const Unpack8<W> up;
  for (uint64_t j = j0; j < j1; ++j) {
    const uint8_t* p = payload + j * c.stride;
    const uint64_t start = j * c.b, m = std::min(c.b, c.n - start);
    const float N = load_f32le(p);
    const __m256 wv = _mm256_set1_ps(N / float(c.s));
    const uint8_t* q = p + 4;
    float* o = out + start;
    const int phase = PH != kPhaseRun ? PH : phase_of(o);
    __m256i bad = _mm256_setzero_si256();
    uint64_t i = 0;
    for (; i + 8 <= m; i += 8, q += W) {
      const __m256i cd = unpack8<W>(load_codes<W>(q, pend, W), up);
      const __m256i z = _mm256_srli_epi32(cd, 1);
      bad = _mm256_or_si256(bad, _mm256_cmpgt_epi32(z, sv));
      if (MODE == 2) continue;
      const __m256 val = _mm256_xor_ps(_mm256_mul_ps(wv, _mm256_cvtepi32_ps(z)),
                                       _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(cd, one), 31)));
      if (MODE == 3 && phase == 0) _mm256_stream_ps(o + i, val);
      else if (MODE == 3 && phase == 4) {
        _mm_stream_ps(o + i, _mm256_castps256_ps128(val));
        _mm_stream_ps(o + i + 4, _mm256_extractf128_ps(val, 1));
      } else if (MODE == 0 || MODE == 3) _mm256_storeu_ps(o + i, val);
      else _mm256_storeu_ps(o + i, _mm256_add_ps(_mm256_loadu_ps(o + i), _mm256_mul_ps(av, val)));
    }
    if (i < m) {
      const uint64_t cnt = m - i;
      const __m256i cd = unpack8<W>(load_codes<W>(q, q, code_bytes(cnt, W)), up);
      const __m256i z = _mm256_srli_epi32(cd, 1);
      bad = _mm256_or_si256(bad, _mm256_cmpgt_epi32(z, sv));  // lanes >= cnt decode as 0
      if (MODE != 2) {
        const __m256i tm = tail_mask(cnt);
        const __m256 val = _mm256_xor_ps(_mm256_mul_ps(wv, _mm256_cvtepi32_ps(z)),
                                         _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(cd, one), 31)));
        if (MODE == 0 || MODE == 3) _mm256_maskstore_ps(o + i, tm, val);
        else _mm256_maskstore_ps(o + i, tm, _mm256_add_ps(_mm256_maskload_ps(o + i, tm), _mm256_mul_ps(av, val)));
      }
    }
    if (!_mm256_testz_si256(bad, bad)) { if (MODE == 3) _mm_sfence(); throw_level(j); }
  }
  if (MODE == 3) _mm_sfence();
}

// ---- table decoders (W = 4: s = 4..7, W = 2: s = 1 / TernGrad)
// A bucket has only 2^W distinct decoded floats (code k = 2 zeta + sign). They are built once per bucket with the
// per-element path's vector arithmetic (w * float(zeta), then the sign xor; decode-add: alpha * that, the same
// product for every element of a code), so each output is bit-identical to computing it per element; codes then
// map to floats with byte shuffles only (no shift, convert or multiply per element):
//   W = 4: four byte planes (plane k byte i = byte k of float i); 16 codes -> 4 pshufb + 8 byte/word interleaves.
//   W = 2: the 4 floats are one 16-byte pshufb table; per 4 outputs one pshufb replicates each code (pre-scaled
//          by 4) into its 4 byte slots, or 0,1,2,3, and one pshufb reads the float bytes.
// Whole 32-element (W = 4) or 64-element (W = 2) groups use the multiplier tables instead (one table load per 2 or
// 4 codes, indexed by the code byte, and one multiply by w; decode-add multiplies by alpha too): fewer vector
// µops than the shuffles (L2-hot TernGrad decode 13.8 -> 21 GB/s). W = 4 plain decodes split each 32-element group:
// the first 16 codes through the multiplier table (scalar byte extracts, loads, multiplies), the other 16 through the
// byte planes (shuffle pipes), so the two kinds of work run side by side (L2-hot 11 % faster than either alone; see
// docs/PERFORMANCE.md). W = 4 decode-add keeps the byte planes (its bucket table holds alpha * value: one multiply
// fewer). Tails use the byte planes.
// decode-add stores out + table (add after the multiply, as the per-element path). Streaming (MODE 3) decodes
// store 32-byte aligned 256-bit non-temporal vectors: buckets starting 16 mod 32 pair the previous xmm with the
// next (a one-register carry), other alignments fall back to plain stores.
// The 16 table floats of a bucket (codes 0..15; W = 2 uses codes 0..3): v0 = codes 0..7, v1 = codes 8..15.
template <int MODE>
GZ_AVX2 inline void code_table(__m256 wv, __m256 av, __m256* v0, __m256* v1) {
  const __m256 sg = _mm256_castsi256_ps(_mm256_setr_epi32(0, int(0x80000000u), 0, int(0x80000000u), 0,
                                                          int(0x80000000u), 0, int(0x80000000u)));
  *v0 = _mm256_xor_ps(_mm256_mul_ps(wv, _mm256_cvtepi32_ps(_mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3))), sg);
  *v1 = _mm256_xor_ps(_mm256_mul_ps(wv, _mm256_cvtepi32_ps(_mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7))), sg);
  if (MODE == 1) {
    *v0 = _mm256_mul_ps(av, *v0);
    *v1 = _mm256_mul_ps(av, *v1);
  }
}

// Byte planes of 16 floats: P[k] byte i = byte k of float i.
GZ_AVX2 inline void byte_planes(__m256 v0, __m256 v1, __m128i* P) {
  const __m256i tr = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                      0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m256i g0 = _mm256_shuffle_epi8(_mm256_castps_si256(v0), tr);
  const __m256i g1 = _mm256_shuffle_epi8(_mm256_castps_si256(v1), tr);
  const __m128i a = _mm256_castsi256_si128(g0), b = _mm256_extracti128_si256(g0, 1);
  const __m128i c = _mm256_castsi256_si128(g1), d = _mm256_extracti128_si256(g1, 1);
  const __m128i abl = _mm_unpacklo_epi32(a, b), cdl = _mm_unpacklo_epi32(c, d);
  const __m128i abh = _mm_unpackhi_epi32(a, b), cdh = _mm_unpackhi_epi32(c, d);
  P[0] = _mm_unpacklo_epi64(abl, cdl);
  P[1] = _mm_unpackhi_epi64(abl, cdl);
  P[2] = _mm_unpacklo_epi64(abh, cdh);
  P[3] = _mm_unpackhi_epi64(abh, cdh);
}

// 16 codes (bytes 0..15 of idx, each < 16) -> 16 floats in element order.
GZ_AVX2 inline void lookup16(const __m128i* P, __m128i idx, __m128* f) {
  const __m128i b0 = _mm_shuffle_epi8(P[0], idx), b1 = _mm_shuffle_epi8(P[1], idx);
  const __m128i b2 = _mm_shuffle_epi8(P[2], idx), b3 = _mm_shuffle_epi8(P[3], idx);
  const __m128i l01 = _mm_unpacklo_epi8(b0, b1), h01 = _mm_unpackhi_epi8(b0, b1);
  const __m128i l23 = _mm_unpacklo_epi8(b2, b3), h23 = _mm_unpackhi_epi8(b2, b3);
  f[0] = _mm_castsi128_ps(_mm_unpacklo_epi16(l01, l23));
  f[1] = _mm_castsi128_ps(_mm_unpackhi_epi16(l01, l23));
  f[2] = _mm_castsi128_ps(_mm_unpacklo_epi16(h01, h23));
  f[3] = _mm_castsi128_ps(_mm_unpackhi_epi16(h01, h23));
}

// W = 2: I holds 16 codes times 4 (element order); T = the 4 floats.
GZ_AVX2 inline void lookup16_w2(__m128i T, __m128i I, __m128* f) {
  const __m128i K = _mm_setr_epi8(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  const __m128i R0 = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m128i four = _mm_set1_epi8(4);
  __m128i R = R0;
  for (int v = 0; v < 4; ++v, R = _mm_add_epi8(R, four))
    f[v] = _mm_castsi128_ps(_mm_shuffle_epi8(T, _mm_or_si128(_mm_shuffle_epi8(I, R), K)));
}

// W = 2: 16 code bytes (64 codes) -> I[0..3], 16 codes times 4 each, element order.
GZ_AVX2 inline void split_w2(__m128i x, __m128i* I) {
  const __m128i m = _mm_set1_epi8(0x0C);
  const __m128i s0 = _mm_and_si128(_mm_slli_epi16(x, 2), m), s1 = _mm_and_si128(x, m);
  const __m128i s2 = _mm_and_si128(_mm_srli_epi16(x, 2), m), s3 = _mm_and_si128(_mm_srli_epi16(x, 4), m);
  const __m128i a = _mm_unpacklo_epi8(s0, s1), b = _mm_unpacklo_epi8(s2, s3);
  const __m128i a2 = _mm_unpackhi_epi8(s0, s1), b2 = _mm_unpackhi_epi8(s2, s3);
  I[0] = _mm_unpacklo_epi16(a, b);
  I[1] = _mm_unpackhi_epi16(a, b);
  I[2] = _mm_unpacklo_epi16(a2, b2);
  I[3] = _mm_unpackhi_epi16(a2, b2);
}

GZ_AVX2 inline __m128i load_partial16(const uint8_t* q, uint64_t bytes) {  // bytes <= 16, zeros beyond
  alignas(16) uint8_t t[16] = {0};
  std::memcpy(t, q, bytes);
  return _mm_load_si128(reinterpret_cast<const __m128i*>(t));
}

// Max code of a W = 4 bucket (validate-only pass): the low nibbles' max and the high nibble of the max byte.
GZ_AVX2 inline uint32_t max_code_w4(const uint8_t* q, uint64_t bytes) {
  const __m256i m0F = _mm256_set1_epi8(0x0F);
  __m256i ml = _mm256_setzero_si256(), mb = ml;
  uint64_t i = 0;
  for (; i + 32 <= bytes; i += 32) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i));
    ml = _mm256_max_epu8(ml, _mm256_and_si256(x, m0F));
    mb = _mm256_max_epu8(mb, x);
  }
  __m128i l = _mm_max_epu8(_mm256_castsi256_si128(ml), _mm256_extracti128_si256(ml, 1));
  __m128i b = _mm_max_epu8(_mm256_castsi256_si128(mb), _mm256_extracti128_si256(mb, 1));
  for (; i < bytes; i += 16) {
    const __m128i x = bytes - i >= 16 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i))
                                      : load_partial16(q + i, bytes - i);
    l = _mm_max_epu8(l, _mm_and_si128(x, _mm_set1_epi8(0x0F)));
    b = _mm_max_epu8(b, x);
  }
  // max of a byte vector: fold halves, then against shifted copies
  l = _mm_max_epu8(_mm_and_si128(l, _mm_set1_epi8(0x0F)), _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F)));
  l = _mm_max_epu8(l, _mm_srli_si128(l, 8));
  l = _mm_max_epu8(l, _mm_srli_si128(l, 4));
  l = _mm_max_epu8(l, _mm_srli_si128(l, 2));
  l = _mm_max_epu8(l, _mm_srli_si128(l, 1));
  return uint32_t(_mm_cvtsi128_si32(l) & 0xFF);
}

// Multiplier tables (every s): one code byte -> the signed levels m = (-1)^sign * zeta of its codes, as floats
// (code 1, zeta 0 with a sign, gives -0.0). m * w is bit-identical to qsgd_value(w, zeta, sign) = +-(w * zeta):
// IEEE multiplication is exact in the sign, and w * (-0.0) = -0.0 for the w >= 0 a validated scale gives.
// W = 4: two codes per byte (low nibble first); W = 2: four codes (low bits first).
inline float signed_level(uint32_t code) { return (code & 1) ? -float(code >> 1) : float(code >> 1); }
struct MulTabs {
  alignas(64) float w4[256][2];
  alignas(64) float w2[256][4];
  MulTabs() {
    for (uint32_t b = 0; b < 256; ++b) {
      w4[b][0] = signed_level(b & 15);
      w4[b][1] = signed_level(b >> 4);
      for (uint32_t k = 0; k < 4; ++k) w2[b][k] = signed_level((b >> (2 * k)) & 3);
    }
  }
};
const MulTabs& mul_tabs() { static const MulTabs t; return t; }

// Four W = 4 outputs from code bytes b0, b1: the two pairs of levels, times w.
GZ_AVX2 inline __m128 mul4(const float (*T)[2], uint64_t b0, uint64_t b1, __m128 w) {
  const __m128d t = _mm_loadh_pd(_mm_load_sd(reinterpret_cast<const double*>(T[b0])), reinterpret_cast<const double*>(T[b1]));
  return _mm_mul_ps(_mm_castpd_ps(t), w);
}

template <int W, int MODE, int PH = kPhaseRun>
GZ_AVX2 void dec_table_range(const QCfg& c, const uint8_t* payload, uint64_t j0, uint64_t j1, float* out, float alpha) {
  const __m256 av = _mm256_set1_ps(alpha);
  const float (*T4)[2] = mul_tabs().w4;
  const float (*T2)[4] = mul_tabs().w2;
  const uint32_t maxc = 2 * c.s + 1;  // largest valid code
  for (uint64_t j = j0; j < j1; ++j) {
    const uint8_t* p = payload + j * c.stride;
    const uint64_t start = j * c.b, m = std::min(c.b, c.n - start);
    const uint8_t* q = p + 4;
    // the scale and padding checks ride along (no separate pass over the packet); MODE 1 runs after a MODE 2 pass
    if (MODE != 1) check_bucket(c, p, j);  // (a throw leaves through the pool's locked join, which orders NT stores)
    if (MODE == 2) {
      if (W == 4 && max_code_w4(q, code_bytes(m, 4)) > maxc) throw_level(j);
      continue;
    }
    const float wf = load_f32le(p) / float(c.s);
    const __m256 wv = _mm256_set1_ps(wf);
    const __m128 w4 = _mm_set1_ps(wf), a4 = _mm256_castps256_ps128(av);
    __m256 v0, v1;
    code_table<MODE>(wv, av, &v0, &v1);
    Put16 w = put_begin(out + start);
    __m128 f[4];
    uint64_t i = 0;
    if (W == 4) {
      __m128i P[4];
      byte_planes(v0, v1, P);
      const __m128i m0F = _mm_set1_epi8(0x0F);
      __m128i ml = _mm_setzero_si128(), mb = ml;
      for (; i + 32 <= m; i += 32, q += 16) {
        if (MODE == 1) {  // the accumulator 4 KiB ahead, every line
          _mm_prefetch(reinterpret_cast<const char*>(out + start + i + 1024), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(out + start + i + 1040), _MM_HINT_T0);
        }
        if ((i & 127) == 0) _mm_prefetch(reinterpret_cast<const char*>(q + 1024), _MM_HINT_T0);
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
        if (MODE == 1) {  // decode-add: the byte-plane table (one multiply per code, by the bucket table, not two)
          const __m128i lo = _mm_and_si128(x, m0F), hi = _mm_and_si128(_mm_srli_epi16(x, 4), m0F);
          ml = _mm_max_epu8(ml, lo);
          mb = _mm_max_epu8(mb, x);
          lookup16(P, _mm_unpacklo_epi8(lo, hi), f);
          put16<MODE, PH>(w, i, f[0], f[1], f[2], f[3]);
          lookup16(P, _mm_unpackhi_epi8(lo, hi), f);
          put16<MODE, PH>(w, i + 16, f[0], f[1], f[2], f[3]);
          continue;
        }
        ml = _mm_max_epu8(ml, _mm_and_si128(x, m0F));
        mb = _mm_max_epu8(mb, x);
        uint64_t r0;
        std::memcpy(&r0, q, 8);
        put16<MODE, PH>(w, i, mul4(T4, r0 & 255, (r0 >> 8) & 255, w4), mul4(T4, (r0 >> 16) & 255, (r0 >> 24) & 255, w4),
                    mul4(T4, (r0 >> 32) & 255, (r0 >> 40) & 255, w4), mul4(T4, (r0 >> 48) & 255, r0 >> 56, w4));
        {  // the second 16 codes through the byte planes (shuffle pipes) while the first use the multiplier table
          const __m128i lo = _mm_and_si128(x, m0F), hi = _mm_and_si128(_mm_srli_epi16(x, 4), m0F);
          lookup16(P, _mm_unpackhi_epi8(lo, hi), f);
          put16<MODE, PH>(w, i + 16, f[0], f[1], f[2], f[3]);
        }
      }
      if (i < m) {
        const uint64_t r = m - i;
        const __m128i x = load_partial16(q, code_bytes(r, 4));  // padding nibble is zero (checked)
        const __m128i lo = _mm_and_si128(x, m0F), hi = _mm_and_si128(_mm_srli_epi16(x, 4), m0F);
        ml = _mm_max_epu8(ml, lo);
        mb = _mm_max_epu8(mb, x);
        lookup16(P, _mm_unpacklo_epi8(lo, hi), f);
        put_tail<MODE>(w, i, f, std::min<uint64_t>(r, 16));
        if (r > 16) {
          lookup16(P, _mm_unpackhi_epi8(lo, hi), f);
          put_tail<MODE>(w, i + 16, f, r - 16);
        }
      } else if (MODE == 3) {
        put_finish(w, i);
      }
      if (maxc < 15) {
        __m128i l = _mm_max_epu8(ml, _mm_and_si128(_mm_srli_epi16(mb, 4), m0F));
        if (!_mm_testz_si128(_mm_subs_epu8(l, _mm_set1_epi8(char(maxc))), _mm_set1_epi8(-1))) {
          if (MODE == 3) _mm_sfence();
          throw_level(j);
        }
      }
    } else {  // W == 2 (s = 1: every code is valid)
      const __m128i T = _mm_castps_si128(_mm256_castps256_ps128(v0));
      __m128i I[4];
      for (; i + 64 <= m; i += 64, q += 16) {
        if (MODE == 1)  // the accumulator 4 KiB ahead, every line (see docs/PERFORMANCE.md: the in-place floor)
          for (int k = 0; k < 4; ++k) _mm_prefetch(reinterpret_cast<const char*>(out + start + i + 1024 + 16 * k), _MM_HINT_T0);
        if ((i & 255) == 0) _mm_prefetch(reinterpret_cast<const char*>(q + 1024), _MM_HINT_T0);
        uint64_t r[2];
        std::memcpy(r, q, 16);
        for (int k = 0; k < 4; ++k) {
          const uint64_t v = r[k >> 1] >> (32 * (k & 1));
          for (int e = 0; e < 4; ++e) {
            f[e] = _mm_mul_ps(_mm_load_ps(T2[(v >> (8 * e)) & 255]), w4);
            if (MODE == 1) f[e] = _mm_mul_ps(a4, f[e]);
          }
          put16<MODE, PH>(w, i + 16 * k, f[0], f[1], f[2], f[3]);
        }
      }
      if (i < m) {
        const uint64_t r = m - i;
        split_w2(load_partial16(q, code_bytes(r, 2)), I);
        for (int k = 0; k < 4 && uint64_t(16 * k) < r; ++k) {
          lookup16_w2(T, I[k], f);
          put_tail<MODE>(w, i + 16 * k, f, std::min<uint64_t>(16, r - 16 * k));
        }
      } else if (MODE == 3) {
        put_finish(w, i);
      }
    }
  }
  if (MODE == 3) _mm_sfence();
}

using DecFn = void (*)(const QCfg&, const uint8_t*, uint64_t, uint64_t, float*, float);
// PH: the store phase of a streaming (mode 3) decode, fixed for a range of buckets (put16.h: store_phase); the other
// modes do not use it.
template <int W, int PH>
DecFn pick_dec_w(int mode) {
  return mode == 0 ? dec_range_avx2<W, 0> : mode == 1 ? dec_range_avx2<W, 1> : mode == 2 ? dec_range_avx2<W, 2>
                                                                                : dec_range_avx2<W, 3, PH>;
}
template <int W, int PH>
DecFn pick_table_w(int mode) {
  return mode == 0 ? dec_table_range<W, 0> : mode == 1 ? dec_table_range<W, 1> : mode == 2 ? dec_table_range<W, 2>
                                                                                  : dec_table_range<W, 3, PH>;
}
constexpr uint64_t kTableMinBucket = 32;  // smaller buckets: per-element path (the table costs ~20 ops per bucket)
template <int PH = kPhaseRun>
DecFn pick_dec(const QCfg& c, int mode) {
  const uint32_t W = c.W;
  if (c.b >= kTableMinBucket && W == 4) return pick_table_w<4, PH>(mode);
  if (c.b >= kTableMinBucket && W == 2) return mode == 2 ? pick_dec_w<2, PH>(mode) : pick_table_w<2, PH>(mode);
  switch (W) {
    case 2: return pick_dec_w<2, PH>(mode);
    case 3: return pick_dec_w<3, PH>(mode);
    case 4: return pick_dec_w<4, PH>(mode);
    case 5: return pick_dec_w<5, PH>(mode);
    case 6: return pick_dec_w<6, PH>(mode);
    case 7: return pick_dec_w<7, PH>(mode);
    case 8: return pick_dec_w<8, PH>(mode);
    case 9: return pick_dec_w<9, PH>(mode);
    case 10: return pick_dec_w<10, PH>(mode);
    case 11: return pick_dec_w<11, PH>(mode);
    case 12: return pick_dec_w<12, PH>(mode);
    case 13: return pick_dec_w<13, PH>(mode);
    case 14: return pick_dec_w<14, PH>(mode);
    case 15: return pick_dec_w<15, PH>(mode);
    case 16: return pick_dec_w<16, PH>(mode);
    default: return nullptr;
  }
}

// The streaming decoder for buckets whose outputs have store phase `phase`.
DecFn pick_stream(const QCfg& c, int phase) {
  DecFn f = nullptr;
  with_phase(phase, [&](auto ph) { f = pick_dec<decltype(ph)::value>(c, 3); });
  return f;
}

void run_decode(const QCfg& c, const uint8_t* payload, float* out, int mode, float alpha, int threads, bool scalar) {
  const uint64_t T = bucket_tasks(c.B, c.n, threads);
  DecFn f = scalar ? nullptr : pick_dec(c, mode);
  parallel_for(threads, T, [&](uint64_t t) {
    const uint64_t j0 = c.B * t / T, j1 = c.B * (t + 1) / T;
    if (f && mode == 3 && j0 < j1) pick_stream(c, store_phase(out, j0, c.b))(c, payload, j0, j1, out, alpha);
    else if (f) f(c, payload, j0, j1, out, alpha);
    else for (uint64_t j = j0; j < j1; ++j) dec_bucket_scalar(c, payload, j, out, mode, alpha);
  });
}

}  // namespace

uint64_t qsgd_fixed_payload_bytes(const Params& p, uint64_t n) {
  if (n == 0) return 0;
  const QCfg c = make_cfg(p, n);
  const uint64_t full = n / c.b, rem = n % c.b;
  return full * c.stride + (rem ? 4 + code_bytes(rem, c.W) : 0);
}

uint64_t qsgd_fixed_encode(EncodeArgs& a) {
  const uint64_t n = a.n;
  if (n == 0) return 0;
  const QCfg c = make_cfg(*a.p, n);
  const uint64_t bytes = qsgd_fixed_payload_bytes(*a.p, n);
  if (bytes > a.cap) throw Error(ErrCode::INTERNAL, "qsgd: payload capacity too small");
  const uint64_t T = bucket_tasks(c.B, n, a.threads);
  const EncFn f = a.scalar ? nullptr : pick_enc(c.W);
  const uint64_t seed = a.seed;
  const float* x = a.x;
  uint8_t* payload = a.payload;
  parallel_for(a.threads, T, [&](uint64_t t) {
    const uint64_t j0 = c.B * t / T, j1 = c.B * (t + 1) / T;
    if (f) f(c, seed, x, j0, j1, payload);
    else for (uint64_t j = j0; j < j1; ++j) enc_bucket_scalar(c, seed, x, j, payload + j * c.stride);
  });
  return bytes;
}

void qsgd_fixed_decode(const DecodeArgs& a) {
  const Header& h = *a.h;
  if (h.n == 0) return;
  const QCfg c = make_cfg(h.p, h.n);
  if (h.payload_bytes != qsgd_fixed_payload_bytes(h.p, h.n))
    throw Error(ErrCode::CORRUPT, "corrupt packet: qsgd payload size mismatch");
  // Large plain decodes bypass the cache (the output is not read back soon; saves the read-for-ownership).
  const int mode = a.add ? 1 : (h.n >= kStreamMin ? 3 : 0);
  // The table decoders check each bucket's scale and padding as they go (a plain decode may leave partial output
  // when it throws); decompressAdd validates everything before its first store.
  const bool table = !a.scalar && c.b >= kTableMinBucket && (c.W == 4 || c.W == 2);
  // Codes wider than needed can hold a level above s: for decompressAdd, validate them all before any store.
  const bool levels_can_overflow = ((c.s + 1) & c.s) != 0;
  if (a.add && levels_can_overflow && table && c.W == 4) run_decode(c, h.payload, a.out, 2, 0.f, a.threads, a.scalar);
  else {
    if (a.add || !table) check_scales(c, h.payload, a.threads);
    if (a.add && levels_can_overflow) run_decode(c, h.payload, a.out, 2, 0.f, a.threads, a.scalar);
  }
  run_decode(c, h.payload, a.out, mode, a.alpha, a.threads, a.scalar);
}

}  // namespace gz
