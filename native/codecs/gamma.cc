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

// ---------------------------------------------------------------- fast gamma decoder (s <= 7)
// Stage 1 decodes a chunk's symbols k = 2*zeta + sign into bytes with a 12-bit peek table that yields up to six
// whole symbols per lookup (an entry stops before an incomplete code or a zeta > s; such positions go to the
// checked one-symbol path, which throws CORRUPT where the stream is bad). Four chunks are decoded in lockstep in
// one thread: one stream is a chain of dependent shift -> load -> shift steps, four independent chains overlap.
// Stage 2 maps the symbols of each bucket to floats through a per-bucket table val[k] = qsgd_value(w, k>>1, k&1)
// (the same float operations as the scalar path).

constexpr int kPeek = 12;
constexpr uint64_t kFastMaxE = 1 << 16;  // larger chunks use the generic decoder

struct SymTab {
  uint64_t e[1 << kPeek];  // bytes 0..5 symbols, byte 6 count, byte 7 bits consumed
};

const SymTab* sym_tab(uint32_t s) {
  static SymTab* tabs = [] {
    SymTab* t = new SymTab[8];
    for (uint32_t ss = 1; ss <= 7; ++ss)
      for (uint32_t w = 0; w < (1u << kPeek); ++w) {
        uint64_t e = 0;
        int pos = 0, ns = 0;
        while (ns < 6) {
          const uint32_t rest = w >> pos;
          const int avail = kPeek - pos;
          if (avail <= 0 || rest == 0) break;
          const int N = __builtin_ctz(rest);
          int len = 2 * N + 1;
          if (len > avail) break;
          const uint32_t x = ((rest >> (N + 1)) & ((1u << N) - 1)) | (1u << N);
          const uint32_t z = x - 1;
          if (z > ss) break;
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
        t[ss].e[w] = e | (uint64_t(ns) << 48) | (uint64_t(pos) << 56);
      }
    return t;
  }();
  return &tabs[s];
}

struct SymStream {
  const uint8_t* p;
  uint64_t nbytes, pos, endb;
  uint8_t* k;
  uint64_t cnt, M;
};

inline bool fast_ok(const SymStream& st) { return st.M - st.cnt >= 6 && (st.pos >> 3) + 8 <= st.nbytes; }

// One symbol, fully checked (any position of the stream).
inline void slow_one(SymStream& st, uint32_t s, int maxN) {
  BitReader br(st.p, st.nbytes);
  br.pos = st.pos;
  const uint64_t z = br.get_gamma(maxN) - 1;
  if (z > s) corrupt("level above s");
  const uint32_t sg = z ? br.get_bit() : 0u;
  st.k[st.cnt++] = uint8_t(2 * z + sg);
  st.pos = br.pos;
}

inline void fast_step(SymStream& st, const SymTab& T, uint32_t s, int maxN) {
  const uint64_t w = load_u64le(st.p + (st.pos >> 3)) >> (st.pos & 7);
  const uint64_t e = T.e[w & ((1u << kPeek) - 1)];
  const uint64_t ns = (e >> 48) & 0xFF;
  if (__builtin_expect(ns == 0, 0)) { slow_one(st, s, maxN); return; }
  store_u64le(st.k + st.cnt, e);  // 8 bytes: the two past the symbols are overwritten later (slack >= 8)
  st.cnt += ns;
  st.pos += e >> 56;
}

inline void finish_stream(SymStream& st, const SymTab& T, uint32_t s, int maxN) {
  while (st.cnt < st.M) {
    if (fast_ok(st)) fast_step(st, T, s, maxN);
    else slow_one(st, s, maxN);
  }
  BitReader br(st.p, st.nbytes);
  br.pos = st.pos;
  br.finish();
}

// Decodes the symbols of NS chunks in lockstep.
template <int NS>
void decode_syms(SymStream* st, const SymTab& T, uint32_t s, int maxN) {
  for (;;) {
    bool ok = true;
    for (int i = 0; i < NS; ++i) ok &= fast_ok(st[i]);
    if (!ok) break;
    for (int i = 0; i < NS; ++i) fast_step(st[i], T, s, maxN);
  }
  for (int i = 0; i < NS; ++i) finish_stream(st[i], T, s, maxN);
}

// Stage 2 for one chunk: symbols -> floats.
template <bool ADD>
void syms_to_floats(const Geom& g, const uint8_t* scales, uint64_t c, const uint8_t* k, float* out, float alpha,
                    const float* lut_scales_checked) {
  (void)scales;
  const uint64_t lo = c * g.E, hi = std::min(g.n, lo + g.E);
  const uint64_t nb = (hi - lo + g.b - 1) / g.b;
  for (uint64_t bi = 0; bi < nb; ++bi) {
    const uint64_t b0 = lo + bi * g.b, m = std::min<uint64_t>(g.b, hi - b0);
    const float w = lut_scales_checked[bi];
    float lut[16];
    for (uint32_t q = 0; q < 16; ++q) lut[q] = ref::qsgd_value(w, q >> 1, q & 1);
    const uint8_t* kb = k + (b0 - lo);
    float* o = out + b0;
    if (ADD) {
      for (uint64_t i = 0; i < m; ++i) o[i] = o[i] + alpha * lut[kb[i] & 15];
    } else {
      for (uint64_t i = 0; i < m; ++i) o[i] = lut[kb[i] & 15];
    }
  }
}

// Fast path over the chunks [c0, c1): validates everything; STORE writes (ADD: out += alpha * v).
template <bool STORE, bool ADD>
void fast_gamma_chunks(const Geom& g, const Header& h, const std::vector<uint64_t>& off, uint64_t c0, uint64_t c1,
                       float* out, float alpha) {
  static thread_local std::vector<uint8_t> kbuf;
  static thread_local std::vector<float> wbuf;
  const uint64_t stride = g.E + 16;
  if (kbuf.size() < 4 * stride) kbuf.resize(size_t(4 * stride));
  const uint64_t nbmax = (g.E + g.b - 1) / g.b;
  if (wbuf.size() < 4 * nbmax) wbuf.resize(size_t(4 * nbmax));
  const SymTab& T = *sym_tab(g.s);
  const int maxN = floor_log2_u64(uint64_t(g.s) + 1);
  const float fs = float(g.s);
  for (uint64_t c = c0; c < c1; c += 4) {
    const int ns = int(std::min<uint64_t>(4, c1 - c));
    SymStream st[4];
    for (int i = 0; i < ns; ++i) {
      const uint64_t cc = c + uint64_t(i);
      const uint64_t lo = cc * g.E, hi = std::min(g.n, lo + g.E);
      const uint64_t nb = (hi - lo + g.b - 1) / g.b;
      const uint8_t* p = h.payload + off[cc];
      const uint64_t len = off[cc + 1] - off[cc];
      if (len < 4 * nb) corrupt("chunk shorter than its scales");
      for (uint64_t bi = 0; bi < nb; ++bi) {
        const uint32_t nbits = load_u32le(p + 4 * bi);
        if (nbits >= 0x7F800000u) corrupt("negative or non-finite bucket scale");
        wbuf[size_t(uint64_t(i) * nbmax + bi)] = ref::u2f(nbits) / fs;
      }
      st[i] = SymStream{p + 4 * nb, len - 4 * nb, 0, (len - 4 * nb) * 8, kbuf.data() + uint64_t(i) * stride, 0, hi - lo};
    }
    if (ns == 4) decode_syms<4>(st, T, g.s, maxN);
    else for (int i = 0; i < ns; ++i) decode_syms<1>(&st[i], T, g.s, maxN);
    if (STORE)
      for (int i = 0; i < ns; ++i)
        syms_to_floats<ADD>(g, nullptr, c + uint64_t(i), st[i].k, out, alpha, wbuf.data() + uint64_t(i) * nbmax);
  }
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
bool use_fast_gamma(const Geom& g) { return !g.sparse && g.s <= 7 && g.E <= kFastMaxE; }
constexpr uint64_t kGroup = 16;  // chunks per task (decoded four at a time)
}  // namespace

void qsgd_var_validate(const Header& h, int threads) {
  const Geom g = geom_checked(h);
  if (!g.C) return;
  const std::vector<uint64_t> off = chunk_offsets(h);
  if (use_fast_gamma(g)) {
    par_for(threads, (g.C + kGroup - 1) / kGroup, [&](uint64_t t) {
      fast_gamma_chunks<false, false>(g, h, off, t * kGroup, std::min(g.C, (t + 1) * kGroup), nullptr, 0.f);
    });
    return;
  }
  par_for(threads, g.C, [&](uint64_t c) {
    decode_chunk<false, false>(g, ChunkView{h.payload + off[c], off[c + 1] - off[c]}, c, nullptr, 0.f);
  });
}

void qsgd_var_decode(const DecodeArgs& a) {
  const Header& h = *a.h;
  const Geom g = geom_checked(h);
  if (!g.C) return;
  const std::vector<uint64_t> off = chunk_offsets(h);
  if (use_fast_gamma(g) && !a.scalar) {
    par_for(a.threads, (g.C + kGroup - 1) / kGroup, [&](uint64_t t) {
      const uint64_t c0 = t * kGroup, c1 = std::min(g.C, (t + 1) * kGroup);
      if (a.add) fast_gamma_chunks<true, true>(g, h, off, c0, c1, a.out, a.alpha);
      else fast_gamma_chunks<true, false>(g, h, off, c0, c1, a.out, 0.f);
    });
    return;
  }
  par_for(a.threads, g.C, [&](uint64_t c) {
    const ChunkView ck{h.payload + off[c], off[c + 1] - off[c]};
    if (a.add) decode_chunk<true, true>(g, ck, c, a.out, a.alpha);
    else decode_chunk<true, false>(g, ck, c, a.out, 0.f);
  });
}

}  // namespace gz
