// Packet layer of the CUDA backend: header and parameter block, chunk-table scan, device CRC32C, dispatch.
// The packet is assembled in device memory; its bytes equal gz::encode's (docs/FORMAT.md), so gz::parse
// accepts a downloaded device packet, and device packets decode here after the same checks.
//
// CRC32C on the device: see k_crc_seg (segment CRCs combined with the GF(2) shift operators of zlib's
// crc32_combine, reflected polynomial 0x82F63B78).
#include <cub/block/block_scan.cuh>
#include <cub/device/device_scan.cuh>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "core/crc32c.h"
#include "core/crc32c_gf2.h"
#include "cuda/fixed.cuh"
#include "cuda/kernels.h"

namespace gzc {

void check(cudaError_t e, const char* where) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so it does not resurface at the next launch check
  throw gz::Error(gz::ErrCode::CUDA, std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e) + " (" + where + ")");
}

void raise_flags(uint32_t f, const char* what) {
  if (!f) return;
  const std::string w(what);
  if (f & kErrInternal) throw gz::Error(gz::ErrCode::INTERNAL, w + ": internal error in a CUDA kernel");
  if (f & kErrNonFinite) throw gz::Error(gz::ErrCode::NONFINITE, w + ": input contains NaN or Inf");
  if (f & kErrOverflow)
    throw gz::Error(gz::ErrCode::NONFINITE, w + ": bucket l2 norm overflows float32 (values too close to FLT_MAX)");
  if (f & kErrCorrupt) throw gz::Error(gz::ErrCode::CORRUPT, w + ": corrupt packet (device validation failed)");
}

int device_count(std::string* err) {
  int c = 0;
  cudaError_t e = cudaGetDeviceCount(&c);
  if (e != cudaSuccess) {
    if (err) *err = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();
    return 0;
  }
  return c;
}

// ---------------------------------------------------------------- CRC32C
namespace {

using gz::gf2::kPoly;
using gz::gf2::multmodp;
using gz::gf2::x2nmodp;
constexpr uint32_t kSeg = 128;  // bytes per segment (one thread each)

struct CrcConsts {
  gz::gf2::X2n x2n;  // x^(2^k) mod P (period 31 in k)
  uint32_t lvl[8];   // x^(8*kSeg*2^l) mod P
};

const CrcConsts& crc_consts() {
  static const CrcConsts c = [] {
    CrcConsts r;
    r.x2n = gz::gf2::make_x2n();
    for (int l = 0; l < 8; ++l) r.lvl[l] = x2nmodp(r.x2n, uint64_t(kSeg) << l, 3);
    return r;
  }();
  return c;
}

// Segment CRCs, parallel: with R(I, m) the CRC register after processing m from state I (no final inversion),
// R(0, A||B) = x^(8|B|) * R(0, A) + R(0, B) over GF(2) and R(I, m) = x^(8|m|) * I + R(0, m). Segments are
// counted from the END of the message (segment s = bytes [L-(s+1)K, L-sK), the first one possibly short), so
// R(0, msg) = XOR_s x^(8Ks) * R(0, seg_s): the shift of segment s depends on s only. A block of 256 segments
// combines them with a shared-memory tree whose level-l operator x^(8K 2^l) is a constant; thread 0 shifts the
// block's value by x^(8K 256 blk) and XORs it into the accumulator (order-free). k_crc_finish adds
// x^(8L) * 0xFFFFFFFF (the initial register) and the final inversion.
__global__ void __launch_bounds__(256) k_crc_seg(const uint8_t* __restrict__ buf, const uint64_t* d_len, uint64_t fixed_len,
                                                int minus4, CrcConsts cc, uint32_t* acc) {
  __shared__ uint32_t T[4][256];
  __shared__ uint32_t v[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ kPoly : c >> 1;
    T[0][i] = c;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 256; i += blockDim.x) {
    uint32_t c = T[0][i];
    for (int t = 1; t < 4; ++t) { c = (c >> 8) ^ T[0][c & 0xFF]; T[t][i] = c; }
  }
  __syncthreads();
  const uint64_t L = (d_len ? *d_len : fixed_len) - minus4;
  const uint64_t s = uint64_t(blockIdx.x) * 256 + threadIdx.x;
  uint32_t c = 0;
  if (s * kSeg < L) {
    const uint64_t e = L - s * kSeg, a = e > kSeg ? e - kSeg : 0;
    uint64_t i = a;
    for (; i < e && (reinterpret_cast<uintptr_t>(buf + i) & 3); ++i) c = (c >> 8) ^ T[0][(c ^ buf[i]) & 0xFF];
    for (; i + 4 <= e; i += 4) {
      c ^= *reinterpret_cast<const uint32_t*>(buf + i);
      c = T[3][c & 0xFF] ^ T[2][(c >> 8) & 0xFF] ^ T[1][(c >> 16) & 0xFF] ^ T[0][c >> 24];
    }
    for (; i < e; ++i) c = (c >> 8) ^ T[0][(c ^ buf[i]) & 0xFF];
  }
  v[threadIdx.x] = c;
  __syncthreads();
  for (int l = 0; l < 8; ++l) {
    const int w = 1 << l;
    uint32_t r = 0;
    const bool act = (threadIdx.x & (2 * w - 1)) == 0;
    if (act) { const uint32_t hi = v[threadIdx.x + w]; r = hi ? multmodp(cc.lvl[l], hi) : 0; }
    __syncthreads();
    if (act) v[threadIdx.x] ^= r;
    __syncthreads();
  }
  if (threadIdx.x == 0 && v[0]) atomicXor(acc, multmodp(x2nmodp(cc.x2n, uint64_t(blockIdx.x) * 256 * kSeg, 3), v[0]));
}

__global__ void k_crc_finish(uint8_t* buf, const uint64_t* d_len, uint64_t fixed_len, int minus4, const uint32_t* acc,
                             CrcConsts cc, bool store, uint32_t* flags) {
  const uint64_t L = (d_len ? *d_len : fixed_len) - minus4;
  const uint32_t crc = ~(*acc ^ multmodp(x2nmodp(cc.x2n, L, 3), 0xFFFFFFFFu));
  if (store) st_u32(buf + L, crc);
  else if (ld_u32(buf + L) != crc) atomicOr(flags, kErrCorrupt);
}

void crc_run(uint8_t* buf, const uint64_t* d_len, uint64_t fixed_len, uint64_t max_body, bool store, uint32_t* flags,
             cudaStream_t st) {
  const uint64_t nseg = (max_body + kSeg - 1) / kSeg + 1;
  uint32_t* acc = scratch<uint32_t>(1, st);
  GZC_CHECK(cudaMemsetAsync(acc, 0, 4, st));
  k_crc_seg<<<unsigned((nseg + 255) / 256), 256, 0, st>>>(buf, d_len, fixed_len, d_len ? 4 : 0, crc_consts(), acc);
  k_crc_finish<<<1, 1, 0, st>>>(buf, d_len, fixed_len, d_len ? 4 : 0, acc, crc_consts(), store, flags);
  GZC_CHECK(cudaGetLastError());
  release(acc, st);
}

}  // namespace

void crc_store(uint8_t* buf, const uint64_t* d_len, uint64_t max_len, cudaStream_t st) {
  crc_run(buf, d_len, 0, max_len, true, nullptr, st);
}
void crc_verify(const uint8_t* buf, uint64_t len, uint32_t* d_flags, cudaStream_t st) {
  crc_run(const_cast<uint8_t*>(buf), nullptr, len, len, false, d_flags, st);
}

// ---------------------------------------------------------------- small kernels
namespace {

struct HeaderBytes {
  uint8_t b[gz::kHeaderBytes + 12 + 4 * (gz::kMaxNonuniformLevels + 1)];
  uint32_t len;
  uint64_t total;  // total packet length when known on the host (fixed layouts), else 0
};

__global__ void k_write_header(uint8_t* pkt, HeaderBytes h, uint64_t* d_len) {
  for (uint32_t i = threadIdx.x; i < h.len; i += blockDim.x) pkt[i] = h.b[i];
  if (threadIdx.x == 0 && h.total) *d_len = h.total;
}

__global__ void __launch_bounds__(256) k_nonfinite(const float* __restrict__ x, uint64_t n, uint32_t* flags) {
  bool bad = false;
  const uint64_t n4 = (reinterpret_cast<uintptr_t>(x) & 15) == 0 ? n / 4 : 0;
  for (uint64_t i = gtid(); i < n4; i += gstride()) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(x) + i);
    const uint32_t m = max(max(f2u(v.x) & 0x7FFFFFFFu, f2u(v.y) & 0x7FFFFFFFu),
                           max(f2u(v.z) & 0x7FFFFFFFu, f2u(v.w) & 0x7FFFFFFFu));
    bad |= m >= 0x7F800000u;
  }
  for (uint64_t i = 4 * n4 + gtid(); i < n; i += gstride()) bad |= (f2u(x[i]) & 0x7FFFFFFFu) >= 0x7F800000u;
  if (__any_sync(kFull, bad) && (threadIdx.x & 31) == 0) atomicOr(flags, kErrNonFinite);
}

// Exclusive offsets of C u32 chunk lengths (d_off[0..C]); sum must equal expect.
__global__ void __launch_bounds__(1024) k_chunk_offsets(const uint8_t* table, uint32_t C, uint64_t expect,
                                                       uint64_t* d_off, uint32_t* flags) {
  using Scan = cub::BlockScan<uint64_t, 1024>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ uint64_t carry;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (uint64_t base = 0; base < C; base += 1024) {
    const uint64_t i = base + threadIdx.x;
    const uint64_t v = i < C ? ld_u32(table + 4 * i) : 0;
    uint64_t ex, tot;
    Scan(tmp).ExclusiveSum(v, ex, tot);
    const uint64_t c0 = carry;
    if (i < C) d_off[i] = c0 + ex;
    __syncthreads();
    if (threadIdx.x == 0) carry = c0 + tot;
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    d_off[C] = carry;
    if (carry != expect) atomicOr(flags, kErrCorrupt);
  }
}

bool bucketed(int c) { return c == gz::QSGD || c == gz::TERNGRAD || c == gz::ONEBIT || c == gz::NONUNIFORM; }
bool deterministic(int c) { return c == gz::ONEBIT || c == gz::TOPK; }

gz::Params canonical(const gz::Params& in) {
  gz::Params p = in;
  if (p.codec == gz::TERNGRAD) { p.levels = 1; p.norm = gz::NORM_LINF; p.coding = gz::CODING_FIXED; }
  if (p.codec == gz::ONEBIT) p.coding = gz::CODING_FIXED;
  if (!bucketed(p.codec)) p.bucket = 0;
  return p;
}

inline void st32(uint8_t* p, uint32_t v) { for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i)); }
inline void st64(uint8_t* p, uint64_t v) { for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i)); }
inline uint32_t ld32(const uint8_t* p) { uint32_t v = 0; for (int i = 3; i >= 0; --i) v = (v << 8) | p[i]; return v; }
inline uint64_t ld64(const uint8_t* p) { uint64_t v = 0; for (int i = 7; i >= 0; --i) v = (v << 8) | p[i]; return v; }
inline float ldf(const uint8_t* p) { uint32_t u = ld32(p); float f; std::memcpy(&f, &u, 4); return f; }
inline void stf(uint8_t* p, float f) { uint32_t u; std::memcpy(&u, &f, 4); st32(p, u); }
[[noreturn]] void corrupt(const std::string& m) { throw gz::Error(gz::ErrCode::CORRUPT, "corrupt packet: " + m); }

uint64_t exact_payload(const gz::Params& p, uint64_t n) {
  switch (p.codec) {
    case gz::QSGD: return gz::qsgd_fixed_payload_bytes(p, n);
    case gz::TERNGRAD: return gz::qsgd_fixed_payload_bytes(p, n);
    case gz::ONEBIT: return gz::onebit_payload_bytes(p, n);
    case gz::RANDOMK: return gz::randomk_payload_bytes(p, n);
    case gz::NONUNIFORM: return gz::nonuniform_payload_bytes(p, n);
    default: return 0;
  }
}

}  // namespace

void scan_nonfinite(const float* x, uint64_t n, uint32_t* d_flags, cudaStream_t st) {
  if (n == 0) return;
  k_nonfinite<<<grid_for(n / 4 + 1, 256, 132 * 16), 256, 0, st>>>(x, n, d_flags);
  GZC_CHECK(cudaGetLastError());
}

namespace {
__global__ void k_table_u64(const uint8_t* __restrict__ table, uint32_t C, uint64_t* __restrict__ d) {
  for (uint64_t i = gtid(); i < C; i += gstride()) d[i + 1] = ld_u32(table + 4 * i);
  if (gtid() == 0) d[0] = 0;
}
__global__ void k_check_sum(const uint64_t* d_off, uint32_t C, uint64_t expect, uint32_t* flags) {
  if (d_off[C] != expect) atomicOr(flags, kErrCorrupt);
}
}  // namespace

// Exclusive byte offsets of the C chunk lengths (d_off[0..C]), a multi-block CUB scan; the sum must equal expect.
void chunk_offsets(const uint8_t* table, uint32_t C, uint64_t payload_bytes, uint64_t* d_off, uint32_t* d_flags,
                   cudaStream_t st) {
  k_table_u64<<<grid_for(C + 1, 256, 132 * 16), 256, 0, st>>>(table, C, d_off);
  if (C > 0) {
    size_t bytes = 0;
    GZC_CHECK(cub::DeviceScan::InclusiveSum(nullptr, bytes, d_off + 1, d_off + 1, C, st));
    void* tmp = scratch<uint8_t>(bytes, st);
    GZC_CHECK(cub::DeviceScan::InclusiveSum(tmp, bytes, d_off + 1, d_off + 1, C, st));
    release(tmp, st);
  }
  k_check_sum<<<1, 1, 0, st>>>(d_off, C, payload_bytes, d_flags);
  GZC_CHECK(cudaGetLastError());
}

// ---------------------------------------------------------------- encode
void encode(const gz::Params& pin, const float* x, uint64_t n, uint8_t* out, uint64_t cap, cudaStream_t st,
            OpResult* res) {
  cudaGetLastError();  // start clean (an earlier failed call may have left a non-sticky error)
  gz::check_params(pin);
  if (n > gz::kMaxN) throw gz::Error(gz::ErrCode::INVALID_ARG, "n must be <= 2^34");
  const uint64_t need = gz::max_bytes(pin, n);
  if (cap < need || !out)
    throw gz::Error(gz::ErrCode::INVALID_ARG, "output buffer too small: " + std::to_string(cap) +
                                                   " < maxCompressedBytes = " + std::to_string(need));
  gz::Params p = canonical(pin);
  p.k = gz::resolve_k(p, n);
  p.has_k = true;
  uint64_t seed = 0;
  uint8_t hflags = 0;
  if (!deterministic(p.codec)) {
    if (p.seed_given) seed = p.seed;
    else { std::random_device rd; seed = (uint64_t(rd()) << 32) ^ uint64_t(rd()); hflags |= 1; }
  }
  EncCtx c;
  c.p = &p; c.seed = seed; c.x = x; c.n = n; c.pkt = out; c.st = st;
  c.P = gz::param_bytes(p);
  gz::chunk_layout(p, n, &c.C, &c.E);
  c.table = out + gz::kHeaderBytes + c.P;
  c.payload = c.table + uint64_t(c.C) * 4;
  OpResult* aux = scratch<OpResult>(1, st);
  c.d_len = &aux->length;
  c.d_flags = &aux->flags;
  GZC_CHECK(cudaMemsetAsync(aux, 0, sizeof(OpResult), st));
  c.nu_shape = 1.f; c.nu_scale = 1.f;
  try {
    switch (p.codec) {
      case gz::QSGD:
        if (p.coding == gz::CODING_FIXED) qsgd_fixed_encode(c); else gamma_encode(c);
        break;
      case gz::TERNGRAD: qsgd_fixed_encode(c); break;
      case gz::ONEBIT: onebit_encode(c); break;
      case gz::TOPK: topk_encode(c); break;
      case gz::RANDOMK: randomk_encode(c); break;
      case gz::NONUNIFORM: nonuniform_encode(c); break;
    }
  } catch (...) {
    release(aux, st);
    throw;
  }
  HeaderBytes hb;
  std::memset(&hb, 0, sizeof hb);
  uint8_t* h = hb.b;
  std::memcpy(h, "GZPK", 4);
  h[4] = 1; h[5] = uint8_t(p.codec); h[6] = hflags; h[7] = 0;
  st64(h + 8, n); st64(h + 16, seed); st32(h + 24, p.bucket); st32(h + 28, c.P); st32(h + 32, c.C); st32(h + 36, c.E);
  const uint64_t pb = c.var_len ? 0 : exact_payload(p, n);
  st64(h + 40, pb);  // variable-length families write payloadBytes on the device (after this kernel)
  uint8_t* prm = h + gz::kHeaderBytes;
  switch (p.codec) {
    case gz::QSGD: st32(prm, p.levels); prm[4] = p.norm; prm[5] = p.coding; break;
    case gz::TOPK: st64(prm, p.k); prm[8] = p.vt; break;
    case gz::RANDOMK: st64(prm, p.k); break;
    case gz::NONUNIFORM:
      st32(prm, p.levels); stf(prm + 4, c.nu_shape); stf(prm + 8, c.nu_scale);
      for (uint32_t t = 0; t <= p.levels; ++t) stf(prm + 12 + 4 * t, c.nu_levels[t]);
      break;
    default: break;
  }
  hb.len = gz::kHeaderBytes + c.P - (c.var_len ? 8 + c.P : 0);  // var-len: bytes 40..47 belong to the device
  if (c.var_len) {
    // write [0, 40) and the params separately so the device-written payloadBytes is not overwritten
    HeaderBytes a = hb; a.len = 40; a.total = 0;
    k_write_header<<<1, 128, 0, st>>>(out, a, c.d_len);
    HeaderBytes b2; std::memset(&b2, 0, sizeof b2);
    std::memcpy(b2.b, prm, c.P); b2.len = c.P; b2.total = 0;
    k_write_header<<<1, 128, 0, st>>>(out + gz::kHeaderBytes, b2, c.d_len);
  } else {
    hb.len = gz::kHeaderBytes + c.P;
    hb.total = gz::kHeaderBytes + c.P + uint64_t(c.C) * 4 + pb + 4;
    k_write_header<<<1, 128, 0, st>>>(out, hb, c.d_len);
  }
  GZC_CHECK(cudaGetLastError());
  crc_store(out, c.d_len, cap, st);
  GZC_CHECK(cudaMemcpyAsync(res, aux, sizeof(OpResult), cudaMemcpyDeviceToHost, st));
  release(aux, st);
}

// ---------------------------------------------------------------- decode
gz::Header read_header(const uint8_t* pkt, uint64_t len, cudaStream_t st) {
  if (len < gz::kHeaderBytes + 4) corrupt("too short (" + std::to_string(len) + " bytes; a packet has at least 52)");
  uint8_t b[sizeof(HeaderBytes::b)];
  const uint64_t take = std::min<uint64_t>(len, sizeof b);
  std::memset(b, 0, sizeof b);
  GZC_CHECK(cudaMemcpyAsync(b, pkt, take, cudaMemcpyDeviceToHost, st));
  GZC_CHECK(cudaStreamSynchronize(st));
  // The CPU's own header validation (one home for the rules): it reads only the header and parameter block, which
  // fit in b (48 + 12 + 4 * 65 bytes), after checking them against len.
  gz::Header h = gz::parse_header(b, len);
  if (h.chunk_count == 0) gz::check_fixed_payload(h);
  return h;
}

void decode(const uint8_t* pkt, uint64_t len, float* out, uint64_t n, bool add, float alpha, cudaStream_t st,
            OpResult* res) {
  cudaGetLastError();
  const gz::Header h = read_header(pkt, len, st);
  if (n != h.n)
    throw gz::Error(gz::ErrCode::INVALID_ARG,
                    "output has " + std::to_string(n) + " elements, the packet holds " + std::to_string(h.n));
  OpResult* aux = scratch<OpResult>(1, st);
  GZC_CHECK(cudaMemsetAsync(aux, 0, sizeof(OpResult), st));
  DecCtx c;
  c.h = &h; c.pkt = pkt; c.out = out; c.n = n; c.add = add; c.alpha = alpha; c.d_flags = &aux->flags; c.st = st;
  c.table = pkt + gz::kHeaderBytes + h.param_bytes;
  c.payload = c.table + uint64_t(h.chunk_count) * 4;
  try {
    crc_verify(pkt, len - 4, c.d_flags, st);
    if (n > 0) {
      switch (h.codec) {
        case gz::QSGD:
          if (h.p.coding == gz::CODING_FIXED) qsgd_fixed_decode(c); else gamma_decode(c);
          break;
        case gz::TERNGRAD: qsgd_fixed_decode(c); break;
        case gz::ONEBIT: onebit_decode(c); break;
        case gz::TOPK: topk_decode(c); break;
        case gz::RANDOMK: randomk_decode(c); break;
        case gz::NONUNIFORM: nonuniform_decode(c); break;
      }
    }
  } catch (...) {
    release(aux, st);
    throw;
  }
  GZC_CHECK(cudaMemcpyAsync(res, aux, sizeof(OpResult), cudaMemcpyDeviceToHost, st));
  release(aux, st);
}

}  // namespace gzc
