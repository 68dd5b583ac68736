// Internal interface between the packet layer (native/core/packet.cc) and the codec families
// (native/codecs/*.cc). Each family implements these entry points; packet.cc writes/validates the header,
// param block, chunk table and CRC, and dispatches. Layouts: docs/FORMAT.md section 4.
#pragma once
#include <cstdint>
#include "gradzip.h"

namespace gz {

// What an encoder gets: a validated Params (k resolved), the effective seed, n, the payload region
// [payload, payload + cap) where cap >= the family's max_payload, and the chunk table (C entries,
// nullptr when C == 0) to fill. Returns payloadBytes. A family may update `hdr_extra` (nonuniform fit).
struct EncodeArgs {
  const Params* p;
  uint64_t seed;
  const float* x;
  uint64_t n;
  uint8_t* payload;
  uint64_t cap;
  uint32_t* chunk_lens;  // C entries or nullptr
  int threads;
  bool scalar;
  // nonuniform: fitted values written by the encoder, serialized by packet.cc into the param block
  float nu_shape, nu_scale;
  float nu_levels[kMaxNonuniformLevels + 1];
};

struct DecodeArgs {
  const Header* h;
  float* out;
  bool add;
  float alpha;
  int threads;
  bool scalar;
};

// Chunk layout (FORMAT section 4): C and E for the codec; both 0 for fixed layouts.
void chunk_layout(const Params& p, uint64_t n, uint32_t* C, uint32_t* E);
// Param block size (FORMAT section 3).
uint32_t param_bytes(const Params& p);

// ---- fixed-width bucketed family: qsgd fixed, terngrad, nonuniform (native/codecs/qsgd.cc, nonuniform.cc)
uint64_t qsgd_fixed_payload_bytes(const Params& p, uint64_t n);     // exact
uint64_t qsgd_fixed_encode(EncodeArgs& a);
void qsgd_fixed_decode(const DecodeArgs& a);                         // validates scales first (finite, >= 0)

uint64_t nonuniform_payload_bytes(const Params& p, uint64_t n);     // exact
uint64_t nonuniform_encode(EncodeArgs& a);                           // fits shape/levels, fills a.nu_*
void nonuniform_decode(const DecodeArgs& a);

// ---- onebit (native/codecs/onebit.cc)
uint64_t onebit_payload_bytes(const Params& p, uint64_t n);         // exact
uint64_t onebit_encode(EncodeArgs& a);
void onebit_decode(const DecodeArgs& a);

// ---- qsgd gamma / sparse (native/codecs/gamma.cc)
uint64_t qsgd_var_max_payload(const Params& p, uint64_t n);
uint64_t qsgd_var_encode(EncodeArgs& a);                              // fills chunk_lens
void qsgd_var_validate(const Header& h, int threads);                 // full pass without stores; throws CORRUPT
void qsgd_var_decode(const DecodeArgs& a);  // throws CORRUPT (may have written out; with add, before any store)

// ---- topk (native/codecs/topk.cc)
uint64_t topk_max_payload(const Params& p, uint64_t n);
uint64_t topk_encode(EncodeArgs& a);
void topk_validate(const Header& h);
void topk_decode(const DecodeArgs& a);   // out = 0 except the k values when !add

// ---- randomk (native/codecs/randomk.cc)
uint64_t randomk_payload_bytes(const Params& p, uint64_t n);        // exact = 4k
uint64_t randomk_encode(EncodeArgs& a);
void randomk_decode(const DecodeArgs& a);
// Sorted index set of FORMAT 3.5 (shared with CUDA host code and tests).
void randomk_indices(uint64_t seed, uint64_t n, uint64_t k, uint64_t* idx_out);

// ---- non-finite input: every *_encode must detect NaN/±Inf in x (fused into its own pass, e.g. from the
// integer max of the magnitude bits: non-finite iff >= 0x7F800000) and throw Error(ErrCode::NONFINITE, ...).
// With Params::nonfinite_zero, packet.cc first scans x and, only if it finds one, hands the encoder a sanitized
// copy (non-finite -> +0.0f), so encoders never see non-finite values in that mode.
}  // namespace gz
