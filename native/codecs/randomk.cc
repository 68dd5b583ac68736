// randomk (docs/FORMAT.md sections 3.5, 4.1): k indices drawn without replacement from the seed by Floyd's
// algorithm (no index bits travel); payload = the k raw f32 values in increasing index order; decoding scales
// them by (float)((double)n / (double)k), which makes the estimate unbiased.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/bitio.h"
#include "core/codec.h"
#include "core/philox.h"
#include "core/quant_ref.h"

namespace gz {
namespace {

inline uint64_t mulhi64(uint64_t a, uint64_t b) { return uint64_t((unsigned __int128)a * b >> 64); }

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

}  // namespace

void randomk_indices(uint64_t seed, uint64_t n, uint64_t k, uint64_t* idx) {
  if (k > n) throw Error(ErrCode::INTERNAL, "randomk_indices: k > n");
  if (!k) return;
  // Bitmap when it is no larger than ~16 bytes per selected index, else a hash set.
  if (n / 8 <= 16 * k + 4096) {
    std::vector<uint64_t> bm(size_t((n + 63) / 64), 0);
    for (uint64_t t = 0; t < k; ++t) {
      const uint64_t J = n - k + t;
      const uint64_t x = mulhi64(randomk_draw(seed, t), J + 1);
      const uint64_t bit = uint64_t(1) << (x & 63);
      uint64_t& w = bm[size_t(x >> 6)];
      if (w & bit) bm[size_t(J >> 6)] |= uint64_t(1) << (J & 63);  // J not in S yet (J > every earlier pick)
      else w |= bit;
    }
    uint64_t j = 0;
    for (uint64_t wi = 0; wi < bm.size(); ++wi) {
      uint64_t w = bm[size_t(wi)];
      while (w) {
        idx[j++] = wi * 64 + uint64_t(ctz64(w));
        w &= w - 1;
      }
    }
    if (j != k) throw Error(ErrCode::INTERNAL, "randomk_indices: count mismatch");
    return;
  }
  HashSet S(k);
  uint64_t j = 0;
  for (uint64_t t = 0; t < k; ++t) {
    const uint64_t J = n - k + t;
    const uint64_t x = mulhi64(randomk_draw(seed, t), J + 1);
    if (S.insert(x)) idx[j++] = x;
    else { S.insert(J); idx[j++] = J; }
  }
  std::sort(idx, idx + k);
}

uint64_t randomk_payload_bytes(const Params& p, uint64_t n) { return 4 * resolve_k(p, n); }

uint64_t randomk_encode(EncodeArgs& a) {
  const uint64_t n = a.n, k = a.p->k;
  if (k > n || (n && !k)) throw Error(ErrCode::INTERNAL, "randomk_encode: k not resolved");
  // non-finite anywhere in the input is an error, even where not selected
  uint32_t amax = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const uint32_t m = ref::f2u(a.x[i]) & 0x7FFFFFFFu;
    amax = m > amax ? m : amax;
  }
  if (amax >= 0x7F800000u) throw Error(ErrCode::NONFINITE, "input contains NaN or Inf");
  if (!k) return 0;
  std::vector<uint64_t> idx((size_t)(k));
  randomk_indices(a.seed, n, k, idx.data());
  // The decoder multiplies by n/k: a selected value whose scaled estimate overflows float32 cannot be sent.
  const float scale = float(double(n) / double(k));
  for (uint64_t j = 0; j < k; ++j) {
    if (!std::isfinite(a.x[idx[j]] * scale))
      throw Error(ErrCode::NONFINITE, "randomk: a selected value times n/k overflows float32");
    std::memcpy(a.payload + 4 * j, a.x + idx[j], 4);
  }
  return 4 * k;
}

void randomk_decode(const DecodeArgs& a) {
  const Header& h = *a.h;
  const uint64_t n = h.n, k = h.p.k;
  if (k > n || (n && !k)) corrupt("randomk: bad k");
  if (h.payload_bytes != 4 * k) corrupt("randomk: payload size does not match k");
  const float scale = k ? float(double(n) / double(k)) : 0.f;
  for (uint64_t j = 0; j < k; ++j) {  // check before any store (decompressAdd leaves acc untouched when corrupt)
    const float v = ref::u2f(load_u32le(h.payload + 4 * j));
    if (!std::isfinite(v)) corrupt("randomk: non-finite value");
    if (!std::isfinite(v * scale)) corrupt("randomk: value times n/k overflows float32");
  }
  if (!a.add) std::memset(a.out, 0, size_t(n) * 4);
  if (!k) return;
  std::vector<uint64_t> idx((size_t)(k));
  randomk_indices(h.seed, n, k, idx.data());
  for (uint64_t j = 0; j < k; ++j) {
    const float v = ref::u2f(load_u32le(h.payload + 4 * j)) * scale;
    float& o = a.out[idx[j]];
    if (a.add) o = o + a.alpha * v;
    else o = v;
  }
}

}  // namespace gz
