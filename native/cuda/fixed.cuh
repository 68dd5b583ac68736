// Helpers for the fixed-width layouts (qsgd fixed, terngrad, nonuniform, onebit): groups of 8 codes of
// W <= 17 bits = W bytes, LSB-first (FORMAT section 4), kept in two u64 registers.
#pragma once
#include "cuda/common.cuh"

namespace gzc {

// Up to 8 codes of W <= 17 bits = 136 bits: three u64 words.
struct Bits3 { uint64_t w[3]; };
// Register-only access (no dynamically indexed arrays, which would live in local memory).
__device__ __forceinline__ uint64_t& word_ref(Bits3& b, uint32_t q) { return q == 0 ? b.w[0] : (q == 1 ? b.w[1] : b.w[2]); }
__device__ __forceinline__ uint64_t word_of(const Bits3& b, uint32_t q) { return q == 0 ? b.w[0] : (q == 1 ? b.w[1] : b.w[2]); }
__device__ __forceinline__ void put_bits(Bits3& b, uint32_t pos, uint32_t W, uint64_t code) {
  const uint32_t q = pos >> 6, o = pos & 63;
  const uint64_t lo = code << o, hi = (o + W > 64) ? code >> (64 - o) : 0;
  if (q == 0) { b.w[0] |= lo; b.w[1] |= hi; }
  else if (q == 1) { b.w[1] |= lo; b.w[2] |= hi; }
  else { b.w[2] |= lo; }
}
__device__ __forceinline__ uint32_t get_bits(const Bits3& b, uint32_t pos, uint32_t W) {
  const uint32_t q = pos >> 6, o = pos & 63;
  uint64_t v = word_of(b, q) >> o;
  if (o + W > 64) v |= word_of(b, q + 1) << (64 - o);
  return uint32_t(v & ((uint64_t(1) << W) - 1));
}
__device__ __forceinline__ uint8_t byte_of(const Bits3& b, uint32_t k) { return uint8_t(word_of(b, k >> 3) >> (8 * (k & 7))); }

// Stores nb (<= 17) bytes of b; 32-bit stores when the address and count allow. Fully unrolled with
// constant indices so that b stays in registers.
__device__ __forceinline__ void store_bytes(uint8_t* p, const Bits3& b, uint32_t nb) {
  if ((reinterpret_cast<uintptr_t>(p) & 3) == 0 && (nb & 3) == 0) {
    uint32_t* q = reinterpret_cast<uint32_t*>(p);
#pragma unroll
    for (uint32_t k = 0; k < 4; ++k)
      if (k < nb / 4) q[k] = uint32_t(b.w[k >> 1] >> (32 * (k & 1)));
  } else {
#pragma unroll
    for (uint32_t k = 0; k < 17; ++k)
      if (k < nb) p[k] = uint8_t(b.w[k >> 3] >> (8 * (k & 7)));
  }
}
__device__ __forceinline__ void load_bytes(const uint8_t* p, uint32_t nb, Bits3& b) {
  b.w[0] = b.w[1] = b.w[2] = 0;
  if ((reinterpret_cast<uintptr_t>(p) & 3) == 0 && (nb & 3) == 0) {
    const uint32_t* q = reinterpret_cast<const uint32_t*>(p);
#pragma unroll
    for (uint32_t k = 0; k < 4; ++k)
      if (k < nb / 4) b.w[k >> 1] |= uint64_t(q[k]) << (32 * (k & 1));
  } else {
#pragma unroll
    for (uint32_t k = 0; k < 17; ++k)
      if (k < nb) b.w[k >> 3] |= uint64_t(p[k]) << (8 * (k & 7));
  }
}

// Loads cnt (<= 8) consecutive floats (two 16-byte loads when aligned and full).
template <bool NZ>
__device__ __forceinline__ void load8(const float* __restrict__ p, uint32_t cnt, float v[8], bool& bad) {
  if (cnt == 8 && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
    float4 a = __ldg(reinterpret_cast<const float4*>(p)), b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
  } else {
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = k < int(cnt) ? __ldg(p + k) : 0.f;
  }
#pragma unroll
  for (int k = 0; k < 8; ++k) v[k] = sanitize(v[k], NZ, bad);
}

// Writes or accumulates cnt (<= 8) outputs: out = v, or out = out + alpha * v (multiply, then add).
template <bool ADD>
__device__ __forceinline__ void store8(float* __restrict__ p, uint32_t cnt, const float v[8], float alpha) {
  if (cnt == 8 && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
    float4* q = reinterpret_cast<float4*>(p);
    float4 a = make_float4(v[0], v[1], v[2], v[3]), b = make_float4(v[4], v[5], v[6], v[7]);
    if (ADD) {
      float4 o0 = q[0], o1 = q[1];
      a = make_float4(__fadd_rn(o0.x, __fmul_rn(alpha, a.x)), __fadd_rn(o0.y, __fmul_rn(alpha, a.y)),
                      __fadd_rn(o0.z, __fmul_rn(alpha, a.z)), __fadd_rn(o0.w, __fmul_rn(alpha, a.w)));
      b = make_float4(__fadd_rn(o1.x, __fmul_rn(alpha, b.x)), __fadd_rn(o1.y, __fmul_rn(alpha, b.y)),
                      __fadd_rn(o1.z, __fmul_rn(alpha, b.z)), __fadd_rn(o1.w, __fmul_rn(alpha, b.w)));
    }
    q[0] = a; q[1] = b;
  } else {
#pragma unroll
    for (uint32_t k = 0; k < 8; ++k)
      if (k < cnt) p[k] = ADD ? __fadd_rn(p[k], __fmul_rn(alpha, v[k])) : v[k];
  }
}

__device__ __forceinline__ bool flags_set(const uint32_t* flags) {
  return *reinterpret_cast<const volatile uint32_t*>(flags) != 0;
}

// Grid-stride helpers.
__device__ __forceinline__ uint64_t gtid() { return uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ uint64_t gstride() { return uint64_t(gridDim.x) * blockDim.x; }

}  // namespace gzc
