// topk (docs/FORMAT.md sections 3.4, 4.3, 5): exact top-k by magnitude, ties to the lower index.
//
// Selection: order key = (31-bit magnitude bits, then lower index first), packed in one integer
// key = mag << IB | (2^IB - 1 - i), so a larger key is a better element and all keys are distinct.
//  1. threshold from a strided sample (no random reads), set a few sigma below the expected k-th magnitude;
//  2. one collect pass (AVX2 compare/movemask when available) appending the keys with mag >= threshold, in
//     index order, and detecting non-finite input (max magnitude >= 0x7F800000);
//  3. the k-th largest key K* among the candidates (nth_element on a copy); a retry with threshold 0 when
//     fewer than k candidates were collected;
//  4. a filter pass over the candidates (still in index order) keeps the keys >= K*: exactly k, ascending.
// Values are written as f32, f16 or bf16 (round to nearest even, saturating), then the indices as
// Elias-gamma coded deltas in chunks of 4096, each chunk at an exact precomputed offset (parallel).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "core/bitio.h"
#include "core/codec.h"
#include "core/threadpool.h"
#include "core/quant_ref.h"

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
template <class K, int IB>
struct KeyOps {
  static constexpr K IMASK = (K(1) << (IB - 1)) - 1;
  static K make(uint32_t bits, uint64_t i) {
    return (K(bits & 0x7FFFFFFFu) << IB) | ((IMASK - K(i)) << 1) | K(bits >> 31);
  }
  static uint64_t index(K k) { return uint64_t(IMASK - ((k >> 1) & IMASK)); }
  static uint32_t value_bits(K k) { return uint32_t(k >> IB) | (uint32_t(k & 1) << 31); }
};

// Collect keys with mag >= t (in index order). Returns the max magnitude bits seen.
template <class K, int IB>
uint32_t collect_scalar(const float* x, uint64_t n, uint32_t t, std::vector<K>& out) {
  uint32_t amax = 0;
  const uint32_t* u = reinterpret_cast<const uint32_t*>(x);
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t m;
    std::memcpy(&m, u + i, 4);
    const uint32_t bits = m;
    m &= 0x7FFFFFFFu;
    amax = m > amax ? m : amax;
    if (m >= t) out.push_back(KeyOps<K, IB>::make(bits, i));
  }
  return amax;
}

template <class K, int IB>
__attribute__((target("avx2,bmi2"))) uint32_t collect_avx2(const float* x, uint64_t n, uint32_t t, std::vector<K>& out) {
  const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i tm1 = _mm256_set1_epi32(int32_t(t) - 1);  // t >= 1 here: mag > t-1 (signed compare, mags < 2^31)
  __m256i vmax = _mm256_setzero_si256();
  uint64_t cnt = out.size();
  if (out.capacity() < cnt + 4096) out.reserve(size_t(cnt + 4096));
  out.resize(out.capacity());
  K* o = out.data();
  uint64_t cap = out.size();
  uint64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if ((i & 4095) == 0 && i + 4096 <= n) {
      _mm_prefetch(reinterpret_cast<const char*>(x + i + 1024), _MM_HINT_T0);
    }
    const __m256i a0 = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), absm);
    const __m256i a1 = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8)), absm);
    const __m256i a2 = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16)), absm);
    const __m256i a3 = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 24)), absm);
    vmax = _mm256_max_epu32(vmax, _mm256_max_epu32(_mm256_max_epu32(a0, a1), _mm256_max_epu32(a2, a3)));
    const uint32_t m0 = uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(a0, tm1))));
    const uint32_t m1 = uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(a1, tm1))));
    const uint32_t m2 = uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(a2, tm1))));
    const uint32_t m3 = uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(a3, tm1))));
    uint32_t mask = m0 | (m1 << 8) | (m2 << 16) | (m3 << 24);
    if (!mask) continue;
    if (__builtin_expect(cnt + 32 > cap, 0)) {
      out.resize(size_t(cap * 2 + 64));
      o = out.data();
      cap = out.size();
    }
    do {
      const int j = __builtin_ctz(mask);
      mask &= mask - 1;
      uint32_t m;
      std::memcpy(&m, x + i + j, 4);
      o[cnt++] = KeyOps<K, IB>::make(m, i + uint64_t(j));
    } while (mask);
  }
  out.resize(size_t(cnt));
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), vmax);
  uint32_t amax = 0;
  for (int j = 0; j < 8; ++j) amax = std::max(amax, lanes[j]);
  std::vector<K> tail;
  const uint32_t am2 = collect_scalar<K, IB>(x + i, n - i, t, tail);
  for (K kk : tail) {  // re-base tail indices
    const uint64_t idx = KeyOps<K, IB>::index(kk) + i;
    out.push_back(KeyOps<K, IB>::make(KeyOps<K, IB>::value_bits(kk), idx));
  }
  return std::max(amax, am2);
}

// Threshold on the magnitude bits: about k*(1 + a few sigma) elements are expected at or above it.
uint32_t sample_threshold(const float* x, uint64_t n, uint64_t k) {
  if (k * 4 >= n || n < 65536) return 0;  // collect everything
  // 4096 runs of 16 consecutive elements (one cache line each), evenly spread: 65536 samples for 4096 misses
  const uint64_t S = 65536, R = 16, stride = n / (S / R);
  std::vector<uint32_t> smp(S);
  for (uint64_t j = 0; j < S / R; ++j) {
    const uint64_t base = j * stride;
    for (uint64_t q = 0; q < R; ++q) {
      uint32_t m;
      std::memcpy(&m, x + base + q, 4);
      smp[j * R + q] = m & 0x7FFFFFFFu;
    }
  }
  const double q = double(k) / double(n), mu = q * double(S);
  uint64_t r = uint64_t(std::ceil(mu + 4.0 * std::sqrt(mu) + 2.0));  // rank (1-based) of the threshold sample
  if (r >= S) return 0;
  std::nth_element(smp.begin(), smp.begin() + (r - 1), smp.end(), std::greater<uint32_t>());
  return smp[r - 1];
}

template <class K, int IB>
void select_topk(const float* x, uint64_t n, uint64_t k, bool scalar, std::vector<uint64_t>& idx, std::vector<float>& val) {
  std::vector<K> cand;
  uint32_t t = sample_threshold(x, n, k);
  for (int attempt = 0; attempt < 2; ++attempt) {
    cand.clear();
    cand.reserve(t ? size_t(std::min<uint64_t>(n, k + k / 4 + 1024)) : size_t(n));
    const uint32_t amax = (!scalar && has_avx2() && t > 0) ? collect_avx2<K, IB>(x, n, t, cand)
                                                             : collect_scalar<K, IB>(x, n, t, cand);
    if (amax >= 0x7F800000u) throw Error(ErrCode::NONFINITE, "input contains NaN or Inf");
    if (cand.size() >= k) break;
    t = 0;  // too few candidates: take everything
  }
  idx.resize(size_t(k));
  val.resize(size_t(k) + 1);
  if (cand.size() == k) {
    for (uint64_t j = 0; j < k; ++j) {
      idx[j] = KeyOps<K, IB>::index(cand[j]);
      val[j] = ref::u2f(KeyOps<K, IB>::value_bits(cand[j]));
    }
    val.resize(size_t(k));
    return;
  }
  std::vector<K> tmp(cand);
  std::nth_element(tmp.begin(), tmp.begin() + (k - 1), tmp.end(), std::greater<K>());
  const K kth = tmp[k - 1];
  std::vector<K>().swap(tmp);
  uint64_t j = 0;
  idx.resize(size_t(k) + 1);
  for (const K key : cand) {  // branchless filter (about k of the ~1.2k candidates pass)
    idx[j] = KeyOps<K, IB>::index(key);
    val[j] = ref::u2f(KeyOps<K, IB>::value_bits(key));
    j += key >= kth ? 1 : 0;
  }
  idx.resize(size_t(k));
  val.resize(size_t(k));
  if (j != k) throw Error(ErrCode::INTERNAL, "topk selection count mismatch");
}

// ---------------------------------------------------------------- index chunks

uint64_t chunk_bits(const uint64_t* idx, uint64_t cnt) {
  uint64_t bits = uint64_t(gamma_len(idx[0] + 1));
  for (uint64_t j = 1; j < cnt; ++j) bits += uint64_t(gamma_len(idx[j] - idx[j - 1]));
  return bits;
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
  std::vector<uint64_t> idx;
  std::vector<float> xv;  // the selected values, in index order
  if (n <= (uint64_t(1) << 32)) select_topk<uint64_t, 33>(a.x, n, k, a.scalar, idx, xv);
  else select_topk<unsigned __int128, 64>(a.x, n, k, a.scalar, idx, xv);
  // values
  const uint32_t vb = value_bytes(a.p->vt);
  uint8_t* vals = a.payload;
  const uint64_t VB = 1 << 14;
  par_for(a.threads, (k + VB - 1) / VB, [&](uint64_t blk) {
    const uint64_t lo = blk * VB, hi = std::min(k, lo + VB);
    if (a.p->vt == VT_F32) {
      for (uint64_t j = lo; j < hi; ++j) std::memcpy(vals + 4 * j, &xv[j], 4);
    } else if (a.p->vt == VT_BF16) {
      for (uint64_t j = lo; j < hi; ++j) {
        const uint16_t h = f32_to_bf16(xv[j]);
        std::memcpy(vals + 2 * j, &h, 2);
      }
    } else if (!a.scalar && has_f16c()) {
      for (uint64_t j = lo; j < hi; j += 256) {
        const uint64_t m = std::min<uint64_t>(256, hi - j);
        f32_to_f16_f16c(xv.data() + j, m, vals + 2 * j);
      }
    } else {
      for (uint64_t j = lo; j < hi; ++j) {
        const uint16_t h = f32_to_f16(xv[j]);
        std::memcpy(vals + 2 * j, &h, 2);
      }
    }
  });
  // index chunks at exact offsets
  const uint64_t C = (k + kTopkE - 1) / kTopkE;
  std::vector<uint64_t> off(C + 1);
  off[0] = k * vb;
  std::vector<uint64_t> lens(C);
  par_for(a.threads, C, [&](uint64_t c) {
    const uint64_t lo = c * kTopkE, cnt = std::min(k - lo, kTopkE);
    lens[c] = (chunk_bits(idx.data() + lo, cnt) + 7) / 8;
  });
  for (uint64_t c = 0; c < C; ++c) {
    if (lens[c] > 0xFFFFFFFFull) throw Error(ErrCode::INTERNAL, "topk chunk too long");
    off[c + 1] = off[c] + lens[c];
    a.chunk_lens[c] = uint32_t(lens[c]);
  }
  if (off[C] > a.cap) throw Error(ErrCode::INTERNAL, "topk_encode: payload bound exceeded");
  par_for(a.threads, C, [&](uint64_t c) {
    const uint64_t lo = c * kTopkE, cnt = std::min(k - lo, kTopkE);
    const uint64_t* ix = idx.data() + lo;
    BitWriter bw(a.payload + off[c], a.payload + off[c + 1]);
    bw.put_gamma(ix[0] + 1);
    for (uint64_t j = 1; j < cnt; ++j) bw.put_gamma(ix[j] - ix[j - 1]);
  });
  return off[C];
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

inline float load_value(const TopkView& v, uint64_t j) {
  if (v.vt == VT_F32) {
    const uint32_t u = load_u32le(v.vals + 4 * j);
    if ((u & 0x7F800000u) == 0x7F800000u) corrupt("topk: non-finite value");
    return ref::u2f(u);
  }
  uint16_t h;
  std::memcpy(&h, v.vals + 2 * j, 2);
  if (v.vt == VT_BF16) {
    if ((h & 0x7F80u) == 0x7F80u) corrupt("topk: non-finite value");
    return ref::u2f(uint32_t(h) << 16);
  }
  if ((h & 0x7C00u) == 0x7C00u) corrupt("topk: non-finite value");
  return f16_to_f32(h);
}

// Decodes index chunk c; STORE: scatters the values. Returns first and last index of the chunk.
template <bool STORE, bool ADD>
void topk_chunk(const Header& h, const TopkView& v, uint64_t c, float* out, float alpha, uint64_t* first,
                uint64_t* last) {
  const uint64_t lo = c * kTopkE, cnt = std::min(v.k - lo, kTopkE);
  BitReader br(h.payload + v.off[c], v.off[c + 1] - v.off[c]);
  const int maxN = floor_log2_u64(v.n);
  uint64_t ix = br.get_gamma(maxN) - 1;
  *first = ix;
  for (uint64_t j = 0;;) {
    if (ix >= v.n) corrupt("topk: index out of range");
    if (STORE) {
      const float val = load_value(v, lo + j);
      if (ADD) out[ix] = out[ix] + alpha * val;
      else out[ix] = val;
    } else {
      (void)load_value(v, lo + j);
    }
    if (++j == cnt) break;
    ix += br.get_gamma(maxN);
  }
  *last = ix;
  br.finish();
}

template <bool STORE, bool ADD>
void topk_run(const Header& h, float* out, float alpha, int threads) {
  const TopkView v = topk_view(h);
  if (!v.k) return;
  std::vector<uint64_t> fl(2 * v.C);
  par_for(threads, v.C, [&](uint64_t c) {
    topk_chunk<STORE, ADD>(h, v, c, out, alpha, &fl[2 * c], &fl[2 * c + 1]);
  });
  for (uint64_t c = 1; c < v.C; ++c)
    if (fl[2 * c] <= fl[2 * c - 1]) corrupt("topk: indices not increasing across chunks");
}

}  // namespace

void topk_validate(const Header& h) { topk_run<false, false>(h, nullptr, 0.f, 1); }

void topk_decode(const DecodeArgs& a) {
  const Header& h = *a.h;
  if (!a.add) {
    const uint64_t n = h.n, B = 1 << 20;
    par_for(a.threads, (n + B - 1) / B, [&](uint64_t blk) {
      const uint64_t lo = blk * B, hi = std::min(n, lo + B);
      std::memset(a.out + lo, 0, (hi - lo) * 4);
    });
    topk_run<true, false>(h, a.out, 0.f, a.threads);
  } else {
    topk_run<true, true>(h, a.out, a.alpha, a.threads);
  }
}

}  // namespace gz
