// gradzip CUDA backend: host-side API used by the N-API binding (native/cuda/binding.cc) and by C++ tests.
// Plain C++ + the CUDA runtime; no N-API. Packets produced here are byte-identical to gz::encode's
// (docs/FORMAT.md) and are assembled entirely on the device: payload kernels, header written from the host
// through a small pinned staging copy, chunk table and payload length from device scans, and the CRC32C
// computed on the device (per-segment CRCs combined with the GF(2) shift operator, as zlib's crc32_combine).
// See docs/CUDA.md.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include <string>
#include "core/gradzip.h"

namespace gzc {

// Throws gz::Error(ErrCode::CUDA, "<cudaErrorName>: <description> (<where>)") when e != cudaSuccess.
void check(cudaError_t e, const char* where);
#define GZC_CHECK(call) ::gzc::check((call), #call)

// Result of one device operation, written by the device (async copy) into pinned host memory.
struct OpResult {
  uint64_t length;  // packet length (encode)
  uint32_t flags;   // kErr* bits (common.cuh)
  uint32_t pad;
};

// Throws the gz::Error that flags describe (NONFINITE, CORRUPT, INTERNAL); no-op when flags == 0.
void raise_flags(uint32_t flags, const char* what);

// Encodes device x[0..n) into the device buffer out[0..cap) on `stream`. cap >= gz::max_bytes(p, n).
// Host-side steps (seed draw, header, randomk's Floyd index set, nonuniform's fit) run on the calling thread
// and may wait for the stream. On return all work is enqueued; `res` (pinned) receives length and flags
// once the stream reaches that point. Throws INVALID_ARG / CUDA synchronously for what it can see up front.
void encode(const gz::Params& p, const float* x, uint64_t n, uint8_t* out, uint64_t cap, cudaStream_t stream,
            OpResult* res);

// Decodes the device packet pkt[0..len) into device out[0..n) (add: out += alpha * v). Reads the header
// (48 + P bytes) back to the host first (waits for the stream); validates it, the chunk table and the CRC on the
// device; corrupt packets set kErrCorrupt in res->flags. With add, out is untouched when the packet is corrupt.
void decode(const uint8_t* pkt, uint64_t len, float* out, uint64_t n, bool add, float alpha, cudaStream_t stream,
            OpResult* res);

// Header fields of a device packet (host copy of the first bytes), validated like gz::parse's header part.
gz::Header read_header(const uint8_t* pkt, uint64_t len, cudaStream_t stream);

// Device CRC32C of buf[0..*d_len) (length read on the device), result stored little-endian at buf + *d_len.
void crc_store(uint8_t* buf, const uint64_t* d_len, uint64_t max_len, cudaStream_t st);
// Device CRC32C of buf[0..len) compared against the u32 at buf + len; mismatch sets kErrCorrupt.
void crc_verify(const uint8_t* buf, uint64_t len, uint32_t* d_flags, cudaStream_t st);

// Runtime info.
int device_count(std::string* err);

}  // namespace gzc
