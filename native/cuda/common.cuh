// Device helpers shared by the CUDA codec kernels (native/cuda/*.cu). Arithmetic follows docs/FORMAT.md
// section 2 exactly: the scalar reference (core/quant_ref.h, core/philox.h) is reused in device code, the
// whole directory is compiled with --fmad=false (no FMA contraction) and without fast-math, so float * and +
// are single correctly rounded operations, and sqrt / division are the IEEE-correct versions (-prec-sqrt,
// -prec-div are nvcc's defaults). Where the order matters we also spell it with __fmul_rn / __fadd_rn.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include "core/philox.h"
#include "core/quant_ref.h"

namespace gzc {

constexpr unsigned kFull = 0xFFFFFFFFu;
// Error bits accumulated on the device (one u32 per operation, see gzcuda.h).
constexpr unsigned kErrNonFinite = 1u, kErrCorrupt = 2u, kErrOverflow = 4u, kErrInternal = 8u;

__device__ __forceinline__ uint32_t f2u(float f) { return __float_as_uint(f); }
__device__ __forceinline__ float u2f(uint32_t u) { return __uint_as_float(u); }

// Loads x[i]; non-finite values are either flagged (bad = true) or replaced by +0.0 (nonFinite: 'zero').
__device__ __forceinline__ float sanitize(float v, bool nz, bool& bad) {
  if ((f2u(v) & 0x7FFFFFFFu) >= 0x7F800000u) {
    if (nz) return 0.f;
    bad = true;
  }
  return v;
}

__device__ __forceinline__ void flag(unsigned* flags, unsigned bit) { atomicOr(flags, bit); }

// Unaligned little-endian stores / loads of packet fields (nothing in a packet is aligned).
__device__ __forceinline__ void st_u32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v); p[1] = uint8_t(v >> 8); p[2] = uint8_t(v >> 16); p[3] = uint8_t(v >> 24);
}
__device__ __forceinline__ uint32_t ld_u32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
__device__ __forceinline__ void st_f32(uint8_t* p, float v) { st_u32(p, f2u(v)); }
__device__ __forceinline__ float ld_f32(const uint8_t* p) { return u2f(ld_u32(p)); }

// 16-bit rounding uniform of global element i, caching the Philox block of the previous call.
struct Uniforms {
  uint64_t seed, blk = ~uint64_t(0);
  gz::Philox4 w;
  __device__ explicit Uniforms(uint64_t s) : seed(s) {}
  __device__ __forceinline__ uint32_t at(uint64_t i) {
    const uint64_t j = i >> 3;
    if (j != blk) { w = gz::philox_block(seed, j, 0); blk = j; }
    const uint32_t q = uint32_t(i & 7) >> 1;  // selects, not an indexed load: w stays in registers
    const uint32_t word = q == 0 ? w.v[0] : (q == 1 ? w.v[1] : (q == 2 ? w.v[2] : w.v[3]));
    return (word >> (16 * (i & 1))) & 0xFFFFu;
  }
};

// Warp-wide max of u32 (sm_80+ has a single instruction).
__device__ __forceinline__ uint32_t warp_max_u32(uint32_t v) { return __reduce_max_sync(kFull, v); }

// Bucket l2 norm, one warp per bucket (FORMAT section 2). Invariants: lane j sums y_i*y_i for the elements
// i = j, j+32, j+64, ... of the bucket in increasing i (each product and sum rounded: __fmul_rn/__fadd_rn);
// the tail lanes add nothing (counted as zeros); then the shuffle-down tree lane[j] += lane[j+w] for
// w = 16..1, exactly the reference tree; sqrt is correctly rounded. amax is the exact max of |v| bits.
// Every lane returns the norm. v is the bucket start (global memory), m its length.
template <bool NZ>
__device__ __forceinline__ float warp_l2_norm(const float* __restrict__ v, uint64_t m, int lane, uint32_t amax, bool& bad) {
  if (amax == 0) return 0.f;
  const int e = gz::ref::floor_log2(u2f(amax));
  float acc = 0.f;
  for (uint64_t i = lane; i < m; i += 32) {
    float x = sanitize(__ldg(v + i), NZ, bad);
    float y = gz::ref::mul_pow2(fabsf(x), -e);
    acc = __fadd_rn(acc, __fmul_rn(y, y));
  }
  for (int w = 16; w >= 1; w >>= 1) {
    float o = __shfl_down_sync(kFull, acc, w);
    acc = __fadd_rn(acc, o);
  }
  acc = __shfl_sync(kFull, acc, 0);
  return gz::ref::mul_pow2(__fsqrt_rn(acc), e);
}

// Warp max of the magnitude bits of a bucket (also the l-inf norm), with the non-finite check.
template <bool NZ>
__device__ __forceinline__ uint32_t warp_amax(const float* __restrict__ v, uint64_t m, int lane, bool& bad) {
  uint32_t a = 0;
  for (uint64_t i = lane; i < m; i += 32) {
    float x = sanitize(__ldg(v + i), NZ, bad);
    uint32_t b = f2u(x) & 0x7FFFFFFFu;
    a = b > a ? b : a;
  }
  return warp_max_u32(a);
}

// Bucket norm for buckets of m <= 32*R elements held in registers: one batch of R independent loads per lane
// (R*128 bytes in flight per warp), then the exact max and the FORMAT l2 order (lane j: elements j, j+32, ...
// in increasing order; absent tail elements add +0, which changes nothing) from registers.
// Returns amax bits in *amax_out and the norm (l2) or the max (linf).
template <bool NZ, int R>
__device__ __forceinline__ float warp_norm_regs(const float* __restrict__ v, uint64_t m, int lane, bool l2,
                                                uint32_t* amax_out, bool& bad) {
  float r[R];
#pragma unroll
  for (int t = 0; t < R; ++t) {
    const uint64_t i = uint64_t(lane) + 32u * t;
    r[t] = i < m ? __ldg(v + i) : 0.f;
  }
  uint32_t a = 0;
#pragma unroll
  for (int t = 0; t < R; ++t) {
    r[t] = sanitize(r[t], NZ, bad);
    const uint32_t b = f2u(r[t]) & 0x7FFFFFFFu;
    a = b > a ? b : a;
  }
  a = warp_max_u32(a);
  *amax_out = a;
  if (!l2) return u2f(a);
  if (a == 0) return 0.f;
  const int e = gz::ref::floor_log2(u2f(a));
  float acc = 0.f;
#pragma unroll
  for (int t = 0; t < R; ++t) {
    const float y = gz::ref::mul_pow2(fabsf(r[t]), -e);
    acc = __fadd_rn(acc, __fmul_rn(y, y));
  }
  for (int w = 16; w >= 1; w >>= 1) acc = __fadd_rn(acc, __shfl_down_sync(kFull, acc, w));
  acc = __shfl_sync(kFull, acc, 0);
  return gz::ref::mul_pow2(__fsqrt_rn(acc), e);
}

__host__ __device__ __forceinline__ uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// Width in bits of ceil(log2(s+1)) (s >= 1).
__host__ __device__ __forceinline__ uint32_t bits_for(uint32_t s) {
  uint32_t w = 0;
  while ((uint64_t(1) << w) < uint64_t(s) + 1) ++w;
  return w;
}

}  // namespace gzc
