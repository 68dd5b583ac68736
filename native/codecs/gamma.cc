// QSGD with the variable-length codings `gamma` and `sparse` (docs/FORMAT.md sections 3.1, 4.2, 5).
// The quantizer (norm order, r = s/N, the 16-bit stochastic rounding) is the one of the fixed coding
// (core/quant_ref.h): for the same input and seed the three codings carry the same zeta and signs, only the
// way they are written differs, so their decodes are bit-identical.
//
// Encoder: chunks of E elements (a whole number of buckets) are encoded independently, in parallel, each into
// its own max-size slot of the payload region; then the chunks are compacted left with memmove and chunk_lens
// is filled. One fused pass per bucket: norm, uniforms, quantize, code.
// Decoder: chunk-parallel; every read is bounds-checked against its chunk (bitio.h).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <mutex>
#include <vector>

#include "core/bitio.h"
#include "core/codec.h"
#include "core/threadpool.h"
#include "core/philox.h"
#include "core/quant_ref.h"
#include "core/simd_philox.h"

namespace gz {
namespace {

struct Geom {
  uint64_t n;
  uint32_t b, s, E;
  uint64_t C;
  bool sparse;
  bool linf;
};

Geom geom_of(const Params& p, uint64_t n) {
  Geom g;
  g.n = n;
  g.b = p.bucket;
  g.s = p.levels;
  g.E = p.bucket * std::max<uint32_t>(1u, 2048u / p.bucket);
  g.C = n ? (n + g.E - 1) / g.E : 0;
  g.sparse = p.coding == CODING_SPARSE;
  g.linf = p.norm == NORM_LINF;
  return g;
}

// Upper bound (bits) of the bit stream of one bucket of m elements.
//  gamma:  each element writes Elias-gamma(zeta+1) (2*floor(log2(zeta+1))+1 <= 2*L1+1 bits, L1 = floor(log2(s+1)))
//          plus at most one sign bit: m * (2*L1 + 2).
//  sparse: Elias-gamma(nnz+1) <= 2*floor(log2(m+1))+1 bits; then per non-zero element j, with r_j zeros before it:
//          Elias-gamma(r_j+1) <= 2*r_j + 1 bits (floor(log2(r+1)) <= r), Elias-gamma(zeta) <= 2*Ls+1 bits
//          (Ls = floor(log2 s)), 1 sign bit. With R = sum r_j <= m - nnz the total is at most
//          2(m - nnz) + nnz*(3 + 2*Ls), increasing in nnz (slope 1 + 2*Ls > 0), so at most m*(3 + 2*Ls).
uint64_t bucket_max_bits(const Geom& g, uint64_t m) {
  if (!g.sparse) return m * uint64_t(2 * floor_log2_u64(uint64_t(g.s) + 1) + 2);
  return uint64_t(2 * floor_log2_u64(m + 1) + 1) + m * uint64_t(3 + 2 * floor_log2_u64(g.s));
}

// Upper bound (bytes) of chunk c: its scales plus its bit stream rounded up to a byte.
uint64_t chunk_max_bytes(const Geom& g, uint64_t c) {
  const uint64_t lo = c * g.E, hi = std::min(g.n, lo + g.E);
  uint64_t bits = 0, nb = 0;
  for (uint64_t i = lo; i < hi; i += g.b, ++nb) bits += bucket_max_bits(g, std::min<uint64_t>(g.b, hi - i));
  return 4 * nb + (bits + 7) / 8;
}

// ---------------------------------------------------------------- encoder

// Norm of one bucket; throws NONFINITE.
inline float bucket_norm(const Geom& g, const float* v, uint64_t m) {
  uint32_t amax = 0;
  for (uint64_t i = 0; i < m; ++i) {
    const uint32_t a = ref::f2u(v[i]) & 0x7FFFFFFFu;
    amax = a > amax ? a : amax;
  }
  if (amax >= 0x7F800000u) throw Error(ErrCode::NONFINITE, "input contains NaN or Inf");
  if (g.linf) return ref::u2f(amax);
  const float N = ref::l2_norm(v, m);
  if (!(N < INFINITY)) throw Error(ErrCode::NONFINITE, "bucket l2 norm overflows float32");
  return N;
}

// Code table for (zeta, sign) when s is small: code bits and length.
struct CodeTab {
  std::vector<uint64_t> code;  // index 2*zeta + sign
  std::vector<uint8_t> len;
};

void build_gamma_tab(uint32_t s, CodeTab& t) {
  t.code.assign(2 * (size_t(s) + 1), 0);
  t.len.assign(2 * (size_t(s) + 1), 0);
  for (uint32_t z = 0; z <= s; ++z)
    for (uint32_t sg = 0; sg < 2; ++sg) {
      const uint64_t x = uint64_t(z) + 1;
      const int N = floor_log2_u64(x);
      uint64_t c = gamma_code(x, N);
      unsigned l = unsigned(2 * N + 1);
      if (z > 0) { c |= uint64_t(sg) << l; ++l; }
      t.code[2 * z + sg] = c;
      t.len[2 * z + sg] = uint8_t(l);
    }
}

// sparse: code of (zeta, sign) after the run: Elias-gamma(zeta) then the sign bit (zeta >= 1).
void build_sparse_tab(uint32_t s, CodeTab& t) {
  t.code.assign(2 * (size_t(s) + 1), 0);
  t.len.assign(2 * (size_t(s) + 1), 0);
  for (uint32_t z = 1; z <= s; ++z)
    for (uint32_t sg = 0; sg < 2; ++sg) {
      const int N = floor_log2_u64(z);
      t.code[2 * z + sg] = gamma_code(z, N) | (uint64_t(sg) << (2 * N + 1));
      t.len[2 * z + sg] = uint8_t(2 * N + 2);
    }
}

uint64_t encode_chunk(const Geom& g, uint64_t seed, const float* x, uint64_t c, uint8_t* dst, uint64_t cap,
                      const CodeTab* tab) {
  const uint64_t lo = c * g.E, hi = std::min(g.n, lo + g.E);
  const uint64_t nb = (hi - lo + g.b - 1) / g.b;
  BitWriter bw(dst + 4 * nb, dst + cap);
  uint16_t u16[8];
  uint64_t ublk = ~uint64_t(0);
  std::vector<uint32_t> zeta;  // per bucket, sparse only
  for (uint64_t bi = 0; bi < nb; ++bi) {
    const uint64_t b0 = lo + bi * g.b, m = std::min<uint64_t>(g.b, hi - b0);
    const float* v = x + b0;
    const float N = bucket_norm(g, v, m);
    store_u32le(dst + 4 * bi, ref::f2u(N));
    float r65536, s65536, pre;
    ref::qsgd_bucket_consts(N, g.s, &r65536, &s65536, &pre);
    if (g.sparse) {
      uint32_t nnz = 0;
      zeta.resize(m);
      for (uint64_t i = 0; i < m; ++i) {
        const uint64_t gi = b0 + i;
        if ((gi >> 3) != ublk) {
          ublk = gi >> 3;
          const Philox4 w = philox_block(seed, ublk, 0);
          for (int q = 0; q < 8; ++q) u16[q] = uint16_t(w.v[q >> 1] >> (16 * (q & 1)));
        }
        const uint32_t z = ref::qsgd_zeta(v[i] * pre, r65536, s65536, u16[gi & 7]);
        zeta[i] = z;
        nnz += z != 0;
      }
      bw.put_gamma(uint64_t(nnz) + 1);
      uint64_t run = 0;
      for (uint64_t i = 0; i < m; ++i) {
        const uint32_t z = zeta[i];
        if (!z) { ++run; continue; }
        bw.put_gamma(run + 1);
        run = 0;
        bw.put_gamma(z);
        bw.put(v[i] < 0.f ? 1 : 0, 1);
      }
    } else {
      for (uint64_t i = 0; i < m; ++i) {
        const uint64_t gi = b0 + i;
        if ((gi >> 3) != ublk) {
          ublk = gi >> 3;
          const Philox4 w = philox_block(seed, ublk, 0);
          for (int q = 0; q < 8; ++q) u16[q] = uint16_t(w.v[q >> 1] >> (16 * (q & 1)));
        }
        const uint32_t z = ref::qsgd_zeta(v[i] * pre, r65536, s65536, u16[gi & 7]);
        const uint32_t sg = (z != 0) & (v[i] < 0.f);
        if (tab) {
          bw.put(tab->code[2 * z + sg], tab->len[2 * z + sg]);
        } else {
          bw.put_gamma(uint64_t(z) + 1);
          if (z) bw.put(sg, 1);
        }
      }
    }
  }
  return 4 * nb + bw.bytes();
}

// ---------------------------------------------------------------- AVX2 encoder
// Same arithmetic as the scalar path (bit-identical, checked by the tests): the 32 norm lanes are four 8-lane
// registers, the uniforms come from philox_blocks_avx2, the quantizer is t = trunc(min(|x|*c*r65536, s65536))
// in one conversion. Codes are first written per element as k = 2*zeta + sign (bytes when s <= 127), then coded:
//  gamma, s <= 7: pshufb tables give each element's code byte and its bit mask (the code length), and pext packs
//                 eight (s <= 4) or four codes into one put of the bit writer;
//  gamma, other s: a (code, length) table per k, or Elias-gamma computed with lzcnt when s > 4096;
//  sparse:        a movemask of the non-zero codes; runs from the bit positions.

constexpr uint64_t kPiece = 2048;  // elements quantized per step (multiple of 32)

GZ_AVX2 inline uint32_t hmax_epu32(__m256i v) {
  __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4E));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xB1));
  return uint32_t(_mm_cvtsi128_si32(m));
}
GZ_AVX2 inline __m256i tail_mask(uint64_t cnt) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(cnt)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
GZ_AVX2 inline __m256 load_n(const float* p, uint64_t cnt) {
  if (cnt >= 8) return _mm256_loadu_ps(p);
  if (cnt == 0) return _mm256_setzero_ps();
  return _mm256_maskload_ps(p, tail_mask(cnt));
}
GZ_AVX2 uint32_t amax_avx2(const float* v, uint64_t m) {
  const __m256i abs = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  uint64_t i = 0;
  for (; i + 32 <= m; i += 32) {
    a0 = _mm256_max_epu32(a0, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(v + i)), abs));
    a1 = _mm256_max_epu32(a1, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(v + i + 8)), abs));
    a2 = _mm256_max_epu32(a2, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(v + i + 16)), abs));
    a3 = _mm256_max_epu32(a3, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(v + i + 24)), abs));
  }
  for (; i < m; i += 8) a0 = _mm256_max_epu32(a0, _mm256_and_si256(_mm256_castps_si256(load_n(v + i, m - i)), abs));
  return hmax_epu32(_mm256_max_epu32(_mm256_max_epu32(a0, a1), _mm256_max_epu32(a2, a3)));
}
// l2 norm of FORMAT section 2 given amax (> 0, finite).
GZ_AVX2 float l2_avx2(const float* v, uint64_t m, uint32_t amax) {
  const int e = ref::floor_log2(ref::u2f(amax));
  const int ne = -e;
  float f1, f2 = 1.f;
  bool two = false;
  if (ne >= -126 && ne <= 127) f1 = ref::pow2f(ne);
  else { const int e1 = ne < 0 ? -126 : 127; f1 = ref::pow2f(e1); f2 = ref::pow2f(ne - e1); two = true; }
  const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 F1 = _mm256_set1_ps(f1), F2 = _mm256_set1_ps(f2);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  uint64_t i = 0;
  for (; i + 32 <= m; i += 32)
    for (int k = 0; k < 4; ++k) {
      __m256 y = _mm256_mul_ps(_mm256_and_ps(_mm256_loadu_ps(v + i + 8 * k), absm), F1);
      if (two) y = _mm256_mul_ps(y, F2);
      acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(y, y));
    }
  if (i < m) {
    const uint64_t r = m - i;
    for (int k = 0; k < 4; ++k) {
      const uint64_t cnt = r > uint64_t(8 * k) ? std::min<uint64_t>(8, r - 8 * k) : 0;
      if (!cnt) break;
      __m256 y = _mm256_mul_ps(_mm256_and_ps(load_n(v + i + 8 * k, cnt), absm), F1);
      if (two) y = _mm256_mul_ps(y, F2);
      acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(y, y));
    }
  }
  // tree: w = 16 (acc0 += acc2, acc1 += acc3), w = 8 (acc0 += acc1), then 4, 2, 1 inside the register
  __m256 t = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
  return ref::mul_pow2(std::sqrt(_mm_cvtss_f32(q)), e);
}

struct QK {
  __m256 c, r, s;
};

// k = 2*zeta + sign of 8 elements (lanes >= cnt give 0). u: their 16-bit uniforms.
template <bool BIG>
GZ_AVX2 inline __m256i codes8(const float* x, uint64_t cnt, const uint16_t* u, const QK& k) {
  const __m256 xv = load_n(x, cnt);
  const __m256 ax = _mm256_and_ps(xv, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
  const __m256 a = _mm256_min_ps(_mm256_mul_ps(_mm256_mul_ps(ax, k.c), k.r), k.s);
  __m256i t;
  if (BIG) {  // s * 65536 >= 2^31: unsigned conversion
    const __m256 two31 = _mm256_set1_ps(2147483648.f);
    const __m256 big = _mm256_cmp_ps(a, two31, _CMP_GE_OQ);
    t = _mm256_cvttps_epi32(_mm256_sub_ps(a, _mm256_and_ps(big, two31)));
    t = _mm256_xor_si256(t, _mm256_and_si256(_mm256_castps_si256(big), _mm256_set1_epi32(int(0x80000000u))));
  } else {
    t = _mm256_cvttps_epi32(a);
  }
  const __m256i lvl = _mm256_srli_epi32(t, 16);
  const __m256i T = _mm256_and_si256(t, _mm256_set1_epi32(0xFFFF));
  const __m256i uv = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u)));
  const __m256i z = _mm256_sub_epi32(lvl, _mm256_cmpgt_epi32(T, uv));
  const __m256i nz = _mm256_cmpgt_epi32(z, _mm256_setzero_si256());
  const __m256i sg = _mm256_srli_epi32(_mm256_and_si256(_mm256_castps_si256(xv), nz), 31);
  return _mm256_or_si256(_mm256_slli_epi32(z, 1), sg);
}

// Per-thread scratch of the AVX2 encoder.
struct EncScratch {
  alignas(32) uint16_t u[kPiece + 64];
  alignas(32) uint8_t k8[kPiece + 64];
  alignas(32) uint32_t k32[kPiece + 64];
  uint64_t ulo = 1, uhi = 0;  // uniforms cached for elements [ulo, uhi)
};

// Uniforms of elements [g, g + len) (len <= kPiece): pointer into the cache.
GZ_AVX2 inline const uint16_t* uniforms(EncScratch& S, uint64_t seed, uint64_t g, uint64_t len, uint64_t limit) {
  if (!(g >= S.ulo && g + len <= S.uhi)) {
    const uint64_t b0 = g >> 3;
    const uint64_t end = std::min(limit, (b0 << 3) + kPiece);  // <= kPiece elements from the block start
    const uint64_t nblk = (std::max(end, g + len) - (b0 << 3) + 7) >> 3;
    philox_blocks_avx2(seed, b0, nblk, reinterpret_cast<uint32_t*>(S.u));
    S.ulo = b0 << 3;
    S.uhi = S.ulo + nblk * 8;
  }
  return S.u + (g - S.ulo);
}

// Codes k of m elements starting at global index g into S.k8 (BYTES) or S.k32; returns the count of non-zeros.
template <bool BYTES, bool BIG>
GZ_AVX2 uint64_t piece_codes(EncScratch& S, uint64_t seed, const float* x, uint64_t g, uint64_t m, uint64_t limit,
                             const QK& k) {
  const uint16_t* u = uniforms(S, seed, g, m, limit);
  uint64_t nnz = 0;
  for (uint64_t i = 0; i < m; i += 32) {
    const uint64_t cnt = std::min<uint64_t>(32, m - i);
    __m256i cd[4];
    for (int q = 0; q < 4; ++q) {
      const uint64_t cq = cnt > uint64_t(8 * q) ? std::min<uint64_t>(8, cnt - 8 * q) : 0;
      cd[q] = codes8<BIG>(x + i + 8 * q, cq, u + i + 8 * q, k);
    }
    if (BYTES) {
      __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(cd[0], cd[1]), _mm256_packs_epi32(cd[2], cd[3]));
      b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(S.k8 + i), b);
      const __m256i nzb = _mm256_cmpgt_epi8(_mm256_min_epu8(b, _mm256_set1_epi8(2)), _mm256_set1_epi8(1));
      nnz += uint64_t(__builtin_popcount(uint32_t(_mm256_movemask_epi8(nzb))));
    } else {
      for (int q = 0; q < 4; ++q) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(S.k32 + i + 8 * q), cd[q]);
        const __m256i nz = _mm256_cmpgt_epi32(cd[q], _mm256_set1_epi32(1));
        nnz += uint64_t(__builtin_popcount(uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(nz)))));
      }
    }
  }
  return nnz;
}

// Packs 8 codes (32-bit lanes: code C, length L; C < 2^L) into one or two puts, without pext (microcoded on
// this machine's Zen 2): pairs merge in 64-bit lanes with variable shifts, then pairs of pairs, then the halves.
template <int MAXLEN>  // the largest code length (so 8 codes fit one put when 8 * MAXLEN <= 56)
GZ_AVX2 inline void put8(BitWriter& bw, __m256i C, __m256i L) {
  const __m256i m32 = _mm256_set1_epi64x(0xFFFFFFFFll);
  const __m256i l1lo = _mm256_and_si256(L, m32);
  const __m256i m1 = _mm256_or_si256(_mm256_and_si256(C, m32), _mm256_sllv_epi64(_mm256_srli_epi64(C, 32), l1lo));
  const __m256i l1 = _mm256_add_epi64(l1lo, _mm256_srli_epi64(L, 32));
  const __m256i m2 = _mm256_or_si256(m1, _mm256_sllv_epi64(_mm256_unpackhi_epi64(m1, m1), l1));
  const __m256i l2 = _mm256_add_epi64(l1, _mm256_unpackhi_epi64(l1, l1));
  const uint64_t a = uint64_t(_mm256_extract_epi64(m2, 0)), b = uint64_t(_mm256_extract_epi64(m2, 2));
  const unsigned la = unsigned(_mm256_extract_epi64(l2, 0)), lb = unsigned(_mm256_extract_epi64(l2, 2));
  if (8 * MAXLEN <= 56) bw.put(a | (b << la), la + lb);
  else { bw.put(a, la); bw.put(b, lb); }
}

// gamma, s <= 7: quantize 32 elements at a time and code them straight from the registers (k <= 15: pshufb).
template <int MAXLEN, bool BIG>
GZ_AVX2 void gamma_small_piece(BitWriter& bw, EncScratch& S, uint64_t seed, const float* x, uint64_t g, uint64_t m,
                               uint64_t limit, const QK& k, const __m256i& ctab, const __m256i& ltab) {
  const uint16_t* u = uniforms(S, seed, g, m, limit);
  const __m256i ff = _mm256_set1_epi32(0xFF);
  for (uint64_t i = 0; i < m; i += 8) {
    const uint64_t cnt = std::min<uint64_t>(8, m - i);
    const __m256i kk = codes8<BIG>(x + i, cnt, u + i, k);
    __m256i C = _mm256_and_si256(_mm256_shuffle_epi8(ctab, kk), ff);
    __m256i L = _mm256_and_si256(_mm256_shuffle_epi8(ltab, kk), ff);
    if (cnt < 8) { const __m256i tm = tail_mask(cnt); C = _mm256_and_si256(C, tm); L = _mm256_and_si256(L, tm); }
    put8<MAXLEN>(bw, C, L);
  }
}

GZ_AVX2 void emit_sparse_bytes(BitWriter& bw, const uint8_t* k8, uint64_t m, uint64_t nnz, const CodeTab& stab) {
  bw.put_gamma(nnz + 1);
  uint64_t last = 0;  // index after the previous non-zero
  for (uint64_t i = 0; i < m; i += 32) {
    const uint64_t cnt = std::min<uint64_t>(32, m - i);
    uint32_t mask;
    if (cnt == 32) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k8 + i));
      mask = uint32_t(_mm256_movemask_epi8(_mm256_cmpgt_epi8(_mm256_min_epu8(b, _mm256_set1_epi8(2)), _mm256_set1_epi8(1))));
    } else {
      mask = 0;
      for (uint64_t j = 0; j < cnt; ++j) mask |= uint32_t(k8[i + j] >= 2) << j;
    }
    while (mask) {
      const uint64_t pos = i + uint64_t(__builtin_ctz(mask));
      mask &= mask - 1;
      const uint64_t r1 = pos - last + 1;
      last = pos + 1;
      const int N = floor_log2_u64(r1);
      if (N <= 20) {  // run code (<= 41 bits) and value code (<= 14 bits) in one put
        const unsigned gl = unsigned(2 * N + 1);
        bw.put(gamma_code(r1, N) | (stab.code[k8[pos]] << gl), gl + stab.len[k8[pos]]);
      } else {
        bw.put_gamma(r1);
        bw.put(stab.code[k8[pos]], stab.len[k8[pos]]);
      }
    }
  }
}

GZ_AVX2 uint64_t encode_chunk_avx2(const Geom& g, uint64_t seed, const float* x, uint64_t c, uint8_t* dst,
                                   uint64_t cap, const CodeTab* tab, const CodeTab* stab) {
  static thread_local EncScratch S;
  S.ulo = 1; S.uhi = 0;
  const uint64_t lo = c * g.E, hi = std::min(g.n, lo + g.E);
  const uint64_t nb = (hi - lo + g.b - 1) / g.b;
  BitWriter bw(dst + 4 * nb, dst + cap);
  const bool bytes = g.s <= 127, big = g.s >= 32768;
  alignas(32) uint8_t ct[32], lt[32];
  std::memset(ct, 0, 32);
  std::memset(lt, 0, 32);
  if (!g.sparse && g.s <= 7)
    for (uint32_t k = 0; k < 2 * (g.s + 1); ++k) {
      ct[k] = ct[k + 16] = uint8_t(tab->code[k]);
      lt[k] = lt[k + 16] = tab->len[k];
    }
  const __m256i ctab = _mm256_load_si256(reinterpret_cast<const __m256i*>(ct));
  const __m256i ltab = _mm256_load_si256(reinterpret_cast<const __m256i*>(lt));
  std::vector<uint32_t> big_codes;  // sparse with s > 127 and a bucket larger than one piece
  for (uint64_t bi = 0; bi < nb; ++bi) {
    const uint64_t b0 = lo + bi * g.b, m = std::min<uint64_t>(g.b, hi - b0);
    const float* v = x + b0;
    if (bi + 2 < nb) {
      const char* pf = reinterpret_cast<const char*>(x + b0 + 2 * g.b);
      const uint64_t pb = std::min<uint64_t>(std::min<uint64_t>(g.b, hi - (b0 + 2 * g.b)), 4096) * 4;
      for (uint64_t o = 0; o < pb; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
    }
    const uint32_t amax = amax_avx2(v, m);
    if (amax >= 0x7F800000u) throw Error(ErrCode::NONFINITE, "input contains NaN or Inf");
    float N;
    if (g.linf) N = ref::u2f(amax);
    else {
      N = amax ? l2_avx2(v, m, amax) : 0.f;
      if (!(N < INFINITY)) throw Error(ErrCode::NONFINITE, "bucket l2 norm overflows float32");
    }
    store_u32le(dst + 4 * bi, ref::f2u(N));
    float r65536, s65536, pre;
    ref::qsgd_bucket_consts(N, g.s, &r65536, &s65536, &pre);
    QK k;
    k.c = _mm256_set1_ps(pre);
    k.r = _mm256_set1_ps(r65536);
    k.s = _mm256_set1_ps(s65536);
    if (!g.sparse) {
      for (uint64_t off = 0; off < m; off += kPiece) {
        const uint64_t len = std::min(kPiece, m - off);
        if (g.s <= 4) {
          gamma_small_piece<6, false>(bw, S, seed, v + off, b0 + off, len, hi, k, ctab, ltab);
        } else if (g.s <= 7) {
          gamma_small_piece<8, false>(bw, S, seed, v + off, b0 + off, len, hi, k, ctab, ltab);
        } else if (bytes) {
          piece_codes<true, false>(S, seed, v + off, b0 + off, len, hi, k);
          for (uint64_t i = 0; i < len; ++i) bw.put(tab->code[S.k8[i]], tab->len[S.k8[i]]);
        } else {
          if (big) piece_codes<false, true>(S, seed, v + off, b0 + off, len, hi, k);
          else piece_codes<false, false>(S, seed, v + off, b0 + off, len, hi, k);
          for (uint64_t i = 0; i < len; ++i) {
            const uint32_t kk = S.k32[i];
            if (tab) bw.put(tab->code[kk], tab->len[kk]);
            else { bw.put_gamma((kk >> 1) + 1); if (kk >= 2) bw.put(kk & 1, 1); }
          }
        }
      }
    } else if (bytes && m <= kPiece) {
      const uint64_t nnz = piece_codes<true, false>(S, seed, v, b0, m, hi, k);
      emit_sparse_bytes(bw, S.k8, m, nnz, *stab);
    } else {
      // general sparse: codes of the whole bucket first (nnz precedes the runs)
      big_codes.resize(size_t(m));
      uint64_t nnz = 0;
      for (uint64_t off = 0; off < m; off += kPiece) {
        const uint64_t len = std::min(kPiece, m - off);
        if (big) nnz += piece_codes<false, true>(S, seed, v + off, b0 + off, len, hi, k);
        else nnz += piece_codes<false, false>(S, seed, v + off, b0 + off, len, hi, k);
        std::memcpy(big_codes.data() + off, S.k32, len * 4);
      }
      bw.put_gamma(nnz + 1);
      uint64_t last = 0;
      for (uint64_t i = 0; i < m; ++i) {
        const uint32_t kk = big_codes[i];
        if (kk < 2) continue;
        bw.put_gamma(i - last + 1);
        last = i + 1;
        bw.put_gamma(kk >> 1);
        bw.put(kk & 1, 1);
      }
    }
  }
  return 4 * nb + bw.bytes();
}

// ---------------------------------------------------------------- decoder

struct ChunkView {
  const uint8_t* p;
  uint64_t len;
};

template <bool STORE, bool ADD>
void decode_chunk(const Geom& g, ChunkView ck, uint64_t c, float* out, float alpha) {
  const uint64_t lo = c * g.E, hi = std::min(g.n, lo + g.E);
  const uint64_t nb = (hi - lo + g.b - 1) / g.b;
  if (ck.len < 4 * nb) corrupt("chunk shorter than its scales");
  BitReader br(ck.p + 4 * nb, ck.len - 4 * nb);
  const int maxN_z1 = floor_log2_u64(uint64_t(g.s) + 1);  // gamma: zeta + 1 <= s + 1
  const int maxN_z = floor_log2_u64(uint64_t(g.s));       // sparse: zeta <= s
  const float fs = float(g.s);
  for (uint64_t bi = 0; bi < nb; ++bi) {
    const uint64_t b0 = lo + bi * g.b, m = std::min<uint64_t>(g.b, hi - b0);
    const uint32_t nbits = load_u32le(ck.p + 4 * bi);
    if (nbits >= 0x7F800000u) corrupt("negative or non-finite bucket scale");
    const float w = ref::u2f(nbits) / fs;
    float* o = STORE ? out + b0 : nullptr;
    if (g.sparse) {
      const uint64_t nnz = br.get_gamma(floor_log2_u64(m + 1)) - 1;
      if (nnz > m) corrupt("non-zero count larger than the bucket");
      uint64_t i = 0;
      const int maxN_r = floor_log2_u64(m);
      const float zadd = alpha * 0.f;
      for (uint64_t j = 0; j < nnz; ++j) {
        uint64_t r, z;
        uint32_t sg;
        // fast path: run code, level code and sign from one 57-bit peek; else the one-code-at-a-time path
        const uint64_t pk = br.peek();
        const int N1 = pk ? ctz64(pk) : 64;
        const uint64_t w2 = N1 <= 20 ? pk >> (2 * N1 + 1) : 0;
        const int N2 = w2 ? ctz64(w2) : 64;
        if (N1 <= maxN_r && N2 <= maxN_z && 2 * N1 + 2 * N2 + 3 <= 57) {
          r = (((pk >> (N1 + 1)) & ((uint64_t(1) << N1) - 1)) | (uint64_t(1) << N1)) - 1;
          z = ((w2 >> (N2 + 1)) & ((uint64_t(1) << N2) - 1)) | (uint64_t(1) << N2);
          sg = uint32_t(w2 >> (2 * N2 + 1)) & 1u;
          br.skip(unsigned(2 * N1 + 2 * N2 + 3));
        } else {
          r = br.get_gamma(maxN_r) - 1;
          z = br.get_gamma(maxN_z);
          sg = br.get_bit();
        }
        if (r >= m - i) corrupt("zero run past the bucket end");
        if (z > g.s) corrupt("level above s");
        if (STORE) {
          if (ADD) {
            for (uint64_t q = 0; q < r; ++q) o[i + q] = o[i + q] + zadd;
          } else {
            std::memset(o + i, 0, size_t(r) * 4);
          }
        }
        i += r;
        if (STORE) {
          const float val = ref::qsgd_value(w, uint32_t(z), sg);
          if (ADD) o[i] = o[i] + alpha * val;
          else o[i] = val;
        }
        ++i;
      }
      if (STORE) {
        if (ADD) for (; i < m; ++i) o[i] = o[i] + zadd;
        else std::memset(o + i, 0, size_t(m - i) * 4);
      }
    } else {
      for (uint64_t i = 0; i < m; ++i) {
        const uint64_t z = br.get_gamma(maxN_z1) - 1;
        if (z > g.s) corrupt("level above s");
        const uint32_t sg = z ? br.get_bit() : 0u;
        if (STORE) {
          const float val = ref::qsgd_value(w, uint32_t(z), sg);
          if (ADD) o[i] = o[i] + alpha * val;
          else o[i] = val;
        }
      }
    }
  }
  br.finish();
}

// ---------------------------------------------------------------- fast decoders (s <= 7, both codings)
// A task decodes kGroup consecutive chunks, four at a time, in two stages.
// Stage 1 writes the symbols k = 2*zeta + sign (k <= 15) of each chunk's elements as bytes into its own region of
// a scratch buffer. The four chunks are decoded in lockstep in one thread: one stream is a chain of dependent
// load -> shift -> table load -> add steps, four independent chains overlap. Each stream's state is a bit pointer
// (byte address * 8 + bit) and an output pointer, kept in registers; the steps run in batches whose length is
// bounded so that no table step can load past its chunk or store past its region's slack, so the steps carry no
// bounds checks; near a chunk's end, and for every code the tables do not resolve (long codes, and all corrupt
// codes), the checked one-code path (BitReader) takes over and throws CORRUPT where the stream is bad.
//  gamma:  a 12-bit peek table gives up to eight whole symbols per lookup (an entry stops before an incomplete code
//          or a zeta > s; an entry with no symbol only occurs at a corrupt code, and stops its stream).
//  sparse: the region is zeroed, then a 12-bit peek table gives one whole (run, zeta, sign) triple per lookup
//          (runs <= 30); the symbol is stored after the run. Runs past the bucket end are checked once per batch
//          (the output pointer only grows; the slack absorbs a corrupt batch's overrun before it throws).
// Stage 2 maps each bucket's symbols to floats through val[k] = qsgd_value(w, k >> 1, k & 1) (decode-add: alpha *
// val[k], then out + that: the same float operations as the scalar path): 16 symbols per four pshufb of the
// table's byte planes and eight unpacks; large plain decodes use non-temporal stores (256-bit where two 16-byte
// halves make an aligned 32-byte block).
// Decode-add validates every chunk before its first store to acc (see qsgd_var_decode).

constexpr int kPeek = 12;
constexpr uint64_t kPeekMask = (1u << kPeek) - 1;
constexpr uint64_t kFastMaxE = 1 << 16;  // larger chunks use the generic decoder
constexpr uint64_t kBatch = 64;          // max table steps per batch (sparse slack: kBatch * 31 bytes)
constexpr uint64_t kSlack = kBatch * 32 + 64;

// gamma: up to eight symbols (bytes), their count and the bits they take (0 and 0: the code at the peek is corrupt).
struct GamTab {
  uint64_t sym[1 << kPeek];
  uint8_t cnt[1 << kPeek];
  uint8_t bits[1 << kPeek];
};
// sparse: (r + 1) | k << 8 | bits << 16; 0 = not resolved.
struct SpTab {
  uint32_t e[1 << kPeek];
};

GamTab* build_gamma_dtab(uint32_t s) {
  GamTab* t = new GamTab;
  for (uint32_t w = 0; w < (1u << kPeek); ++w) {
    uint64_t e = 0;
    int pos = 0, ns = 0;
    while (ns < 8) {
      const uint32_t rest = w >> pos;
      const int avail = kPeek - pos;
      if (avail <= 0 || rest == 0) break;
      const int N = __builtin_ctz(rest);
      int len = 2 * N + 1;
      if (len > avail) break;
      const uint32_t x = ((rest >> (N + 1)) & ((1u << N) - 1)) | (1u << N);
      const uint32_t z = x - 1;
      if (z > s) break;
      uint32_t sg = 0;
      if (z) {
        if (len + 1 > avail) break;
        sg = (rest >> len) & 1;
        ++len;
      }
      e |= uint64_t(2 * z + sg) << (8 * ns);
      ++ns;
      pos += len;
    }
    t->sym[w] = e;
    t->cnt[w] = uint8_t(ns);
    t->bits[w] = uint8_t(pos);
  }
  return t;
}

SpTab* build_sparse_dtab(uint32_t s) {
  SpTab* t = new SpTab;
  for (uint32_t w = 0; w < (1u << kPeek); ++w) {
    uint32_t e = 0;
    const int N1 = w ? __builtin_ctz(w) : 32;
    const int l1 = 2 * N1 + 1;
    if (l1 + 2 <= kPeek) {
      const uint32_t r1 = ((w >> (N1 + 1)) & ((1u << N1) - 1)) | (1u << N1);  // r + 1
      const uint32_t w2 = w >> l1;
      const int N2 = w2 ? __builtin_ctz(w2) : 32;
      const int l2 = 2 * N2 + 1;
      if (l1 + l2 + 1 <= kPeek) {
        const uint32_t z = ((w2 >> (N2 + 1)) & ((1u << N2) - 1)) | (1u << N2);
        const uint32_t sg = (w2 >> l2) & 1;
        if (z <= s) e = r1 | ((2 * z + sg) << 8) | (uint32_t(l1 + l2 + 1) << 16);
      }
    }
    t->e[w] = e;
  }
  return t;
}

const GamTab& gamma_dtab(uint32_t s) {
  static GamTab* tabs[8];
  static std::once_flag once[8];
  std::call_once(once[s], [s] { tabs[s] = build_gamma_dtab(s); });
  return *tabs[s];
}
const SpTab& sparse_dtab(uint32_t s) {
  static SpTab* tabs[8];
  static std::once_flag once[8];
  std::call_once(once[s], [s] { tabs[s] = build_sparse_dtab(s); });
  return *tabs[s];
}

inline uint64_t peek_abs(uint64_t bp) {
  return load_u64le(reinterpret_cast<const uint8_t*>(uintptr_t(bp >> 3))) >> (bp & 7);
}

// One stream (chunk) of stage 1.
struct Stream {
  const uint8_t* base;  // bit stream
  uint64_t nbytes;
  uint64_t bp;          // bit pointer: address * 8 + bit
  uint64_t blim;        // a table step may load 8 bytes at bp when bp <= blim
  uint64_t bend_bits;   // bit pointer of the stream's end
  bool fast;            // nbytes >= 8 (blim valid)
  uint8_t* k0;          // region: symbols of the chunk's elements
  uint8_t* kp;          // next symbol (gamma) / next element (sparse)
  uint8_t* kend;        // k0 + M
  // sparse
  uint8_t* bend;        // end of the current bucket
  uint64_t left;        // triples left in the current bucket
  uint64_t bi, nb, b;   // current bucket, bucket count, bucket size
  int maxN_r;
  bool done;
};

void stream_init(Stream& st, const uint8_t* p, uint64_t len, uint8_t* k0, uint64_t M) {
  st.base = p;
  st.nbytes = len;
  st.bp = uint64_t(uintptr_t(p)) * 8;
  st.fast = len >= 8;
  // a step at bp loads bytes [bp >> 3, (bp >> 3) + 8): bp <= 8 * (base + len - 8) + 7
  st.blim = st.fast ? uint64_t(uintptr_t(p + len - 8)) * 8 + 7 : 0;
  st.bend_bits = uint64_t(uintptr_t(p + len)) * 8;
  st.k0 = st.kp = k0;
  st.kend = k0 + M;
  st.done = false;
}

// The next bits at bp (zeros past the stream's end), for the checked paths: a table step taken on them must
// then check bp <= bend_bits (a code that ends past the stream is corrupt, as the scalar reader finds).
inline uint64_t peek_checked(const Stream& st) {
  if (st.fast && st.bp <= st.blim) return peek_abs(st.bp);
  const uint64_t pos = st.bp - uint64_t(uintptr_t(st.base)) * 8, byte = pos >> 3;
  uint64_t w = 0;
  if (byte < st.nbytes) std::memcpy(&w, st.base + byte, size_t(std::min<uint64_t>(8, st.nbytes - byte)));
  return w >> (pos & 7);
}

inline BitReader reader_at(const Stream& st) {
  BitReader br(st.base, st.nbytes);
  br.pos = st.bp - uint64_t(uintptr_t(st.base)) * 8;
  return br;
}

void stream_finish(Stream& st) {
  const BitReader br = reader_at(st);
  br.finish();
  st.done = true;
}

// ---- gamma stage 1

// One symbol, fully checked.
void gamma_slow_one(Stream& st, uint32_t s, int maxN) {
  BitReader br = reader_at(st);
  const uint64_t z = br.get_gamma(maxN) - 1;
  if (z > s) corrupt("level above s");
  const uint32_t sg = z ? br.get_bit() : 0u;
  *st.kp++ = uint8_t(2 * z + sg);
  st.bp = uint64_t(uintptr_t(st.base)) * 8 + br.pos;
}

// The rest of a stream, every step checked.
void gamma_finish(Stream& st, const GamTab& T, uint32_t s, int maxN) {
  while (st.kp < st.kend) {
    const uint64_t x = peek_checked(st) & kPeekMask;
    const uint64_t e = T.sym[x], cnt = T.cnt[x];
    if (__builtin_expect(cnt == 0, 0)) { gamma_slow_one(st, s, maxN); continue; }  // corrupt: throws
    st.bp += T.bits[x];
    if (st.bp > st.bend_bits) corrupt("bit stream read past the end of its chunk");
    if (st.kend - st.kp >= 8) {
      store_u64le(st.kp, e);
    } else {  // regions may be adjacent: no byte past kend
      if (cnt > uint64_t(st.kend - st.kp)) corrupt("more codes than elements in a chunk");
      std::memcpy(st.kp, &e, size_t(cnt));
    }
    st.kp += cnt;
  }
  stream_finish(st);
}

// Table steps that stay inside the stream and the region for a stream: at most (blim - bp) / 12 + 1 by bits
// (12 bits per step at most), (kend - 8 - kp) / 8 + 1 by symbols (every 8-byte store stays inside the region).
inline uint64_t gamma_room(const Stream& st) {
  if (!st.fast || st.bp > st.blim || st.kend - st.kp < 8) return 0;
  return std::min<uint64_t>((st.blim - st.bp) / 12 + 1, uint64_t(st.kend - 8 - st.kp) / 8 + 1);
}

// Runs the NS streams in lockstep until one has fewer than kMinRoom steps of room or stops advancing.
constexpr uint64_t kMinRoom = 4;
template <int NS>
void gamma_lockstep(Stream** sp, const GamTab& T) {
  uint64_t bp[NS];
  uint8_t* kp[NS];
  for (int i = 0; i < NS; ++i) { bp[i] = sp[i]->bp; kp[i] = sp[i]->kp; }
  for (;;) {
    uint64_t K = kBatch;
    for (int i = 0; i < NS; ++i) {
      sp[i]->bp = bp[i];
      sp[i]->kp = kp[i];
      K = std::min(K, gamma_room(*sp[i]));
    }
    if (K < kMinRoom) return;
    uint64_t b0[NS];
    for (int i = 0; i < NS; ++i) b0[i] = bp[i];
    for (uint64_t t = 0; t < K; ++t) {
#pragma GCC unroll 4
      for (int i = 0; i < NS; ++i) {
        const uint64_t x = peek_abs(bp[i]) & kPeekMask;
        store_u64le(kp[i], T.sym[x]);
        kp[i] += T.cnt[x];
        bp[i] += T.bits[x];
      }
    }
    bool stuck = false;
    for (int i = 0; i < NS; ++i) stuck |= bp[i] == b0[i];
    if (stuck) {  // a code the table does not resolve (corrupt): the checked path throws
      for (int i = 0; i < NS; ++i) { sp[i]->bp = bp[i]; sp[i]->kp = kp[i]; }
      return;
    }
  }
}

void gamma_streams(Stream* st, int ns, const GamTab& T, uint32_t s, int maxN) {
  Stream* act[4];
  int na = 0;
  for (int i = 0; i < ns; ++i) act[na++] = &st[i];
  while (na > 0) {
    if (na == 4) gamma_lockstep<4>(act, T);
    else if (na == 3) gamma_lockstep<3>(act, T);
    else if (na == 2) gamma_lockstep<2>(act, T);
    else gamma_lockstep<1>(act, T);
    // finish the streams near their end or stuck (at least one)
    int j = 0;
    bool any = false;
    for (int i = 0; i < na; ++i) {
      Stream& x = *act[i];
      bool fin = gamma_room(x) < kMinRoom;
      if (!fin && T.cnt[peek_abs(x.bp) & kPeekMask] == 0) fin = true;
      if (fin) { gamma_finish(x, T, s, maxN); any = true; }
      else act[j++] = act[i];
    }
    if (!any) { gamma_finish(*act[0], T, s, maxN); for (int i = 1; i < j; ++i) act[i - 1] = act[i]; --j; }
    na = j;
  }
}

// ---- sparse stage 1

struct Triple {
  uint64_t r1k;  // (r + 1) | k << 32
  uint64_t bp;
};

// One (run, zeta, sign) triple, fully checked (bits); the run is checked by the caller.
Triple sparse_slow_triple(const Stream& st, uint32_t s, int maxN_z) {
  BitReader br = reader_at(st);
  const uint64_t r = br.get_gamma(st.maxN_r) - 1;
  const uint64_t z = br.get_gamma(maxN_z);
  const uint32_t sg = br.get_bit();
  if (z > s) corrupt("level above s");
  return Triple{(r + 1) | (uint64_t(2 * z + sg) << 32), uint64_t(uintptr_t(st.base)) * 8 + br.pos};
}

inline void put_triple(uint8_t*& kp, const uint8_t* bend, uint64_t r1, uint8_t k) {
  if (kp >= bend || r1 > uint64_t(bend - kp)) corrupt("zero run past the bucket end");
  kp += r1;
  kp[-1] = k;
}

// Moves a stream whose bucket is complete (left == 0) to the next bucket with triples (reading nnz), or to its end.
void sparse_next_bucket(Stream& st) {
  while (st.left == 0) {
    if (st.kp > st.bend) corrupt("zero run past the bucket end");
    if (++st.bi == st.nb) { stream_finish(st); return; }
    const uint64_t m = std::min<uint64_t>(st.b, uint64_t(st.kend - st.k0) - st.bi * st.b);
    BitReader br = reader_at(st);
    const uint64_t nnz = br.get_gamma(floor_log2_u64(m + 1)) - 1;
    if (nnz > m) corrupt("non-zero count larger than the bucket");
    st.bp = uint64_t(uintptr_t(st.base)) * 8 + br.pos;
    st.kp = st.k0 + st.bi * st.b;
    st.bend = st.kp + m;
    st.left = nnz;
    st.maxN_r = floor_log2_u64(m);
  }
}

void sparse_start(Stream& st, uint64_t b) {
  st.b = b;
  st.nb = (uint64_t(st.kend - st.k0) + b - 1) / b;
  st.bi = ~uint64_t(0);
  st.left = 0;
  st.bend = st.kp;
  sparse_next_bucket(st);
}

// The rest of a stream, every step checked.
void sparse_finish(Stream& st, const SpTab& T, uint32_t s, int maxN_z) {
  while (!st.done) {
    const uint32_t e = T.e[peek_checked(st) & kPeekMask];
    if (e) {
      st.bp += e >> 16;
      if (st.bp > st.bend_bits) corrupt("bit stream read past the end of its chunk");
      put_triple(st.kp, st.bend, e & 0xFF, uint8_t(e >> 8));
    } else {
      const Triple t = sparse_slow_triple(st, s, maxN_z);
      put_triple(st.kp, st.bend, uint32_t(t.r1k), uint8_t(t.r1k >> 32));
      st.bp = t.bp;
    }
    --st.left;
    sparse_next_bucket(st);
  }
}

inline uint64_t sparse_room(const Stream& st) {
  if (st.done || !st.fast || st.bp > st.blim) return 0;
  return std::min<uint64_t>((st.blim - st.bp) / 12 + 1, st.left);
}

// Lockstep batches while every stream has room; returns when one needs the checked path or a new bucket.
template <int NS>
void sparse_lockstep(Stream** sp, const SpTab& T, uint32_t s, int maxN_z) {
  for (;;) {
    uint64_t K = kBatch;
    for (int i = 0; i < NS; ++i) K = std::min(K, sparse_room(*sp[i]));
    if (K == 0) return;
    uint64_t bp[NS];
    uint8_t* kp[NS];
    for (int i = 0; i < NS; ++i) { bp[i] = sp[i]->bp; kp[i] = sp[i]->kp; }
    uint64_t t = 0;
    bool miss = false;
    for (; t < K && !miss; ++t) {
#pragma GCC unroll 4
      for (int i = 0; i < NS; ++i) {
        const uint32_t e = T.e[peek_abs(bp[i]) & kPeekMask];
        if (__builtin_expect(e == 0, 0)) {
          sp[i]->bp = bp[i];
          sp[i]->kp = kp[i];
          const Triple tr = sparse_slow_triple(*sp[i], s, maxN_z);
          put_triple(kp[i], sp[i]->bend, uint32_t(tr.r1k), uint8_t(tr.r1k >> 32));
          bp[i] = tr.bp;
          miss = true;
          continue;
        }
        kp[i] += e & 0xFF;
        kp[i][-1] = uint8_t(e >> 8);
        bp[i] += e >> 16;
      }
    }
    for (int i = 0; i < NS; ++i) {
      sp[i]->bp = bp[i];
      sp[i]->kp = kp[i];
      if (kp[i] > sp[i]->bend) corrupt("zero run past the bucket end");
      sp[i]->left -= t;
    }
  }
}

void sparse_streams(Stream* st, int ns, const SpTab& T, uint32_t s, int maxN_z) {
  Stream* act[4];
  int na = 0;
  for (int i = 0; i < ns; ++i) act[na++] = &st[i];
  while (na > 0) {
    if (na == 4) sparse_lockstep<4>(act, T, s, maxN_z);
    else if (na == 3) sparse_lockstep<3>(act, T, s, maxN_z);
    else if (na == 2) sparse_lockstep<2>(act, T, s, maxN_z);
    else sparse_lockstep<1>(act, T, s, maxN_z);
    int j = 0;
    for (int i = 0; i < na; ++i) {
      Stream& x = *act[i];
      if (!x.done && x.left == 0) sparse_next_bucket(x);
      if (!x.done && (!x.fast || x.bp > x.blim)) sparse_finish(x, T, s, maxN_z);
      if (!x.done) act[j++] = act[i];
    }
    na = j;
  }
}

// ---- stage 2

// Per-thread scratch of a task: four chunk regions (symbols) and their bucket scales.
struct FastScratch {
  std::vector<uint8_t> k;
  std::vector<float> w;
  uint64_t stride = 0, nbmax = 0;
};

// Byte planes of a 16-float table: P[j] byte q = byte j of lut[q].
GZ_AVX2 inline void lut_planes(const float* lut, __m128i P[4]) {
  const __m128i sh = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m128i a = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)), sh);
  const __m128i b = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut + 4)), sh);
  const __m128i c = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut + 8)), sh);
  const __m128i d = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut + 12)), sh);
  // a = [a0 a1 a2 a3] (dword j = plane j of floats 0..3), ...
  const __m128i ab0 = _mm_unpacklo_epi32(a, b), ab1 = _mm_unpackhi_epi32(a, b);
  const __m128i cd0 = _mm_unpacklo_epi32(c, d), cd1 = _mm_unpackhi_epi32(c, d);
  P[0] = _mm_unpacklo_epi64(ab0, cd0);
  P[1] = _mm_unpackhi_epi64(ab0, cd0);
  P[2] = _mm_unpacklo_epi64(ab1, cd1);
  P[3] = _mm_unpackhi_epi64(ab1, cd1);
}

// Floats of 16 symbols (k <= 15).
GZ_AVX2 inline void floats16(const uint8_t* k, const __m128i P[4], __m128& f0, __m128& f1, __m128& f2, __m128& f3) {
  const __m128i K = _mm_loadu_si128(reinterpret_cast<const __m128i*>(k));
  const __m128i b0 = _mm_shuffle_epi8(P[0], K), b1 = _mm_shuffle_epi8(P[1], K);
  const __m128i b2 = _mm_shuffle_epi8(P[2], K), b3 = _mm_shuffle_epi8(P[3], K);
  const __m128i l01 = _mm_unpacklo_epi8(b0, b1), h01 = _mm_unpackhi_epi8(b0, b1);
  const __m128i l23 = _mm_unpacklo_epi8(b2, b3), h23 = _mm_unpackhi_epi8(b2, b3);
  f0 = _mm_castsi128_ps(_mm_unpacklo_epi16(l01, l23));
  f1 = _mm_castsi128_ps(_mm_unpackhi_epi16(l01, l23));
  f2 = _mm_castsi128_ps(_mm_unpacklo_epi16(h01, h23));
  f3 = _mm_castsi128_ps(_mm_unpackhi_epi16(h01, h23));
}

enum class Out { PLAIN, NT, ADD };

// Symbols of one chunk (M elements, buckets of b; bucket scales w) -> out[0, M).
// NT: out is 16-byte aligned and b % 16 == 0.
template <Out MODE>
GZ_AVX2 void chunk_floats(const uint8_t* k, uint64_t M, uint64_t b, const float* w, float* out, float alpha) {
  alignas(16) float lut[16];
  __m128i P[4];
  __m128 carry = _mm_setzero_ps();
  bool have = false;
  const bool odd = (uintptr_t(out) & 16) != 0;
  uint64_t i = 0;
  for (uint64_t bi = 0; i < M; ++bi) {
    const uint64_t m = std::min<uint64_t>(b, M - i);
    for (uint32_t q = 0; q < 16; ++q) {
      const float v = ref::qsgd_value(w[bi], q >> 1, q & 1);
      lut[q] = MODE == Out::ADD ? alpha * v : v;
    }
    const uint64_t e = i + m;
    lut_planes(lut, P);
    for (; i + 16 <= e; i += 16) {
      __m128 f0, f1, f2, f3;
      floats16(k + i, P, f0, f1, f2, f3);
      float* o = out + i;
      if (MODE == Out::ADD) {
        _mm_storeu_ps(o, _mm_add_ps(_mm_loadu_ps(o), f0));
        _mm_storeu_ps(o + 4, _mm_add_ps(_mm_loadu_ps(o + 4), f1));
        _mm_storeu_ps(o + 8, _mm_add_ps(_mm_loadu_ps(o + 8), f2));
        _mm_storeu_ps(o + 12, _mm_add_ps(_mm_loadu_ps(o + 12), f3));
      } else if (MODE == Out::PLAIN) {
        _mm_storeu_ps(o, f0);
        _mm_storeu_ps(o + 4, f1);
        _mm_storeu_ps(o + 8, f2);
        _mm_storeu_ps(o + 12, f3);
      } else if (!odd) {
        _mm256_stream_ps(o, _mm256_set_m128(f1, f0));
        _mm256_stream_ps(o + 8, _mm256_set_m128(f3, f2));
      } else {
        if (have) _mm256_stream_ps(o - 4, _mm256_set_m128(f0, carry));
        else _mm_stream_ps(o, f0);
        _mm256_stream_ps(o + 4, _mm256_set_m128(f2, f1));
        carry = f3;
        have = true;
      }
    }
    if (MODE == Out::NT && have && i < e) { _mm_stream_ps(out + i - 4, carry); have = false; }
    for (; i < e; ++i) {
      if (MODE == Out::ADD) out[i] = out[i] + lut[k[i]];
      else out[i] = lut[k[i]];
    }
  }
  if (MODE == Out::NT && have) _mm_stream_ps(out + i - 4, carry);
}

// Stage 1 of chunks [c, c + ns) (ns <= 4) into S (regions), with their scales; validates everything.
void stage1(const Geom& g, const Header& h, const std::vector<uint64_t>& off, uint64_t c, int ns, FastScratch& S,
            uint8_t* kdst) {
  Stream st[4];
  const float fs = float(g.s);
  for (int i = 0; i < ns; ++i) {
    const uint64_t cc = c + uint64_t(i);
    const uint64_t lo = cc * g.E, hi = std::min(g.n, lo + g.E);
    const uint64_t nb = (hi - lo + g.b - 1) / g.b;
    const uint8_t* p = h.payload + off[cc];
    const uint64_t len = off[cc + 1] - off[cc];
    if (len < 4 * nb) corrupt("chunk shorter than its scales");
    float* w = S.w.data() + uint64_t(i) * S.nbmax;
    for (uint64_t bi = 0; bi < nb; ++bi) {
      const uint32_t nbits = load_u32le(p + 4 * bi);
      if (nbits >= 0x7F800000u) corrupt("negative or non-finite bucket scale");
      w[bi] = ref::u2f(nbits) / fs;
    }
    uint8_t* k0 = kdst ? kdst + (lo - c * g.E) : S.k.data() + uint64_t(i) * S.stride;
    stream_init(st[i], p + 4 * nb, len - 4 * nb, k0, hi - lo);
    if (g.sparse) {
      std::memset(k0, 0, size_t(hi - lo));
      sparse_start(st[i], g.b);
    }
  }
  if (g.sparse) sparse_streams(st, ns, sparse_dtab(g.s), g.s, floor_log2_u64(g.s));
  else gamma_streams(st, ns, gamma_dtab(g.s), g.s, floor_log2_u64(uint64_t(g.s) + 1));
}

void scratch_init(const Geom& g, FastScratch& S) {
  S.stride = (g.E + 16 + 15) & ~uint64_t(15);
  S.nbmax = (g.E + g.b - 1) / g.b;
  const uint64_t need = 4 * S.stride + kSlack;
  if (S.k.size() < need) S.k.resize(size_t(need));
  if (S.w.size() < 4 * S.nbmax) S.w.resize(size_t(4 * S.nbmax));
}

// Chunks [c0, c1): stage 1 (validation) and, unless MODE is null, stage 2.
template <Out MODE, bool STORE>
void fast_chunks(const Geom& g, const Header& h, const std::vector<uint64_t>& off, uint64_t c0, uint64_t c1,
                 float* out, float alpha) {
  static thread_local FastScratch S;
  scratch_init(g, S);
  for (uint64_t c = c0; c < c1; c += 4) {
    const int ns = int(std::min<uint64_t>(4, c1 - c));
    stage1(g, h, off, c, ns, S, nullptr);
    if (STORE)
      for (int i = 0; i < ns; ++i) {
        const uint64_t lo = (c + uint64_t(i)) * g.E, hi = std::min(g.n, lo + g.E);
        chunk_floats<MODE>(S.k.data() + uint64_t(i) * S.stride, hi - lo, g.b, S.w.data() + uint64_t(i) * S.nbmax,
                           out + lo, alpha);
      }
  }
  if (MODE == Out::NT) _mm_sfence();
}

std::vector<uint64_t> chunk_offsets(const Header& h) {
  std::vector<uint64_t> off(size_t(h.chunk_count) + 1);
  off[0] = 0;
  for (uint64_t c = 0; c < h.chunk_count; ++c) off[c + 1] = off[c] + load_u32le(h.chunk_table + 4 * c);
  if (off[h.chunk_count] != h.payload_bytes) corrupt("chunk lengths do not sum to the payload size");
  return off;
}

Geom geom_checked(const Header& h) {
  Geom g = geom_of(h.p, h.n);
  if (g.C != h.chunk_count || (g.C && g.E != h.chunk_elems)) corrupt("chunk layout does not match n and bucket size");
  return g;
}

}  // namespace

uint64_t qsgd_var_max_payload(const Params& p, uint64_t n) {
  const Geom g = geom_of(p, n);
  if (!g.C) return 0;
  return (g.C - 1) * chunk_max_bytes(g, 0) + chunk_max_bytes(g, g.C - 1);
}

uint64_t qsgd_var_encode(EncodeArgs& a) {
  const Geom g = geom_of(*a.p, a.n);
  if (!g.C) return 0;
  const uint64_t slot = chunk_max_bytes(g, 0);
  if (slot > 0xFFFFFFFFull)
    throw Error(ErrCode::INVALID_ARG, "bucketSize too large for the gamma/sparse coding (a chunk must fit in 4 GiB)");
  const uint64_t need = (g.C - 1) * slot + chunk_max_bytes(g, g.C - 1);
  if (a.cap < need) throw Error(ErrCode::INTERNAL, "qsgd_var_encode: payload region too small");
  CodeTab tab, stab;
  const bool use_tab = !g.sparse && g.s <= 4096;
  if (use_tab) build_gamma_tab(g.s, tab);
  if (g.sparse && g.s <= 127) build_sparse_tab(g.s, stab);
  std::vector<uint64_t> lens(g.C);
  par_for(a.threads, g.C, [&](uint64_t c) {
    const uint64_t cap = c + 1 < g.C ? slot : a.cap - c * slot;
    if (a.scalar) lens[c] = encode_chunk(g, a.seed, a.x, c, a.payload + c * slot, cap, use_tab ? &tab : nullptr);
    else lens[c] = encode_chunk_avx2(g, a.seed, a.x, c, a.payload + c * slot, cap, use_tab ? &tab : nullptr, &stab);
  });
  uint64_t off = 0;
  for (uint64_t c = 0; c < g.C; ++c) {
    if (off != c * slot) std::memmove(a.payload + off, a.payload + c * slot, lens[c]);
    a.chunk_lens[c] = uint32_t(lens[c]);
    off += lens[c];
  }
  return off;
}

namespace {
bool use_fast(const Geom& g) { return g.s <= 7 && g.E <= kFastMaxE; }
constexpr uint64_t kGroup = 16;            // chunks per task (decoded four at a time)
constexpr uint64_t kNtMinN = uint64_t(1) << 20;  // plain decodes of >= 4 MiB use non-temporal stores
constexpr uint64_t kAddScratchMaxN = uint64_t(1) << 26;  // decode-add: symbol scratch of at most 64 MiB
}  // namespace

void qsgd_var_validate(const Header& h, int threads) {
  const Geom g = geom_checked(h);
  if (!g.C) return;
  const std::vector<uint64_t> off = chunk_offsets(h);
  if (use_fast(g)) {
    par_for(threads, (g.C + kGroup - 1) / kGroup, [&](uint64_t t) {
      fast_chunks<Out::PLAIN, false>(g, h, off, t * kGroup, std::min(g.C, (t + 1) * kGroup), nullptr, 0.f);
    });
    return;
  }
  par_for(threads, g.C, [&](uint64_t c) {
    decode_chunk<false, false>(g, ChunkView{h.payload + off[c], off[c + 1] - off[c]}, c, nullptr, 0.f);
  });
}

// Decode-add validates the whole packet before its first store to acc (whatever the caller did before): the fast
// path decodes the symbols of every chunk into one scratch of n bytes (stage 1, which validates), then adds
// (stage 2); beyond kAddScratchMaxN elements (or when the scratch cannot be had), and on the generic path, a
// validation pass precedes the add pass.
void qsgd_var_decode(const DecodeArgs& a) {
  const Header& h = *a.h;
  const Geom g = geom_checked(h);
  if (!g.C) return;
  const std::vector<uint64_t> off = chunk_offsets(h);
  const uint64_t ntask = (g.C + kGroup - 1) / kGroup;
  if (use_fast(g) && !a.scalar) {
    std::unique_ptr<uint8_t[]> ks;
    if (a.add && g.n <= kAddScratchMaxN) ks.reset(new (std::nothrow) uint8_t[size_t(g.n + kSlack)]);
    if (ks) {
      par_for(a.threads, ntask, [&](uint64_t t) {
        static thread_local FastScratch S;
        scratch_init(g, S);
        const uint64_t c1 = std::min(g.C, (t + 1) * kGroup);
        for (uint64_t c = t * kGroup; c < c1; c += 4)
          stage1(g, h, off, c, int(std::min<uint64_t>(4, c1 - c)), S, ks.get() + c * g.E);
      });
      par_for(a.threads, ntask, [&](uint64_t t) {
        std::vector<float> w(size_t((g.E + g.b - 1) / g.b));
        const float fs = float(g.s);
        const uint64_t c1 = std::min(g.C, (t + 1) * kGroup);
        for (uint64_t c = t * kGroup; c < c1; ++c) {
          const uint64_t lo = c * g.E, hi = std::min(g.n, lo + g.E);
          const uint64_t nb = (hi - lo + g.b - 1) / g.b;
          for (uint64_t bi = 0; bi < nb; ++bi) w[bi] = ref::u2f(load_u32le(h.payload + off[c] + 4 * bi)) / fs;
          chunk_floats<Out::ADD>(ks.get() + lo, hi - lo, g.b, w.data(), a.out + lo, a.alpha);
        }
      });
      return;
    }
    if (a.add) qsgd_var_validate(h, a.threads);
    const bool nt = !a.add && g.n >= kNtMinN && g.b % 16 == 0 && (uintptr_t(a.out) & 15) == 0;
    par_for(a.threads, ntask, [&](uint64_t t) {
      const uint64_t c0 = t * kGroup, c1 = std::min(g.C, (t + 1) * kGroup);
      if (a.add) fast_chunks<Out::ADD, true>(g, h, off, c0, c1, a.out, a.alpha);
      else if (nt) fast_chunks<Out::NT, true>(g, h, off, c0, c1, a.out, 0.f);
      else fast_chunks<Out::PLAIN, true>(g, h, off, c0, c1, a.out, 0.f);
    });
    return;
  }
  if (a.add) qsgd_var_validate(h, a.threads);
  par_for(a.threads, g.C, [&](uint64_t c) {
    const ChunkView ck{h.payload + off[c], off[c + 1] - off[c]};
    if (a.add) decode_chunk<true, true>(g, ck, c, a.out, a.alpha);
    else decode_chunk<true, false>(g, ck, c, a.out, 0.f);
  });
}

}  // namespace gz
