// randomk (docs/FORMAT.md sections 3.5, 4.1): k indices drawn without replacement from the seed by Floyd's
// algorithm (no index bits travel); payload = the k raw f32 values in increasing index order; decoding scales
// them by (float)((double)n / (double)k), which makes the estimate unbiased.
//
// Speed: the draws come from the AVX2 Philox (simd_philox.h, stream 1; several threads split them), Floyd's
// sequential membership test runs on a bitmap (a hash set when the bitmap would be much larger than k), and
//  - the encoder makes one pass over x that does the non-finite check (integer max of the magnitude bits) and
//    copies the values at the set bits of each 64-element word (the first two without branches);
//  - the decoder lists the indices (same branchless scan), then writes out block by block from an L1 buffer
//    (zeros and the k values, 256-bit non-temporal stores for large n) or adds into acc with the rows prefetched.
// The checks of the values (finite, and finite times n/k) use the maximum magnitude (float multiplication is
// monotonic); when it fails, the original in-order loop runs to report the first offending value.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "core/bitio.h"
#include "core/codec.h"
#include "core/philox.h"
#include "core/quant_ref.h"
#include "core/simd_philox.h"
#include "core/threadpool.h"
#include "codecs/fill_blocks.h"

#define GZ_RK_AVX2 __attribute__((target("avx2,bmi,bmi2,fma,f16c")))


namespace gz {
namespace {

inline uint64_t mulhi64(uint64_t a, uint64_t b) { return uint64_t((unsigned __int128)a * b >> 64); }

bool has_avx2() { return cpu_info().avx2 && cpu_info().bmi2; }

// Open-addressing hash set of u64 (keys < 2^63; empty slot = ~0).
struct HashSet {
  std::vector<uint64_t> t;
  uint64_t mask;
  explicit HashSet(uint64_t k) {
    uint64_t cap = 16;
    while (cap < 2 * k + 2) cap <<= 1;
    t.assign(size_t(cap), ~uint64_t(0));
    mask = cap - 1;
  }
  static uint64_t h(uint64_t x) { x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; return x; }
  // Inserts x; returns false when it was already present.
  bool insert(uint64_t x) {
    for (uint64_t i = h(x) & mask;; i = (i + 1) & mask) {
      if (t[i] == x) return false;
      if (t[i] == ~uint64_t(0)) { t[i] = x; return true; }
    }
  }
};

// Random-k draws t0 .. t0+m-1 (FORMAT section 2, stream 1): the Philox blocks (4 words each) to w; draw t is the
// little-endian u64 at w + 4 (t - t0).
GZ_RK_AVX2 void blocks_avx2(philox_detail::Sched& s, uint64_t seed, uint64_t t0, uint64_t m, uint32_t* w) {
  philox_detail::blocks_sched<false>(s, seed, t0, m, w, 1);
}
GZ_RK_AVX2 void sched_init_avx2(philox_detail::Sched& s, uint64_t seed) { philox_detail::sched_init(s, seed); }
void draws(philox_detail::Sched& s, uint64_t seed, uint64_t t0, uint64_t m, uint32_t* w, bool avx2) {
  if (avx2) return blocks_avx2(s, seed, t0, m, w);
  for (uint64_t i = 0; i < m; ++i) {
    const Philox4 b = philox_block(seed, t0 + i, 1);
    std::memcpy(w + 4 * i, b.v, 16);
  }
}
inline uint64_t draw_at(const uint32_t* w, uint64_t i) {
  uint64_t r;
  std::memcpy(&r, w + 4 * i, 8);
  return r;
}

// Dense index sets use a bitmap (n/8 bytes) when it is no larger than ~16 bytes per selected index.
bool dense(uint64_t n, uint64_t k) { return n / 8 <= 16 * k + 4096; }

// Floyd's algorithm on a bitmap of n bits (zeroed here).
void floyd_bitmap(uint64_t seed, uint64_t n, uint64_t k, uint64_t* bm, int threads, bool avx2) {
  std::memset(bm, 0, size_t((n + 63) / 64) * 8);
  auto step = [&](uint64_t t, uint64_t R) {
    const uint64_t J = n - k + t;
    const uint64_t x = mulhi64(R, J + 1);
    const uint64_t bit = uint64_t(1) << (x & 63);
    uint64_t& w = bm[size_t(x >> 6)];
    if (__builtin_expect((w & bit) != 0, 0)) bm[size_t(J >> 6)] |= uint64_t(1) << (J & 63);  // J not in S yet
    else w |= bit;
  };
  if (threads > 1 && k >= 65536) {  // all draws first, in parallel
    std::unique_ptr<uint32_t[]> W(new uint32_t[size_t(4 * k)]);
    const uint64_t T = uint64_t(threads);
    par_for(threads, T, [&](uint64_t i) {
      const uint64_t lo = k * i / T, hi = k * (i + 1) / T;
      philox_detail::Sched s;
      if (avx2) sched_init_avx2(s, seed);
      draws(s, seed, lo, hi - lo, W.get() + 4 * lo, avx2);
    });
    for (uint64_t t = 0; t < k; ++t) step(t, draw_at(W.get(), t));
    return;
  }
  constexpr uint64_t B = 1024;
  alignas(32) uint32_t W[4 * B];
  philox_detail::Sched s;
  if (avx2) sched_init_avx2(s, seed);
  for (uint64_t t0 = 0; t0 < k; t0 += B) {
    const uint64_t m = std::min(B, k - t0);
    draws(s, seed, t0, m, W, avx2);
    for (uint64_t i = 0; i < m; ++i) step(t0 + i, draw_at(W, i));
  }
}

// Set bits of bm[0, words) in increasing order to idx (exactly k of them).
template <class I>
__attribute__((always_inline)) inline void bitmap_list_body(const uint64_t* bm, uint64_t words, uint64_t k, I* idx) {
  uint64_t j = 0, wi = 0;
  for (; wi < words && j + 64 <= k; ++wi) {  // the first two bits of a word without branches
    const uint64_t w = bm[wi], w1 = w & (w - 1), w2 = w1 & (w1 - 1), base = wi * 64;
    idx[j] = I(base + uint64_t(__builtin_ctzll(w | (uint64_t(1) << 63))));
    j += w != 0;
    idx[j] = I(base + uint64_t(__builtin_ctzll(w1 | (uint64_t(1) << 63))));
    j += w1 != 0;
    for (uint64_t r = w2; __builtin_expect(r != 0, 0); r &= r - 1) idx[j++] = I(base + uint64_t(ctz64(r)));
  }
  for (; wi < words; ++wi)
    for (uint64_t w = bm[wi]; w; w &= w - 1) {
      if (j >= k) throw Error(ErrCode::INTERNAL, "randomk_indices: count mismatch");
      idx[j++] = I(wi * 64 + uint64_t(ctz64(w)));
    }
  if (j != k) throw Error(ErrCode::INTERNAL, "randomk_indices: count mismatch");
}

template <class I>
GZ_RK_AVX2 void bitmap_list_avx2(const uint64_t* bm, uint64_t words, uint64_t k, I* idx) {
  bitmap_list_body<I>(bm, words, k, idx);
}
template <class I>
void bitmap_list(const uint64_t* bm, uint64_t words, uint64_t k, I* idx, bool avx2) {
  if (avx2) bitmap_list_avx2<I>(bm, words, k, idx);
  else bitmap_list_body<I>(bm, words, k, idx);
}

template <class I>
void indices(uint64_t seed, uint64_t n, uint64_t k, I* idx, int threads, bool avx2) {
  if (k > n) throw Error(ErrCode::INTERNAL, "randomk_indices: k > n");
  if (!k) return;
  if (dense(n, k)) {
    const uint64_t words = (n + 63) / 64;
    std::unique_ptr<uint64_t[]> bm(new uint64_t[size_t(words)]);
    floyd_bitmap(seed, n, k, bm.get(), threads, avx2);
    bitmap_list<I>(bm.get(), words, k, idx, avx2);
    return;
  }
  HashSet S(k);
  constexpr uint64_t B = 1024;
  alignas(32) uint32_t W[4 * B];
  philox_detail::Sched s;
  if (avx2) sched_init_avx2(s, seed);
  uint64_t j = 0;
  for (uint64_t t0 = 0; t0 < k; t0 += B) {
    const uint64_t m = std::min(B, k - t0);
    draws(s, seed, t0, m, W, avx2);
    for (uint64_t i = 0; i < m; ++i) {
      const uint64_t t = t0 + i, J = n - k + t;
      const uint64_t x = mulhi64(draw_at(W, i), J + 1);
      if (S.insert(x)) idx[j++] = I(x);
      else { S.insert(J); idx[j++] = I(J); }
    }
  }
  std::sort(idx, idx + k);
}

// ---------------------------------------------------------------- encoder

// Max magnitude bits of x[lo, hi).
uint32_t amax_scalar(const float* x, uint64_t lo, uint64_t hi) {
  uint32_t m = 0;
  for (uint64_t i = lo; i < hi; ++i) m = std::max(m, ref::f2u(x[i]) & 0x7FFFFFFFu);
  return m;
}
GZ_RK_AVX2 uint32_t amax_avx2(const float* x, uint64_t lo, uint64_t hi) {
  const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i m0 = _mm256_setzero_si256(), m1 = m0;
  uint64_t i = lo;
  for (; i + 16 <= hi; i += 16) {
    m0 = _mm256_max_epu32(m0, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), absm));
    m1 = _mm256_max_epu32(m1, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8)), absm));
  }
  alignas(32) uint32_t l[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(l), _mm256_max_epu32(m0, m1));
  uint32_t m = amax_scalar(x, i, hi);
  for (int q = 0; q < 8; ++q) m = std::max(m, l[q]);
  return m;
}

struct EncPart {
  uint32_t amax = 0, selmax = 0;  // max magnitude bits of x and of the selected values
};

// Words [w0, w1) of the bitmap: values at the set bits to out (starting at value number j), magnitudes to r.
// jend: the value number after the range (while j + 64 <= jend a word cannot write past the range).
struct EncState {
  uint64_t wi, j;
  uint32_t amax, selmax;
};

// AVX2 part: whole words (64 elements present) while j + 64 <= jend; the first two values without branches.
GZ_RK_AVX2 void enc_words_avx2(const float* x, uint64_t n, const uint64_t* bm, uint64_t w1, uint64_t jend,
                               uint8_t* out, EncState& st) {
  const uint32_t* xb = reinterpret_cast<const uint32_t*>(x);
  const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i vmax = _mm256_setzero_si256();
  uint32_t selmax = st.selmax;
  uint64_t wi = st.wi, j = st.j;
  const uint64_t full = std::min(w1, n / 64);
#define GZ_RK_A(o) _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + (o))), absm)
  for (; wi < full && j + 64 <= jend; ++wi) {
    const float* p = x + wi * 64;
    _mm_prefetch(reinterpret_cast<const char*>(p + 1024), _MM_HINT_T0);  // 4 KiB ahead, every line
    _mm_prefetch(reinterpret_cast<const char*>(p + 1040), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + 1056), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + 1072), _MM_HINT_T0);
    const __m256i a = _mm256_max_epu32(GZ_RK_A(0), GZ_RK_A(8)), b = _mm256_max_epu32(GZ_RK_A(16), GZ_RK_A(24));
    const __m256i c = _mm256_max_epu32(GZ_RK_A(32), GZ_RK_A(40)), d = _mm256_max_epu32(GZ_RK_A(48), GZ_RK_A(56));
    vmax = _mm256_max_epu32(vmax, _mm256_max_epu32(_mm256_max_epu32(a, b), _mm256_max_epu32(c, d)));
    const uint64_t w = bm[wi], w1m = _blsr_u64(w), w2 = _blsr_u64(w1m);
    const uint32_t* q = xb + wi * 64;
    const uint32_t v0 = q[_tzcnt_u64(w) & 63], v1 = q[_tzcnt_u64(w1m) & 63];
    store_u32le(out + 4 * j, v0);
    selmax = std::max(selmax, (v0 & 0x7FFFFFFFu) & (w ? 0xFFFFFFFFu : 0u));
    j += w != 0;
    store_u32le(out + 4 * j, v1);
    selmax = std::max(selmax, (v1 & 0x7FFFFFFFu) & (w1m ? 0xFFFFFFFFu : 0u));
    j += w1m != 0;
    for (uint64_t rr = w2; __builtin_expect(rr != 0, 0); rr &= rr - 1) {
      const uint32_t v = q[_tzcnt_u64(rr)];
      store_u32le(out + 4 * j++, v);
      selmax = std::max(selmax, v & 0x7FFFFFFFu);
    }
  }
#undef GZ_RK_A
  alignas(32) uint32_t l[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(l), vmax);
  for (int q = 0; q < 8; ++q) st.amax = std::max(st.amax, l[q]);
  st.wi = wi;
  st.j = j;
  st.selmax = selmax;
}

// The rest (all of it without AVX2), in order.
void enc_words_scalar(const float* x, uint64_t n, const uint64_t* bm, uint64_t w1, uint8_t* out, EncState& st) {
  const uint32_t* xb = reinterpret_cast<const uint32_t*>(x);
  uint32_t amax = st.amax, selmax = st.selmax;
  uint64_t j = st.j;
  for (uint64_t wi = st.wi; wi < w1; ++wi) {
    const uint64_t lo = wi * 64, hi = std::min(n, lo + 64);
    amax = std::max(amax, amax_scalar(x, lo, hi));
    for (uint64_t w = bm[wi]; w; w &= w - 1) {
      const uint32_t v = xb[lo + uint64_t(ctz64(w))];
      store_u32le(out + 4 * j++, v);
      selmax = std::max(selmax, v & 0x7FFFFFFFu);
    }
  }
  st.wi = w1;
  st.j = j;
  st.amax = amax;
  st.selmax = selmax;
}

__attribute__((target("popcnt"))) uint64_t popcount_words_hw(const uint64_t* bm, uint64_t lo, uint64_t hi) {
  uint64_t c = 0;
  for (uint64_t i = lo; i < hi; ++i) c += uint64_t(__builtin_popcountll(bm[i]));
  return c;
}
uint64_t popcount_words(const uint64_t* bm, uint64_t lo, uint64_t hi) {
  if (has_avx2()) return popcount_words_hw(bm, lo, hi);  // (every AVX2 CPU has popcnt)
  uint64_t c = 0;
  for (uint64_t i = lo; i < hi; ++i) c += uint64_t(__builtin_popcountll(bm[i]));
  return c;
}

// The errors of the original in-order checks (first the non-finite input, then the first selected value whose
// scaled estimate overflows).
[[noreturn]] void enc_fail(uint32_t amax) {
  if (amax >= 0x7F800000u) throw Error(ErrCode::NONFINITE, "input contains NaN or Inf");
  throw Error(ErrCode::NONFINITE, "randomk: a selected value times n/k overflows float32");
}

}  // namespace

void randomk_indices(uint64_t seed, uint64_t n, uint64_t k, uint64_t* idx) {
  indices<uint64_t>(seed, n, k, idx, 1, has_avx2());
}

uint64_t randomk_payload_bytes(const Params& p, uint64_t n) { return 4 * resolve_k(p, n); }

uint64_t randomk_encode(EncodeArgs& a) {
  const uint64_t n = a.n, k = a.p->k;
  if (k > n || (n && !k)) throw Error(ErrCode::INTERNAL, "randomk_encode: k not resolved");
  const bool avx2 = !a.scalar && has_avx2();
  if (!k) return 0;  // n == 0
  const float scale = float(double(n) / double(k));
  const uint64_t words = (n + 63) / 64;
  if (dense(n, k) || n <= (uint64_t(1) << 28)) {
    // one pass over x: the non-finite check and the values at the set bits
    std::unique_ptr<uint64_t[]> bm(new uint64_t[size_t(words)]);
    floyd_bitmap(a.seed, n, k, bm.get(), a.threads, avx2);
    const uint64_t T = (a.threads > 1 && n >= (uint64_t(1) << 18)) ? uint64_t(a.threads) : 1;
    std::vector<EncState> parts(T);
    std::vector<uint64_t> wb(T + 1), jb(T + 1);
    for (uint64_t t = 0; t <= T; ++t) wb[t] = words * t / T;
    par_for(int(T), T, [&](uint64_t t) {
      const uint64_t j = t ? popcount_words(bm.get(), 0, wb[t]) : 0;
      const uint64_t jend = t + 1 == T ? k : j + popcount_words(bm.get(), wb[t], wb[t + 1]);
      EncState st{wb[t], j, 0, 0};
      if (avx2) enc_words_avx2(a.x, n, bm.get(), wb[t + 1], jend, a.payload, st);
      enc_words_scalar(a.x, n, bm.get(), wb[t + 1], a.payload, st);
      parts[t] = st;
    });
    uint32_t amax = 0, selmax = 0;
    for (const EncState& p : parts) {
      amax = std::max(amax, p.amax);
      selmax = std::max(selmax, p.selmax);
    }
    if (amax >= 0x7F800000u || !std::isfinite(ref::u2f(selmax) * scale)) enc_fail(amax);
    return 4 * k;
  }
  // sparse and huge: the non-finite check, then the sorted index list and a gather
  const uint32_t amax = avx2 ? amax_avx2(a.x, 0, n) : amax_scalar(a.x, 0, n);
  if (amax >= 0x7F800000u) enc_fail(amax);
  std::vector<uint64_t> idx((size_t)(k));
  indices<uint64_t>(a.seed, n, k, idx.data(), a.threads, avx2);
  uint32_t selmax = 0;
  for (uint64_t j = 0; j < k; ++j) {
    const uint32_t v = ref::f2u(a.x[idx[j]]);
    store_u32le(a.payload + 4 * j, v);
    selmax = std::max(selmax, v & 0x7FFFFFFFu);
  }
  if (!std::isfinite(ref::u2f(selmax) * scale)) enc_fail(amax);
  return 4 * k;
}

namespace {

// ---------------------------------------------------------------- decoder

template <class I>
void store_values(const DecodeArgs& a, uint64_t n, uint64_t k, const I* ix, const uint8_t* vals, float scale) {
  float* out = a.out;
  if (a.add) {
    const float alpha = a.alpha;
    const uint64_t T = (a.threads > 1 && k >= 65536) ? uint64_t(a.threads) : 1;
    par_for(int(T), T, [&](uint64_t t) {
      const uint64_t lo = k * t / T, hi = k * (t + 1) / T;
      constexpr uint64_t D = 24;
      for (uint64_t j = lo; j < hi; ++j) {
        if (j + D < hi) __builtin_prefetch(out + uint64_t(ix[j + D]), 1, 3);
        const float v = load_f32le(vals + 4 * j) * scale;
        float& o = out[uint64_t(ix[j])];
        o = o + alpha * v;
      }
    });
    return;
  }
  const uintptr_t addr = reinterpret_cast<uintptr_t>(out);
  if (a.scalar || !has_avx2() || (addr & 3) || n < 64) {
    std::memset(out, 0, size_t(n) * 4);
    for (uint64_t j = 0; j < k; ++j) out[uint64_t(ix[j])] = load_f32le(vals + 4 * j) * scale;
    return;
  }
  fill_dense(out, n, ix, k, a.threads, [vals, scale](uint64_t q) { return load_f32le(vals + 4 * q) * scale; });
}

template <class I>
void decode_idx(const DecodeArgs& a, uint64_t n, uint64_t k, float scale) {
  const bool avx2 = !a.scalar && has_avx2();
  std::unique_ptr<I[]> idx(new I[size_t(k)]);
  indices<I>(a.h->seed, n, k, idx.get(), a.threads, avx2);
  store_values<I>(a, n, k, idx.get(), a.h->payload, scale);
}

}  // namespace

void randomk_decode(const DecodeArgs& a) {
  const Header& h = *a.h;
  const uint64_t n = h.n, k = h.p.k;
  if (k > n || (n && !k)) corrupt("randomk: bad k");
  if (h.payload_bytes != 4 * k) corrupt("randomk: payload size does not match k");
  const float scale = k ? float(double(n) / double(k)) : 0.f;
  // check before any store (decompressAdd leaves acc untouched when corrupt): the largest magnitude decides
  uint32_t vmax = 0;
  for (uint64_t j = 0; j < k; ++j) vmax = std::max(vmax, load_u32le(h.payload + 4 * j) & 0x7FFFFFFFu);
  if (vmax >= 0x7F800000u || !std::isfinite(ref::u2f(vmax) * scale)) {
    for (uint64_t j = 0; j < k; ++j) {  // the first offending value, in order
      const float v = ref::u2f(load_u32le(h.payload + 4 * j));
      if (!std::isfinite(v)) corrupt("randomk: non-finite value");
      if (!std::isfinite(v * scale)) corrupt("randomk: value times n/k overflows float32");
    }
  }
  if (!k) {
    if (!a.add) std::memset(a.out, 0, size_t(n) * 4);
    return;
  }
  if (n <= (uint64_t(1) << 32)) decode_idx<uint32_t>(a, n, k, scale);
  else decode_idx<uint64_t>(a, n, k, scale);
}

}  // namespace gz
