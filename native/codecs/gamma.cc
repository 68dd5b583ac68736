// QSGD with the variable-length codings `gamma` and `sparse` (docs/FORMAT.md sections 3.1, 4.2, 5).
// The quantizer (norm order, r = s/N, the 16-bit stochastic rounding) is the one of the fixed coding
// (core/quant_ref.h): for the same input and seed the three codings carry the same zeta and signs, only the
// way they are written differs, so their decodes are bit-identical.
//
// Encoder: chunks of E elements (a whole number of buckets) are encoded independently; each thread takes one
// range of whole chunks and writes them back to back from the range's first max-size slot (a chunk never
// exceeds its bound, so a range never reaches the next one); then the ranges after the first are moved left and
// chunk_lens is filled (bytes never depend on the thread count). One fused pass per bucket: norm, uniforms,
// quantize, code (AVX2 details at "AVX2 encoder").
// Decoder: chunk-parallel; every read is bounds-checked against its chunk (bitio.h).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <mutex>
#include <optional>
#include <type_traits>
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
// Same arithmetic as the scalar path (bit-identical, checked by the tests). Per bucket, while it sits in L1: the
// max (+ the non-finite check, + a prefetch of the bucket two ahead), the l2 norm in the 32-lane order, then one pass
// that quantizes 32 elements at a time and codes them straight from the registers:
//  - uniforms: 65535 - u from philox_blocks_not_avx2 (the fixed coding's one-conversion quantizer:
//    zeta = (trunc(min(|x|*c*r65536, s65536)) + 65535 - u) >> 16); c and the clamp are skipped for buckets where
//    they are the identity (c = 1 and amax*r65536 <= s65536, see Q_FAST);
//  - codes k = 2*zeta + sign as 32 bytes (s <= 127; packs keep 4-element groups: byte 4q + e of the low half is
//    element 8q + e, of the high half element 8q + 4 + e);
//  - gamma: the codes of 4 elements (s <= 4), 2 elements (s <= 15) or 1 element (s <= 127) index a table of
//    (code, length); the index is built in the vector unit (maddubs/madd in base 2s+1 of k' = k - (k > 0)), the
//    codes go into a 64-bit bit accumulator with scalar shifts (the vector shift pipe is Philox's), one unaligned
//    8-byte store per 8 elements (no pext: microcoded on Zen 1; no variable vector shifts);
//  - sparse: the codes in element order go to a scratch line, the non-zero positions are left-packed with a
//    256-entry table per 8 elements (no data-dependent branch per element), then each non-zero writes its run and
//    its value code from one table entry.
// Chunks are written back to back by their range's thread: one range per thread, the ranges after the first are
// moved left at the end (the only copy of packet bytes).

constexpr uint64_t kPiece = 2048;  // elements per Philox batch (multiple of 32)

#define GZ_ENC_INL GZ_AVX2 inline __attribute__((always_inline))

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
// max |bits| over v[0..m); also prefetches pf[0..pm) (one line per 16 floats) inside the loop.
GZ_AVX2 uint32_t amax_avx2(const float* v, uint64_t m, const float* pf, uint64_t pm) {
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
  for (; i < m; i += 8) a0 = _mm256_max_epu32(a0, _mm256_and_si256(_mm256_castps_si256(load_n(v + i, m - i)), abs));
  return hmax_epu32(_mm256_max_epu32(_mm256_max_epu32(a0, a1), _mm256_max_epu32(a2, a3)));
}
// l2 norm of FORMAT section 2 given amax (> 0, finite). No |.|: (x*f)^2 and (|x|*f)^2 are the same bits.
GZ_AVX2 float l2_avx2(const float* v, uint64_t m, uint32_t amax) {
  const int e = ref::floor_log2(ref::u2f(amax));
  const int ne = -e;
  float f1, f2 = 1.f;
  bool two = false;
  if (ne >= -126 && ne <= 127) f1 = ref::pow2f(ne);
  else { const int e1 = ne < 0 ? -126 : 127; f1 = ref::pow2f(e1); f2 = ref::pow2f(ne - e1); two = true; }
  const __m256 F1 = _mm256_set1_ps(f1), F2 = _mm256_set1_ps(f2);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  uint64_t i = 0;
  if (!two) {
    for (; i + 32 <= m; i += 32)
      for (int k = 0; k < 4; ++k) {
        const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(v + i + 8 * k), F1);
        acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(y, y));
      }
  } else {
    for (; i + 32 <= m; i += 32)
      for (int k = 0; k < 4; ++k) {
        const __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i + 8 * k), F1), F2);
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
  return ref::mul_pow2(std::sqrt(_mm_cvtss_f32(q)), e);
}

// Quantizer modes. Q_FAST: c = 1 and (amax*r65536 <= s65536), so the multiply by c and the clamp are identities
// (the products are monotone in |x| <= amax), and s < 32768. Q_GEN: any bucket with s < 32768. Q_BIG: s >= 32768
// (t may reach 2^31: unsigned conversion).
enum { Q_FAST = 0, Q_GEN = 1, Q_BIG = 2 };

struct QK {
  __m256 c, r, s;
};

// zeta of 8 elements (32-bit lanes; zero lanes give zeta 0 whatever nu). nu: 8 complemented uniforms 65535 - u.
// t = trunc(min(|x|*c*r65536, s65536)) = 65536*l + T; (t + 65535 - u) >> 16 = l + (T > u), the reference's
// (t >> 16) + (u < (t & 0xFFFF)); t <= 65535*65536, so the 32-bit sum cannot wrap.
template <int MODE>
GZ_ENC_INL __m256i zeta8(__m256 xv, const uint16_t* nu, const QK& k) {
  const __m256 ax = _mm256_and_ps(xv, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
  __m256i t;
  if (MODE == Q_FAST) {
    t = _mm256_cvttps_epi32(_mm256_mul_ps(ax, k.r));
  } else {
    const __m256 a = _mm256_min_ps(_mm256_mul_ps(_mm256_mul_ps(ax, k.c), k.r), k.s);
    if (MODE == Q_BIG) {
      const __m256 two31 = _mm256_set1_ps(2147483648.f);
      const __m256 big = _mm256_cmp_ps(a, two31, _CMP_GE_OQ);
      t = _mm256_cvttps_epi32(_mm256_sub_ps(a, _mm256_and_ps(big, two31)));
      t = _mm256_xor_si256(t, _mm256_and_si256(_mm256_castps_si256(big), _mm256_set1_epi32(int(0x80000000u))));
    } else {
      t = _mm256_cvttps_epi32(a);
    }
  }
  const __m256i uv = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(nu)));
  return _mm256_srli_epi32(_mm256_add_epi32(t, uv), 16);
}

// Loads the 32 (cnt < 32: cnt, zeros after) elements at x.
GZ_ENC_INL void load32(const float* x, uint64_t cnt, __m256* xv) {
  if (cnt >= 32) {
    for (int q = 0; q < 4; ++q) xv[q] = _mm256_loadu_ps(x + 8 * q);
  } else {
    for (int q = 0; q < 4; ++q) {
      const uint64_t cq = cnt > uint64_t(8 * q) ? std::min<uint64_t>(8, cnt - 8 * q) : 0;
      xv[q] = load_n(x + 8 * q, cq);
    }
  }
}

// Codes k = 2*zeta + sign of 32 elements as bytes in pack order (zeta <= 127; lanes past cnt give 0). Sign: packs
// keeps the sign of the float bits (only +0.0 packs to 0); sign_epi8 negates zeta where x < 0, so "negative" =
// (x < 0 and zeta > 0), the reference's sign bit (-0.0 and zeros have zeta 0).
template <int MODE>
GZ_ENC_INL __m256i codes32(const float* x, uint64_t cnt, const uint16_t* nu, const QK& k) {
  __m256 xv[4];
  load32(x, cnt, xv);
  __m256i z[4];
  for (int q = 0; q < 4; ++q) z[q] = zeta8<MODE>(xv[q], nu + 8 * q, k);
  const __m256i zb = _mm256_packus_epi16(_mm256_packs_epi32(z[0], z[1]), _mm256_packs_epi32(z[2], z[3]));
  const __m256i sb = _mm256_packs_epi16(_mm256_packs_epi32(_mm256_castps_si256(xv[0]), _mm256_castps_si256(xv[1])),
                                        _mm256_packs_epi32(_mm256_castps_si256(xv[2]), _mm256_castps_si256(xv[3])));
  const __m256i neg = _mm256_cmpgt_epi8(_mm256_setzero_si256(), _mm256_sign_epi8(zb, sb));
  return _mm256_sub_epi8(_mm256_add_epi8(zb, zb), neg);
}

// Pack order -> element order (elements 0..15, 16..31): the 4-element groups of the two halves interleave.
GZ_ENC_INL void to_elem_order(__m256i kb, __m128i* e0, __m128i* e1) {
  const __m128i lo = _mm256_castsi256_si128(kb), hi = _mm256_extracti128_si256(kb, 1);
  *e0 = _mm_unpacklo_epi32(lo, hi);
  *e1 = _mm_unpackhi_epi32(lo, hi);
}

// Bit writer for the encoder: acc holds nb pending bits (nb < 8 after a flush) that start at byte p; add() appends
// without touching memory (the caller keeps nb + the added lengths <= 64), flush() stores the 8 bytes at p and
// advances. Stores are cut at `end` (nothing the caller writes lies past it; bytes past the written bits are zero
// and are overwritten by what follows).
// (Out of line and by value: the members of a BitOut must not have their address taken.)
__attribute__((noinline)) void store_cut(uint8_t* p, uint8_t* end, uint64_t v) {
  if (p < end) std::memcpy(p, &v, size_t(end - p));
}

struct BitOut {
  uint8_t* p;
  uint8_t* end;
  uint64_t acc = 0;
  uint64_t nb = 0;
  BitOut(uint8_t* s, uint8_t* e) : p(s), end(e) {}
  __attribute__((always_inline)) inline void add(uint64_t code, uint64_t len) {
    acc |= code << nb;
    nb += len;
  }
  __attribute__((always_inline)) inline void flush() {
    if (__builtin_expect(end - p >= 8, 1)) store_u64le(p, acc);
    else store_cut(p, end, acc);
    p += nb >> 3;
    acc >>= (nb & 56);
    nb &= 7;
  }
  __attribute__((always_inline)) inline void flush_nc() {  // the caller checked end - p >= 8
    store_u64le(p, acc);
    p += nb >> 3;
    acc >>= (nb & 56);
    nb &= 7;
  }
  __attribute__((always_inline)) inline void put(uint64_t code, unsigned len) {  // len <= 56
    add(code, len);
    flush();
  }
  __attribute__((always_inline)) inline void put_gamma(uint64_t x) {  // 1 <= x < 2^63
    const int N = floor_log2_u64(x);
    if (N <= 27) put(gamma_code(x, N), unsigned(2 * N + 1));
    else { put(uint64_t(1) << N, unsigned(N + 1)); put(x & ((uint64_t(1) << N) - 1), unsigned(N)); }
  }
  __attribute__((always_inline)) inline void add_e(uint32_t e) { add(e & 0x7FFFFFFu, e >> 27); }  // table entry: code | length << 27
  // (The hot loops work on a local copy: stores through p could alias the members of a referenced BitOut.)
};

inline uint32_t tab_entry(uint64_t code, unsigned len) { return uint32_t(code) | (uint32_t(len) << 27); }

// gamma code (with the sign bit) of k = 2*zeta + sign, and the sparse value code (zeta >= 1).
inline uint32_t gamma_k_entry(uint32_t k) {
  const uint32_t z = k >> 1, sg = k & 1;
  const int N = floor_log2_u64(uint64_t(z) + 1);
  uint64_t c = gamma_code(uint64_t(z) + 1, N);
  unsigned l = unsigned(2 * N + 1);
  if (z) { c |= uint64_t(sg) << l; ++l; }
  return tab_entry(c, l);
}
inline uint32_t sparse_k_entry(uint32_t k) {
  const uint32_t z = k >> 1, sg = k & 1;
  if (!z) return 0;
  const int N = floor_log2_u64(z);
  return tab_entry(gamma_code(z, N) | (uint64_t(sg) << (2 * N + 1)), unsigned(2 * N + 2));
}

// Tables indexed by the symbols k' = k - (k > 0) in 0..2s (k = 1 never occurs), built on first use (per s).
inline uint32_t sym_k(uint32_t kp) { return kp ? kp + 1 : 0; }
inline uint32_t cat_entry(uint32_t e0, uint32_t e1) {  // code of e0 then e1 (lengths add up to <= 27... callers)
  const unsigned l0 = e0 >> 27, l1 = e1 >> 27;
  return tab_entry((e0 & 0x7FFFFFFu) | (uint64_t(e1 & 0x7FFFFFFu) << l0), l0 + l1);
}

// One table per s in 1..15, built once by build(s).
template <class F>
const std::vector<uint32_t>& per_s(std::vector<uint32_t>* tabs, std::once_flag* once, uint32_t s, F build) {
  std::call_once(once[s], [&] { tabs[s] = build(s); });
  return tabs[s];
}

// gamma, s <= 15: pairs, index k'0 + B k'1 (B = 2s + 1), code <= 20 bits.
const std::vector<uint32_t>& pair_tab(uint32_t s) {
  static std::vector<uint32_t> tabs[16];
  static std::once_flag once[16];
  return per_s(tabs, once, s, [](uint32_t ss) {
    const uint32_t B = 2 * ss + 1;
    std::vector<uint32_t> t(B * B);
    for (uint32_t a = 0; a < B; ++a)
      for (uint32_t b = 0; b < B; ++b) t[a + B * b] = cat_entry(gamma_k_entry(sym_k(a)), gamma_k_entry(sym_k(b)));
    return t;
  });
}
// gamma, s <= 4: quads, index p0 + B^2 p1 (pairs p0, p1), code <= 24 bits.
const std::vector<uint32_t>& quad_tab(uint32_t s) {
  static std::vector<uint32_t> tabs[5];
  static std::once_flag once[5];
  return per_s(tabs, once, s, [](uint32_t ss) {
    const std::vector<uint32_t>& p = pair_tab(ss);
    const uint32_t B2 = (2 * ss + 1) * (2 * ss + 1);
    std::vector<uint32_t> t(B2 * B2);
    for (uint32_t p1 = 0; p1 < B2; ++p1)
      for (uint32_t p0 = 0; p0 < B2; ++p0) t[p0 + B2 * p1] = cat_entry(p[p0], p[p1]);
    return t;
  });
}
// gamma, zeta <= 1 (any s): 8 symbols k' in {0, 1, 2}, index q0 + 81 q1 (base-3 quads), code <= 32 bits.
struct OctTab {
  uint32_t code[6561];
  uint8_t len[6561];
};
const OctTab& oct_tab() {
  static const OctTab* T = [] {
    OctTab* t = new OctTab;
    const std::vector<uint32_t>& q = quad_tab(1);  // s = 1: exactly the symbols {0, 1, 2}
    for (uint32_t q1 = 0; q1 < 81; ++q1)
      for (uint32_t q0 = 0; q0 < 81; ++q0) {
        const unsigned l0 = q[q0] >> 27;
        t->code[q0 + 81 * q1] = uint32_t((q[q0] & 0x7FFFFFFu) | (uint64_t(q[q1] & 0x7FFFFFFu) << l0));
        t->len[q0 + 81 * q1] = uint8_t(l0 + (q[q1] >> 27));
      }
    return t;
  }();
  return *T;
}
// Per code byte k = 2 zeta + sign (zeta <= 127): the gamma code, the sparse value code (zeta >= 1).
struct KTabs {
  uint32_t one[256], val[256];
};
const KTabs& k_tabs() {
  static const KTabs* T = [] {
    KTabs* t = new KTabs;
    for (uint32_t k = 0; k < 256; ++k) {
      t->one[k] = gamma_k_entry(k);
      t->val[k] = sparse_k_entry(k);
    }
    return t;
  }();
  return *T;
}
// sparse: gamma(r + 1) for r < 64, and the positions of the set bits of a byte, left-packed.
struct SparseTabs {
  uint32_t run[64];
  uint8_t lpos[256][8];
};
const SparseTabs& sparse_tabs() {
  static const SparseTabs* T = [] {
    SparseTabs* t = new SparseTabs;
    for (uint32_t r = 0; r < 64; ++r) t->run[r] = tab_entry(gamma_code(r + 1, floor_log2_u64(r + 1)), unsigned(gamma_len(r + 1)));
    for (uint32_t b = 0; b < 256; ++b) {
      int n = 0;
      for (uint32_t i = 0; i < 8; ++i) t->lpos[b][i] = 0;
      for (uint32_t i = 0; i < 8; ++i)
        if (b >> i & 1) t->lpos[b][n++] = uint8_t(i);
    }
    return t;
  }();
  return *T;
}
// sparse, s <= 4: run r < 64 then the value code of k, index 16 r + k, code <= 13 + 6 bits.
const std::vector<uint32_t>& srun_tab(uint32_t s) {
  static std::vector<uint32_t> tabs[5];
  static std::once_flag once[5];
  return per_s(tabs, once, s, [](uint32_t ss) {
    const SparseTabs& T = sparse_tabs();
    std::vector<uint32_t> t(64 * 16, 0);
    for (uint32_t r = 0; r < 64; ++r)
      for (uint32_t k = 2; k <= 2 * ss + 1; ++k) t[16 * r + k] = cat_entry(T.run[r], sparse_k_entry(k));
    return t;
  });
}

// Per-thread scratch of the AVX2 encoder.
struct EncScratch {
  alignas(32) uint16_t nu[kPiece + 64];   // complemented uniforms of elements [ulo, uhi)
  alignas(32) uint8_t k8[kPiece + 64];    // sparse: codes of a bucket, element order
  alignas(32) uint16_t pos[kPiece + 64];  // sparse: positions of its non-zeros
  alignas(32) uint32_t k32[kPiece + 64];  // s > 127: codes of a piece
  uint64_t ulo = 1, uhi = 0;
};

// Complemented uniforms of elements [g, g + len) (len <= kPiece): pointer into the cache (with >= 32 readable
// entries past g + len).
GZ_AVX2 inline const uint16_t* uniforms(EncScratch& S, uint64_t seed, uint64_t g, uint64_t len, uint64_t limit) {
  if (!(g >= S.ulo && g + len <= S.uhi)) {
    const uint64_t b0 = g >> 3;
    const uint64_t end = std::min(limit, (b0 << 3) + kPiece);  // <= kPiece elements from the block start
    const uint64_t nblk = (std::max(end, g + len) - (b0 << 3) + 7) >> 3;
    philox_blocks_not_avx2(seed, b0, nblk, reinterpret_cast<uint32_t*>(S.nu));
    S.ulo = b0 << 3;
    S.uhi = S.ulo + nblk * 8;
  }
  return S.nu + (g - S.ulo);
}

// Elements of a 32-group in element order as bytes (also for the tails of the table coders).
GZ_ENC_INL void store_elem_order(uint8_t* dst, __m256i kb) {
  __m128i e0, e1;
  to_elem_order(kb, &e0, &e1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), e0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 16), e1);
}

GZ_ENC_INL void put_singles(BitOut& w, const uint8_t* kb, uint64_t cnt, const uint32_t* one) {
  for (uint64_t e = 0; e < cnt; ++e) {
    w.add_e(one[kb[e]]);  // <= 16 bits (s <= 127): three per flush
    if (e % 3 == 2) w.flush();
  }
  w.flush();
}

// gamma, s <= 4 (GROUP 4) or s <= 15 (GROUP 2) or s <= 127 (GROUP 1): m elements of one bucket from global index g.
template <int GROUP, int MODE>
GZ_AVX2 void gamma_bucket(BitOut& wr, EncScratch& S, uint64_t seed, const float* x, uint64_t g, uint64_t m,
                          uint64_t limit, const QK& k, uint32_t B, const uint32_t* tab, const uint32_t* one) {
  BitOut w = wr;
  const __m256i cB = _mm256_set1_epi16(int16_t(1 | (B << 8)));
  const __m256i cB2 = _mm256_set1_epi32(int(1u | ((B * B) << 16)));
  alignas(32) uint32_t ix[8];
  alignas(32) uint8_t kb[32];
  for (uint64_t off = 0; off < m; off += kPiece) {
    const uint64_t len = std::min(kPiece, m - off);
    const uint16_t* nu = uniforms(S, seed, g + off, len, limit);
    const float* xp = x + off;
    for (uint64_t i = 0; i < len; i += 32) {
      const uint64_t cnt = std::min<uint64_t>(32, len - i);
      const __m256i kv = codes32<MODE>(xp + i, cnt, nu + i, k);
      if (GROUP == 1 || cnt < 32) {
        store_elem_order(kb, kv);
        put_singles(w, kb, cnt, one);
        continue;
      }
      const __m256i kq = _mm256_add_epi8(kv, _mm256_cmpgt_epi8(kv, _mm256_setzero_si256()));  // k' (k <= 31)
      const __m256i pr = _mm256_maddubs_epi16(kq, cB);  // k'0 + B k'1 per word
      if (GROUP == 4) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(ix), _mm256_madd_epi16(pr, cB2));
        // dword h: elements 8h..8h+3, dword h + 4: elements 8h+4..8h+7
        for (int h = 0; h < 4; ++h) {
          w.add_e(tab[ix[h]]);
          w.add_e(tab[ix[h + 4]]);
          w.flush();
        }
      } else {
        alignas(32) uint16_t px[16];
        _mm256_store_si256(reinterpret_cast<__m256i*>(px), pr);
        // word 2h + j (j < 2): elements 8h + 2j, +1; word 8 + 2h + j: elements 8h + 4 + 2j, +1
        for (int h = 0; h < 4; ++h) {
          w.add_e(tab[px[2 * h]]);
          w.add_e(tab[px[2 * h + 1]]);
          w.flush();
          w.add_e(tab[px[8 + 2 * h]]);
          w.add_e(tab[px[8 + 2 * h + 1]]);
          w.flush();
        }
      }
    }
  }
  wr = w;
}

// gamma, a bucket whose zeta are all <= 1 (any s): k' = k - (k > 0) in {0, 1, 2}, 8 elements per table entry
// (base 3), one flush per 8 elements; the store bound is checked once per 32 elements (<= 4 * 32 bits).
template <int MODE>
GZ_AVX2 void gamma_bucket_bin(BitOut& wr, EncScratch& S, uint64_t seed, const float* x, uint64_t g, uint64_t m,
                              uint64_t limit, const QK& k, const OctTab& T, const uint32_t* one) {
  BitOut w = wr;
  const __m256i c3 = _mm256_set1_epi16(1 | (3 << 8)), c9 = _mm256_set1_epi32(1 | (9 << 16));
  const __m128i c81 = _mm_set1_epi32(1 | (81 << 16));
  alignas(16) uint32_t ix[4];
  alignas(32) uint8_t kb[32];
  for (uint64_t off = 0; off < m; off += kPiece) {
    const uint64_t len = std::min(kPiece, m - off);
    const uint16_t* nu = uniforms(S, seed, g + off, len, limit);
    const float* xp = x + off;
    for (uint64_t i = 0; i < len; i += 32) {
      const uint64_t cnt = std::min<uint64_t>(32, len - i);
      const __m256i kv = codes32<MODE>(xp + i, cnt, nu + i, k);
      if (__builtin_expect(cnt < 32 || w.end - w.p < 16 + 8, 0)) {
        store_elem_order(kb, kv);
        put_singles(w, kb, cnt, one);
        continue;
      }
      const __m256i nz = _mm256_cmpgt_epi8(kv, _mm256_setzero_si256());
      const __m256i kq = _mm256_add_epi8(kv, nz);
      // at most 13 non-zeros (4 bits each, zeros 1 bit): any two octets take <= 16 + 3*13 = 55 bits, one flush
      const bool two = __builtin_popcount(uint32_t(_mm256_movemask_epi8(nz))) <= 13;
      // quad indices (pack order: dword h of the low half = elements 8h..8h+3, of the high half 8h+4..8h+7)
      const __m256i q = _mm256_madd_epi16(_mm256_maddubs_epi16(kq, c3), c9);
      const __m128i pw = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
      const __m128i o = _mm_madd_epi16(_mm_unpacklo_epi16(pw, _mm_srli_si128(pw, 8)), c81);
      _mm_store_si128(reinterpret_cast<__m128i*>(ix), o);
      if (__builtin_expect(two, 1)) {
        w.add(T.code[ix[0]], T.len[ix[0]]);
        w.add(T.code[ix[1]], T.len[ix[1]]);
        w.flush_nc();
        w.add(T.code[ix[2]], T.len[ix[2]]);
        w.add(T.code[ix[3]], T.len[ix[3]]);
        w.flush_nc();
      } else {
        for (int h = 0; h < 4; ++h) {
          w.add(T.code[ix[h]], T.len[ix[h]]);
          w.flush_nc();
        }
      }
    }
  }
  wr = w;
}

// Codes k of m elements starting at global index g into S.k32 (element order).
template <int MODE>
GZ_AVX2 void piece_codes32(EncScratch& S, uint64_t seed, const float* x, uint64_t g, uint64_t m, uint64_t limit,
                           const QK& k) {
  const uint16_t* nu = uniforms(S, seed, g, m, limit);
  for (uint64_t i = 0; i < m; i += 8) {
    const __m256 xv = load_n(x + i, std::min<uint64_t>(8, m - i));
    const __m256i z = zeta8<MODE>(xv, nu + i, k);
    const __m256i nz = _mm256_cmpgt_epi32(z, _mm256_setzero_si256());
    const __m256i sg = _mm256_srli_epi32(_mm256_and_si256(_mm256_castps_si256(xv), nz), 31);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(S.k32 + i), _mm256_or_si256(_mm256_slli_epi32(z, 1), sg));
  }
}

// gamma, s > 127: codes per piece, then a (code, length) table (s <= 4096) or Elias-gamma.
template <int MODE>
GZ_AVX2 void gamma_bucket_big(BitOut& w, EncScratch& S, uint64_t seed, const float* x, uint64_t g, uint64_t m,
                              uint64_t limit, const QK& k, const CodeTab* tab) {
  for (uint64_t off = 0; off < m; off += kPiece) {
    const uint64_t len = std::min(kPiece, m - off);
    piece_codes32<MODE>(S, seed, x + off, g + off, len, limit, k);
    uint64_t i = 0;
    if (tab)  // two codes per flush: each <= 26 bits for s <= 4096, plus at most 7 pending bits
      for (; i + 2 <= len; i += 2) {
        const uint32_t k0 = S.k32[i], k1 = S.k32[i + 1];
        w.add(tab->code[k0], tab->len[k0]);
        w.add(tab->code[k1], tab->len[k1]);
        w.flush();
      }
    for (; i < len; ++i) {
      const uint32_t kk = S.k32[i];
      if (tab) w.put(tab->code[kk], tab->len[kk]);
      else { w.put_gamma((kk >> 1) + 1); if (kk >= 2) w.put(kk & 1, 1); }
    }
  }
}

// sparse, s <= 127 and m <= kPiece: codes and non-zero positions of the bucket, then nnz, runs and values.
// SMALL (s <= 4): run and value from one table entry when the run is < 64.
template <bool SMALL, int MODE>
GZ_AVX2 void sparse_bucket(BitOut& wr, EncScratch& S, uint64_t seed, const float* x, uint64_t g, uint64_t m,
                           uint64_t limit, const QK& k, const SparseTabs& T, const uint32_t* srun,
                           const uint32_t* val) {
  const uint16_t* nu = uniforms(S, seed, g, m, limit);
  BitOut w = wr;
  uint64_t np = 0;
  const __m256i two = _mm256_set1_epi8(2), one = _mm256_set1_epi8(1);
  const __m128i eight = _mm_set1_epi16(8);
  __m128i base = _mm_setzero_si128();  // element index of the current byte of the mask (i + 8 q)
  for (uint64_t i = 0; i < m; i += 32) {
    const uint64_t cnt = std::min<uint64_t>(32, m - i);
    const __m256i kv = codes32<MODE>(x + i, cnt, nu + i, k);
    __m128i e0, e1;
    to_elem_order(kv, &e0, &e1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(S.k8 + i), e0);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(S.k8 + i + 16), e1);
    const uint32_t m0 = uint32_t(_mm_movemask_epi8(_mm_cmpgt_epi8(_mm_min_epu8(e0, _mm256_castsi256_si128(two)),
                                                                  _mm256_castsi256_si128(one))));
    const uint32_t m1 = uint32_t(_mm_movemask_epi8(_mm_cmpgt_epi8(_mm_min_epu8(e1, _mm256_castsi256_si128(two)),
                                                                  _mm256_castsi256_si128(one))));
    const uint32_t mask = m0 | (m1 << 16);
    for (int q = 0; q < 4; ++q) {
      const uint32_t mb = (mask >> (8 * q)) & 0xFF;
      const __m128i p8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(T.lpos[mb]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(S.pos + np), _mm_add_epi16(_mm_cvtepu8_epi16(p8), base));
      base = _mm_add_epi16(base, eight);
      np += uint64_t(__builtin_popcount(mb));
    }
  }
  w.put_gamma(np + 1);
  // one flush per two non-zeros (entries <= 19 bits for s <= 4, run <= 13 + value <= 14 bits otherwise: 2 * 27 + 7
  // <= 63); a run >= 64 takes the general path (flushes first)
  uint64_t last = 0;
  auto emit = [&](uint64_t j) __attribute__((target("avx2,bmi2"), always_inline)) {
    const uint64_t pos = S.pos[j];
    const uint64_t r = pos - last;
    last = pos + 1;
    const uint32_t kk = S.k8[pos];
    if (__builtin_expect(r < 64, 1)) {
      if (SMALL) {
        w.add_e(srun[16 * r + kk]);
      } else {
        w.add_e(T.run[r]);
        w.add_e(val[kk]);
      }
    } else {
      w.flush();
      w.put_gamma(r + 1);
      w.add_e(val[kk]);
    }
  };
  uint64_t j = 0;
  for (; j + 2 <= np; j += 2) {
    emit(j);
    emit(j + 1);
    w.flush();
  }
  if (j < np) {
    emit(j);
    w.flush();
  }
  wr = w;
}

// sparse, general (s > 127 or buckets larger than a piece): codes of the whole bucket first (nnz precedes the runs).
// vtab (s <= 4096): the value code and sign of k = 2*zeta + sign (zeta >= 1), at most 26 bits; a run code of at
// most 29 bits (runs < 2^14) goes into the same flush.
template <int MODE>
GZ_AVX2 void sparse_bucket_big(BitOut& w, EncScratch& S, uint64_t seed, const float* x, uint64_t g, uint64_t m,
                               uint64_t limit, const QK& k, std::vector<uint32_t>& big_codes, const CodeTab* vtab) {
  big_codes.resize(size_t(m));
  uint64_t nnz = 0;
  for (uint64_t off = 0; off < m; off += kPiece) {
    const uint64_t len = std::min(kPiece, m - off);
    piece_codes32<MODE>(S, seed, x + off, g + off, len, limit, k);
    for (uint64_t i = 0; i < len; ++i) nnz += S.k32[i] >= 2;
    std::memcpy(big_codes.data() + off, S.k32, len * 4);
  }
  w.put_gamma(nnz + 1);
  uint64_t last = 0;
  for (uint64_t i = 0; i < m; ++i) {
    const uint32_t kk = big_codes[i];
    if (kk < 2) continue;
    const uint64_t r1 = i - last + 1;
    last = i + 1;
    const int N = floor_log2_u64(r1);
    if (vtab && N < 14) {
      w.add(gamma_code(r1, N), unsigned(2 * N + 1));
      w.add(vtab->code[kk], vtab->len[kk]);
      w.flush();
      continue;
    }
    w.put_gamma(r1);
    w.put_gamma(kk >> 1);
    w.put(kk & 1, 1);
  }
}

// What the AVX2 encoder of one encode call uses (read-only, shared by the threads).
struct EncTabs {
  const OctTab* oct;
  const SparseTabs* sp;
  const uint32_t* quad;  // s <= 4
  const uint32_t* pair;  // s <= 15
  const uint32_t* srun;  // sparse, s <= 4
  const CodeTab* tab;  // gamma, s <= 4096 (s > 127 path)
  const CodeTab* vtab;  // sparse, s <= 4096: value codes (general path)
  const uint32_t* one;  // gamma: entry per k (s <= 127)
  const uint32_t* val;  // sparse: value code per k (s <= 127)
};

enum { C_QUAD, C_PAIR, C_ONE, C_GBIG, C_SSMALL, C_SBYTES, C_SBIG, C_GBIN };

template <int MODE>
GZ_AVX2 void code_bucket(int kind, BitOut& w, EncScratch& S, const Geom& g, uint64_t seed, const float* v,
                         uint64_t b0, uint64_t m, uint64_t limit, const QK& k, const EncTabs& et,
                         std::vector<uint32_t>& big_codes) {
  const uint32_t B = 2 * g.s + 1;
  switch (kind) {
    case C_QUAD: gamma_bucket<4, MODE>(w, S, seed, v, b0, m, limit, k, B, et.quad, et.one); break;
    case C_PAIR: gamma_bucket<2, MODE>(w, S, seed, v, b0, m, limit, k, B, et.pair, et.one); break;
    case C_ONE: gamma_bucket<1, MODE>(w, S, seed, v, b0, m, limit, k, B, nullptr, et.one); break;
    case C_GBIG: gamma_bucket_big<MODE>(w, S, seed, v, b0, m, limit, k, et.tab); break;
    case C_GBIN: gamma_bucket_bin<MODE>(w, S, seed, v, b0, m, limit, k, *et.oct, et.one); break;
    case C_SSMALL: sparse_bucket<true, MODE>(w, S, seed, v, b0, m, limit, k, *et.sp, et.srun, et.val); break;
    case C_SBYTES: sparse_bucket<false, MODE>(w, S, seed, v, b0, m, limit, k, *et.sp, nullptr, et.val); break;
    default: sparse_bucket_big<MODE>(w, S, seed, v, b0, m, limit, k, big_codes, et.vtab); break;
  }
}

// Encodes chunks [c0, c1) back to back at dst (writes stay below end); fills lens; returns the bytes written.
GZ_AVX2 uint64_t encode_range_avx2(const Geom& g, uint64_t seed, const float* x, uint64_t c0, uint64_t c1,
                                   uint8_t* dst, uint8_t* end, uint32_t* lens, const EncTabs& et) {
  static thread_local EncScratch S;
  S.ulo = 1; S.uhi = 0;
  const uint64_t xend = std::min(g.n, c1 * g.E);
  int kind;
  if (!g.sparse) kind = g.s <= 4 ? C_QUAD : g.s <= 15 ? C_PAIR : g.s <= 127 ? C_ONE : C_GBIG;
  else kind = g.s <= 4 ? C_SSMALL : g.s <= 127 ? C_SBYTES : C_SBIG;
  const bool big = g.s >= 32768;
  std::vector<uint32_t> big_codes;
  uint8_t* o = dst;
  for (uint64_t c = c0; c < c1; ++c) {
    const uint64_t lo = c * g.E, hi = std::min(g.n, lo + g.E);
    const uint64_t nb = (hi - lo + g.b - 1) / g.b;
    BitOut w(o + 4 * nb, end);
    for (uint64_t bi = 0; bi < nb; ++bi) {
      const uint64_t b0 = lo + bi * g.b, m = std::min<uint64_t>(g.b, hi - b0);
      const float* v = x + b0;
      const uint64_t pb = b0 + 2 * uint64_t(g.b);  // prefetch the bucket two ahead (in this range)
      const uint64_t pm = pb < xend ? std::min<uint64_t>(std::min<uint64_t>(g.b, xend - pb), 4096) : 0;
      const uint32_t amax = amax_avx2(v, m, x + (pm ? pb : 0), pm);
      if (amax >= 0x7F800000u) throw Error(ErrCode::NONFINITE, "input contains NaN or Inf");
      float N;
      if (g.linf) N = ref::u2f(amax);
      else {
        N = amax ? l2_avx2(v, m, amax) : 0.f;
        if (!(N < INFINITY)) throw Error(ErrCode::NONFINITE, "bucket l2 norm overflows float32");
      }
      store_u32le(o + 4 * bi, ref::f2u(N));
      float r65536, s65536, pre;
      ref::qsgd_bucket_consts(N, g.s, &r65536, &s65536, &pre);
      QK k;
      k.c = _mm256_set1_ps(pre);
      k.r = _mm256_set1_ps(r65536);
      k.s = _mm256_set1_ps(s65536);
      const bool fast = !big && pre == 1.f && (ref::u2f(amax) * r65536 <= s65536);
      int kd = (kind == C_SSMALL || kind == C_SBYTES) && m > kPiece ? int(C_SBIG) : kind;
      // every zeta <= 1: t = trunc(min(|x|*c*r65536, s65536)) <= 65536 (monotone in |x| <= amax)
      if (!g.sparse && std::min((ref::u2f(amax) * pre) * r65536, s65536) <= 65536.f) kd = C_GBIN;
      if (fast) code_bucket<Q_FAST>(kd, w, S, g, seed, v, b0, m, xend, k, et, big_codes);
      else if (!big) code_bucket<Q_GEN>(kd, w, S, g, seed, v, b0, m, xend, k, et, big_codes);
      else code_bucket<Q_BIG>(kd, w, S, g, seed, v, b0, m, xend, k, et, big_codes);
    }
    w.flush();
    const uint64_t len = 4 * nb + uint64_t(w.p - (o + 4 * nb)) + (w.nb ? 1 : 0);
    lens[c] = uint32_t(len);
    o += len;
  }
  return uint64_t(o - dst);
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

// ---------------------------------------------------------------- fast decoders (s <= 127, both codings)
// A task decodes kGroup consecutive chunks, four at a time, in two stages.
// Stage 1 writes the symbols k = 2*zeta + sign (k <= 255) of each chunk's elements as bytes into its own region of
// a scratch buffer. The four chunks are decoded in lockstep in one thread: one stream is a chain of dependent
// load -> shift -> table load -> add steps, four independent chains overlap. Each stream's state is a bit pointer
// (byte address * 8 + bit) and an output pointer, kept in registers; the steps run in batches whose length is
// bounded so that no table step can load past its chunk or store past its region's slack, so the steps carry no
// bounds checks; near a chunk's end, and for every code the tables do not resolve (long codes, and all corrupt
// codes), the checked one-code path (BitReader) takes over and throws CORRUPT where the stream is bad.
//  gamma:  a 12-bit peek table gives up to eight whole symbols per lookup (an entry stops before an incomplete code
//          or a zeta > s; an entry with no symbol only occurs at a corrupt code, and stops its stream).
//  sparse: a 12-bit peek table gives one whole (run, zeta, sign) triple per lookup (runs <= 30); each step appends
//          a (run, symbol) record, and the symbols go into the zeroed region once the streams are validated (see
//          "sparse stage 1"). Runs past the bucket end are checked once per batch (the element pointer only grows).
// Stage 2 maps each bucket's symbols to floats val[k] = qsgd_value(w, k >> 1, k & 1) (decode-add: alpha * val[k],
// then out + that: the same float operations as the scalar path). s <= 7 (k <= 15): 16 symbols per four pshufb of
// a 16-float table's byte planes and eight unpacks. 8 <= s <= 127: the value is computed, 8 symbols per zero-
// extension, float(k >> 1) * w with the sign bit k << 31 xored in (IEEE multiplication is exact in the sign, so
// this is qsgd_value's -(w * zeta) bit for bit). Large plain decodes use non-temporal stores (256-bit where two
// 16-byte halves make an aligned 32-byte block).
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
      const uint32_t x = uint32_t(gamma_peek_value(rest, N));
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
      const uint32_t r1 = uint32_t(gamma_peek_value(w, N1));  // r + 1
      const uint32_t w2 = w >> l1;
      const int N2 = w2 ? __builtin_ctz(w2) : 32;
      const int l2 = 2 * N2 + 1;
      if (l1 + l2 + 1 <= kPeek) {
        const uint32_t z = uint32_t(gamma_peek_value(w2, N2));
        const uint32_t sg = (w2 >> l2) & 1;
        if (z <= s) e = r1 | ((2 * z + sg) << 8) | (uint32_t(l1 + l2 + 1) << 16);
      }
    }
    t->e[w] = e;
  }
  return t;
}

constexpr uint32_t kFastMaxS = 127;  // symbols k = 2*zeta + sign fit in a byte
constexpr uint32_t kLutMaxS = 7;     // stage 2 by 16-entry pshufb tables (k <= 15)

const GamTab& gamma_dtab(uint32_t s) {
  static GamTab* tabs[kFastMaxS + 1];
  static std::once_flag once[kFastMaxS + 1];
  std::call_once(once[s], [s] { tabs[s] = build_gamma_dtab(s); });
  return *tabs[s];
}
const SpTab& sparse_dtab(uint32_t s) {
  static SpTab* tabs[kFastMaxS + 1];
  static std::once_flag once[kFastMaxS + 1];
  std::call_once(once[s], [s] { tabs[s] = build_sparse_dtab(s); });
  return *tabs[s];
}

inline uint64_t peek_abs(uint64_t bp) {
  return load_u64le(reinterpret_cast<const uint8_t*>(uintptr_t(bp >> 3))) >> (bp & 7);
}

// A chunk's bit stream as stage 1 walks it.
struct BitSpan {
  const uint8_t* base;  // bit stream
  uint64_t nbytes;
  uint64_t bp;          // bit pointer: address * 8 + bit
  uint64_t blim;        // a step may load 8 bytes at bp when bp <= blim
  uint64_t bend_bits;   // bit pointer of the stream's end
  bool fast;            // nbytes >= 8 (blim valid)
};

inline void span_init(BitSpan& st, const uint8_t* p, uint64_t len) {
  st.base = p;
  st.nbytes = len;
  st.bp = uint64_t(uintptr_t(p)) * 8;
  st.fast = len >= 8;
  // a step at bp loads bytes [bp >> 3, (bp >> 3) + 8): bp <= 8 * (base + len - 8) + 7
  st.blim = st.fast ? uint64_t(uintptr_t(p + len - 8)) * 8 + 7 : 0;
  st.bend_bits = uint64_t(uintptr_t(p + len)) * 8;
}

// One stream (chunk) of stage 1.
struct Stream : BitSpan {
  uint64_t bfast;       // sparse: a step may load 8 bytes at bp when bp <= bfast (inside the packet's payload)
  uint8_t* k0;          // region: symbols of the chunk's elements
  uint8_t* kp;          // next symbol (gamma) / next element (sparse)
  uint8_t* kend;        // k0 + M
  // sparse
  uint8_t* bend;        // end of the current bucket
  uint64_t left;        // triples left in the current bucket
  uint16_t* rq;         // next record (see "sparse stage 1")
  uint64_t* rq64;       // wide sparse (s >= 128): next record r + 1 | k << 32
  uint64_t bi, nb, b;   // current bucket, bucket count, bucket size
  int maxN_r;
  bool done;
};

void stream_init(Stream& st, const uint8_t* p, uint64_t len, uint8_t* k0, uint64_t M, const uint8_t* pend) {
  span_init(st, p, len);
  st.bfast = pend - p >= 8 ? uint64_t(uintptr_t(pend - 8)) * 8 + 7 : 0;
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
// Stage 1 does not store a symbol at its element (kp + r - 1: an address that depends on the table load of the same
// step). On Zen 1 such stores make the loads of the next steps (the peeks of the packet, whose addresses can match
// the stores' in their low 12 bits) wait for them once the memory-dependence predictor has seen a false match:
// the lockstep then ran at 1.2-2.2 times its best time, varying from process to process and call to call. Instead
// each step appends a 16-bit record (r + 1) | k << 8, the low half of its table entry, at the stream's record
// cursor (an address known before the step), and `sparse_expand` writes the symbols into the zeroed region after
// the streams are done (validated). Runs longer than 255 and the jumps to a bucket's start are written as records
// (255, 0) and (rest, 0): they store a zero where the region is zero already.

// Records of a run of r1 - 1 zeros then the symbol k (r1 >= 1).
inline uint16_t* put_run(uint16_t* rq, uint64_t r1, uint8_t k) {
  for (; r1 > 255; r1 -= 255) *rq++ = 255;
  *rq++ = uint16_t(r1 | uint32_t(k) << 8);
  return rq;
}

inline void put_triple(uint8_t*& kp, uint16_t*& rq, const uint8_t* bend, uint64_t r1, uint8_t k) {
  if (kp >= bend || r1 > uint64_t(bend - kp)) corrupt("zero run past the bucket end");
  kp += r1;
  rq = put_run(rq, r1, k);
}

// A triple the table does not resolve, from the 57-bit peek w at bp (which may reach past the chunk: the caller
// checks bp against the chunk's end after the batch). Writes its records; returns the new bit, element and record
// pointers.
struct BpKp {
  uint64_t bp;
  uint8_t* kp;
  uint16_t* rq;
};
__attribute__((noinline)) BpKp sparse_miss(uint64_t w, uint64_t bp, uint8_t* kp, uint16_t* rq, const uint8_t* bend,
                                           uint32_t s, int maxN_r, int maxN_z) {
  if (w == 0) corrupt("Elias-gamma code too long");
  const int N1 = ctz64(w);
  if (N1 > maxN_r) corrupt("Elias-gamma code too long");
  const uint64_t r1 = gamma_peek_value(w, N1);
  w >>= 2 * N1 + 1;
  if (w == 0) corrupt("Elias-gamma code too long");
  const int N2 = ctz64(w);
  if (N2 > maxN_z) corrupt("Elias-gamma code too long");
  const uint64_t z = gamma_peek_value(w, N2);
  if (z > s) corrupt("level above s");
  const uint32_t sg = uint32_t(w >> (2 * N2 + 1)) & 1u;
  put_triple(kp, rq, bend, r1, uint8_t(2 * z + sg));
  return BpKp{bp + uint64_t(2 * N1 + 1) + uint64_t(2 * N2 + 1) + 1, kp, rq};
}

// Moves a stream whose bucket is complete (left == 0) to the next bucket with triples (reading nnz), or to its end.
template <bool WIDE = false>
void sparse_next_bucket(Stream& st) {
  while (st.left == 0) {
    if (st.kp > st.bend) corrupt("zero run past the bucket end");
    if (++st.bi == st.nb) { stream_finish(st); return; }
    const uint64_t m = std::min<uint64_t>(st.b, uint64_t(st.kend - st.k0) - st.bi * st.b);
    const int maxN = floor_log2_u64(m + 1);
    uint64_t nnz;
    if (st.bp <= st.bfast && maxN <= 28) {  // the whole code (at most 57 bits) is in the peek
      const uint64_t w = peek_abs(st.bp);
      const int N = w ? ctz64(w) : 64;
      if (N > maxN) corrupt("Elias-gamma code too long");
      nnz = gamma_peek_value(w, N) - 1;
      st.bp += uint64_t(2 * N + 1);
      if (st.bp > st.bend_bits) corrupt("bit stream read past the end of its chunk");
    } else {
      BitReader br = reader_at(st);
      nnz = br.get_gamma(maxN) - 1;
      st.bp = uint64_t(uintptr_t(st.base)) * 8 + br.pos;
    }
    if (nnz > m) corrupt("non-zero count larger than the bucket");
    uint8_t* const start = st.k0 + st.bi * st.b;
    if (start != st.kp) {  // the jump (kp <= bend <= start)
      if (WIDE) *st.rq64++ = uint64_t(start - st.kp);
      else st.rq = put_run(st.rq, uint64_t(start - st.kp), 0);
    }
    st.kp = start;
    st.bend = st.kp + m;
    st.left = nnz;
    st.maxN_r = floor_log2_u64(m);
  }
}

template <bool WIDE = false>
void sparse_start(Stream& st, uint64_t b) {
  st.b = b;
  st.nb = (uint64_t(st.kend - st.k0) + b - 1) / b;
  st.bi = ~uint64_t(0);
  st.left = 0;
  st.bend = st.kp;
  sparse_next_bucket<WIDE>(st);
}

// The rest of a stream, every step checked.
void sparse_finish(Stream& st, const SpTab& T, uint32_t s, int maxN_z) {
  while (!st.done) {
    const uint64_t w = peek_checked(st);  // zeros past the stream's end
    const uint32_t e = T.e[w & kPeekMask];
    uint64_t bp = st.bp + (e >> 16);
    if (e) {
      put_triple(st.kp, st.rq, st.bend, e & 0xFF, uint8_t(e >> 8));
    } else {
      const BpKp r = sparse_miss(w, st.bp, st.kp, st.rq, st.bend, s, st.maxN_r, maxN_z);
      bp = r.bp;
      st.kp = r.kp;
      st.rq = r.rq;
    }
    if (bp > st.bend_bits) corrupt("bit stream read past the end of its chunk");
    st.bp = bp;
    --st.left;
    sparse_next_bucket(st);
  }
}

// Sparse stage 1 runs the streams in lockstep batches of K steps; K is bounded by every stream's triples left in
// its bucket (so a batch never crosses a bucket end) and by its bits of room before `bfast`, the last bit position
// at which an 8-byte load stays inside the packet's payload (not its chunk: a step may read the next chunk's bytes,
// so only the packet's last chunk takes the checked path at its end). A step takes at most `maxbits` bits. After
// a batch, a stream whose bit pointer passed its chunk's end, or whose output pointer passed its bucket's end, is
// corrupt; a bucket that is complete moves on to the next (reading nnz) inside the loop, so a batch break costs
// little. Triples the 12-bit table does not resolve (runs >= 31, long codes) are decoded in-line from the 64-bit
// peek with every check of the slow path (the run is checked against the bucket end before its store).
inline uint64_t sparse_room(const Stream& st, uint64_t maxbits) {
  if (st.done || st.bp > st.bfast) return 0;
  const uint64_t bits = st.bfast - st.bp;
  if (__builtin_expect(bits >= kBatch * maxbits, 1)) return st.left;  // no division far from the packet's end
  return std::min<uint64_t>(bits / maxbits + 1, st.left);
}

// Lockstep batches until a stream is done or nears the packet's end.
template <int NS>
void sparse_lockstep(Stream** sp, const SpTab& T, uint32_t s, int maxN_z, uint64_t maxbits) {
  uint64_t bp[NS];
  uint8_t* kp[NS];
  uint16_t* rq[NS];
  for (int i = 0; i < NS; ++i) { bp[i] = sp[i]->bp; kp[i] = sp[i]->kp; rq[i] = sp[i]->rq; }
  for (;;) {
    uint64_t K = kBatch;
    for (int i = 0; i < NS; ++i) K = std::min(K, sparse_room(*sp[i], maxbits));
    if (K == 0) return;
    for (uint64_t t = 0; t < K; ++t) {
#pragma GCC unroll 4
      for (int i = 0; i < NS; ++i) {
        const uint64_t w = peek_abs(bp[i]);
        const uint32_t e = T.e[w & kPeekMask];
        if (__builtin_expect(e == 0, 0)) {
          const BpKp r = sparse_miss(w, bp[i], kp[i], rq[i], sp[i]->bend, s, sp[i]->maxN_r, maxN_z);
          bp[i] = r.bp;
          kp[i] = r.kp;
          rq[i] = r.rq;
          continue;
        }
        kp[i] += e & 0xFF;
        *rq[i]++ = uint16_t(e);  // (r + 1) | k << 8
        bp[i] += e >> 16;
      }
    }
    bool out = false;
    for (int i = 0; i < NS; ++i) {
      Stream& x = *sp[i];
      if (bp[i] > x.bend_bits) corrupt("bit stream read past the end of its chunk");
      if (kp[i] > x.bend) corrupt("zero run past the bucket end");
      x.bp = bp[i];
      x.kp = kp[i];
      x.rq = rq[i];
      x.left -= K;
      if (x.left == 0) {
        sparse_next_bucket(x);
        bp[i] = x.bp;
        kp[i] = x.kp;
        rq[i] = x.rq;
        out |= x.done;
      }
    }
    if (out) return;
  }
}


// ---- gamma stage 1 for 128 <= s <= 65535 ("wide": symbols k = 2*zeta + sign need 9 to 17 bits, kept as uint32)
// Codes of zeta + 1 up to 65536 take up to 33 bits, too long for the 12-bit peek tables, so each step decodes one
// symbol from a 57-bit peek by tzcnt (N leading zeros, value, then the sign bit when zeta > 0: at most 2N + 2 <= 34
// bits). Four chunks run in lockstep like the byte path; the steps take no branches: a code too long (or no 1 bit
// in the peek) or a level above s is found by one check after the batch, and each step's advance is clamped to
// the 2N + 2 bits of the longest valid code, so that with the batch bound every 8-byte load stays inside the chunk
// whatever the bits are.
// Stage 2 maps the symbols with floats16_cvt<uint32_t>, the same float operations as qsgd_value.
struct WStream : BitSpan {
  uint32_t* kp;
  uint32_t* kend;
};

void wstream_init(WStream& st, const uint8_t* p, uint64_t len, uint32_t* k0, uint64_t M) {
  span_init(st, p, len);
  st.kp = k0;
  st.kend = k0 + M;
}

inline uint64_t wide_room(const WStream& st, uint64_t maxbits) {
  if (!st.fast || st.bp > st.blim || st.kp == st.kend) return 0;
  const uint64_t bits = st.blim - st.bp;
  const uint64_t k = bits >= kBatch * maxbits ? kBatch : bits / maxbits + 1;  // no division far from the end
  return std::min<uint64_t>(k, uint64_t(st.kend - st.kp));
}

// The rest of a stream, every code checked by the scalar reader (and the padding after it).
void wide_finish(WStream& st, uint32_t s, int maxN) {
  BitReader br(st.base, st.nbytes);
  br.pos = st.bp - uint64_t(uintptr_t(st.base)) * 8;
  for (; st.kp < st.kend; ++st.kp) {
    const uint64_t z = br.get_gamma(maxN) - 1;
    if (z > s) corrupt("level above s");
    const uint32_t sg = z ? br.get_bit() : 0u;
    *st.kp = uint32_t(2 * z + sg);
  }
  br.finish();
  st.bp = uint64_t(uintptr_t(st.base)) * 8 + br.pos;
}

// The Elias-gamma value at the bottom of w and its count of leading zeros N. Defined for any bits: N <= 63 (the
// or), shift counts mod 64 (shrx), bzhi for any count; a value from a code too long is >= 2^N, which the callers'
// checks reject.
GZ_AVX2 inline uint64_t peek_gamma(uint64_t w, uint64_t& N) {
  N = uint64_t(unsigned(__builtin_ctzll(w | (uint64_t(1) << 63))));
  return _bzhi_u64(w >> ((N + 1) & 63), unsigned(N)) | (uint64_t(1) << (N & 63));
}

template <int NS>
GZ_AVX2 void wide_lockstep(WStream** sp, uint32_t s, uint64_t maxbits) {
  uint64_t bp[NS];
  uint32_t* kp[NS];
  for (int i = 0; i < NS; ++i) { bp[i] = sp[i]->bp; kp[i] = sp[i]->kp; }
  for (;;) {
    uint64_t K = kBatch;
    for (int i = 0; i < NS; ++i) K = std::min(K, wide_room(*sp[i], maxbits));
    if (K == 0) return;
    // v = zeta + 1 (peek_gamma). v >= 2^N, so the one check v <= s + 1 (the largest v of the batch) also rejects
    // N > maxN (2^(maxN + 1) > s + 1) and a peek with no 1 bit (N = 63).
    uint64_t vmax = 0;
    for (uint64_t t = 0; t < K; ++t) {
#pragma GCC unroll 4
      for (int i = 0; i < NS; ++i) {
        const uint64_t w = peek_abs(bp[i]);
        uint64_t N;
        const uint64_t v = peek_gamma(w, N);
        vmax = v > vmax ? v : vmax;
        const uint64_t len = 2 * N + 1, nz = (N + 63) >> 6;  // zeta > 0 iff N > 0 (N <= 63)
        *kp[i]++ = uint32_t(2 * v - 2 + ((w >> (len & 63)) & nz));
        // a corrupt code (N > maxN) would move bp further than the batch bound allows: clamp the step (the
        // batch is rejected by the v check anyway)
        const uint64_t adv = len + nz;
        bp[i] += adv < maxbits ? adv : maxbits;
      }
    }
    if (vmax > uint64_t(s) + 1) corrupt("Elias-gamma code too long or level above s");
    for (int i = 0; i < NS; ++i) {
      if (bp[i] > sp[i]->bend_bits) corrupt("bit stream read past the end of its chunk");
      sp[i]->bp = bp[i];
      sp[i]->kp = kp[i];
    }
  }
}

void wide_streams(WStream* st, int ns, uint32_t s, int maxN) {
  const uint64_t maxbits = uint64_t(2 * maxN + 2);
  WStream* act[4];
  int na = 0;
  for (int i = 0; i < ns; ++i) act[na++] = &st[i];
  while (na > 0) {
    if (na == 4) wide_lockstep<4>(act, s, maxbits);
    else if (na == 3) wide_lockstep<3>(act, s, maxbits);
    else if (na == 2) wide_lockstep<2>(act, s, maxbits);
    else wide_lockstep<1>(act, s, maxbits);
    int j = 0;  // finish the streams without room (at least one)
    for (int i = 0; i < na; ++i) {
      if (wide_room(*act[i], maxbits) == 0) wide_finish(*act[i], s, maxN);
      else act[j++] = act[i];
    }
    na = j;
  }
}

// ---- sparse stage 1 for 128 <= s <= 65535 ("wide"), when floor(log2 b) + floor(log2 s) <= 27 so that a whole
// triple (run code, level code, sign: at most 2 * 27 + 3 bits) fits in one 57-bit peek. As the byte path (Stream,
// buckets, batches bounded by each stream's triples left and its room before `bfast`), but each step decodes its
// triple by tzcnt/bzhi like the wide gamma step, with no table, and appends a 64-bit record r + 1 | k << 32 (k up to
// 2^17); the element pointer is kept as an integer. No branch per step: run values of 2^17 or more (no bucket has
// that many elements) and levels above s set flags checked after the batch (a level code with N2 leading zeros is
// >= 2^N2, so its check also rejects codes too long); the run past the bucket end is caught by the bucket-end check.
inline void sparse_wide_finish(Stream& st, uint32_t s, int maxN_z) {
  while (!st.done) {
    BitReader br = reader_at(st);
    const uint64_t r1 = br.get_gamma(st.maxN_r);
    const uint64_t z = br.get_gamma(maxN_z);
    if (z > s) corrupt("level above s");
    const uint32_t sg = br.get_bit();
    st.bp = uint64_t(uintptr_t(st.base)) * 8 + br.pos;
    if (st.bp > st.bend_bits) corrupt("bit stream read past the end of its chunk");
    if (st.kp >= st.bend || r1 > uint64_t(st.bend - st.kp)) corrupt("zero run past the bucket end");
    st.kp += r1;
    *st.rq64++ = r1 | uint64_t(2 * z + sg) << 32;
    --st.left;
    sparse_next_bucket<true>(st);
  }
}

template <int NS>
GZ_AVX2 void sparse_wide_lockstep(Stream** sp, uint32_t s, uint64_t maxbits) {
  uint64_t bp[NS], kp[NS];
  uint64_t* rq[NS];
  for (int i = 0; i < NS; ++i) { bp[i] = sp[i]->bp; kp[i] = uint64_t(uintptr_t(sp[i]->kp)); rq[i] = sp[i]->rq64; }
  for (;;) {
    uint64_t K = kBatch;
    for (int i = 0; i < NS; ++i) K = std::min(K, sparse_room(*sp[i], maxbits));
    if (K == 0) return;
    uint64_t rhi = 0, vmax = 0;
    for (uint64_t t = 0; t < K; ++t) {
#pragma GCC unroll 4
      for (int i = 0; i < NS; ++i) {
        const uint64_t w = peek_abs(bp[i]);
        uint64_t N1, N2;
        const uint64_t r1 = peek_gamma(w, N1);
        const uint64_t l1 = 2 * N1 + 1;
        const uint64_t w2 = w >> (l1 & 63);
        const uint64_t v = peek_gamma(w2, N2);
        const uint64_t l2 = 2 * N2 + 1;
        rhi |= r1 >> 17;
        vmax = v > vmax ? v : vmax;
        kp[i] += r1;
        *rq[i]++ = r1 | (2 * v + ((w2 >> (l2 & 63)) & 1)) << 32;
        // corrupt codes could move bp further than the batch bound allows: clamp the step (such a batch is
        // rejected: a run code too long gives r1 > the bucket, a level code too long v > s)
        const uint64_t adv = l1 + l2 + 1;
        bp[i] += adv < maxbits ? adv : maxbits;
      }
    }
    if (rhi) corrupt("zero run past the bucket end");
    if (vmax > s) corrupt("Elias-gamma code too long or level above s");
    bool out = false;
    for (int i = 0; i < NS; ++i) {
      Stream& x = *sp[i];
      if (bp[i] > x.bend_bits) corrupt("bit stream read past the end of its chunk");
      if (kp[i] > uint64_t(uintptr_t(x.bend))) corrupt("zero run past the bucket end");
      x.bp = bp[i];
      x.kp = x.kp + (kp[i] - uint64_t(uintptr_t(x.kp)));
      x.rq64 = rq[i];
      x.left -= K;
      if (x.left == 0) {
        sparse_next_bucket<true>(x);
        bp[i] = x.bp;
        kp[i] = uint64_t(uintptr_t(x.kp));
        rq[i] = x.rq64;
        out |= x.done;
      }
    }
    if (out) return;
  }
}


// Stage 1 of up to four sparse streams: lockstep batches, then bucket moves and the checked tails of the streams
// that left the batch bound. WIDE: s >= 128 (sparse_wide_lockstep, 64-bit records; T unused).
template <bool WIDE>
void sparse_streams(Stream* st, int ns, const SpTab* T, uint32_t s, int maxN_z) {
  Stream* act[4];
  int na = 0;
  uint64_t maxbits = 12;
  for (int i = 0; i < ns; ++i) {
    act[na++] = &st[i];
    // the longest triple: gamma(r + 1) with r + 1 <= 2^(maxN_r + 1) - 1, gamma(zeta), the sign
    maxbits = std::max<uint64_t>(maxbits, uint64_t(2 * floor_log2_u64(st[i].b) + 1 + 2 * maxN_z + 1 + 1));
  }
  while (na > 0) {
    if constexpr (WIDE) {
      if (na == 4) sparse_wide_lockstep<4>(act, s, maxbits);
      else if (na == 3) sparse_wide_lockstep<3>(act, s, maxbits);
      else if (na == 2) sparse_wide_lockstep<2>(act, s, maxbits);
      else sparse_wide_lockstep<1>(act, s, maxbits);
    } else {
      if (na == 4) sparse_lockstep<4>(act, *T, s, maxN_z, maxbits);
      else if (na == 3) sparse_lockstep<3>(act, *T, s, maxN_z, maxbits);
      else if (na == 2) sparse_lockstep<2>(act, *T, s, maxN_z, maxbits);
      else sparse_lockstep<1>(act, *T, s, maxN_z, maxbits);
    }
    int j = 0;
    for (int i = 0; i < na; ++i) {
      Stream& x = *act[i];
      if (!x.done && x.left == 0) sparse_next_bucket<WIDE>(x);
      if (!x.done && x.bp > x.bfast) {
        if constexpr (WIDE) sparse_wide_finish(x, s, maxN_z);
        else sparse_finish(x, *T, s, maxN_z);
      }
      if (!x.done) act[j++] = act[i];
    }
    na = j;
  }
}

// ---- stage 2

// Per-thread scratch of a task: four chunk regions (symbols) and their bucket scales; sparse: four record lists.
struct FastScratch {
  std::vector<uint8_t> k;
  std::vector<float> w;
  std::vector<uint16_t> rec;
  uint64_t stride = 0, nbmax = 0, rstride = 0;
};

// The symbols of a stream's records into its zeroed region: each record advances by r + 1 and stores k there.
// (The loads are sequential and the stores only depend on them: nothing here waits on a store.)
inline void sparse_expand(uint8_t* k0, const uint16_t* r, const uint16_t* end) {
  uint8_t* p = k0;  // one past the last element written
  for (; r + 2 <= end; r += 2) {
    const uint32_t a = r[0], b = r[1];
    p += a & 0xFF;
    p[-1] = uint8_t(a >> 8);
    p += b & 0xFF;
    p[-1] = uint8_t(b >> 8);
  }
  if (r < end) {
    p += *r & 0xFF;
    p[-1] = uint8_t(*r >> 8);
  }
}

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

// Floats of 16 symbols (k <= 255): qsgd_value(w, k >> 1, k & 1), times alpha when ADD.
// KS: uint8_t (s <= 127) or uint32_t symbols (the wide gamma path, s >= 128).
template <bool ADD, class KS>
GZ_AVX2 inline void floats16_cvt(const KS* k, __m256 wv, __m256 av, __m128& f0, __m128& f1, __m128& f2,
                                 __m128& f3) {
  __m256i k0, k1;
  if (sizeof(KS) == 1) {
    k0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(k)));
    k1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(k + 8)));
  } else {
    k0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k));
    k1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k + 8));
  }
  __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(k0, 1)), wv);
  __m256 v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(k1, 1)), wv);
  v0 = _mm256_xor_ps(v0, _mm256_castsi256_ps(_mm256_slli_epi32(k0, 31)));
  v1 = _mm256_xor_ps(v1, _mm256_castsi256_ps(_mm256_slli_epi32(k1, 31)));
  if (ADD) {
    v0 = _mm256_mul_ps(av, v0);
    v1 = _mm256_mul_ps(av, v1);
  }
  f0 = _mm256_castps256_ps128(v0);
  f1 = _mm256_extractf128_ps(v0, 1);
  f2 = _mm256_castps256_ps128(v1);
  f3 = _mm256_extractf128_ps(v1, 1);
}

enum class Out { PLAIN, NT, ADD };

// Symbols of one chunk (M elements, buckets of b; bucket scales w) -> out[0, M). LUT: s <= kLutMaxS (k <= 15),
// else k <= 255 (values computed).
// NT: out is 16-byte aligned and b % 16 == 0.
template <Out MODE, bool LUT, class KS = uint8_t>
GZ_AVX2 void chunk_floats(const KS* k, uint64_t M, uint64_t b, const float* w, float* out, float alpha) {
  alignas(16) float lut[16];
  __m128i P[4];
  __m128 carry = _mm_setzero_ps();
  bool have = false;
  const bool odd = (uintptr_t(out) & 16) != 0;
  const __m256 av = _mm256_set1_ps(alpha);
  __m256 wv = av;
  uint64_t i = 0;
  for (uint64_t bi = 0; i < M; ++bi) {
    const uint64_t m = std::min<uint64_t>(b, M - i);
    if (LUT) {
      for (uint32_t q = 0; q < 16; ++q) {
        const float v = ref::qsgd_value(w[bi], q >> 1, q & 1);
        lut[q] = MODE == Out::ADD ? alpha * v : v;
      }
      lut_planes(lut, P);
    } else {
      wv = _mm256_set1_ps(w[bi]);
    }
    const uint64_t e = i + m;
    for (; i + 16 <= e; i += 16) {
      __m128 f0, f1, f2, f3;
      if constexpr (LUT) floats16(k + i, P, f0, f1, f2, f3);
      else floats16_cvt<MODE == Out::ADD, KS>(k + i, wv, av, f0, f1, f2, f3);
      float* o = out + i;
      if (MODE == Out::ADD) {
        // the accumulator 4 KiB ahead, every line; the symbols 1 KiB ahead (Zen 1's hardware prefetcher alone
        // leaves this pass well below the copy speed)
        _mm_prefetch(reinterpret_cast<const char*>(o + 1024), _MM_HINT_T0);
        if ((i & 63) == 0) _mm_prefetch(reinterpret_cast<const char*>(k + i + 1024), _MM_HINT_T0);
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
      float v;
      if (LUT) {
        v = lut[k[i]];
      } else {
        v = ref::qsgd_value(w[bi], k[i] >> 1, k[i] & 1u);
        if (MODE == Out::ADD) v = alpha * v;
      }
      if (MODE == Out::ADD) out[i] = out[i] + v;
      else out[i] = v;
    }
  }
  if (MODE == Out::NT && have) _mm_stream_ps(out + i - 4, carry);
}

template <Out MODE>
GZ_AVX2 void chunk_floats(uint32_t s, const uint8_t* k, uint64_t M, uint64_t b, const float* w, float* out,
                          float alpha) {
  if (s <= kLutMaxS) chunk_floats<MODE, true>(k, M, b, w, out, alpha);
  else chunk_floats<MODE, false>(k, M, b, w, out, alpha);
}

// Chunk cc's element range, bucket count and bytes; its bucket scales w[bi] = N / s (checked finite, >= 0).
struct ChunkHead {
  uint64_t lo, hi, nb;
  const uint8_t* p;  // the chunk (scales, then the bit stream)
  uint64_t len;
};
ChunkHead chunk_head(const Geom& g, const Header& h, const std::vector<uint64_t>& off, uint64_t cc, float* w) {
  ChunkHead ch;
  ch.lo = cc * g.E;
  ch.hi = std::min(g.n, ch.lo + g.E);
  ch.nb = (ch.hi - ch.lo + g.b - 1) / g.b;
  ch.p = h.payload + off[cc];
  ch.len = off[cc + 1] - off[cc];
  if (ch.len < 4 * ch.nb) corrupt("chunk shorter than its scales");
  const float fs = float(g.s);
  for (uint64_t bi = 0; bi < ch.nb; ++bi) {
    const uint32_t nbits = load_u32le(ch.p + 4 * bi);
    if (nbits >= 0x7F800000u) corrupt("negative or non-finite bucket scale");
    w[bi] = ref::u2f(nbits) / fs;
  }
  return ch;
}

// Stage 1 of chunks [c, c + ns) (ns <= 4) into S (regions), with their scales; validates everything.
void stage1(const Geom& g, const Header& h, const std::vector<uint64_t>& off, uint64_t c, int ns, FastScratch& S,
            uint8_t* kdst) {
  Stream st[4];
  for (int i = 0; i < ns; ++i) {
    const ChunkHead ch = chunk_head(g, h, off, c + uint64_t(i), S.w.data() + uint64_t(i) * S.nbmax);
    const uint64_t lo = ch.lo, hi = ch.hi;
    const uint8_t* p = ch.p;
    const uint64_t len = ch.len, nb = ch.nb;
    uint8_t* k0 = kdst ? kdst + (lo - c * g.E) : S.k.data() + uint64_t(i) * S.stride;
    stream_init(st[i], p + 4 * nb, len - 4 * nb, k0, hi - lo, h.payload + h.payload_bytes);
    if (g.sparse) {
      std::memset(k0, 0, size_t(hi - lo));
      st[i].rq = S.rec.data() + uint64_t(i) * S.rstride;
      sparse_start(st[i], g.b);
    }
  }
  if (g.sparse) {
    sparse_streams<false>(st, ns, &sparse_dtab(g.s), g.s, floor_log2_u64(g.s));
    for (int i = 0; i < ns; ++i) sparse_expand(st[i].k0, S.rec.data() + uint64_t(i) * S.rstride, st[i].rq);
  } else gamma_streams(st, ns, gamma_dtab(g.s), g.s, floor_log2_u64(uint64_t(g.s) + 1));
}

void scratch_init(const Geom& g, FastScratch& S) {
  S.stride = (g.E + 16 + 15) & ~uint64_t(15);
  S.nbmax = (g.E + g.b - 1) / g.b;
  const uint64_t need = 4 * S.stride + kSlack;
  if (S.k.size() < need) S.k.resize(size_t(need));
  if (S.w.size() < 4 * S.nbmax) S.w.resize(size_t(4 * S.nbmax));
  if (g.sparse) {
    // records of a chunk: one per table step (at most nnz <= m per bucket, checked before a batch: <= E), one per
    // 255 elements of the long runs (<= E / 255) and of the jumps (<= E / 255 + 1 per bucket)
    S.rstride = g.E + 2 * (g.E / 255) + 2 * S.nbmax + 8;
    if (S.rec.size() < 4 * S.rstride) S.rec.resize(size_t(4 * S.rstride));
  }
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
        chunk_floats<MODE>(g.s, S.k.data() + uint64_t(i) * S.stride, hi - lo, g.b,
                           S.w.data() + uint64_t(i) * S.nbmax, out + lo, alpha);
      }
  }
  if (MODE == Out::NT) _mm_sfence();
}

// Wide stage 1 (gamma or sparse) of chunks [c, c + ns) (ns <= 4): symbols of chunk c + i at k + i * kstride,
// bucket scales at w + i * nbmax; sparse records at rec + i * (E + nbmax + 8). Validates everything.
void wide_stage1(const Geom& g, const Header& h, const std::vector<uint64_t>& off, uint64_t c, int ns, uint32_t* k,
                 uint64_t kstride, float* w, uint64_t nbmax, uint64_t* rec) {
  const uint64_t rstride = g.E + nbmax + 8;  // one record per triple (<= E) and per bucket jump
  WStream st[4];
  Stream sst[4];
  for (int i = 0; i < ns; ++i) {
    const ChunkHead ch = chunk_head(g, h, off, c + uint64_t(i), w + uint64_t(i) * nbmax);
    const uint64_t lo = ch.lo, hi = ch.hi;
    const uint8_t* p = ch.p;
    const uint64_t len = ch.len, nb = ch.nb;
    uint32_t* const ki = k + uint64_t(i) * kstride;
    if (g.sparse) {
      // the Stream's byte pointers count elements here (k0 + M stays inside the 4M-byte region)
      stream_init(sst[i], p + 4 * nb, len - 4 * nb, reinterpret_cast<uint8_t*>(ki), hi - lo,
                  h.payload + h.payload_bytes);
      std::memset(ki, 0, size_t(hi - lo) * 4);
      sst[i].rq64 = rec + uint64_t(i) * rstride;
      sparse_start<true>(sst[i], g.b);
    } else {
      wstream_init(st[i], p + 4 * nb, len - 4 * nb, ki, hi - lo);
    }
  }
  if (!g.sparse) {
    wide_streams(st, ns, g.s, floor_log2_u64(uint64_t(g.s) + 1));
    return;
  }
  sparse_streams<true>(sst, ns, nullptr, g.s, floor_log2_u64(g.s));
  for (int i = 0; i < ns; ++i) {  // the symbols into the zeroed regions, now that every stream is validated
    uint32_t* q = k + uint64_t(i) * kstride;
    for (const uint64_t* r = rec + uint64_t(i) * rstride; r < sst[i].rq64; ++r) {
      q += uint32_t(*r);
      q[-1] = uint32_t(*r >> 32);
    }
  }
}

// The wide path (s >= 128) over chunks [c0, c1), four at a time: stage 1 (validation) and, when STORE,
// stage 2. kdst (decode-add): stage 1 only, each chunk's symbols at kdst + chunk * E (the caller runs stage 2).
template <Out MODE, bool STORE>
void wide_chunks(const Geom& g, const Header& h, const std::vector<uint64_t>& off, uint64_t c0, uint64_t c1,
                 float* out, float alpha, uint32_t* kdst = nullptr) {
  static thread_local std::vector<uint32_t> ks;
  static thread_local std::vector<float> ws;
  static thread_local std::vector<uint64_t> rs;
  const uint64_t nbmax = (g.E + g.b - 1) / g.b;
  if (ks.size() < 4 * g.E) ks.resize(size_t(4 * g.E));
  if (ws.size() < 4 * nbmax) ws.resize(size_t(4 * nbmax));
  if (g.sparse && rs.size() < 4 * (g.E + nbmax + 8)) rs.resize(size_t(4 * (g.E + nbmax + 8)));
  for (uint64_t c = c0; c < c1; c += 4) {
    const int ns = int(std::min<uint64_t>(4, c1 - c));
    wide_stage1(g, h, off, c, ns, kdst ? kdst + c * g.E : ks.data(), g.E, ws.data(), nbmax, rs.data());
    if (STORE)
      for (int i = 0; i < ns; ++i) {
        const uint64_t lo = (c + uint64_t(i)) * g.E, hi = std::min(g.n, lo + g.E);
        chunk_floats<MODE, false, uint32_t>(ks.data() + uint64_t(i) * g.E, hi - lo, g.b,
                                            ws.data() + uint64_t(i) * nbmax, out + lo, alpha);
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
  CodeTab tab;
  const bool use_tab = !g.sparse && g.s <= 4096;
  if (use_tab && (a.scalar || g.s > 127)) build_gamma_tab(g.s, tab);
  EncTabs et;
  et.oct = nullptr;
  et.sp = nullptr;
  et.quad = et.pair = et.srun = nullptr;
  et.one = et.val = nullptr;
  et.tab = use_tab ? &tab : nullptr;
  CodeTab vtab;  // sparse value codes gamma(zeta) + sign, k = 2*zeta + sign >= 2
  if (g.sparse && g.s <= 4096 && !a.scalar) {
    vtab.code.assign(2 * (size_t(g.s) + 1), 0);
    vtab.len.assign(2 * (size_t(g.s) + 1), 0);
    for (uint32_t kk = 2; kk < 2 * (g.s + 1); ++kk) {
      const int N = floor_log2_u64(kk >> 1);
      vtab.code[kk] = gamma_code(kk >> 1, N) | uint64_t(kk & 1) << (2 * N + 1);
      vtab.len[kk] = uint8_t(2 * N + 2);
    }
  }
  et.vtab = g.sparse && g.s <= 4096 && !a.scalar ? &vtab : nullptr;
  if (!a.scalar) {
    if (!g.sparse) {
      et.oct = &oct_tab();
      if (g.s <= 4) et.quad = quad_tab(g.s).data();
      else if (g.s <= 15) et.pair = pair_tab(g.s).data();
    } else {
      et.sp = &sparse_tabs();
      if (g.s <= 4) et.srun = srun_tab(g.s).data();
    }
    et.one = k_tabs().one;
    et.val = k_tabs().val;
  }
  // One range of whole chunks per thread, written back to back from the range's first slot (a range never writes
  // past the next range's first slot: the chunks' bounds add up); then the ranges after the first move left.
  const uint64_t R = a.threads > 1 ? std::min<uint64_t>(uint64_t(a.threads), g.C) : 1;
  std::vector<uint64_t> rlen(R);
  par_for(a.threads, R, [&](uint64_t r) {
    const uint64_t c0 = g.C * r / R, c1 = g.C * (r + 1) / R;
    uint8_t* dst = a.payload + c0 * slot;
    uint8_t* end = r + 1 < R ? a.payload + c1 * slot : a.payload + a.cap;
    if (a.scalar) {
      uint8_t* o = dst;
      for (uint64_t c = c0; c < c1; ++c) {
        const uint64_t len = encode_chunk(g, a.seed, a.x, c, o, uint64_t(end - o), use_tab ? &tab : nullptr);
        a.chunk_lens[c] = uint32_t(len);
        o += len;
      }
      rlen[r] = uint64_t(o - dst);
    } else {
      rlen[r] = encode_range_avx2(g, a.seed, a.x, c0, c1, dst, end, a.chunk_lens, et);
    }
  });
  uint64_t off = rlen[0];
  for (uint64_t r = 1; r < R; ++r) {
    std::memmove(a.payload + off, a.payload + (g.C * r / R) * slot, rlen[r]);
    off += rlen[r];
  }
  return off;
}

namespace {
bool use_fast(const Geom& g) { return g.s <= kFastMaxS && g.E <= kFastMaxE; }
// s >= 128 (both codings; sparse when a whole triple fits in one peek, see sparse_wide_lockstep).
bool use_wide(const Geom& g) {
  return g.s > kFastMaxS && g.E <= kFastMaxE &&
         (!g.sparse || floor_log2_u64(g.b) + floor_log2_u64(g.s) <= 27);
}

// The decode-add symbol scratch (n bytes) is lent from one cached buffer, the largest asked for so far (at most
// kAddScratchMaxN + kSlack bytes, kept for the life of the process), to one call at a time; a call that finds it
// lent allocates its own. A fresh buffer per call cost a fresh mmap and its page faults every time for tensors of
// 32 Mi elements and more (glibc hands blocks above its 32 MiB mmap threshold back to the system on free): about a
// fifth of a 2^26-element sparse decode-add.
class AddScratch {
 public:
  explicit AddScratch(size_t need) : lock_(cache().m, std::try_to_lock) {
    Cache& c = cache();
    if (lock_.owns_lock()) {
      if (c.size < need) {
        c.buf.reset();
        c.size = 0;
        c.buf.reset(new (std::nothrow) uint8_t[need]);
        if (c.buf) c.size = need;
      }
      p_ = c.buf.get();
    } else {
      own_.reset(new (std::nothrow) uint8_t[need]);
      p_ = own_.get();
    }
  }
  uint8_t* get() const { return p_; }

 private:
  struct Cache {
    std::mutex m;
    std::unique_ptr<uint8_t[]> buf;
    size_t size = 0;
  };
  static Cache& cache() {
    static Cache* c = new Cache;  // never destroyed: no order problem with threads at exit
    return *c;
  }
  std::unique_lock<std::mutex> lock_;
  std::unique_ptr<uint8_t[]> own_;
  uint8_t* p_ = nullptr;
};
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
  if (use_wide(g) && cpu_info().avx2 && cpu_info().bmi2) {
    par_for(threads, (g.C + kGroup - 1) / kGroup, [&](uint64_t t) {
      wide_chunks<Out::PLAIN, false>(g, h, off, t * kGroup, std::min(g.C, (t + 1) * kGroup), nullptr, 0.f);
    });
    return;
  }
  par_for(threads, g.C, [&](uint64_t c) {
    decode_chunk<false, false>(g, ChunkView{h.payload + off[c], off[c + 1] - off[c]}, c, nullptr, 0.f);
  });
}

namespace {
// The fast paths' decode: byte symbols (s <= 127) or, WIDE, 32-bit symbols (s >= 128). Decode-add: stage 1 of
// every chunk into one scratch (n bytes, or 4n when WIDE; this validates everything), then the adds; beyond
// kAddScratchMaxN bytes, or when the scratch cannot be had, a validation pass, then stage 1 + 2 per group.
template <bool WIDE>
void decode_fast(const DecodeArgs& a, const Geom& g, const std::vector<uint64_t>& off) {
  using KS = std::conditional_t<WIDE, uint32_t, uint8_t>;
  const Header& h = *a.h;
  const uint64_t ntask = (g.C + kGroup - 1) / kGroup;
  std::optional<AddScratch> lease;
  if (a.add && sizeof(KS) * g.n <= kAddScratchMaxN) lease.emplace(size_t(sizeof(KS) * g.n + (WIDE ? 0 : kSlack)));
  KS* const ks = lease ? reinterpret_cast<KS*>(lease->get()) : nullptr;
  if (ks) {
    par_for(a.threads, ntask, [&](uint64_t t) {
      const uint64_t c0 = t * kGroup, c1 = std::min(g.C, (t + 1) * kGroup);
      if constexpr (WIDE) {
        wide_chunks<Out::ADD, false>(g, h, off, c0, c1, nullptr, 0.f, ks);
      } else {
        static thread_local FastScratch S;
        scratch_init(g, S);
        for (uint64_t c = c0; c < c1; c += 4) stage1(g, h, off, c, int(std::min<uint64_t>(4, c1 - c)), S, ks + c * g.E);
      }
    });
    par_for(a.threads, ntask, [&](uint64_t t) {
      std::vector<float> w(size_t((g.E + g.b - 1) / g.b));
      const float fs = float(g.s);
      const uint64_t c1 = std::min(g.C, (t + 1) * kGroup);
      for (uint64_t c = t * kGroup; c < c1; ++c) {
        const uint64_t lo = c * g.E, hi = std::min(g.n, lo + g.E);
        const uint64_t nb = (hi - lo + g.b - 1) / g.b;
        for (uint64_t bi = 0; bi < nb; ++bi) w[bi] = ref::u2f(load_u32le(h.payload + off[c] + 4 * bi)) / fs;
        if constexpr (WIDE) chunk_floats<Out::ADD, false, uint32_t>(ks + lo, hi - lo, g.b, w.data(), a.out + lo, a.alpha);
        else chunk_floats<Out::ADD>(g.s, ks + lo, hi - lo, g.b, w.data(), a.out + lo, a.alpha);
      }
    });
    return;
  }
  if (a.add) qsgd_var_validate(h, a.threads);
  const bool nt = !a.add && g.n >= kNtMinN && g.b % 16 == 0 && (uintptr_t(a.out) & 15) == 0;
  par_for(a.threads, ntask, [&](uint64_t t) {
    const uint64_t c0 = t * kGroup, c1 = std::min(g.C, (t + 1) * kGroup);
    if constexpr (WIDE) {
      if (a.add) wide_chunks<Out::ADD, true>(g, h, off, c0, c1, a.out, a.alpha);
      else if (nt) wide_chunks<Out::NT, true>(g, h, off, c0, c1, a.out, 0.f);
      else wide_chunks<Out::PLAIN, true>(g, h, off, c0, c1, a.out, 0.f);
    } else {
      if (a.add) fast_chunks<Out::ADD, true>(g, h, off, c0, c1, a.out, a.alpha);
      else if (nt) fast_chunks<Out::NT, true>(g, h, off, c0, c1, a.out, 0.f);
      else fast_chunks<Out::PLAIN, true>(g, h, off, c0, c1, a.out, 0.f);
    }
  });
}
}  // namespace

// Decode-add validates the whole packet before its first store to acc (whatever the caller did before): the fast
// path decodes the symbols of every chunk into one scratch of n bytes (stage 1, which validates), then adds
// (stage 2); beyond kAddScratchMaxN elements (or when the scratch cannot be had), and on the generic path, a
// validation pass precedes the add pass.
void qsgd_var_decode(const DecodeArgs& a) {
  const Header& h = *a.h;
  const Geom g = geom_checked(h);
  if (!g.C) return;
  const std::vector<uint64_t> off = chunk_offsets(h);
  if (use_fast(g) && !a.scalar) return decode_fast<false>(a, g, off);
  if (use_wide(g) && !a.scalar) return decode_fast<true>(a, g, off);
  if (a.add) qsgd_var_validate(h, a.threads);
  par_for(a.threads, g.C, [&](uint64_t c) {
    const ChunkView ck{h.payload + off[c], off[c + 1] - off[c]};
    if (a.add) decode_chunk<true, true>(g, ck, c, a.out, a.alpha);
    else decode_chunk<true, false>(g, ck, c, a.out, 0.f);
  });
}

}  // namespace gz
