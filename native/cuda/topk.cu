// Top-k by magnitude (codec 4): FORMAT sections 3.4 and 4.3. Exact, ties to the lower index.
//
// Selection is a radix select on the 31-bit magnitude key (|x| bits), in the spirit of AIR top-k / CUB's
// DeviceTopK: (1) one pass builds a 4096-bin histogram of key >> 19 (shared-memory histograms per block);
// (2) a one-block kernel finds the bin B holding the k-th largest key, with `above` keys in higher bins and
// rem = k - above still to take from B; (3) one filter pass appends the indices of keys in bins > B (all
// selected) and the (key, index) candidates of bin B (warp-aggregated atomics; order does not matter);
// (4) the candidates are sorted by (key descending, index ascending) -- one radix sort of a 53-bit composite --
// and the first rem are selected, which is exactly "ties to the lower index"; (5) the k selected indices are
// radix-sorted ascending, values gathered (f32/f16/bf16 with the CPU's rounding), and the indices coded as
// Elias-gamma deltas in chunks of 4096 (lengths, block scan, table scan, then a block per chunk writes).
// Two passes read x (histogram, filter); the rest touches O(k + |bin B|) data.
// The host waits once, after (2), to size the candidate buffer.
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include "cuda/bitio.cuh"
#include "cuda/fixed.cuh"
#include "cuda/kernels.h"

namespace gzc {
namespace {

constexpr int kBins = 4096, kShift = 19;
constexpr uint64_t kE = 4096;

// ---- value conversions: the CPU's (native/codecs/topk.cc) bit for bit
__device__ __forceinline__ uint16_t f32_to_f16(float f) {
  const uint32_t u = f2u(f);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
  if (a >= 0x477FE000u) return uint16_t(sign | 0x7BFFu);
  if (a < 0x38800000u) {
    if (a <= 0x33000000u) return uint16_t(sign);
    const int e = int(a >> 23);
    const uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
    const int sh = 126 - e;
    uint32_t r = mant >> sh;
    const uint32_t rem = mant & ((1u << sh) - 1), half = 1u << (sh - 1);
    r += (rem > half || (rem == half && (r & 1))) ? 1u : 0u;
    return uint16_t(sign | r);
  }
  uint32_t r = a - 0x38000000u;
  r = (r + 0xFFFu + ((r >> 13) & 1u)) >> 13;
  return uint16_t(sign | r);
}
__device__ __forceinline__ float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0) {
    const float v = float(m) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return u2f(sign | ((e + 112u) << 23) | (m << 13));
}
__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
  const uint32_t u = f2u(f);
  const uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  if ((r & 0x7F80u) == 0x7F80u) return uint16_t((u >> 16 & 0x8000u) | 0x7F7Fu);
  return uint16_t(r);
}

template <bool NZ>
__device__ __forceinline__ uint32_t key_of(float v, bool& bad) {
  return f2u(sanitize(v, NZ, bad)) & 0x7FFFFFFFu;
}

// Lanes with the same bin add once (Gaussian-like data crowd a few bins: plain shared atomics would serialize).
__device__ __forceinline__ void hist_add(uint32_t* h, uint32_t bin) {
  const uint32_t m = __match_any_sync(__activemask(), bin);
  if ((threadIdx.x & 31) == uint32_t(__ffs(m) - 1)) atomicAdd(&h[bin], uint32_t(__popc(m)));
}

template <bool NZ>
__global__ void __launch_bounds__(256) k_hist(const float* __restrict__ x, uint64_t n, uint32_t* __restrict__ hist, uint32_t* flags) {
  __shared__ uint32_t h[kBins];
  for (int i = threadIdx.x; i < kBins; i += blockDim.x) h[i] = 0;
  __syncthreads();
  bool bad = false;
  const uint64_t n4 = (reinterpret_cast<uintptr_t>(x) & 15) == 0 ? n / 4 : 0;
  for (uint64_t i = gtid(); i < n4; i += gstride()) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(x) + i);
    atomicAdd(&h[key_of<NZ>(v.x, bad) >> kShift], 1u);
    atomicAdd(&h[key_of<NZ>(v.y, bad) >> kShift], 1u);
    atomicAdd(&h[key_of<NZ>(v.z, bad) >> kShift], 1u);
    atomicAdd(&h[key_of<NZ>(v.w, bad) >> kShift], 1u);
  }
  for (uint64_t i = 4 * n4 + gtid(); i < n; i += gstride()) atomicAdd(&h[key_of<NZ>(__ldg(x + i), bad) >> kShift], 1u);
  __syncthreads();
  for (int i = threadIdx.x; i < kBins; i += blockDim.x)
    if (h[i]) atomicAdd(&hist[i], h[i]);
  if (bad) flag(flags, kErrNonFinite);
}

struct Sel { uint64_t bin, above, rem, cand; };

// One block of 1024 threads: suffix sums of the 4096 bins (4 per thread, block scan of the reversed order).
__global__ void __launch_bounds__(1024) k_pick(const uint32_t* __restrict__ hist, uint64_t k, Sel* out) {
  using Scan = cub::BlockScan<uint64_t, 1024>;
  __shared__ typename Scan::TempStorage tmp;
  const int t = threadIdx.x;
  // thread t owns bins b = 4095 - 4t - q (q = 0..3), i.e. descending order
  uint64_t h[4], sum = 0;
  for (int q = 0; q < 4; ++q) { h[q] = hist[kBins - 1 - 4 * t - q]; sum += h[q]; }
  uint64_t above;  // keys in bins above this thread's first bin
  Scan(tmp).ExclusiveSum(sum, above);
  for (int q = 0; q < 4; ++q) {
    const int b = kBins - 1 - 4 * t - q;
    if (above < k && (above + h[q] >= k || b == 0)) {
      out->bin = uint64_t(b); out->above = above; out->rem = k - above; out->cand = h[q];
    }
    above += h[q];
  }
}

__device__ __forceinline__ uint64_t warp_append(unsigned long long* ctr, bool take) {
  const uint32_t m = __ballot_sync(kFull, take);
  if (!m) return 0;
  const int lane = threadIdx.x & 31, leader = __ffs(m) - 1;
  unsigned long long base = 0;
  if (lane == leader) base = atomicAdd(ctr, (unsigned long long)__popc(m));
  base = __shfl_sync(kFull, base, leader);
  return base + __popc(m & ((1u << lane) - 1));
}

template <bool NZ, class IdxT>
__global__ void __launch_bounds__(256) k_filter(const float* __restrict__ x, uint64_t n, const Sel* __restrict__ sel,
                                               IdxT* __restrict__ chosen, uint64_t* __restrict__ cand,
                                               unsigned long long* ctrs) {
  const uint32_t B = uint32_t(sel->bin);
  bool bad = false;
  const uint64_t nn = (n + 31) / 32 * 32;  // whole warps for the ballots
  for (uint64_t i = gtid(); i < nn; i += gstride()) {
    uint32_t key = 0;
    if (i < n) key = key_of<NZ>(__ldg(x + i), bad);
    const uint32_t bin = key >> kShift;
    const bool hi = i < n && bin > B, eq = i < n && bin == B;
    const uint64_t p = warp_append(&ctrs[0], hi);
    if (hi) chosen[p] = IdxT(i);
    const uint64_t q = warp_append(&ctrs[1], eq);
    if (eq) cand[q] = (uint64_t(((1u << kShift) - 1) - (key & ((1u << kShift) - 1))) << 34) | i;
  }
}

template <class IdxT>
__global__ void k_take(const uint64_t* __restrict__ cand_sorted, const Sel* __restrict__ sel, IdxT* __restrict__ chosen) {
  const uint64_t above = sel->above, rem = sel->rem;
  for (uint64_t t = gtid(); t < rem; t += gstride()) chosen[above + t] = IdxT(cand_sorted[t] & ((uint64_t(1) << 34) - 1));
}

template <class IdxT, bool NZ>
__global__ void k_values(const float* __restrict__ x, const IdxT* __restrict__ idx, uint64_t k, uint8_t vt, uint8_t* __restrict__ pay) {
  bool bad = false;
  for (uint64_t t = gtid(); t < k; t += gstride()) {
    const float v = sanitize(__ldg(x + idx[t]), NZ, bad);
    if (vt == gz::VT_F32) st_f32(pay + 4 * t, v);
    else {
      const uint16_t h = vt == gz::VT_F16 ? f32_to_f16(v) : f32_to_bf16(v);
      pay[2 * t] = uint8_t(h); pay[2 * t + 1] = uint8_t(h >> 8);
    }
  }
}

// Index chunk bit lengths (WRITE = false) or the chunk's bits (WRITE = true), one block per chunk.
template <class IdxT, bool WRITE>
__global__ void __launch_bounds__(256) k_chunks(const IdxT* __restrict__ idx, uint64_t k, uint8_t* __restrict__ table,
                                               const uint64_t* __restrict__ off, uint8_t* __restrict__ streams) {
  using Scan = cub::BlockScan<uint64_t, 256>;
  __shared__ typename Scan::TempStorage tmp;
  extern __shared__ uint32_t stage[];
  const uint64_t C = (k + kE - 1) / kE;
  constexpr int PER = int(kE / 256);
  for (uint64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const uint64_t lo = c * kE, cnt = min(kE, k - lo);
    uint64_t bits = 0;
    for (int q = 0; q < PER; ++q) {
      const uint64_t j = threadIdx.x * PER + q;
      if (j < cnt) {
        const uint64_t d = j == 0 ? uint64_t(idx[lo]) + 1 : uint64_t(idx[lo + j]) - uint64_t(idx[lo + j - 1]);
        bits += 2 * floor_log2_u64(d) + 1;
      }
    }
    uint64_t pos, total;
    Scan(tmp).ExclusiveSum(bits, pos, total);
    if (!WRITE) {
      if (threadIdx.x == 0) st_u32(table + 4 * c, uint32_t((total + 7) / 8));
      __syncthreads();
      continue;
    }
    const uint32_t words = uint32_t((total + 31) / 32);
    for (uint32_t w = threadIdx.x; w < words; w += blockDim.x) stage[w] = 0;
    __syncthreads();
    for (int q = 0; q < PER; ++q) {
      const uint64_t j = threadIdx.x * PER + q;
      if (j < cnt) {
        const uint64_t d = j == 0 ? uint64_t(idx[lo]) + 1 : uint64_t(idx[lo + j]) - uint64_t(idx[lo + j - 1]);
        const int N = floor_log2_u64(d);
        // gamma: N zeros, a one, then the low N bits (LSB-first)
        uint64_t p = pos + N;
        atomicOr(&stage[p >> 5], 1u << (p & 31));
        ++p;
        for (int t = 0; t < N; ++t, ++p)
          if ((d >> t) & 1) atomicOr(&stage[p >> 5], 1u << (p & 31));
        pos += 2 * N + 1;
      }
    }
    __syncthreads();
    const uint64_t nbytes = (total + 7) / 8;
    uint8_t* dst = streams + off[c];
    const uint8_t* sb = reinterpret_cast<const uint8_t*>(stage);
    for (uint64_t i = threadIdx.x; i < nbytes; i += blockDim.x) dst[i] = sb[i];
    __syncthreads();
  }
}

__global__ void k_finish(const uint64_t* off, uint64_t C, uint64_t vbytes, uint8_t* pkt, uint64_t fixed_part, uint64_t* d_len) {
  const uint64_t pb = vbytes + off[C];
  for (int i = 0; i < 8; ++i) pkt[40 + i] = uint8_t(pb >> (8 * i));
  *d_len = fixed_part + pb + 4;
}

template <class IdxT>
void sort_keys(IdxT* keys, uint64_t count, int end_bit, cudaStream_t st) {
  if (count == 0) return;
  IdxT* alt = scratch<IdxT>(count, st);
  cub::DoubleBuffer<IdxT> db(keys, alt);
  size_t bytes = 0;
  GZC_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, bytes, db, count, 0, end_bit, st));
  void* tmp = scratch<uint8_t>(bytes, st);
  GZC_CHECK(cub::DeviceRadixSort::SortKeys(tmp, bytes, db, count, 0, end_bit, st));
  if (db.Current() != keys) GZC_CHECK(cudaMemcpyAsync(keys, db.Current(), count * sizeof(IdxT), cudaMemcpyDeviceToDevice, st));
  release(tmp, st);
  release(alt, st);
}

template <class IdxT>
void encode_t(EncCtx& c) {
  const gz::Params& p = *c.p;
  const uint64_t n = c.n, k = p.k;
  const bool nz = p.nonfinite_zero;
  const uint64_t vb = p.vt == gz::VT_F32 ? 4 : 2;
  uint32_t* hist = scratch<uint32_t>(kBins, c.st);
  Sel* d_sel = scratch<Sel>(1, c.st);
  unsigned long long* ctrs = scratch<unsigned long long>(2, c.st);
  GZC_CHECK(cudaMemsetAsync(hist, 0, kBins * 4, c.st));
  GZC_CHECK(cudaMemsetAsync(ctrs, 0, 16, c.st));
  const unsigned g = grid_for(n / 4 + 1, 256, 132 * 8);
  if (nz) k_hist<true><<<g, 256, 0, c.st>>>(c.x, n, hist, c.d_flags);
  else k_hist<false><<<g, 256, 0, c.st>>>(c.x, n, hist, c.d_flags);
  k_pick<<<1, 1024, 0, c.st>>>(hist, k, d_sel);
  GZC_CHECK(cudaGetLastError());
  Sel hs;
  GZC_CHECK(cudaMemcpyAsync(&hs, d_sel, sizeof hs, cudaMemcpyDeviceToHost, c.st));
  GZC_CHECK(cudaStreamSynchronize(c.st));
  IdxT* chosen = scratch<IdxT>(k, c.st);
  uint64_t* cand = scratch<uint64_t>(hs.cand + 1, c.st);
  const unsigned gf = grid_for((n + 31) / 32 * 32, 256, 132 * 16);
  if (nz) k_filter<true, IdxT><<<gf, 256, 0, c.st>>>(c.x, n, d_sel, chosen, cand, ctrs);
  else k_filter<false, IdxT><<<gf, 256, 0, c.st>>>(c.x, n, d_sel, chosen, cand, ctrs);
  GZC_CHECK(cudaGetLastError());
  sort_keys<uint64_t>(cand, hs.cand, 53, c.st);
  k_take<IdxT><<<grid_for(hs.rem, 256, 1024), 256, 0, c.st>>>(cand, d_sel, chosen);
  const int nbits = std::max(1, floor_log2_u64(n) + 1);
  sort_keys<IdxT>(chosen, k, nbits, c.st);
  if (nz) k_values<IdxT, true><<<grid_for(k, 256, 132 * 16), 256, 0, c.st>>>(c.x, chosen, k, p.vt, c.payload);
  else k_values<IdxT, false><<<grid_for(k, 256, 132 * 16), 256, 0, c.st>>>(c.x, chosen, k, p.vt, c.payload);
  const uint64_t C = c.C;
  uint64_t* off = scratch<uint64_t>(C + 1, c.st);
  const unsigned gc = unsigned(std::min<uint64_t>(C, 132 * 8));
  const size_t smem = (kE * 69 + 31) / 32 * 4 + 16;
  k_chunks<IdxT, false><<<gc, 256, 0, c.st>>>(chosen, k, c.table, nullptr, nullptr);
  uint32_t* dummy = scratch<uint32_t>(1, c.st);
  chunk_offsets(c.table, uint32_t(C), 0, off, dummy, c.st);
  GZC_CHECK(cudaFuncSetAttribute(k_chunks<IdxT, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  k_chunks<IdxT, true><<<gc, 256, smem, c.st>>>(chosen, k, c.table, off, c.payload + k * vb);
  k_finish<<<1, 1, 0, c.st>>>(off, C, k * vb, c.pkt, gz::kHeaderBytes + c.P + 4 * C, c.d_len);
  GZC_CHECK(cudaGetLastError());
  release(dummy, c.st); release(off, c.st); release(cand, c.st); release(chosen, c.st);
  release(ctrs, c.st); release(d_sel, c.st); release(hist, c.st);
}

// ---- decode: one warp per 32 index chunks (one lane per chunk), the chunks' bytes staged in shared memory
constexpr uint32_t kStageBytes = 40 * 1024;
template <bool STORE, bool ADD>
__global__ void __launch_bounds__(32) k_dec(const uint8_t* __restrict__ vals, const uint8_t* __restrict__ streams,
                                           const uint64_t* __restrict__ off, uint64_t n, uint64_t k, uint8_t vt,
                                           float* __restrict__ out, float alpha, uint64_t* __restrict__ fl, uint32_t* flags) {
  __shared__ uint32_t sbuf[kStageBytes / 4];
  if (STORE && flags_set(flags)) return;
  const uint64_t C = (k + kE - 1) / kE;
  const int maxN = floor_log2_u64(n);
  const int lane = threadIdx.x & 31;
  for (uint64_t c0 = uint64_t(blockIdx.x) * 32; c0 < C; c0 += uint64_t(gridDim.x) * 32) {
    const uint64_t c1 = min(C, c0 + 32);
    const uint8_t* st = stage_warp(streams + off[c0], off[c1] - off[c0], sbuf, kStageBytes);
    const uint64_t c = c0 + lane;
    if (c < c1) {
      const uint64_t lo = c * kE, cnt = min(kE, k - lo);
      DevBitReader br(st ? st + (off[c] - off[c0]) : streams + off[c], off[c + 1] - off[c]);
      bool bad = false;
      uint64_t ix = br.gamma(maxN) - 1, first = ix;
      for (uint64_t j = 0;;) {
        if (br.bad || ix >= n) { bad = true; break; }
        float v;
        if (vt == gz::VT_F32) {
          const uint32_t u = ld_u32(vals + 4 * (lo + j));
          if ((u & 0x7F800000u) == 0x7F800000u) { bad = true; break; }
          v = u2f(u);
        } else {
          const uint16_t h = uint16_t(vals[2 * (lo + j)] | (vals[2 * (lo + j) + 1] << 8));
          if (vt == gz::VT_BF16) {
            if ((h & 0x7F80u) == 0x7F80u) { bad = true; break; }
            v = u2f(uint32_t(h) << 16);
          } else {
            if ((h & 0x7C00u) == 0x7C00u) { bad = true; break; }
            v = f16_to_f32(h);
          }
        }
        if (STORE) out[ix] = ADD ? __fadd_rn(out[ix], __fmul_rn(alpha, v)) : v;
        if (++j == cnt) break;
        ix += br.gamma(maxN);
      }
      if (!bad) br.finish();
      if (bad || br.bad) flag(flags, kErrCorrupt);
      fl[2 * c] = first;
      fl[2 * c + 1] = ix;
    }
    __syncwarp();
  }
}

__global__ void k_cross(const uint64_t* fl, uint64_t C, uint32_t* flags) {
  for (uint64_t c = 1 + gtid(); c < C; c += gstride())
    if (fl[2 * c] <= fl[2 * c - 1]) flag(flags, kErrCorrupt);
}

__global__ void __launch_bounds__(256) k_zero(float* __restrict__ out, uint64_t n, const uint32_t* flags) {
  if (flags_set(flags)) return;
  for (uint64_t i = gtid(); i < n; i += gstride()) out[i] = 0.f;
}

}  // namespace

void topk_encode(EncCtx& c) {
  c.var_len = true;
  if (c.n == 0) {
    GZC_CHECK(cudaMemsetAsync(c.pkt + 40, 0, 8, c.st));
    const uint64_t total = gz::kHeaderBytes + c.P + 4;
    GZC_CHECK(cudaMemcpyAsync(c.d_len, &total, 8, cudaMemcpyHostToDevice, c.st));
    GZC_CHECK(cudaStreamSynchronize(c.st));
    return;
  }
  if (c.n <= (uint64_t(1) << 32)) encode_t<uint32_t>(c);
  else encode_t<uint64_t>(c);
}

void topk_decode(const DecCtx& c) {
  const gz::Header& h = *c.h;
  const uint64_t n = c.n, k = h.p.k, C = h.chunk_count;
  if (n == 0 || k == 0) return;
  const uint64_t vb = h.p.vt == gz::VT_F32 ? 4 : 2;
  if (h.payload_bytes < k * vb) { throw gz::Error(gz::ErrCode::CORRUPT, "corrupt packet: topk payload shorter than its values"); }
  uint64_t* off = scratch<uint64_t>(C + 1, c.st);
  uint64_t* fl = scratch<uint64_t>(2 * C, c.st);
  chunk_offsets(c.table, uint32_t(C), h.payload_bytes - k * vb, off, c.d_flags, c.st);
  const unsigned g = grid_for(C, 32, 132 * 64);
  const uint8_t* streams = c.payload + k * vb;
  if (c.add) {
    k_dec<false, false><<<g, 32, 0, c.st>>>(c.payload, streams, off, n, k, h.p.vt, c.out, c.alpha, fl, c.d_flags);
    k_cross<<<grid_for(C, 256, 64), 256, 0, c.st>>>(fl, C, c.d_flags);
    k_dec<true, true><<<g, 32, 0, c.st>>>(c.payload, streams, off, n, k, h.p.vt, c.out, c.alpha, fl, c.d_flags);
  } else {
    k_zero<<<grid_for(n, 256, 132 * 32), 256, 0, c.st>>>(c.out, n, c.d_flags);
    k_dec<true, false><<<g, 32, 0, c.st>>>(c.payload, streams, off, n, k, h.p.vt, c.out, c.alpha, fl, c.d_flags);
    k_cross<<<grid_for(C, 256, 64), 256, 0, c.st>>>(fl, C, c.d_flags);
  }
  GZC_CHECK(cudaGetLastError());
  release(fl, c.st);
  release(off, c.st);
}

}  // namespace gzc
