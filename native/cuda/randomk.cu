// Random-k (codec 5): FORMAT sections 3.5 and 4.1. The index set is Floyd's algorithm over the Philox draws of
// stream 1, computed on the host by gz::randomk_indices (O(k) expected time and memory, the very function the
// CPU codec uses, so the set is identical); the device gathers / scatters. The whole input is scanned for
// non-finite values (every encoder rejects NaN/Inf anywhere in x).
#include <vector>
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

uint64_t* device_indices(uint64_t seed, uint64_t n, uint64_t k, cudaStream_t st) {
  std::vector<uint64_t> idx(k);
  gz::randomk_indices(seed, n, k, idx.data());
  uint64_t* d = scratch<uint64_t>(k, st);
  GZC_CHECK(cudaMemcpyAsync(d, idx.data(), k * 8, cudaMemcpyHostToDevice, st));
  GZC_CHECK(cudaStreamSynchronize(st));  // idx is pageable and local
  return d;
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
