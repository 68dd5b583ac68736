// Internal interface between the packet layer of the CUDA backend (packet.cu) and the codec families
// (qsgd.cu, onebit.cu, gamma.cu, topk.cu, randomk.cu, nonuniform.cu). Mirrors core/codec.h.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include "core/codec.h"
#include "cuda/gzcuda.h"

namespace gzc {

struct EncCtx {
  const gz::Params* p;
  uint64_t seed;
  const float* x;        // device input
  uint64_t n;
  uint8_t* pkt;          // device packet base
  uint32_t P, C, E;      // param bytes, chunk count, elements per chunk
  uint8_t* table;        // pkt + 48 + P (chunk table, C u32)
  uint8_t* payload;      // pkt + 48 + P + 4C
  uint64_t* d_len;       // device: total packet length (set by variable-length families, else by packet.cu)
  uint32_t* d_flags;     // device error bits
  cudaStream_t st;
  bool var_len = false;  // family wrote *d_len and header payloadBytes itself
  // nonuniform: fitted values (host), serialized into the param block by packet.cu
  float nu_shape = 0, nu_scale = 0;
  float nu_levels[gz::kMaxNonuniformLevels + 1] = {0};
};

struct DecCtx {
  const gz::Header* h;   // host copy of the header; its pointers are NOT valid (device packet)
  const uint8_t* pkt;    // device packet
  const uint8_t* table;  // device chunk table
  const uint8_t* payload;
  float* out;
  uint64_t n;
  bool add;
  float alpha;
  uint32_t* d_flags;
  cudaStream_t st;
};

// Scratch allocations are stream-ordered (cudaMallocAsync / cudaFreeAsync).
template <class T>
T* scratch(size_t count, cudaStream_t st) {
  void* p = nullptr;
  GZC_CHECK(cudaMallocAsync(&p, count * sizeof(T) + 16, st));
  return static_cast<T*>(p);
}
inline void release(void* p, cudaStream_t st) { if (p) cudaFreeAsync(p, st); }

inline unsigned grid_for(uint64_t work, unsigned per_block, unsigned cap = 1u << 20) {
  uint64_t g = (work + per_block - 1) / per_block;
  if (g < 1) g = 1;
  if (g > cap) g = cap;
  return unsigned(g);
}

// ---- families (payload only; packet.cu writes header, table placement, CRC)
void qsgd_fixed_encode(EncCtx& c);          // qsgd fixed + terngrad
void qsgd_fixed_decode(const DecCtx& c);
void onebit_encode(EncCtx& c);
void onebit_decode(const DecCtx& c);
void nonuniform_encode(EncCtx& c);          // fit on the host from device per-bucket sums
void nonuniform_decode(const DecCtx& c);
void gamma_encode(EncCtx& c);               // qsgd gamma + sparse (variable length: sets var_len)
void gamma_decode(const DecCtx& c);
void topk_encode(EncCtx& c);                // variable length
void topk_decode(const DecCtx& c);
void randomk_encode(EncCtx& c);
void randomk_decode(const DecCtx& c);

// Non-finite scan of x (codecs whose kernels do not read every element): sets kErrNonFinite.
void scan_nonfinite(const float* x, uint64_t n, uint32_t* d_flags, cudaStream_t st);
// Validates the chunk table: sum of C u32 equals payloadBytes (else kErrCorrupt); writes exclusive byte
// offsets (C+1 entries, u64) to d_off.
void chunk_offsets(const uint8_t* table, uint32_t C, uint64_t payload_bytes, uint64_t* d_off, uint32_t* d_flags,
                   cudaStream_t st);

}  // namespace gzc
