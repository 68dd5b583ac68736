// topk (docs/FORMAT.md sections 3.4, 4.3, 5): exact top-k by magnitude, ties to the lower index.
//
// Selection: order key = (31-bit magnitude bits, then lower index first), packed in one integer
// key = mag << IB | (2^(IB-1) - 1 - i) << 1 | sign, so a larger key is a better element and all keys are distinct.
//  1. threshold t from a strided sample (runs of 16 elements, no random reads): a histogram of the sample
//     magnitudes finds the sample of rank k/n * S + 4 sigma (+2) from the top, so that about 1.16 k elements are
//     expected at or above it (at 1%); t never exceeds the magnitude of +Inf, so every non-finite element is a
//     candidate and the non-finite check runs on the candidates only;
//  2. one collect pass (AVX2 compare/movemask, 64 elements per step, the first two candidates of a step written
//     without branches) appending the keys with mag >= t, in index order; with several threads each takes a
//     contiguous range (its own key list); a retry with t = 0 when fewer than k candidates were collected;
//  3. the k-th largest key K*: a 4096-bin histogram of the candidate magnitudes (relative to t) finds the bin
//     holding rank k, and nth_element runs on that bin's keys only;
//  4. one pass over the candidates (in index order) keeps the keys >= K* (exactly k) and writes, without
//     branches, the value (f32 straight into the payload) and the Elias-gamma index code into one running bit
//     stream: chunks follow one another in the payload, so chunk c starts where chunk c-1 ended and no length pass
//     is needed.
// Values are written as f32, f16 or bf16 (round to nearest even, saturating), then the indices as
// Elias-gamma coded deltas in chunks of 4096.
//
// Decoding: topk_validate decodes every index chunk (bounds-checked; a branchless-refill bit buffer while 8 bytes
// remain) and checks the values, before anything is stored; the decoded indices are kept (per thread) for the
// topk_decode call that packet.cc makes right after it on the same header, which then only stores: out = zeros
// except the k values, written block by block from an L1 buffer with 256-bit non-temporal stores (large n), or
// acc[i] += alpha * v with the rows prefetched ahead.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "core/bitio.h"
#include "core/codec.h"
#include "core/threadpool.h"
#include "codecs/fill_blocks.h"
#include "core/quant_ref.h"
#include "core/simd_philox.h"  // GZ_AVX2

#define GZ_TK_AVX2 __attribute__((target("avx2,bmi,bmi2,fma,f16c")))
#define GZ_TK_INLINE __attribute__((always_inline)) inline


namespace gz {
namespace {

constexpr uint64_t kTopkE = 4096;

bool has_avx2() { return cpu_info().avx2 && cpu_info().bmi2; }
bool has_f16c() { return cpu_info().avx2 && cpu_info().f16c; }

uint32_t value_bytes(uint8_t vt) { return vt == VT_F32 ? 4u : 2u; }

// ---------------------------------------------------------------- value conversion (RNE, saturating)

inline uint16_t f32_to_f16(float f) {
  const uint32_t u = ref::f2u(f);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
  if (a >= 0x477FE000u) return uint16_t(sign | 0x7BFFu);  // >= 65504 (largest finite half): saturate
  if (a < 0x38800000u) {                                    // below 2^-14: half subnormal or zero
    if (a <= 0x33000000u) return uint16_t(sign);            // <= 2^-25: rounds to 0 (2^-25 ties to even 0)
    const int e = int(a >> 23);                             // 102..112
    const uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
    const int sh = 126 - e;                                 // value * 2^24 = mant >> sh
    uint32_t r = mant >> sh;
    const uint32_t rem = mant & ((1u << sh) - 1), half = 1u << (sh - 1);
    r += (rem > half || (rem == half && (r & 1))) ? 1u : 0u;
    return uint16_t(sign | r);
  }
  uint32_t r = a - 0x38000000u;                            // rebias 127 -> 15
  r = (r + 0xFFFu + ((r >> 13) & 1u)) >> 13;
  return uint16_t(sign | r);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0) {
    const float v = float(m) * 5.9604644775390625e-08f;  // m * 2^-24, exact
    return sign ? -v : v;
  }
  return ref::u2f(sign | ((e + 112u) << 23) | (m << 13));  // e < 31 (finite only; checked by the caller)
}

inline uint16_t f32_to_bf16(float f) {
  const uint32_t u = ref::f2u(f);
  const uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  if ((r & 0x7F80u) == 0x7F80u) return uint16_t((u >> 16 & 0x8000u) | 0x7F7Fu);  // rounded to inf: saturate
  return uint16_t(r);
}

__attribute__((target("avx2,f16c"))) void f32_to_f16_f16c(const float* x, uint64_t m, uint8_t* out) {
  const __m256 lim = _mm256_set1_ps(65504.f);
  const __m256 sgn = _mm256_set1_ps(-0.f);
  uint64_t i = 0;
  for (; i + 8 <= m; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    const __m256 s = _mm256_and_ps(v, sgn);
    v = _mm256_or_ps(_mm256_min_ps(_mm256_andnot_ps(sgn, v), lim), s);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < m; ++i) {
    const uint16_t h = f32_to_f16(x[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

// ---------------------------------------------------------------- selection

// Keys: mag << IB | (2^(IB-1) - 1 - i) << 1 | sign. IB = 33 covers n <= 2^32 in 64 bits; larger n uses 128-bit
// keys. The sign bit never decides between two elements (their index bits differ first); it lets the values be
// rebuilt from the keys (no second random read of x).
template <class K>
struct KeyOps;
template <>
struct KeyOps<uint64_t> {
  static constexpr int IB = 33;
  static constexpr uint64_t IMASK = 0xFFFFFFFFull;
  // (bits << 33 drops the sign bit; bits >> 31 is the sign)
  static uint64_t make(uint32_t bits, uint64_t i) {
    return (uint64_t(bits) << 33) | ((IMASK - i) << 1) | uint64_t(bits >> 31);
  }
  static uint64_t index(uint64_t k) { return IMASK - ((k >> 1) & IMASK); }
  static uint32_t value_bits(uint64_t k) { return uint32_t(k >> 33) | (uint32_t(k) << 31); }
  static uint32_t mag(uint64_t k) { return uint32_t(k >> 33); }
  static uint64_t of_mag(uint32_t m) { return uint64_t(m) << 33; }  // the smallest key of magnitude m
};
template <>
struct KeyOps<unsigned __int128> {
  using K = unsigned __int128;
  static constexpr int IB = 64;
  static constexpr K IMASK = (K(1) << 63) - 1;
  static K make(uint32_t bits, uint64_t i) { return (K(bits & 0x7FFFFFFFu) << 64) | ((IMASK - K(i)) << 1) | K(bits >> 31); }
  static uint64_t index(K k) { return uint64_t(IMASK - ((k >> 1) & IMASK)); }
  static uint32_t value_bits(K k) { return uint32_t(k >> 64) | (uint32_t(k & 1) << 31); }
  static uint32_t mag(K k) { return uint32_t(k >> 64); }
  static K of_mag(uint32_t m) { return K(m) << 64; }
};

// Growable array of trivially copyable T without value-initialisation.
template <class T>
struct Buf {
  std::unique_ptr<T[]> d;
  uint64_t n = 0, cap = 0;
  void reserve(uint64_t c) {
    if (c <= cap) return;
    std::unique_ptr<T[]> e(new T[size_t(c)]);
    if (n) std::memcpy(static_cast<void*>(e.get()), d.get(), size_t(n) * sizeof(T));
    d.swap(e);
    cap = c;
  }
  void push_back(T v) {
    if (n == cap) reserve(cap * 2 + 64);
    d[n++] = v;
  }
  T* data() { return d.get(); }
  const T* data() const { return d.get(); }
  uint64_t size() const { return n; }
  const T* begin() const { return d.get(); }
  const T* end() const { return d.get() + n; }
};

// Appends the keys of x[lo, hi) with mag >= t (in index order) to out, from position out.size().
template <class K>
void collect_scalar(const float* x, uint64_t lo, uint64_t hi, uint32_t t, Buf<K>& out) {
  const uint32_t* u = reinterpret_cast<const uint32_t*>(x);
  for (uint64_t i = lo; i < hi; ++i) {
    uint32_t b;
    std::memcpy(&b, u + i, 4);
    if ((b & 0x7FFFFFFFu) >= t) out.push_back(KeyOps<K>::make(b, i));
  }
}

// AVX2: 64 elements per step; t >= 1.
template <class K>
GZ_TK_AVX2 void collect_avx2(const float* x, uint64_t lo, uint64_t hi, uint32_t t, Buf<K>& out) {
  const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i tm1 = _mm256_set1_epi32(int32_t(t - 1));  // mag > t-1 (signed compare, mags < 2^31)
  uint64_t cnt = out.n;
  out.reserve(cnt + 4096);
  K* o = out.data();
  uint64_t cap = out.cap;
  const uint32_t* xb = reinterpret_cast<const uint32_t*>(x);
  uint64_t i = lo;
  for (; i + 64 <= hi; i += 64) {
    if (__builtin_expect(cnt + 64 > cap, 0)) {
      out.n = cnt;
      out.reserve(cap * 2 + 64);
      o = out.data();
      cap = out.cap;
    }
    const float* p = x + i;
    // 4 KiB ahead, every line (measured here: the collect pass 8.4 -> 5.7 ms at 64 MiB, near the read bandwidth)
    _mm_prefetch(reinterpret_cast<const char*>(p + 1024), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + 1040), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + 1056), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + 1072), _MM_HINT_T0);
#define GZ_TK_M(q)                                                                                             \
  uint64_t(uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(                               \
      _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 8 * (q))), absm), tm1)))))
    const uint64_t ma = GZ_TK_M(0) | (GZ_TK_M(1) << 8) | (GZ_TK_M(2) << 16) | (GZ_TK_M(3) << 24);
    const uint64_t mb = GZ_TK_M(4) | (GZ_TK_M(5) << 8) | (GZ_TK_M(6) << 16) | (GZ_TK_M(7) << 24);
#undef GZ_TK_M
    const uint64_t m = ma | (mb << 32);
    // the first two candidates without branches (a zero mask gives index 64 & 63 = 0: written, not counted)
    const uint64_t m1 = _blsr_u64(m), m2 = _blsr_u64(m1);
    const uint64_t j0 = _tzcnt_u64(m) & 63, j1 = _tzcnt_u64(m1) & 63;
    o[cnt] = KeyOps<K>::make(xb[i + j0], i + j0);
    cnt += m != 0;
    o[cnt] = KeyOps<K>::make(xb[i + j1], i + j1);
    cnt += m1 != 0;
    if (__builtin_expect(m2 != 0, 0)) {
      uint64_t r = m2;
      do {
        const uint64_t j = _tzcnt_u64(r);
        r = _blsr_u64(r);
        o[cnt++] = KeyOps<K>::make(xb[i + j], i + j);
      } while (r);
    }
  }
  out.n = cnt;
  collect_scalar<K>(x, i, hi, t, out);
}

// Threshold on the magnitude bits (0: collect everything). At most 0x7F800000 (every non-finite element is
// collected). The r-th largest of S sampled magnitudes, r = S*k/n + 4 sqrt(S*k/n) + 2: about k*(1 + 4/sqrt(mu))
// elements are expected at or above it.
uint32_t sample_threshold(const float* x, uint64_t n, uint64_t k) {
  if (n < 16384 || k >= n) return 0;
  // runs of 16 consecutive elements (one cache line when aligned), evenly spread; 1/64 of n, 1024 .. 65536 samples
  const uint64_t R = 16, runs = std::max<uint64_t>(64, std::min<uint64_t>(4096, n / 1024)), S = runs * R;
  const uint64_t stride = n / runs;
  const double q = double(k) / double(n), mu = q * double(S);
  const uint64_t r = uint64_t(std::ceil(mu + 4.0 * std::sqrt(mu) + 2.0));  // rank (1-based) of the threshold sample
  if (r >= S) return 0;
  std::unique_ptr<uint32_t[]> smp(new uint32_t[S]);
  const int sh = S >= 16384 ? 19 : 21;  // 4096 or 1024 bins of the magnitude bits
  uint32_t hist[4096];
  std::memset(hist, 0, sizeof(uint32_t) << (31 - sh));
  // the loads first (independent cache misses), the histogram after: increments of one bin form a chain, which
  // would otherwise serialize the misses
  for (uint64_t j = 0; j < runs; ++j) {
    const uint32_t* u = reinterpret_cast<const uint32_t*>(x + j * stride);
    if (j + 8 < runs) __builtin_prefetch(x + (j + 8) * stride);
    for (uint64_t e = 0; e < R; ++e) {
      uint32_t m;
      std::memcpy(&m, u + e, 4);
      smp[j * R + e] = m & 0x7FFFFFFFu;
    }
  }
  for (uint64_t i = 0; i < S; ++i) hist[smp[i] >> sh]++;
  uint64_t cum = 0;
  uint32_t b = (uint32_t(1) << (31 - sh)) - 1;
  while (cum + hist[b] < r) cum += hist[b--];
  // the (r - cum)-th largest of the samples in bin b
  std::unique_ptr<uint32_t[]> in(new uint32_t[hist[b] + 1]);
  uint64_t c = 0;
  for (uint64_t i = 0; i < S; ++i) {
    in[c] = smp[i];
    c += (smp[i] >> sh) == b ? 1 : 0;
  }
  const uint64_t need = r - cum;
  std::nth_element(in.get(), in.get() + (need - 1), in.get() + c, std::greater<uint32_t>());
  return std::min<uint32_t>(in[need - 1], 0x7F800000u);
}

// The k-th largest key among the candidates (cnt > k >= 1). mags are in [t, maxmag].
template <class K>
K kth_key(const std::vector<Buf<K>>& segs, uint64_t k, uint32_t t, uint32_t maxmag) {
  // 2^L bins (256 .. 4096, about 4 candidates per bin)
  uint64_t total = 0;
  for (const auto& s : segs) total += s.size();
  const int L = std::max(8, std::min(12, floor_log2_u64(total / 4 + 1)));
  const uint32_t range = maxmag - t;
  const int sh = range < (uint32_t(1) << L) ? 0 : floor_log2_u64(range) + 1 - L;
  std::vector<uint32_t> hist(size_t(1) << L, 0);
  for (const auto& s : segs)
    for (const K key : s) hist[(KeyOps<K>::mag(key) - t) >> sh]++;
  uint64_t cum = 0;
  uint32_t b = range >> sh;
  while (cum + hist[b] < k) cum += hist[b--];
  const uint64_t need = k - cum;
  const K lo = KeyOps<K>::of_mag(t + (b << sh));
  const K span = KeyOps<K>::of_mag(uint32_t(1) << sh);  // keys of bin b: [lo, lo + span)
  std::vector<K> in(hist[b] + 1);
  uint64_t c = 0;
  for (const auto& s : segs)
    for (const K key : s) {  // branchless append
      in[c] = key;
      c += (key - lo) < span ? 1 : 0;
    }
  in.resize(c);
  std::nth_element(in.begin(), in.begin() + (need - 1), in.end(), std::greater<K>());
  return in[need - 1];
}

// Bit writer state of write_selected: `acc` holds nb < 8 pending bits, stored (8 bytes at p) on every put.
struct PutState {
  uint8_t* p;
  uint64_t acc;
  unsigned nb;
};
[[gnu::noinline]] void put_tail(uint8_t* p, uint8_t* end, uint64_t acc) {
  if (p < end) std::memcpy(p, &acc, size_t(end - p));
}
GZ_TK_INLINE void put_bits(PutState& w, uint8_t* end, uint64_t code, unsigned len) {
  w.acc |= code << w.nb;
  w.nb += len;
  if (__builtin_expect(w.p + 8 <= end, 1)) store_u64le(w.p, w.acc);
  else put_tail(w.p, end, w.acc);
  w.p += w.nb >> 3;
  w.acc >>= w.nb & 56;  // nb <= 62
  w.nb &= 7;
}

// Writes the k selected keys (in index order): values to vout (u32 bits at 4j) and the index codes as one bit
// stream from bits_at, chunk after chunk, each padded to a byte (chunk lengths to lens). Returns the end of the
// stream. LONG: gamma codes over 55 bits are possible (n > 2^28).
template <class K, bool LONG>
GZ_TK_INLINE uint8_t* write_selected_body(const K* sel, uint64_t k, uint8_t* vout, uint8_t* bits_at, uint8_t* end,
                                          uint32_t* lens) {
  PutState w{bits_at, 0, 0};
  for (uint64_t c = 0, lo = 0; lo < k; ++c, lo += kTopkE) {
    const uint64_t hi = std::min(k, lo + kTopkE);
    uint8_t* const cstart = w.p;
    uint64_t prev = ~uint64_t(0);  // the first code is idx + 1
    for (uint64_t j = lo; j < hi; ++j) {
      const K key = sel[j];
      const uint64_t ix = KeyOps<K>::index(key);
      store_u32le(vout + 4 * j, KeyOps<K>::value_bits(key));
      const uint64_t d = ix - prev;
      prev = ix;
      const int N = floor_log2_u64(d);
      if (LONG && __builtin_expect(N > 27, 0)) {
        put_bits(w, end, uint64_t(1) << N, unsigned(N + 1));
        put_bits(w, end, d & ((uint64_t(1) << N) - 1), unsigned(N));
      } else {
        put_bits(w, end, gamma_code(d, N), unsigned(2 * N + 1));
      }
    }
    w.p += w.nb ? 1 : 0;  // pad to a byte (the padding bits are already stored as zeros)
    w.acc = 0;
    w.nb = 0;
    lens[c] = uint32_t(std::min<uint64_t>(uint64_t(w.p - cstart), 0xFFFFFFFFull));
  }
  return w.p;
}
template <class K, bool LONG>
GZ_TK_AVX2 uint8_t* write_selected_avx2(const K* sel, uint64_t k, uint8_t* vout, uint8_t* bits_at, uint8_t* end,
                                        uint32_t* lens) {
  return write_selected_body<K, LONG>(sel, k, vout, bits_at, end, lens);
}
template <class K, bool LONG>
uint8_t* write_selected_plain(const K* sel, uint64_t k, uint8_t* vout, uint8_t* bits_at, uint8_t* end,
                              uint32_t* lens) {
  return write_selected_body<K, LONG>(sel, k, vout, bits_at, end, lens);
}

template <class K>
uint8_t* write_selected(bool avx2, bool lng, const K* sel, uint64_t k, uint8_t* vout, uint8_t* bits_at, uint8_t* end,
                        uint32_t* lens) {
  if (avx2) return lng ? write_selected_avx2<K, true>(sel, k, vout, bits_at, end, lens)
                       : write_selected_avx2<K, false>(sel, k, vout, bits_at, end, lens);
  return lng ? write_selected_plain<K, true>(sel, k, vout, bits_at, end, lens)
             : write_selected_plain<K, false>(sel, k, vout, bits_at, end, lens);
}

template <class K>
uint64_t encode_k(EncodeArgs& a) {
  const float* x = a.x;
  const uint64_t n = a.n, k = a.p->k;
  const bool avx2 = !a.scalar && has_avx2();
  uint32_t t = sample_threshold(x, n, k);
  std::vector<Buf<K>> segs;
  uint64_t total = 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    // ranges of whole 64-element steps; more than one only for large n
    const uint64_t T = (t > 0 && a.threads > 1 && n >= (uint64_t(1) << 18)) ? uint64_t(a.threads) : 1;
    segs.clear();
    segs.resize(size_t(T));
    const uint64_t per = ((n / T) + 63) & ~uint64_t(63);
    par_for(int(T), T, [&](uint64_t s) {
      const uint64_t lo = std::min(n, s * per), hi = s + 1 == T ? n : std::min(n, lo + per);
      Buf<K>& v = segs[s];
      if (t == 0) {
        v.reserve(hi - lo);
        v.n = hi - lo;
        const uint32_t* u = reinterpret_cast<const uint32_t*>(x);
        K* o = v.data();
        for (uint64_t i = lo; i < hi; ++i) o[i - lo] = KeyOps<K>::make(u[i], i);
        return;
      }
      const uint64_t expect = uint64_t(double(hi - lo) * (double(k) / double(n)) * 1.25) + 1024;
      v.reserve(std::min<uint64_t>(hi - lo, expect));
      if (avx2) collect_avx2<K>(x, lo, hi, t, v);
      else collect_scalar<K>(x, lo, hi, t, v);
    });
    total = 0;
    for (const auto& s : segs) total += s.size();
    if (total >= k || t == 0) break;
    // too few candidates: take everything (the non-finite check below still sees all of them)
    uint32_t mx = 0;
    for (const auto& s : segs)
      for (const K key : s) mx = std::max(mx, KeyOps<K>::mag(key));
    if (mx >= 0x7F800000u) throw Error(ErrCode::NONFINITE, "input contains NaN or Inf");
    t = 0;
  }
  uint32_t maxmag = 0;
  for (const auto& s : segs)
    for (const K key : s) maxmag = std::max(maxmag, KeyOps<K>::mag(key));
  if (maxmag >= 0x7F800000u) throw Error(ErrCode::NONFINITE, "input contains NaN or Inf");
  const K kth = total == k ? K(0) : kth_key<K>(segs, k, t, maxmag);

  const uint32_t vb = value_bytes(a.p->vt);
  const uint64_t C = (k + kTopkE - 1) / kTopkE;
  std::vector<float> xv;  // f16 / bf16: the selected f32 values first
  if (a.p->vt != VT_F32) xv.resize(size_t(k));
  uint8_t* vout = a.p->vt == VT_F32 ? a.payload : reinterpret_cast<uint8_t*>(xv.data());
  uint8_t* const end = a.payload + a.cap;
  uint8_t* bits_at = a.payload + k * vb;
  // the selected keys, in index order (branchless compaction; exactly k pass)
  const K* sel;
  Buf<K> kept;
  if (total == k && segs.size() == 1) {
    sel = segs[0].data();
  } else {
    kept.reserve(k + 1);
    K* kp = kept.data();
    uint64_t j = 0;
    for (const auto& s : segs)
      for (const K key : s) {
        kp[std::min(j, k)] = key;
        j += key >= kth ? 1 : 0;
      }
    if (j != k) throw Error(ErrCode::INTERNAL, "topk selection count mismatch");
    sel = kept.data();
  }
  const bool lng = n > (uint64_t(1) << 28);
  uint8_t* e;
  if (a.threads > 1 && C >= 8) {
    // two halves at a chunk boundary: the second one into a scratch buffer, moved behind the first one after
    const uint64_t cm = C / 2, jm = cm * kTopkE;
    const uint64_t tb = (k - jm) * uint64_t(2 * floor_log2_u64(n) + 1) / 8 + 8 * (C - cm) + 16;
    std::unique_ptr<uint8_t[]> tmp(new uint8_t[size_t(tb)]);
    uint8_t* e0 = nullptr;
    uint8_t* e1 = nullptr;
    par_for(2, 2, [&](uint64_t h) {
      if (h == 0) e0 = write_selected<K>(avx2, lng, sel, jm, vout, bits_at, end, a.chunk_lens);
      else e1 = write_selected<K>(avx2, lng, sel + jm, k - jm, vout + 4 * jm, tmp.get(), tmp.get() + tb, a.chunk_lens + cm);
    });
    const uint64_t len1 = uint64_t(e1 - tmp.get());
    if (e1 > tmp.get() + tb || e0 > end || len1 > uint64_t(end - e0))
      throw Error(ErrCode::INTERNAL, "topk_encode: payload bound exceeded");
    std::memcpy(e0, tmp.get(), size_t(len1));
    e = e0 + len1;
  } else {
    e = write_selected<K>(avx2, lng, sel, k, vout, bits_at, end, a.chunk_lens);
  }
  if (e > end) throw Error(ErrCode::INTERNAL, "topk_encode: payload bound exceeded");
  for (uint64_t c = 0; c < C; ++c)
    if (a.chunk_lens[c] == 0xFFFFFFFFu) throw Error(ErrCode::INTERNAL, "topk chunk too long");
  if (a.p->vt != VT_F32) {
    const float* xf = xv.data();
    uint8_t* vals = a.payload;
    const uint64_t VB = 1 << 14;
    par_for(a.threads, (k + VB - 1) / VB, [&](uint64_t blk) {
      const uint64_t lo = blk * VB, hi = std::min(k, lo + VB);
      if (a.p->vt == VT_BF16) {
        for (uint64_t j = lo; j < hi; ++j) {
          const uint16_t h = f32_to_bf16(xf[j]);
          std::memcpy(vals + 2 * j, &h, 2);
        }
      } else if (!a.scalar && has_f16c()) {
        f32_to_f16_f16c(xf + lo, hi - lo, vals + 2 * lo);
      } else {
        for (uint64_t j = lo; j < hi; ++j) {
          const uint16_t h = f32_to_f16(xf[j]);
          std::memcpy(vals + 2 * j, &h, 2);
        }
      }
    });
  }
  return uint64_t(e - a.payload);
}

// Bound (bits) of all index streams together, padding excluded. C first codes: Elias-gamma(idx+1) with
// idx+1 <= n: <= 2*floor(log2 n)+1 bits each. The other D = k - C codes are deltas d >= 1 whose sum is < n (the
// index ranges of the chunks are disjoint and increasing): sum(2*floor(log2 d)+1) <= D + 2*sum(log2 d), and by
// concavity sum(log2 d) <= D*log2(n/D), which increases with D up to D = n/e and is at most n/(e*ln 2) overall.
uint64_t index_bits_bound(uint64_t n, uint64_t k, uint64_t C) {
  if (!k) return 0;
  uint64_t bits = C * uint64_t(2 * floor_log2_u64(n) + 1);
  const uint64_t D = k - C;
  if (D) {
    const double nd = double(n), Dd = double(D);
    const double h = Dd <= nd / M_E ? Dd * std::log2(nd / Dd) : nd / (M_E * M_LN2);
    bits += D + 2 * uint64_t(std::ceil(h * (1.0 + 1e-9))) + 64;  // + margin for the double rounding
  }
  return bits;
}

}  // namespace

uint64_t topk_max_payload(const Params& p, uint64_t n) {
  const uint64_t k = resolve_k(p, n);
  const uint64_t C = (k + kTopkE - 1) / kTopkE;
  // each chunk is its bits rounded up to a byte: at most 7 more bits per chunk
  return k * value_bytes(p.vt) + (index_bits_bound(n, k, C) + 7 * C + 7) / 8;
}

uint64_t topk_encode(EncodeArgs& a) {
  const uint64_t n = a.n, k = a.p->k;
  if (k > n || (n && !k)) throw Error(ErrCode::INTERNAL, "topk_encode: k not resolved");
  if (!n) return 0;
  if (n <= (uint64_t(1) << 32)) return encode_k<uint64_t>(a);
  return encode_k<unsigned __int128>(a);
}

namespace {

struct TopkView {
  uint64_t n, k, C;
  uint8_t vt;
  const uint8_t* vals;
  std::vector<uint64_t> off;  // C + 1 offsets into payload
};

TopkView topk_view(const Header& h) {
  TopkView v;
  v.n = h.n;
  v.k = h.p.k;
  v.vt = uint8_t(h.p.vt);
  if (v.k > v.n || (v.n && !v.k)) corrupt("topk: bad k");
  if (v.vt > VT_BF16) corrupt("topk: bad value type");
  v.C = (v.k + kTopkE - 1) / kTopkE;
  if (h.chunk_count != v.C || (v.C && h.chunk_elems != kTopkE)) corrupt("topk: chunk layout does not match k");
  const uint64_t vbytes = v.k * value_bytes(v.vt);
  if (h.payload_bytes < vbytes) corrupt("topk: payload shorter than its values");
  v.vals = h.payload;
  v.off.resize(size_t(v.C) + 1);
  v.off[0] = vbytes;
  for (uint64_t c = 0; c < v.C; ++c) v.off[c + 1] = v.off[c] + load_u32le(h.chunk_table + 4 * c);
  if (v.off[v.C] != h.payload_bytes) corrupt("topk: chunk lengths do not match the payload size");
  return v;
}

// Values [lo, hi): CORRUPT when one is not finite.
void check_values(const TopkView& v, uint64_t lo, uint64_t hi) {
  uint32_t bad = 0;
  if (v.vt == VT_F32) {
    for (uint64_t j = lo; j < hi; ++j) bad |= uint32_t((load_u32le(v.vals + 4 * j) & 0x7F800000u) == 0x7F800000u);
  } else {
    const uint16_t e = v.vt == VT_BF16 ? 0x7F80u : 0x7C00u;
    for (uint64_t j = lo; j < hi; ++j) {
      uint16_t h;
      std::memcpy(&h, v.vals + 2 * j, 2);
      bad |= uint32_t((h & e) == e);
    }
  }
  if (bad) corrupt("topk: non-finite value");
}

template <int VT>
inline float value_at(const uint8_t* vals, uint64_t j) {
  if (VT == VT_F32) return load_f32le(vals + 4 * j);
  uint16_t h;
  std::memcpy(&h, vals + 2 * j, 2);
  if (VT == VT_BF16) return ref::u2f(uint32_t(h) << 16);
  return f16_to_f32(h);
}

// Decodes index chunk [lo, lo + cnt) of the k indices into ix[0, cnt); first / last index of the chunk.
// Fast part: a bit buffer refilled without branches (8-byte loads) while 8 bytes of the chunk remain; the codes
// near the end go through the bounds-checked BitReader.
template <class I>
GZ_TK_INLINE void decode_chunk_body(const uint8_t* s, uint64_t nbytes, uint64_t cnt, uint64_t n, I* ix,
                                    uint64_t* first, uint64_t* last) {
  const int maxN = floor_log2_u64(n);
  const int lim = maxN < 27 ? maxN : 27;
  uint64_t buf = 0, bytepos = 0, cur = ~uint64_t(0), j = 0;
  unsigned nbits = 0;
  // the fast loop may stop early; its last load ends at byte stop + 7 <= nbytes - 1
  const uint64_t stop = nbytes >= 8 ? nbytes - 8 : 0;
  if (nbytes >= 8) {
    while (j < cnt && bytepos <= stop) {
      buf |= load_u64le(s + bytepos) << nbits;
      bytepos += (63 - nbits) >> 3;
      nbits |= 56;
      const int N = int(__builtin_ctzll(buf | (uint64_t(1) << 63)));
      if (__builtin_expect(N > lim, 0)) break;  // long, too long or a zero word: the checked reader decides
      const uint64_t x = gamma_peek_value(buf, N);
      buf >>= 2 * N + 1;
      nbits -= unsigned(2 * N + 1);
      cur += x;
      ix[j++] = I(cur);
    }
  }
  BitReader br(s, nbytes);
  br.pos = bytepos * 8 - nbits;
  for (; j < cnt; ++j) {
    cur += br.get_gamma(maxN);
    ix[j] = I(cur);
  }
  // the indices increase within the chunk (deltas >= 1, no wrap: cur < 2^35 * 4097), so the last bounds them all
  if (cur >= n) corrupt("topk: index out of range");
  br.finish();
  *first = uint64_t(ix[0]);
  *last = cur;
}
template <class I>
GZ_TK_AVX2 void decode_chunk_avx2(const uint8_t* s, uint64_t nbytes, uint64_t cnt, uint64_t n, I* ix, uint64_t* first,
                                  uint64_t* last) {
  decode_chunk_body<I>(s, nbytes, cnt, n, ix, first, last);
}
template <class I>
void decode_chunk_plain(const uint8_t* s, uint64_t nbytes, uint64_t cnt, uint64_t n, I* ix, uint64_t* first,
                        uint64_t* last) {
  decode_chunk_body<I>(s, nbytes, cnt, n, ix, first, last);
}

// Indices decoded by topk_validate for the topk_decode call that follows on the same header (same thread).
struct IdxCache {
  const uint8_t* payload = nullptr;
  uint64_t bytes = 0, n = 0, k = 0;
  std::vector<uint32_t> i32;
  std::vector<uint64_t> i64;
  void clear() {
    payload = nullptr;
    if (i32.capacity() > (uint64_t(1) << 24)) std::vector<uint32_t>().swap(i32);
    if (i64.capacity() > (uint64_t(1) << 23)) std::vector<uint64_t>().swap(i64);
  }
};
thread_local IdxCache t_cache;

// Full validation (indices and values) of a topk packet; the indices to ix (k entries).
template <class I>
void decode_indices(const Header& h, const TopkView& v, I* ix, int threads) {
  std::vector<uint64_t> fl(2 * v.C);
  const bool avx2 = has_avx2();
  par_for(threads, v.C, [&](uint64_t c) {
    const uint64_t lo = c * kTopkE, cnt = std::min(v.k - lo, kTopkE);
    const uint8_t* src = h.payload + v.off[c];
    const uint64_t nb = v.off[c + 1] - v.off[c];
    if (avx2) decode_chunk_avx2<I>(src, nb, cnt, v.n, ix + lo, &fl[2 * c], &fl[2 * c + 1]);
    else decode_chunk_plain<I>(src, nb, cnt, v.n, ix + lo, &fl[2 * c], &fl[2 * c + 1]);
    check_values(v, lo, lo + cnt);
  });
  for (uint64_t c = 1; c < v.C; ++c)
    if (fl[2 * c] <= fl[2 * c - 1]) corrupt("topk: indices not increasing across chunks");
}

template <class I>
std::vector<I>& cache_vec(IdxCache& c);
template <>
std::vector<uint32_t>& cache_vec<uint32_t>(IdxCache& c) { return c.i32; }
template <>
std::vector<uint64_t>& cache_vec<uint64_t>(IdxCache& c) { return c.i64; }

template <class I>
void validate_into_cache(const Header& h, const TopkView& v, int threads) {
  IdxCache& c = t_cache;
  c.payload = nullptr;
  std::vector<I>& ix = cache_vec<I>(c);
  ix.resize(size_t(v.k));
  decode_indices<I>(h, v, ix.data(), threads);
  c.payload = h.payload;
  c.bytes = h.payload_bytes;
  c.n = v.n;
  c.k = v.k;
}

template <class I, int VT>
void store_run(const DecodeArgs& a, const TopkView& v, const I* ix) {
  float* out = a.out;
  const uint64_t n = v.n, k = v.k;
  const uint8_t* vals = v.vals;
  if (a.add) {
    const float alpha = a.alpha;
    const uint64_t T = (a.threads > 1 && k >= 65536) ? uint64_t(a.threads) : 1;
    par_for(int(T), T, [&](uint64_t t) {
      const uint64_t lo = k * t / T, hi = k * (t + 1) / T;
      constexpr uint64_t D = 24;
      for (uint64_t j = lo; j < hi; ++j) {
        if (j + D < hi) __builtin_prefetch(out + uint64_t(ix[j + D]), 1, 3);
        float& o = out[uint64_t(ix[j])];
        o = o + alpha * value_at<VT>(vals, j);
      }
    });
    return;
  }
  const uintptr_t addr = reinterpret_cast<uintptr_t>(out);
  if (a.scalar || !has_avx2() || (addr & 3) || n < 64) {
    const uint64_t B = 1 << 20;
    par_for(a.threads, (n + B - 1) / B, [&](uint64_t blk) {
      const uint64_t lo = blk * B, hi = std::min(n, lo + B);
      std::memset(out + lo, 0, (hi - lo) * 4);
    });
    for (uint64_t j = 0; j < k; ++j) out[uint64_t(ix[j])] = value_at<VT>(vals, j);
    return;
  }
  fill_dense(out, n, ix, k, a.threads, [vals](uint64_t q) { return value_at<VT>(vals, q); });
}

template <class I>
void store_all(const DecodeArgs& a, const TopkView& v, const I* ix) {
  if (v.vt == VT_F32) store_run<I, VT_F32>(a, v, ix);
  else if (v.vt == VT_F16) store_run<I, VT_F16>(a, v, ix);
  else store_run<I, VT_BF16>(a, v, ix);
}

template <class I>
void decode_with(const DecodeArgs& a, const TopkView& v) {
  const Header& h = *a.h;
  IdxCache& c = t_cache;
  const bool hit = c.payload == h.payload && c.bytes == h.payload_bytes && c.n == v.n && c.k == v.k;
  if (!hit) validate_into_cache<I>(h, v, a.threads);  // nothing stored yet: CORRUPT leaves out untouched
  c.payload = nullptr;                                  // one use
  struct Clear { IdxCache& c; ~Clear() { c.clear(); } } clr{c};
  store_all<I>(a, v, cache_vec<I>(c).data());
}

}  // namespace

void topk_validate(const Header& h) {
  const TopkView v = topk_view(h);
  if (!v.k) return;
  if (v.n <= (uint64_t(1) << 32)) validate_into_cache<uint32_t>(h, v, 1);
  else validate_into_cache<uint64_t>(h, v, 1);
}

void topk_decode(const DecodeArgs& a) {
  const Header& h = *a.h;
  const TopkView v = topk_view(h);
  if (!v.k) {
    if (!a.add) std::memset(a.out, 0, size_t(v.n) * 4);
    return;
  }
  if (v.n <= (uint64_t(1) << 32)) decode_with<uint32_t>(a, v);
  else decode_with<uint64_t>(a, v);
}

}  // namespace gz
