// Helpers for the fixed-width layouts (qsgd fixed, terngrad, nonuniform, onebit): groups of 8 codes of
// W <= 17 bits = W bytes, LSB-first (FORMAT section 4), kept in two u64 registers.
#pragma once
#include "cuda/common.cuh"

namespace gzc {

__device__ __forceinline__ void put_bits(uint64_t& lo, uint64_t& hi, uint32_t pos, uint32_t W, uint64_t code) {
  if (pos < 64) {
    lo |= code << pos;
    if (pos + W > 64) hi |= code >> (64 - pos);
  } else {
    hi |= code << (pos - 64);
  }
}
__device__ __forceinline__ uint32_t get_bits(uint64_t lo, uint64_t hi, uint32_t pos, uint32_t W) {
  uint64_t v;
  if (pos < 64) {
    v = lo >> pos;
    if (pos + W > 64) v |= hi << (64 - pos);
  } else {
    v = hi >> (pos - 64);
  }
  return uint32_t(v & ((uint64_t(1) << W) - 1));
}

// Stores nb (<= 17) bytes of (lo, hi); 32-bit stores when the address and count allow.
__device__ __forceinline__ void store_bytes(uint8_t* p, uint64_t lo, uint64_t hi, uint32_t nb) {
  if ((reinterpret_cast<uintptr_t>(p) & 3) == 0 && (nb & 3) == 0) {
    uint32_t* q = reinterpret_cast<uint32_t*>(p);
    for (uint32_t k = 0; k < nb / 4; ++k) q[k] = uint32_t(k < 2 ? lo >> (32 * k) : hi >> (32 * (k - 2)));
  } else {
    for (uint32_t k = 0; k < nb; ++k) p[k] = uint8_t(k < 8 ? lo >> (8 * k) : hi >> (8 * (k - 8)));
  }
}
__device__ __forceinline__ void load_bytes(const uint8_t* p, uint32_t nb, uint64_t& lo, uint64_t& hi) {
  lo = 0; hi = 0;
  if ((reinterpret_cast<uintptr_t>(p) & 3) == 0 && (nb & 3) == 0) {
    const uint32_t* q = reinterpret_cast<const uint32_t*>(p);
    for (uint32_t k = 0; k < nb / 4; ++k) {
      uint64_t w = q[k];
      if (k < 2) lo |= w << (32 * k); else hi |= w << (32 * (k - 2));
    }
  } else {
    for (uint32_t k = 0; k < nb; ++k) {
      uint64_t w = p[k];
      if (k < 8) lo |= w << (8 * k); else hi |= w << (8 * (k - 8));
    }
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
    for (uint32_t k = 0; k < cnt; ++k) p[k] = ADD ? __fadd_rn(p[k], __fmul_rn(alpha, v[k])) : v[k];
  }
}

__device__ __forceinline__ bool flags_set(const uint32_t* flags) {
  return *reinterpret_cast<const volatile uint32_t*>(flags) != 0;
}

// Grid-stride helpers.
__device__ __forceinline__ uint64_t gtid() { return uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ uint64_t gstride() { return uint64_t(gridDim.x) * blockDim.x; }

}  // namespace gzc
