// Random-k (codec 5): FORMAT sections 3.5 and 4.1. The index set is Floyd's algorithm over the Philox draws of
// stream 1, computed on the device in parallel with exactly Floyd's result (derivation below); the device then
// gathers / scatters. The whole input is scanned for non-finite values (every encoder rejects NaN/Inf in x).
//
// Parallel Floyd. Step t draws x_t in [0, J_t], J_t = n - k + t, and inserts y_t = x_t if x_t is not yet in S,
// else J_t (never in S: every earlier pick is <= J_{t-1}). Call c(t) = "x_t in S_t" (a collision). Any s with
// x_s = x_t has s >= u when x_t = J_u (x_s <= J_s), so:
//   - x_t < n - k (never a J): c(t) = "an earlier s has x_s = x_t" = notFirst(t);
//   - x_t = J_u, u < t: J_u is in S_t iff step u inserted it (c(u)) or an earlier s in [u, t) drew it:
//     c(t) = notFirst(t) or c(u);
//   - x_t = J_t: c(t) = false (= notFirst(t), as no earlier step can draw J_t).
// notFirst comes from a stable radix sort of (x_t, t); c is the OR along the parent chain t -> u, resolved by
// pointer jumping (chains are short: a collision is rare when k << n); then S = {y_t} is radix-sorted.
// gz::randomk_indices (host) is the reference; the GPU tests compare packets byte for byte.
#include <vector>
#include <cub/device/device_radix_sort.cuh>
#include "cuda/fixed.cuh"
#include "cuda/kernels.h"

namespace gzc {
namespace {

template <bool NZ>
__global__ void __launch_bounds__(256) k_gather(const float* __restrict__ x, const uint64_t* __restrict__ idx, uint64_t k,
                                               uint8_t* __restrict__ pay) {
  bool bad = false;
  for (uint64_t t = gtid(); t < k; t += gstride()) st_f32(pay + 4 * t, sanitize(__ldg(x + idx[t]), NZ, bad));
}

template <bool VALIDATE, bool ADD>
__global__ void __launch_bounds__(256) k_scatter(const uint8_t* __restrict__ pay, const uint64_t* __restrict__ idx, uint64_t k,
                                                float scale, float* __restrict__ out, float alpha, uint32_t* flags) {
  if (!VALIDATE && flags_set(flags)) return;
  for (uint64_t t = gtid(); t < k; t += gstride()) {
    const uint32_t u = ld_u32(pay + 4 * t);
    if (VALIDATE) {
      if ((u & 0x7F800000u) == 0x7F800000u) flag(flags, kErrCorrupt);
      continue;
    }
    const float v = u2f(u) * scale;
    const uint64_t i = idx[t];
    out[i] = ADD ? __fadd_rn(out[i], __fmul_rn(alpha, v)) : v;
  }
}

__global__ void __launch_bounds__(256) k_zero(float* __restrict__ out, uint64_t n, const uint32_t* flags) {
  if (flags_set(flags)) return;
  for (uint64_t i = gtid(); i < n; i += gstride()) out[i] = 0.f;
}

constexpr uint64_t kNone = ~uint64_t(0);

__global__ void k_draw(uint64_t seed, uint64_t n, uint64_t k, uint64_t* __restrict__ x, uint64_t* __restrict__ t_of) {
  for (uint64_t t = gtid(); t < k; t += gstride()) {
    const uint64_t J = n - k + t;
    x[t] = __umul64hi(gz::randomk_draw(seed, t), J + 1);
    t_of[t] = t;
  }
}
// val[t] = notFirst(t); parent[t] = u when x_t = J_u with u < t and not already known to collide.
__global__ void k_first(const uint64_t* __restrict__ xs, const uint64_t* __restrict__ ts, uint64_t n, uint64_t k,
                        uint8_t* __restrict__ val, uint64_t* __restrict__ par) {
  for (uint64_t p = gtid(); p < k; p += gstride()) {
    const uint64_t x = xs[p], t = ts[p];
    const bool nf = p > 0 && xs[p - 1] == x;
    val[t] = nf;
    uint64_t u = kNone;
    if (!nf && x >= n - k && x - (n - k) < t) u = x - (n - k);
    par[t] = u;
  }
}
__global__ void k_jump(const uint8_t* __restrict__ vi, const uint64_t* __restrict__ pi, uint8_t* __restrict__ vo,
                       uint64_t* __restrict__ po, uint64_t k, uint32_t* active) {
  bool act = false;
  for (uint64_t t = gtid(); t < k; t += gstride()) {
    uint8_t v = vi[t];
    uint64_t p = pi[t];
    if (p != kNone) {
      v |= vi[p];
      p = v ? kNone : pi[p];
      act |= p != kNone;
    }
    vo[t] = v;
    po[t] = p;
  }
  if (__any_sync(kFull, act) && (threadIdx.x & 31) == 0) *active = 1;
}
__global__ void k_pick(const uint64_t* __restrict__ x, const uint8_t* __restrict__ val, uint64_t n, uint64_t k,
                       uint64_t* __restrict__ y) {
  for (uint64_t t = gtid(); t < k; t += gstride()) y[t] = val[t] ? n - k + t : x[t];
}

template <class K, class V>
void sort_pairs(K* keys, V* vals, uint64_t count, int end_bit, cudaStream_t st) {
  K* k2 = scratch<K>(count, st);
  V* v2 = scratch<V>(count, st);
  cub::DoubleBuffer<K> dk(keys, k2);
  cub::DoubleBuffer<V> dv(vals, v2);
  size_t bytes = 0;
  GZC_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, dk, dv, count, 0, end_bit, st));
  void* tmp = scratch<uint8_t>(bytes, st);
  GZC_CHECK(cub::DeviceRadixSort::SortPairs(tmp, bytes, dk, dv, count, 0, end_bit, st));
  if (dk.Current() != keys) GZC_CHECK(cudaMemcpyAsync(keys, dk.Current(), count * sizeof(K), cudaMemcpyDeviceToDevice, st));
  if (dv.Current() != vals) GZC_CHECK(cudaMemcpyAsync(vals, dv.Current(), count * sizeof(V), cudaMemcpyDeviceToDevice, st));
  release(tmp, st); release(v2, st); release(k2, st);
}
void sort_keys(uint64_t* keys, uint64_t count, int end_bit, cudaStream_t st) {
  uint64_t* k2 = scratch<uint64_t>(count, st);
  cub::DoubleBuffer<uint64_t> dk(keys, k2);
  size_t bytes = 0;
  GZC_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, bytes, dk, count, 0, end_bit, st));
  void* tmp = scratch<uint8_t>(bytes, st);
  GZC_CHECK(cub::DeviceRadixSort::SortKeys(tmp, bytes, dk, count, 0, end_bit, st));
  if (dk.Current() != keys) GZC_CHECK(cudaMemcpyAsync(keys, dk.Current(), count * 8, cudaMemcpyDeviceToDevice, st));
  release(tmp, st); release(k2, st);
}

// Sorted Floyd index set on the device (k entries). Waits on the stream once per pointer-jumping round.
uint64_t* device_indices(uint64_t seed, uint64_t n, uint64_t k, cudaStream_t st) {
  int bits = 1;
  while (bits < 64 && (uint64_t(1) << bits) <= n) ++bits;
  uint64_t* x = scratch<uint64_t>(k, st);
  uint64_t* xs = scratch<uint64_t>(k, st);
  uint64_t* ts = scratch<uint64_t>(k, st);
  uint64_t* par[2] = {scratch<uint64_t>(k, st), scratch<uint64_t>(k, st)};
  uint8_t* val[2] = {scratch<uint8_t>(k, st), scratch<uint8_t>(k, st)};
  uint32_t* active = scratch<uint32_t>(1, st);
  const unsigned g = grid_for(k, 256, 132 * 16);
  k_draw<<<g, 256, 0, st>>>(seed, n, k, x, ts);
  GZC_CHECK(cudaMemcpyAsync(xs, x, k * 8, cudaMemcpyDeviceToDevice, st));
  sort_pairs(xs, ts, k, bits, st);  // stable: equal x keep increasing t
  k_first<<<g, 256, 0, st>>>(xs, ts, n, k, val[0], par[0]);
  int cur = 0;
  for (int round = 0; round < 80; ++round) {
    GZC_CHECK(cudaMemsetAsync(active, 0, 4, st));
    k_jump<<<g, 256, 0, st>>>(val[cur], par[cur], val[cur ^ 1], par[cur ^ 1], k, active);
    cur ^= 1;
    uint32_t h = 0;
    GZC_CHECK(cudaMemcpyAsync(&h, active, 4, cudaMemcpyDeviceToHost, st));
    GZC_CHECK(cudaStreamSynchronize(st));
    if (!h) break;
  }
  uint64_t* y = xs;  // reuse
  k_pick<<<g, 256, 0, st>>>(x, val[cur], n, k, y);
  GZC_CHECK(cudaGetLastError());
  sort_keys(y, k, bits, st);
  release(active, st); release(val[1], st); release(val[0], st); release(par[1], st); release(par[0], st);
  release(ts, st); release(x, st);
  return y;
}

}  // namespace

void randomk_encode(EncCtx& c) {
  const uint64_t k = c.p->k;
  if (c.n == 0 || k == 0) return;
  if (!c.p->nonfinite_zero) scan_nonfinite(c.x, c.n, c.d_flags, c.st);
  uint64_t* d_idx = device_indices(c.seed, c.n, k, c.st);
  if (c.p->nonfinite_zero) k_gather<true><<<grid_for(k, 256, 132 * 32), 256, 0, c.st>>>(c.x, d_idx, k, c.payload);
  else k_gather<false><<<grid_for(k, 256, 132 * 32), 256, 0, c.st>>>(c.x, d_idx, k, c.payload);
  GZC_CHECK(cudaGetLastError());
  release(d_idx, c.st);
}

void randomk_decode(const DecCtx& c) {
  const uint64_t k = c.h->p.k, n = c.n;
  if (n == 0 || k == 0) return;
  uint64_t* d_idx = device_indices(c.h->seed, n, k, c.st);
  const float scale = float(double(n) / double(k));
  const unsigned g = grid_for(k, 256, 132 * 32);
  k_scatter<true, false><<<g, 256, 0, c.st>>>(c.payload, d_idx, k, scale, c.out, c.alpha, c.d_flags);
  if (c.add) {
    k_scatter<false, true><<<g, 256, 0, c.st>>>(c.payload, d_idx, k, scale, c.out, c.alpha, c.d_flags);
  } else {
    k_zero<<<grid_for(n, 256, 132 * 32), 256, 0, c.st>>>(c.out, n, c.d_flags);
    k_scatter<false, false><<<g, 256, 0, c.st>>>(c.payload, d_idx, k, scale, c.out, c.alpha, c.d_flags);
  }
  GZC_CHECK(cudaGetLastError());
  release(d_idx, c.st);
}

}  // namespace gzc
