// 1-bit SGD: one sign bit per element, two reconstruction values per bucket. docs/FORMAT.md sections 3.3, 4.1.
// Bucket layout: [pos f32][neg f32][ceil(m/8) bytes of s_i, LSB-first]. Means are 32-lane sums + the fixed tree.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/bitio.h"
#include "core/codec.h"
#include "core/quant_ref.h"
#include "core/simd_philox.h"  // GZ_AVX2
#include "core/threadpool.h"
#include "codecs/put16.h"

namespace gz {
namespace {

using ref::f2u;
using ref::u2f;

struct OCfg { uint64_t b, n, B, stride; };

OCfg make_cfg(const Params& p, uint64_t n) {
  if (p.bucket < 1) throw Error(ErrCode::INVALID_ARG, "bucketSize must be >= 1");
  OCfg c;
  c.b = p.bucket;
  c.n = n;
  c.B = (n + c.b - 1) / c.b;
  c.stride = 8 + (c.b + 7) / 8;
  return c;
}


[[noreturn]] void throw_nonfinite(uint64_t j) {
  throw Error(ErrCode::NONFINITE, "input contains NaN or Inf (bucket " + std::to_string(j) + ")");
}

void finish_bucket(uint64_t j, float sp, uint64_t cp, float sn, uint64_t cn, uint8_t* dst) {
  const float pos = cp ? sp / float(cp) : 0.f;
  const float neg = cn ? sn / float(cn) : 0.f;
  if (!std::isfinite(pos) || !std::isfinite(neg))
    throw Error(ErrCode::NONFINITE, "onebit: bucket " + std::to_string(j) + " sum overflows float32");
  store_f32le(dst, pos);
  store_f32le(dst + 4, neg);
}

void enc_bucket_scalar(const OCfg& c, const float* x, uint64_t j, uint8_t* dst) {
  const uint64_t start = j * c.b, m = std::min(c.b, c.n - start);
  const float* v = x + start;
  uint32_t amax = 0;
  for (uint64_t i = 0; i < m; ++i) amax = std::max(amax, f2u(v[i]) & 0x7FFFFFFFu);
  if (amax >= 0x7F800000u) throw_nonfinite(j);
  uint64_t cp, cn;
  const float sp = ref::lane_sum(v, m, [](float f) { return !(f < 0.f); }, &cp);
  const float sn = ref::lane_sum(v, m, [](float f) { return f < 0.f; }, &cn);
  finish_bucket(j, sp, cp, sn, cn, dst);
  uint8_t* o = dst + 8;
  for (uint64_t i = 0; i < m; i += 8) {
    uint8_t byte = 0;
    for (uint64_t e = i; e < std::min(m, i + 8); ++e) byte |= uint8_t((v[e] < 0.f ? 1 : 0) << (e - i));
    *o++ = byte;
  }
}

// Non-temporal store of 8 floats at a 16-byte aligned address (one 256-bit store when 32-byte aligned).
GZ_AVX2 inline void stream8(float* p, __m256 v) {
  if (!(reinterpret_cast<uintptr_t>(p) & 31)) {
    _mm256_stream_ps(p, v);
  } else {
    _mm_stream_ps(p, _mm256_castps256_ps128(v));
    _mm_stream_ps(p + 4, _mm256_extractf128_ps(v, 1));
  }
}

GZ_AVX2 inline __m256i tail_mask(uint64_t cnt) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(cnt)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

GZ_AVX2 inline float tree32(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  __m256 t = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
  return _mm_cvtss_f32(q);
}

GZ_AVX2 void enc_range_avx2(const OCfg& c, const float* x, uint64_t j0, uint64_t j1, uint8_t* payload) {
  const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256 zero = _mm256_setzero_ps();
  for (uint64_t j = j0; j < j1; ++j) {
    const uint64_t start = j * c.b, m = std::min(c.b, c.n - start);
    const float* v = x + start;
    uint8_t* dst = payload + j * c.stride;
    if (j + 2 < j1) {
      const char* pf = reinterpret_cast<const char*>(x + (j + 2) * c.b);
      const uint64_t bytes = std::min<uint64_t>(std::min<uint64_t>(c.b, c.n - (j + 2) * c.b), 4096) * 4;
      for (uint64_t o = 0; o < bytes; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
    }
    __m256 P[4] = {zero, zero, zero, zero}, N[4] = {zero, zero, zero, zero};
    __m256i mx = _mm256_setzero_si256();
    uint64_t cn = 0;
    uint8_t* o = dst + 8;
    uint64_t i = 0;
    for (; i + 32 <= m; i += 32) {
      uint32_t bits = 0;
      for (int k = 0; k < 4; ++k) {
        const __m256 xv = _mm256_loadu_ps(v + i + 8 * k);
        mx = _mm256_max_epu32(mx, _mm256_and_si256(_mm256_castps_si256(xv), absm));
        const __m256 neg = _mm256_cmp_ps(xv, zero, _CMP_LT_OQ);
        P[k] = _mm256_add_ps(P[k], _mm256_andnot_ps(neg, xv));
        N[k] = _mm256_add_ps(N[k], _mm256_and_ps(neg, xv));
        bits |= uint32_t(_mm256_movemask_ps(neg)) << (8 * k);
      }
      cn += uint64_t(__builtin_popcount(bits));
      std::memcpy(o, &bits, 4);
      o += 4;
    }
    if (i < m) {
      const uint64_t r = m - i;
      uint32_t bits = 0;
      for (int k = 0; k < 4; ++k) {
        const uint64_t cnt = r > uint64_t(8 * k) ? std::min<uint64_t>(8, r - 8 * k) : 0;
        if (!cnt) break;
        const __m256 xv = cnt == 8 ? _mm256_loadu_ps(v + i + 8 * k) : _mm256_maskload_ps(v + i + 8 * k, tail_mask(cnt));
        mx = _mm256_max_epu32(mx, _mm256_and_si256(_mm256_castps_si256(xv), absm));
        const __m256 neg = _mm256_cmp_ps(xv, zero, _CMP_LT_OQ);
        P[k] = _mm256_add_ps(P[k], _mm256_andnot_ps(neg, xv));
        N[k] = _mm256_add_ps(N[k], _mm256_and_ps(neg, xv));
        bits |= uint32_t(_mm256_movemask_ps(neg)) << (8 * k);
      }
      cn += uint64_t(__builtin_popcount(bits));
      std::memcpy(o, &bits, (r + 7) / 8);
    }
    __m128i m4 = _mm_max_epu32(_mm256_castsi256_si128(mx), _mm256_extracti128_si256(mx, 1));
    m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, 0x4E));
    m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, 0xB1));
    if (uint32_t(_mm_cvtsi128_si32(m4)) >= 0x7F800000u) throw_nonfinite(j);
    finish_bucket(j, tree32(P[0], P[1], P[2], P[3]), m - cn, tree32(N[0], N[1], N[2], N[3]), cn, dst);
  }
}

void check_buckets(const OCfg& c, const uint8_t* payload, int threads) {
  const uint64_t T = bucket_tasks(c.B, c.n, threads);
  parallel_for(threads, T, [&](uint64_t t) {
    const uint64_t j0 = c.B * t / T, j1 = c.B * (t + 1) / T;
    for (uint64_t j = j0; j < j1; ++j) {
      const uint8_t* p = payload + j * c.stride;
      const uint32_t pb = f2u(load_f32le(p)), nb = f2u(load_f32le(p + 4));
      if (pb >= 0x7F800000u)
        throw Error(ErrCode::CORRUPT, "corrupt packet: bucket " + std::to_string(j) + " positive mean is negative or not finite");
      if ((nb & 0x7FFFFFFFu) >= 0x7F800000u || (nb != 0 && nb < 0x80000000u))
        throw Error(ErrCode::CORRUPT, "corrupt packet: bucket " + std::to_string(j) + " negative mean is positive or not finite");
      const uint64_t m = std::min(c.b, c.n - j * c.b);
      const unsigned used = unsigned(m & 7);
      if (used && (p[8 + (m + 7) / 8 - 1] >> used))
        throw Error(ErrCode::CORRUPT, "corrupt packet: non-zero padding bits in bucket " + std::to_string(j));
    }
  });
}

void dec_bucket_scalar(const OCfg& c, const uint8_t* payload, uint64_t j, float* out, bool add, float alpha) {
  const uint8_t* p = payload + j * c.stride;
  const uint64_t start = j * c.b, m = std::min(c.b, c.n - start);
  const float pos = load_f32le(p), neg = load_f32le(p + 4);
  for (uint64_t i = 0; i < m; ++i) {
    const float val = ((p[8 + i / 8] >> (i & 7)) & 1) ? neg : pos;
    if (!add) out[start + i] = val;
    else { const float av = alpha * val; out[start + i] = out[start + i] + av; }
  }
}

// MODE 0: out = v; 1: out += alpha * v; 3: as 0 with streaming stores where the output is 32-byte aligned.
template <int MODE>
GZ_AVX2 void dec_range_avx2(const OCfg& c, const uint8_t* payload, uint64_t j0, uint64_t j1, float* out, float alpha) {
  const __m256i bitv = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256 av = _mm256_set1_ps(alpha);
  for (uint64_t j = j0; j < j1; ++j) {
    const uint8_t* p = payload + j * c.stride;
    const uint64_t start = j * c.b, m = std::min(c.b, c.n - start);
    const __m256 pv = _mm256_set1_ps(load_f32le(p)), nv = _mm256_set1_ps(load_f32le(p + 4));
    const uint8_t* q = p + 8;
    float* o = out + start;
    uint64_t i = 0;
    for (; i + 8 <= m; i += 8) {
      const __m256i bb = _mm256_and_si256(_mm256_set1_epi32(q[i / 8]), bitv);
      const __m256 sel = _mm256_castsi256_ps(_mm256_cmpeq_epi32(bb, bitv));
      const __m256 val = _mm256_blendv_ps(pv, nv, sel);
      if (MODE == 1) _mm256_storeu_ps(o + i, _mm256_add_ps(_mm256_loadu_ps(o + i), _mm256_mul_ps(av, val)));
      else if (MODE == 3 && !(reinterpret_cast<uintptr_t>(o + i) & 15)) stream8(o + i, val);
      else _mm256_storeu_ps(o + i, val);
    }
    if (i < m) {
      const __m256i tm = tail_mask(m - i);
      const __m256i bb = _mm256_and_si256(_mm256_set1_epi32(q[i / 8]), bitv);
      const __m256 val = _mm256_blendv_ps(pv, nv, _mm256_castsi256_ps(_mm256_cmpeq_epi32(bb, bitv)));
      if (MODE == 1) _mm256_maskstore_ps(o + i, tm, _mm256_add_ps(_mm256_maskload_ps(o + i, tm), _mm256_mul_ps(av, val)));
      else _mm256_maskstore_ps(o + i, tm, val);
    }
  }
  if (MODE == 3) _mm_sfence();
}

// Buckets of 64 elements and more: a table of the 16 xmm vectors a 4-bit group of sign bits decodes to (decode-add:
// alpha * pos, alpha * neg, the per-element products), so each output group of 4 is one load; stores as in put16.h.
// Shorter buckets use dec_range_avx2 (the table costs 16 blends per bucket).
constexpr uint64_t kTableMinBucket = 64;

template <int MODE, int PH = kPhaseRun>
GZ_AVX2 void dec_table_range(const OCfg& c, const uint8_t* payload, uint64_t j0, uint64_t j1, float* out, float alpha) {
  alignas(16) static const int32_t kSel[16][4] = {
      {0, 0, 0, 0}, {-1, 0, 0, 0}, {0, -1, 0, 0}, {-1, -1, 0, 0}, {0, 0, -1, 0}, {-1, 0, -1, 0}, {0, -1, -1, 0},
      {-1, -1, -1, 0}, {0, 0, 0, -1}, {-1, 0, 0, -1}, {0, -1, 0, -1}, {-1, -1, 0, -1}, {0, 0, -1, -1},
      {-1, 0, -1, -1}, {0, -1, -1, -1}, {-1, -1, -1, -1}};
  alignas(16) __m128 lut[16];
  const __m128 av = _mm_set1_ps(alpha);
  for (uint64_t j = j0; j < j1; ++j) {
    const uint8_t* p = payload + j * c.stride;
    const uint64_t start = j * c.b, m = std::min(c.b, c.n - start);
    __m128 pv = _mm_set1_ps(load_f32le(p)), nv = _mm_set1_ps(load_f32le(p + 4));
    if (MODE == 1) {
      pv = _mm_mul_ps(av, pv);
      nv = _mm_mul_ps(av, nv);
    }
    for (int k = 0; k < 16; ++k)
      lut[k] = _mm_blendv_ps(pv, nv, _mm_castsi128_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(kSel[k]))));
    const uint8_t* q = p + 8;
    Put16 w = put_begin(out + start);
    uint64_t i = 0;
    for (; i + 16 <= m; i += 16, q += 2) {
      // decode-add: the accumulator 4 KiB ahead, every line (Zen 1's hardware prefetcher alone leaves it slower)
      if (MODE == 1) _mm_prefetch(reinterpret_cast<const char*>(out + start + i + 1024), _MM_HINT_T0);
      const uint32_t b0 = q[0], b1 = q[1];
      put16<MODE, PH>(w, i, lut[b0 & 15], lut[b0 >> 4], lut[b1 & 15], lut[b1 >> 4]);
    }
    if (i < m) {
      const uint32_t b0 = q[0], b1 = m - i > 8 ? q[1] : 0;  // padding bits are zero (checked)
      const __m128 f[4] = {lut[b0 & 15], lut[b0 >> 4], lut[b1 & 15], lut[b1 >> 4]};
      put_tail<MODE>(w, i, f, m - i);
    } else if (MODE == 3) {
      put_finish(w, i);
    }
  }
  if (MODE == 3) _mm_sfence();
}

}  // namespace

uint64_t onebit_payload_bytes(const Params& p, uint64_t n) {
  if (n == 0) return 0;
  const OCfg c = make_cfg(p, n);
  const uint64_t full = n / c.b, rem = n % c.b;
  return full * c.stride + (rem ? 8 + (rem + 7) / 8 : 0);
}

uint64_t onebit_encode(EncodeArgs& a) {
  if (a.n == 0) return 0;
  const OCfg c = make_cfg(*a.p, a.n);
  const uint64_t bytes = onebit_payload_bytes(*a.p, a.n);
  if (bytes > a.cap) throw Error(ErrCode::INTERNAL, "onebit: payload capacity too small");
  const uint64_t T = bucket_tasks(c.B, c.n, a.threads);
  const bool scalar = a.scalar;
  parallel_for(a.threads, T, [&](uint64_t t) {
    const uint64_t j0 = c.B * t / T, j1 = c.B * (t + 1) / T;
    if (!scalar) enc_range_avx2(c, a.x, j0, j1, a.payload);
    else for (uint64_t j = j0; j < j1; ++j) enc_bucket_scalar(c, a.x, j, a.payload + j * c.stride);
  });
  return bytes;
}

void onebit_decode(const DecodeArgs& a) {
  const Header& h = *a.h;
  if (h.n == 0) return;
  const OCfg c = make_cfg(h.p, h.n);
  if (h.payload_bytes != onebit_payload_bytes(h.p, h.n))
    throw Error(ErrCode::CORRUPT, "corrupt packet: onebit payload size mismatch");
  check_buckets(c, h.payload, a.threads);
  const uint64_t T = bucket_tasks(c.B, c.n, a.threads);
  parallel_for(a.threads, T, [&](uint64_t t) {
    const uint64_t j0 = c.B * t / T, j1 = c.B * (t + 1) / T;
    if (!a.scalar && c.b >= kTableMinBucket) {
      if (a.add) dec_table_range<1>(c, h.payload, j0, j1, a.out, a.alpha);
      else if (h.n >= (uint64_t(1) << 21) && j0 < j1)  // streaming, the store phase fixed (put16.h)
        with_phase(store_phase(a.out, j0, c.b), [&](auto ph) {
          dec_table_range<3, decltype(ph)::value>(c, h.payload, j0, j1, a.out, a.alpha);
        });
      else dec_table_range<0>(c, h.payload, j0, j1, a.out, a.alpha);
    } else if (!a.scalar) {
      if (a.add) dec_range_avx2<1>(c, h.payload, j0, j1, a.out, a.alpha);
      else if (h.n >= (uint64_t(1) << 21)) dec_range_avx2<3>(c, h.payload, j0, j1, a.out, a.alpha);
      else dec_range_avx2<0>(c, h.payload, j0, j1, a.out, a.alpha);
    } else {
      for (uint64_t j = j0; j < j1; ++j) dec_bucket_scalar(c, h.payload, j, a.out, a.add, a.alpha);
    }
  });
}

}  // namespace gz
