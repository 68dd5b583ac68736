// TinyScript non-uniform quantizer (codec 6): docs/FORMAT.md sections 3.6 and 4.1, docs/NONUNIFORM.md.
//
// Encode = two passes over the buckets:
//   1. per bucket: M = max|v_i| (integer max of the magnitude bits; non-finite -> NONFINITE), written to the
//      payload, and the fit sums S1_b = Σ y_i, S2_b = Σ y_i² in double, element order, y_i = |v_i| · (1/M);
//      the bucket sums are then added in bucket order (windows of buckets run in parallel, the adds are serial),
//      so the fit is the same for every thread count;
//   2. fit (weibull.cc) and levels q, then per bucket: stochastic rounding between adjacent levels, fixed-width
//      codes (ζ << 1) | σ of W = 1 + ceil(log2(L+1)) bits, LSB-first.
// The scalar path calls gz::ref::nu_zeta; the AVX2 path finds τ from a 1024-cell table of the levels plus a
// short forward scan (same τ by construction) and does the same float operations, so it is bit-identical.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "codecs/weibull.h"
#include "core/codec.h"
#include "core/philox.h"
#include "core/quant_ref.h"
#include "core/simd_philox.h"
#include "core/threadpool.h"

namespace gz {
namespace {

constexpr uint64_t kTaskElems = 16384;   // elements per parallel task (whole buckets)
constexpr uint64_t kFitWindow = 65536;   // buckets whose fit sums are held at once
constexpr uint64_t kSub = 4096;          // elements quantized per inner step (multiple of 8)
constexpr int kCells = 1024;             // τ lookup cells over [0, 1]

uint32_t nu_width(uint32_t L) {
  uint32_t b = 0;
  while ((uint64_t(1) << b) < uint64_t(L) + 1) ++b;
  return 1 + b;
}

inline uint64_t code_bytes(uint64_t m, uint32_t W) { return (m * W + 7) / 8; }

struct Layout {
  uint64_t n, b, nb, full_bytes;  // full_bytes: bytes of a full bucket (4 + codes)
  uint32_t L, W;
  Layout(uint64_t n_, uint64_t b_, uint32_t L_) : n(n_), b(b_), L(L_), W(nu_width(L_)) {
    nb = b ? (n + b - 1) / b : 0;
    full_bytes = 4 + code_bytes(b, W);
  }
  uint64_t start(uint64_t j) const { return j * b; }
  uint64_t len(uint64_t j) const { return std::min(b, n - j * b); }
  uint64_t offset(uint64_t j) const { return j * full_bytes; }
  uint64_t total() const { return nb == 0 ? 0 : (nb - 1) * full_bytes + 4 + code_bytes(len(nb - 1), W); }
};

void check_levels_arg(uint32_t L) {
  if (L < 1 || L > kMaxNonuniformLevels) throw Error(ErrCode::INVALID_ARG, "nonuniform: levels must be in [1, 64]");
}

inline float load_f32(const uint8_t* p) { float f; std::memcpy(&f, p, 4); return f; }
inline void store_f32(uint8_t* p, float f) { std::memcpy(p, &f, 4); }

// Bucket scaling (FORMAT 3.6): c = 2^64 when M is subnormal (so 1/(M·c) is finite), else 1; both exact.
struct BucketScale { float c, rM; };
inline BucketScale bucket_scale(float M) {
  BucketScale s;
  s.c = M < 1.17549435e-38f ? 18446744073709551616.f : 1.f;
  s.rM = 1.f / (M * s.c);
  return s;
}

// Quantization tables shared by every bucket.
struct Tables {
  uint32_t L, W;
  alignas(32) float q[72];
  alignas(32) float d[72];               // d[t] = q[t+1] - q[t] (the same float op as the reference)
  alignas(32) int32_t cell[kCells + 8];  // largest t in [0, L-1] with q[t] <= c / kCells
  void init(const float* lv, uint32_t L_) {
    L = L_;
    W = nu_width(L_);
    for (int t = 0; t < 72; ++t) q[t] = t <= int(L) ? lv[t] : 2.f;
    for (int t = 0; t < 72; ++t) d[t] = t < int(L) ? q[t + 1] - q[t] : 1.f;
    int32_t t = 0;
    for (int c = 0; c <= kCells; ++c) {
      const float a = float(c) / float(kCells);  // exact
      while (uint32_t(t) + 1 < L && q[t + 1] <= a) ++t;
      cell[c] = t;
    }
    for (int c = kCells + 1; c < kCells + 8; ++c) cell[c] = cell[kCells];
  }
};

// Packs cnt codes (cnt <= 8) of W bits into ceil(cnt·W/8) bytes at out.
inline void put_group(uint8_t* out, const uint32_t* codes, unsigned cnt, uint32_t W) {
  uint64_t v = 0;
  for (unsigned e = 0; e < cnt; ++e) v |= uint64_t(codes[e]) << (e * W);
  std::memcpy(out, &v, (cnt * W + 7) / 8);
}

// ---- scalar quantizer (the reference arithmetic) over elements [i0, i0 + m) of one bucket
void quantize_scalar(const Tables& T, const float* x, uint64_t i0, uint64_t m, BucketScale bs, uint64_t seed,
                     uint8_t* codes_out) {
  uint32_t buf[8];
  uint64_t cur_block = ~uint64_t(0);
  Philox4 w{};
  for (uint64_t e = 0; e < m; e += 8) {
    const unsigned cnt = unsigned(std::min<uint64_t>(8, m - e));
    for (unsigned k = 0; k < cnt; ++k) {
      const uint64_t i = i0 + e + k;
      const uint64_t j = i >> 3;
      if (j != cur_block) { w = philox_block(seed, j, 0); cur_block = j; }
      const uint32_t u = (w.v[(i & 7) >> 1] >> (16 * (i & 1))) & 0xFFFFu;
      const float v = x[e + k];
      const uint32_t z = ref::nu_zeta(v * bs.c, bs.rM, T.q, T.L, u);
      const uint32_t s = (z > 0 && std::signbit(v)) ? 1u : 0u;
      buf[k] = (z << 1) | s;
    }
    put_group(codes_out + (e / 8) * T.W, buf, cnt, T.W);
  }
}

// ---- AVX2 quantizer: the same float operations as the reference, so the same codes.
// τ: for L <= 16, the count of interior levels q_1..q_{L-1} that are <= a (q strictly increasing, so this is the
// largest t with q_t <= a); q_τ and d_τ by in-register permutes. For L > 16: a 1024-cell table gives a lower bound
// of τ and a gathered forward scan finishes it. Codes are packed eight at a time by shifts (pext is microcoded on AMD before Zen 3).
// Eight W-bit fields held one per byte (W <= 8) -> 8·W contiguous bits, field 0 lowest.
GZ_AVX2 inline uint64_t compact_bytes(uint64_t v, uint32_t W) {
  v = (v & 0x00FF00FF00FF00FFull) | (((v >> 8) & 0x00FF00FF00FF00FFull) << W);
  v = (v & 0x0000FFFF0000FFFFull) | (((v >> 16) & 0x0000FFFF0000FFFFull) << (2 * W));
  return (v & 0xFFFFFFFFull) | ((v >> 32) << (4 * W));
}

template <int NL>  // NL = L (1..16): compare-count path, unrolled; NL = 0: table + gather path
GZ_AVX2 void quantize_avx2_t(const Tables& T, const float* x, uint64_t i0, uint64_t m, BucketScale bs, uint64_t seed,
                             uint8_t* codes_out, uint32_t* ubuf /* >= 4*(kSub/8 + 2) words */) {
  const __m256 rM = _mm256_set1_ps(bs.rM), one = _mm256_set1_ps(1.f), G = _mm256_set1_ps(float(kCells));
  const __m256 k65536 = _mm256_set1_ps(65536.f);
  const __m256i absmask = _mm256_set1_epi32(0x7FFFFFFF), onei = _mm256_set1_epi32(1);
  const __m256i Lm1 = _mm256_set1_epi32(int(T.L) - 1), zero = _mm256_setzero_si256(), seven = _mm256_set1_epi32(7);
  const uint32_t W = T.W;
  const uint64_t cb_total = code_bytes(m, W);
  constexpr bool kSmall = NL > 0;
  __m256 qb[16];
  const __m256 q_lo = _mm256_loadu_ps(T.q), q_hi = _mm256_loadu_ps(T.q + 8);
  const __m256 d_lo = _mm256_loadu_ps(T.d), d_hi = _mm256_loadu_ps(T.d + 8);
  if (kSmall)
    for (int u = 1; u < NL; ++u) qb[u] = _mm256_set1_ps(T.q[u]);
  for (uint64_t e0 = 0; e0 < m; e0 += kSub) {
    const uint64_t mm = std::min<uint64_t>(kSub, m - e0);
    const uint64_t ib = i0 + e0;
    const uint64_t j0 = ib >> 3, j1 = (ib + mm - 1) >> 3;
    philox_blocks_avx2(seed, j0, j1 - j0 + 1, ubuf, 0);
    const uint16_t* u16 = reinterpret_cast<const uint16_t*>(ubuf) + (ib - 8 * j0);
    for (uint64_t e = 0; e < mm; e += 8) {
      const unsigned cnt = unsigned(std::min<uint64_t>(8, mm - e));
      __m256 xv;
      __m128i uv;
      if (cnt == 8) {
        xv = _mm256_loadu_ps(x + e0 + e);
        uv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u16 + e));
      } else {
        alignas(32) float xt[8] = {0};
        alignas(16) uint16_t ut[8] = {0};
        std::memcpy(xt, x + e0 + e, cnt * 4);
        std::memcpy(ut, u16 + e, cnt * 2);
        xv = _mm256_load_ps(xt);
        uv = _mm_load_si128(reinterpret_cast<const __m128i*>(ut));
      }
      const __m256i xb = _mm256_castps_si256(xv);
      const __m256 ax = _mm256_castsi256_ps(_mm256_and_si256(xb, absmask));
      __m256 a = _mm256_mul_ps(ax, rM);
      a = _mm256_min_ps(a, one);  // a is never NaN (finite |x|, finite rM)
      __m256i t;
      __m256 qt, dt;
      if (kSmall) {
        t = zero;
#pragma GCC unroll 16
        for (int u = 1; u < NL; ++u) t = _mm256_sub_epi32(t, _mm256_castps_si256(_mm256_cmp_ps(qb[u], a, _CMP_LE_OQ)));
        if (NL <= 8) {
          qt = _mm256_permutevar8x32_ps(q_lo, t);
          dt = _mm256_permutevar8x32_ps(d_lo, t);
        } else {
          const __m256 hi8 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(t, seven));
          qt = _mm256_blendv_ps(_mm256_permutevar8x32_ps(q_lo, t), _mm256_permutevar8x32_ps(q_hi, t), hi8);
          dt = _mm256_blendv_ps(_mm256_permutevar8x32_ps(d_lo, t), _mm256_permutevar8x32_ps(d_hi, t), hi8);
        }
      } else {
        t = _mm256_i32gather_epi32(T.cell, _mm256_cvttps_epi32(_mm256_mul_ps(a, G)), 4);
        for (;;) {
          const __m256 qn = _mm256_i32gather_ps(T.q + 1, t, 4);
          const __m256i up = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(qn, a, _CMP_LE_OQ)),
                                              _mm256_cmpgt_epi32(Lm1, t));
          if (_mm256_testz_si256(up, up)) break;
          t = _mm256_sub_epi32(t, up);  // up lanes are -1
        }
        qt = _mm256_i32gather_ps(T.q, t, 4);
        dt = _mm256_i32gather_ps(T.d, t, 4);
      }
      __m256 p = _mm256_div_ps(_mm256_sub_ps(a, qt), dt);
      p = _mm256_min_ps(p, one);
      const __m256i Th = _mm256_cvttps_epi32(_mm256_mul_ps(p, k65536));
      const __m256i u = _mm256_cvtepu16_epi32(uv);
      const __m256i rup = _mm256_cmpgt_epi32(Th, u);  // u < T
      const __m256i z = _mm256_sub_epi32(t, rup);
      const __m256i neg = _mm256_srli_epi32(xb, 31);
      const __m256i sgn = _mm256_andnot_si256(_mm256_cmpeq_epi32(z, zero), neg);
      const __m256i code = _mm256_or_si256(_mm256_slli_epi32(z, 1), _mm256_and_si256(sgn, onei));
      // 8 codes -> 8 bytes -> 8·W bits. Lanes past cnt hold codes of zero-padded x: code 0.
      const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
      const uint64_t bytes8 = uint64_t(_mm_cvtsi128_si64(_mm_packus_epi16(w16, w16)));
      const uint64_t packed = compact_bytes(bytes8, W);
      const uint64_t off = ((e0 + e) / 8) * W;
      if (off + 8 <= cb_total) std::memcpy(codes_out + off, &packed, 8);  // spill is overwritten by the next group
      else std::memcpy(codes_out + off, &packed, (cnt * W + 7) / 8);
    }
  }
}

GZ_AVX2 void quantize_avx2(const Tables& T, const float* x, uint64_t i0, uint64_t m, BucketScale bs, uint64_t seed,
                           uint8_t* codes_out, uint32_t* ubuf) {
  switch (T.L) {
#define GZ_NU_CASE(n) case n: quantize_avx2_t<n>(T, x, i0, m, bs, seed, codes_out, ubuf); break;
    GZ_NU_CASE(1) GZ_NU_CASE(2) GZ_NU_CASE(3) GZ_NU_CASE(4) GZ_NU_CASE(5) GZ_NU_CASE(6) GZ_NU_CASE(7) GZ_NU_CASE(8)
    GZ_NU_CASE(9) GZ_NU_CASE(10) GZ_NU_CASE(11) GZ_NU_CASE(12) GZ_NU_CASE(13) GZ_NU_CASE(14) GZ_NU_CASE(15) GZ_NU_CASE(16)
#undef GZ_NU_CASE
    default: quantize_avx2_t<0>(T, x, i0, m, bs, seed, codes_out, ubuf);
  }
}

// ---- pass 1 helpers: bucket max M (written to the payload) and the fit sums of FORMAT 3.6.
inline uint32_t bucket_amax(const float* v, uint64_t m) {
  uint32_t amax = 0;
  for (uint64_t i = 0; i < m; ++i) {
    const uint32_t b = ref::f2u(v[i]) & 0x7FFFFFFFu;
    amax = b > amax ? b : amax;
  }
  if (amax >= 0x7F800000u) throw Error(ErrCode::NONFINITE, "nonuniform: input contains NaN or Inf");
  return amax;
}

// Same result (max is exact), eight lanes at a time.
GZ_AVX2 uint32_t bucket_amax_avx2(const float* v, uint64_t m) {
  const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i mx = _mm256_setzero_si256();
  uint64_t i = 0;
  for (; i + 8 <= m; i += 8)
    mx = _mm256_max_epu32(mx, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i)), absm));
  alignas(32) uint32_t l[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(l), mx);
  uint32_t amax = 0;
  for (int k = 0; k < 8; ++k) amax = l[k] > amax ? l[k] : amax;
  for (; i < m; ++i) {
    const uint32_t b = ref::f2u(v[i]) & 0x7FFFFFFFu;
    amax = b > amax ? b : amax;
  }
  if (amax >= 0x7F800000u) throw Error(ErrCode::NONFINITE, "nonuniform: input contains NaN or Inf");
  return amax;
}

// Element-order sums of one bucket (the reference). inv = 0 for M = 0 gives exact zeros.
inline void bucket_sums(const float* v, uint64_t m, double inv, double* o1, double* o2) {
  double t1 = 0, t2 = 0;
  for (uint64_t i = 0; i < m; ++i) {
    const double y = double(std::fabs(v[i])) * inv;
    t1 = t1 + y;
    const double y2 = y * y;
    t2 = t2 + y2;
  }
  *o1 = t1;
  *o2 = t2;
}

// Four full buckets at once, one per 64-bit lane: each lane runs exactly its bucket's element-order chain
// (the same double multiply and add as bucket_sums), so the sums are bit-identical; four chains hide the add
// latency that bounds the one-bucket loop. Elements come in 4x4 blocks, transposed.
GZ_AVX2 void bucket_sums4(const float* v0, uint64_t stride, uint64_t m, const double* inv, double* o1, double* o2) {
  const __m256d iv = _mm256_loadu_pd(inv);
  const __m128 absm = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
  __m256d t1 = _mm256_setzero_pd(), t2 = _mm256_setzero_pd();
  uint64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    __m128 r0 = _mm_loadu_ps(v0 + i), r1 = _mm_loadu_ps(v0 + stride + i);
    __m128 r2 = _mm_loadu_ps(v0 + 2 * stride + i), r3 = _mm_loadu_ps(v0 + 3 * stride + i);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // r_k = element i+k of buckets 0..3
    const __m128 rows[4] = {r0, r1, r2, r3};
    for (int k = 0; k < 4; ++k) {
      const __m256d y = _mm256_mul_pd(_mm256_cvtps_pd(_mm_and_ps(rows[k], absm)), iv);
      t1 = _mm256_add_pd(t1, y);
      t2 = _mm256_add_pd(t2, _mm256_mul_pd(y, y));
    }
  }
  alignas(32) double a1[4], a2[4];
  _mm256_store_pd(a1, t1);
  _mm256_store_pd(a2, t2);
  for (; i < m; ++i)
    for (int k = 0; k < 4; ++k) {
      const double y = double(std::fabs(v0[k * stride + i])) * inv[k];
      a1[k] = a1[k] + y;
      const double y2 = y * y;
      a2[k] = a2[k] + y2;
    }
  for (int k = 0; k < 4; ++k) { o1[k] = a1[k]; o2[k] = a2[k]; }
}

void fit_buckets(const Layout& lay, const float* x, uint8_t* payload, uint64_t jb, uint64_t je, double* s1, double* s2,
                 bool simd) {
  double inv[4];
  uint64_t j = jb;
  if (simd) {
    for (; j + 4 <= je && lay.start(j + 3) + lay.b <= lay.n; j += 4) {  // four full buckets
      for (int k = 0; k < 4; ++k) {
        const uint32_t amax = bucket_amax_avx2(x + lay.start(j + k), lay.b);
        const float M = ref::u2f(amax);
        store_f32(payload + lay.offset(j + k), M);
        inv[k] = amax ? 1.0 / double(M) : 0.0;
      }
      bucket_sums4(x + lay.start(j), lay.b, lay.b, inv, s1 + (j - jb), s2 + (j - jb));
    }
  }
  for (; j < je; ++j) {
    const float* v = x + lay.start(j);
    const uint64_t m = lay.len(j);
    const uint32_t amax = bucket_amax(v, m);
    const float M = ref::u2f(amax);
    store_f32(payload + lay.offset(j), M);
    bucket_sums(v, m, amax ? 1.0 / double(M) : 0.0, s1 + (j - jb), s2 + (j - jb));
  }
}

// ---- AVX2 decoder (W <= 8: every L <= 64): eight codes per W bytes, spread to one per byte by shifts, the level
// q[ζ] by in-register permutes of two (L <= 15) or four (L <= 31) 8-entry tables, or a gather from qp (L >= 32;
// qp holds q[0..L] and zeros up to 128 entries, so every ζ < 2^(W-1) reads inside it), value = M * q[ζ] then the
// sign flipped (the same float operations as the table of the scalar path), add = out + alpha * v (multiply, then
// add). MODE 0: validate only; 1: store; 2: add. Returns true when some ζ > L. ngroups full groups of 8 codes
// starting at cb; `avail` = readable bytes at cb.
GZ_AVX2 inline uint64_t spread_bytes(uint64_t v, uint32_t W) {
  const uint64_t m4 = (uint64_t(1) << (4 * W)) - 1, m2 = (uint64_t(1) << (2 * W)) - 1, m1 = (uint64_t(1) << W) - 1;
  v = (v & m4) | (((v >> (4 * W)) & m4) << 32);
  v = (v & (m2 | (m2 << 32))) | (((v >> (2 * W)) & (m2 | (m2 << 32))) << 16);
  const uint64_t b1 = m1 | (m1 << 16) | (m1 << 32) | (m1 << 48);
  return (v & b1) | (((v >> W) & b1) << 8);
}

constexpr int kQPad = 128;
// GATHER: 0 = two in-register tables (L <= 15), 1 = four (L <= 31), 2 = a gather from qp (L <= 64).
template <int MODE, int GATHER>
GZ_AVX2 bool decode_groups_avx2(const uint8_t* cb, uint64_t ngroups, uint64_t avail, uint32_t W, uint32_t L, float M,
                                const float* qp, float* out, float alpha) {
  const __m256 q_lo = _mm256_loadu_ps(qp), q_hi = _mm256_loadu_ps(qp + 8), Mv = _mm256_set1_ps(M), av = _mm256_set1_ps(alpha);
  const __m256 q_2 = _mm256_loadu_ps(qp + 16), q_3 = _mm256_loadu_ps(qp + 24);
  const __m256i Lv = _mm256_set1_epi32(int(L)), seven = _mm256_set1_epi32(7), one = _mm256_set1_epi32(1);
  __m256i bad = _mm256_setzero_si256();
  for (uint64_t g = 0; g < ngroups; ++g) {
    const uint64_t off = g * W;
    uint64_t raw = 0;
    if (off + 8 <= avail) std::memcpy(&raw, cb + off, 8);
    else std::memcpy(&raw, cb + off, W);
    raw &= W == 8 ? ~uint64_t(0) : ((uint64_t(1) << (8 * W)) - 1);
    const __m256i code = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(spread_bytes(raw, W))));
    const __m256i z = _mm256_srli_epi32(code, 1);
    bad = _mm256_or_si256(bad, _mm256_cmpgt_epi32(z, Lv));
    if (MODE == 0) continue;
    __m256 qz;
    if (GATHER == 2) {
      qz = _mm256_i32gather_ps(qp, z, 4);
    } else if (GATHER == 1) {  // bit 3 of z picks within a pair of tables, bit 4 the pair (blendv reads the sign)
      const __m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(z, 28)), b4 = _mm256_castsi256_ps(_mm256_slli_epi32(z, 27));
      const __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(q_lo, z), _mm256_permutevar8x32_ps(q_hi, z), b3);
      const __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(q_2, z), _mm256_permutevar8x32_ps(q_3, z), b3);
      qz = _mm256_blendv_ps(lo, hi, b4);
    } else {
      const __m256 hi8 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(z, seven));
      qz = _mm256_blendv_ps(_mm256_permutevar8x32_ps(q_lo, z), _mm256_permutevar8x32_ps(q_hi, z), hi8);
    }
    const __m256i sbit = _mm256_slli_epi32(_mm256_and_si256(code, one), 31);
    const __m256 v = _mm256_xor_ps(_mm256_mul_ps(Mv, qz), _mm256_castsi256_ps(sbit));
    float* o = out + 8 * g;
    if (MODE == 1) _mm256_storeu_ps(o, v);
    else _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), _mm256_mul_ps(av, v)));
  }
  return !_mm256_testz_si256(bad, bad);
}

int eff_threads(int t) { return t > 0 ? t : default_threads(); }

}  // namespace

uint64_t nonuniform_payload_bytes(const Params& p, uint64_t n) {
  check_levels_arg(p.levels);
  if (p.bucket < 1) throw Error(ErrCode::INVALID_ARG, "nonuniform: bucketSize must be >= 1");
  return Layout(n, p.bucket, p.levels).total();
}

uint64_t nonuniform_encode(EncodeArgs& a) {
  const Params& p = *a.p;
  check_levels_arg(p.levels);
  if (p.bucket < 1) throw Error(ErrCode::INVALID_ARG, "nonuniform: bucketSize must be >= 1");
  if (p.shape != 0.f && !(std::isfinite(p.shape) && p.shape >= float(weibull::kShapeMin) &&
                          p.shape <= float(weibull::kShapeMax)))
    throw Error(ErrCode::INVALID_ARG, "nonuniform: shape must be in [0.05, 20]");
  const Layout lay(a.n, p.bucket, p.levels);
  const uint64_t total = lay.total();
  if (a.cap < total) throw Error(ErrCode::INTERNAL, "nonuniform: payload region too small");
  const int threads = eff_threads(a.threads);
  const uint64_t bpt = std::max<uint64_t>(1, kTaskElems / lay.b);  // buckets per task

  // ---- pass 1: bucket max (to the payload) and fit sums
  const bool simd = !a.scalar && cpu_info().avx2;
  double S1 = 0, S2 = 0;
  uint64_t cnt = 0;
  {
    const uint64_t win = std::min<uint64_t>(kFitWindow, lay.nb);
    std::vector<double> s1(win), s2(win);
    for (uint64_t w0 = 0; w0 < lay.nb; w0 += kFitWindow) {
      const uint64_t wn = std::min<uint64_t>(kFitWindow, lay.nb - w0);
      parallel_for(threads, (wn + bpt - 1) / bpt, [&](uint64_t task) {
        const uint64_t jb = w0 + task * bpt, je = std::min(w0 + wn, jb + bpt);
        fit_buckets(lay, a.x, a.payload, jb, je, s1.data() + (jb - w0), s2.data() + (jb - w0), simd);
      });
      for (uint64_t j = 0; j < wn; ++j) {
        const float M = load_f32(a.payload + lay.offset(w0 + j));
        if (M > 0.f) {
          S1 += s1[j];
          S2 += s2[j];
          cnt += lay.len(w0 + j);
        }
      }
    }
  }

  // ---- fit and levels
  const weibull::Fit fit = weibull::fit_from_sums(S1, S2, cnt, double(p.shape), p.levels, a.nu_levels);
  a.nu_shape = float(fit.k);
  a.nu_scale = float(fit.lambda);
  Tables T;
  T.init(a.nu_levels, p.levels);

  // ---- pass 2: quantize and pack
  const uint64_t ntasks = (lay.nb + bpt - 1) / bpt;
  parallel_for(threads, ntasks, [&](uint64_t task) {
    std::vector<uint32_t> ubuf(simd ? 4 * (kSub / 8 + 2) : 0);
    const uint64_t jb = task * bpt, je = std::min(lay.nb, jb + bpt);
    for (uint64_t j = jb; j < je; ++j) {
      uint8_t* dst = a.payload + lay.offset(j);
      const uint64_t m = lay.len(j), i0 = lay.start(j);
      const float M = load_f32(dst);
      uint8_t* codes = dst + 4;
      if (M == 0.f) {
        std::memset(codes, 0, code_bytes(m, T.W));
        continue;
      }
      const BucketScale bs = bucket_scale(M);
      if (simd && bs.c == 1.f) quantize_avx2(T, a.x + i0, i0, m, bs, a.seed, codes, ubuf.data());
      else quantize_scalar(T, a.x + i0, i0, m, bs, a.seed, codes);
    }
  });
  return total;
}

void nonuniform_decode(const DecodeArgs& a) {
  const Header& h = *a.h;
  const uint32_t L = h.p.levels;
  if (L < 1 || L > kMaxNonuniformLevels || h.bucket < 1) throw Error(ErrCode::CORRUPT, "corrupt packet: nonuniform parameters");
  const float* q = h.nu_levels;
  if (q[0] != 0.f || q[L] != 1.f) throw Error(ErrCode::CORRUPT, "corrupt packet: nonuniform levels");
  for (uint32_t t = 1; t <= L; ++t)
    if (!(q[t] > q[t - 1])) throw Error(ErrCode::CORRUPT, "corrupt packet: nonuniform levels not increasing");
  const Layout lay(h.n, h.bucket, L);
  if (h.payload_bytes != lay.total()) throw Error(ErrCode::CORRUPT, "corrupt packet: nonuniform payload size");
  const uint8_t* pl = h.payload;
  const uint32_t W = lay.W;
  const uint32_t ncodes = 1u << W;
  const int threads = eff_threads(a.threads);
  const bool simd = !a.scalar && cpu_info().avx2;
  const uint64_t bpt = std::max<uint64_t>(1, kTaskElems / lay.b);
  const uint64_t ntasks = (lay.nb + bpt - 1) / bpt;
  alignas(32) float qp[kQPad];  // q[0..L], then zeros (the vector decoder's level table)
  for (int t = 0; t < kQPad; ++t) qp[t] = t <= int(L) ? q[t] : 0.f;
  static_assert(kMaxNonuniformLevels < kQPad, "levels table");

  // Scales first: finite and >= 0 (nothing written yet).
  for (uint64_t j = 0; j < lay.nb; ++j) {
    const float M = load_f32(pl + lay.offset(j));
    if (!(std::isfinite(M) && M >= 0.f)) throw Error(ErrCode::CORRUPT, "corrupt packet: nonuniform bucket max not finite and >= 0");
  }

  // One pass over a bucket's codes; Store = false only validates (ζ <= L, zero padding).
  auto bucket_pass = [&](uint64_t j, bool store) {
    const uint8_t* src = pl + lay.offset(j);
    const float M = load_f32(src);
    const uint8_t* cb = src + 4;
    const uint64_t m = lay.len(j), i0 = lay.start(j);
    float val[256];
    uint32_t bad = 0;
    if (store)
      for (uint32_t c = 0; c < ncodes; ++c) {
        const uint32_t z = c >> 1;
        const float v = M * q[z <= L ? z : 0];
        val[c] = (c & 1) ? -v : v;
      }
    const uint64_t mask = (uint64_t(1) << W) - 1;
    float* out = a.out + i0;
    uint64_t e = 0;
    if (simd && W <= 8 && M > 0.f) {  // whole groups of 8 (M = 0 buckets and the tail take the scalar path)
      const uint64_t ng = m / 8;
      const uint64_t avail = lay.offset(lay.nb - 1) + 4 + code_bytes(lay.len(lay.nb - 1), W) - (lay.offset(j) + 4);
      bool b = false;
      if (!store) b = decode_groups_avx2<0, 0>(cb, ng, avail, W, L, M, qp, out, a.alpha);
      else if (L <= 15) {
        if (a.add) b = decode_groups_avx2<2, 0>(cb, ng, avail, W, L, M, qp, out, a.alpha);
        else b = decode_groups_avx2<1, 0>(cb, ng, avail, W, L, M, qp, out, a.alpha);
      } else if (L <= 31) {
        if (a.add) b = decode_groups_avx2<2, 1>(cb, ng, avail, W, L, M, qp, out, a.alpha);
        else b = decode_groups_avx2<1, 1>(cb, ng, avail, W, L, M, qp, out, a.alpha);
      } else {
        if (a.add) b = decode_groups_avx2<2, 2>(cb, ng, avail, W, L, M, qp, out, a.alpha);
        else b = decode_groups_avx2<1, 2>(cb, ng, avail, W, L, M, qp, out, a.alpha);
      }
      if (b) throw Error(ErrCode::CORRUPT, "corrupt packet: nonuniform level index > L");
      e = ng * 8;
    }
    for (; e < m; e += 8) {
      const unsigned cnt = unsigned(std::min<uint64_t>(8, m - e));
      uint64_t g = 0;
      std::memcpy(&g, cb + (e / 8) * W, (cnt * W + 7) / 8);
      if (cnt < 8) {
        if (g >> (cnt * W)) throw Error(ErrCode::CORRUPT, "corrupt packet: non-zero padding bits");
      }
      for (unsigned k = 0; k < cnt; ++k) {
        const uint32_t c = uint32_t((g >> (k * W)) & mask);
        bad |= uint32_t((c >> 1) > L);
        if (store) {
          const float v = val[c];
          if (a.add) {
            const float t = a.alpha * v;
            out[e + k] = out[e + k] + t;
          } else {
            out[e + k] = v;
          }
        }
      }
      if (bad) throw Error(ErrCode::CORRUPT, "corrupt packet: nonuniform level index > L");
    }
  };

  if (a.add) {  // decompressAdd must leave acc untouched on a corrupt packet: validate every code first
    parallel_for(threads, ntasks, [&](uint64_t task) {
      const uint64_t jb = task * bpt, je = std::min(lay.nb, jb + bpt);
      for (uint64_t j = jb; j < je; ++j) bucket_pass(j, false);
    });
  }
  parallel_for(threads, ntasks, [&](uint64_t task) {
    const uint64_t jb = task * bpt, je = std::min(lay.nb, jb + bpt);
    for (uint64_t j = jb; j < je; ++j) bucket_pass(j, true);
  });
}

}  // namespace gz
