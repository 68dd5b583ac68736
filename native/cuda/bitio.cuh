// Device bit reader for the LSB-first streams of FORMAT section 4 (Elias-gamma LSB-first variant).
// Mirrors core/bitio.h's BitReader checks: reading past the end, gamma codes longer than maxN, leftover bytes
// and non-zero padding all set `bad` (the caller flags the packet as corrupt).
#pragma once
#include "cuda/common.cuh"

namespace gzc {

struct DevBitReader {
  const uint8_t* p;
  uint64_t end_bits, pos = 0;  // absolute bit positions within [p, p + len)
  uint64_t buf = 0;            // bits [pos, pos + avail)
  int avail = 0;
  uint64_t next_byte = 0;
  bool bad = false;
  __device__ DevBitReader(const uint8_t* q, uint64_t len) : p(q), end_bits(len * 8) {}
  __device__ __forceinline__ void refill() {
    while (avail <= 56) {
      if (avail <= 32 && ((reinterpret_cast<uintptr_t>(p + next_byte) & 3) == 0) && (next_byte + 4) * 8 <= end_bits) {
        buf |= uint64_t(*reinterpret_cast<const uint32_t*>(p + next_byte)) << avail;  // 4 bytes at once
        avail += 32;
        next_byte += 4;
        continue;
      }
      const uint64_t b = next_byte * 8 < end_bits ? p[next_byte] : 0;
      buf |= b << avail;
      avail += 8;
      ++next_byte;
    }
  }
  __device__ __forceinline__ uint32_t bit() {
    refill();
    const uint32_t v = uint32_t(buf & 1);
    buf >>= 1; --avail; ++pos;
    if (pos > end_bits) bad = true;
    return v;
  }
  // Elias-gamma value with floor(log2 x) <= maxN (maxN <= 40).
  __device__ __forceinline__ uint64_t gamma(int maxN) {
    refill();
    if (buf == 0) { bad = true; return 1; }
    const int N = __ffsll(static_cast<long long>(buf)) - 1;
    if (N > maxN) { bad = true; return 1; }
    // 2N+1 <= 81 bits may exceed the 57+ bits in buf: take the N+1 prefix bits first.
    buf >>= (N + 1); avail -= N + 1; pos += N + 1;
    refill();
    const uint64_t low = N ? (buf & ((uint64_t(1) << N) - 1)) : 0;
    buf >>= N; avail -= N; pos += N;
    if (pos > end_bits) bad = true;
    return low | (uint64_t(1) << N);
  }
  // Stream end: at most 7 padding bits, all zero.
  __device__ __forceinline__ void finish() {
    if (pos > end_bits) { bad = true; return; }
    if (end_bits - pos >= 8) { bad = true; return; }
    if (pos < end_bits && (p[pos >> 3] >> (pos & 7)) != 0) bad = true;
  }
};

// One warp stages the contiguous bytes [src, src + bytes) into shared memory with aligned 32-bit loads (it may
// read up to 3 bytes before and after the range: callers guarantee the packet extends that far, as the header
// precedes and the CRC follows every payload). Returns the shared address of src, or nullptr when the range
// does not fit in cap bytes (the caller then reads global memory).
__device__ __forceinline__ const uint8_t* stage_warp(const uint8_t* src, uint64_t bytes, uint32_t* sw, uint32_t cap) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(src) & ~uintptr_t(3);
  const uint64_t head = reinterpret_cast<uintptr_t>(src) - a;
  const uint64_t nw = (head + bytes + 3) / 4;
  if (nw * 4 > cap) return nullptr;
  const uint32_t* g = reinterpret_cast<const uint32_t*>(a);
  for (uint64_t w = threadIdx.x & 31; w < nw; w += 32) sw[w] = g[w];
  __syncwarp();
  return reinterpret_cast<const uint8_t*>(sw) + head;
}

__host__ __device__ __forceinline__ int floor_log2_u64(uint64_t v) {
#if defined(__CUDA_ARCH__)
  return 63 - __clzll(static_cast<long long>(v));
#else
  return 63 - __builtin_clzll(v);
#endif
}

}  // namespace gzc
