// QSGD with Elias-gamma codings (codec 1, coding gamma / sparse): FORMAT section 4.2.
//
// Encode (two-pass per-chunk size then scan, as in the issue's "simpler first" variant, with one read of x):
//   1. one block per chunk (grid-stride): bucket norms by warp (warp_l2_norm's fixed order) into shared memory
//      and into the chunk's slot; then tiles of 2048 elements (8 per thread): quantize (Philox of the global
//      index), code lengths, a block exclusive scan gives each thread's bit offset, codes are OR-ed into a
//      shared staging buffer and flushed as whole 32-bit words into the chunk's slot in scratch memory (slot
//      layout = the final chunk layout: scales, then the stream). Sparse first counts the non-zeros of each
//      bucket (a sweep without stores), and the zero runs come from a block max-scan of the last non-zero index.
//   2. a single-block scan of the chunk lengths (the chunk table) gives the byte offsets and payloadBytes;
//   3. a copy kernel moves each slot to its offset (the payload is ~1-3 bits per element, small next to x).
// Decode: one thread per chunk (chunks are independent), a validation pass without stores before decode-add.
#include <cub/block/block_scan.cuh>
#include "cuda/bitio.cuh"
#include "cuda/fixed.cuh"
#include "cuda/kernels.h"

namespace gzc {
namespace {

constexpr int TB = 256, EPT = 8, TILE = TB * EPT;
struct MaxOp {
  __device__ __forceinline__ long long operator()(long long a, long long b) const { return a > b ? a : b; }
};
constexpr int STAGE_WORDS = TILE * 40 / 32 + 8;  // 40 bits per element; larger tiles fall back to global atomics

struct GGeom {
  uint64_t n, b, E, C, slot;  // slot: bytes reserved per chunk in scratch (multiple of 16)
  uint32_t s;
  bool sparse, l2;
};

__host__ __device__ inline uint64_t bucket_max_bits(const GGeom& g, uint64_t m) {
  if (!g.sparse) return m * uint64_t(2 * floor_log2_u64(uint64_t(g.s) + 1) + 2);
  return uint64_t(2 * floor_log2_u64(m + 1) + 1) + m * uint64_t(3 + 2 * floor_log2_u64(g.s));
}

__device__ __forceinline__ void or_bits(uint32_t* words, uint64_t pos, uint64_t v, int len) {
  // v has len <= 64 bits; spans up to 3 words
  while (len > 0) {
    const uint32_t w = uint32_t(pos >> 5), o = uint32_t(pos & 31);
    const int take = min(len, int(32 - o));
    const uint32_t part = uint32_t(v & ((take == 64 ? ~0ull : ((1ull << take) - 1)))) << o;
    if (part) atomicOr(words + w, part);
    v = take >= 64 ? 0 : v >> take;
    len -= take;
    pos += take;
  }
}
__device__ __forceinline__ int glen(uint64_t x) { return 2 * floor_log2_u64(x) + 1; }

// Per-thread bit accumulator: codes are collected in a register and OR-ed into the stream (shared staging or
// the slot) 64 bits at a time, i.e. about one atomicOr per thread and tile instead of one per code.
struct BitAcc {
  uint32_t* dst;
  uint64_t pos, v = 0;
  int n = 0;
  __device__ BitAcc(uint32_t* d, uint64_t p) : dst(d), pos(p) {}
  __device__ __forceinline__ void put(uint64_t x, int len) {  // len <= 64
    if (n + len > 64) flush();
    v |= n ? (x << n) : x;
    n += len;
  }
  __device__ __forceinline__ void gamma(uint64_t x) {
    const int N = floor_log2_u64(x);
    put(uint64_t(1) << N, N + 1);
    if (N) put(x & ((uint64_t(1) << N) - 1), N);
  }
  __device__ __forceinline__ void flush() {
    if (n) { or_bits(dst, pos, v, n); pos += n; v = 0; n = 0; }
  }
};

template <bool NZ>
__global__ void __launch_bounds__(TB) k_enc(const float* __restrict__ x, GGeom g, uint64_t seed, uint8_t* __restrict__ slots,
                                           uint8_t* __restrict__ table, uint32_t* flags) {
  using Scan = cub::BlockScan<uint64_t, TB>;
  using ScanI = cub::BlockScan<long long, TB>;
  __shared__ union { typename Scan::TempStorage s; typename ScanI::TempStorage i; } tmp;
  __shared__ float sC[2048], sR[2048];
  __shared__ uint32_t snnz[2048];
  __shared__ uint32_t stage[STAGE_WORDS];
  __shared__ uint64_t s_total;
  __shared__ long long s_last;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  bool bad = false, ovf = false;
  const float s65536 = float(g.s) * 65536.f;
  for (uint64_t c = blockIdx.x; c < g.C; c += gridDim.x) {
    const uint64_t lo = c * g.E, hi = min(g.n, lo + g.E), len = hi - lo;
    const uint32_t nb = uint32_t((len + g.b - 1) / g.b);
    uint8_t* slot = slots + c * g.slot;
    uint32_t* sw = reinterpret_cast<uint32_t*>(slot);
    // ---- norms
    for (uint32_t bi = warp; bi < nb; bi += TB / 32) {
      const uint64_t b0 = lo + uint64_t(bi) * g.b, m = min(g.b, hi - b0);
      const uint32_t amax = warp_amax<NZ>(x + b0, m, lane, bad);
      const float N = g.l2 ? warp_l2_norm<NZ>(x + b0, m, lane, amax, bad) : u2f(amax);
      if (isinf(N)) ovf = true;
      if (lane == 0) {
        float r65536, s65, cpre;
        gz::ref::qsgd_bucket_consts(N, g.s, &r65536, &s65, &cpre);
        sC[bi] = cpre; sR[bi] = r65536; snnz[bi] = 0;
        sw[bi] = f2u(N);
      }
    }
    __syncthreads();
    Uniforms U(seed);
    // ---- sparse: non-zero counts per bucket
    if (g.sparse) {
      for (uint64_t t0 = 0; t0 < len; t0 += TILE) {
        const uint64_t i0 = t0 + uint64_t(tid) * EPT;
        if (i0 < len) {
          const uint32_t cnt = uint32_t(min(uint64_t(EPT), len - i0));
          const uint32_t b32 = uint32_t(g.b), bi0 = uint32_t(i0) / b32, r0 = uint32_t(i0) - bi0 * b32;
          float v[8];
          load8<NZ>(x + lo + i0, cnt, v, bad);
          uint32_t run = 0, cur_b = bi0;
          _Pragma("unroll") for (uint32_t k = 0; k < 8; ++k) if (k < cnt) {
            const uint32_t rk = r0 + k, bi = rk < b32 ? bi0 : bi0 + rk / b32;
            const uint32_t zz = gz::ref::qsgd_zeta(v[k] * sC[bi], sR[bi], s65536, U.at(lo + i0 + k));
            if (bi != cur_b) { if (run) atomicAdd(&snnz[cur_b], run); run = 0; cur_b = bi; }
            run += zz ? 1u : 0u;
          }
          if (run) atomicAdd(&snnz[cur_b], run);
        }
      }
      __syncthreads();
    }
    // ---- stream
    for (int w = tid; w < STAGE_WORDS; w += TB) stage[w] = 0;
    if (tid == 0) { s_total = 0; s_last = -1; }
    __syncthreads();
    const uint64_t sbase = uint64_t(nb) * 32;  // bit position of the stream in the slot
    uint64_t cur = 0;                           // stream bits written so far (block-uniform)
    long long last_carry = -1;
    for (uint64_t t0 = 0; t0 < len; t0 += TILE) {
      const uint64_t i0 = t0 + uint64_t(tid) * EPT;
      const uint32_t cnt = i0 < len ? uint32_t(min(uint64_t(EPT), len - i0)) : 0;
      const uint32_t b32 = uint32_t(g.b), bi0 = uint32_t(i0) / b32, r0 = uint32_t(i0) - bi0 * b32;
      auto bucket_of = [&](uint32_t k) { const uint32_t rk = r0 + k; return rk < b32 ? bi0 : bi0 + rk / b32; };
      float v[8];
      uint32_t z[8];
      if (cnt) load8<NZ>(x + lo + i0, cnt, v, bad);
      long long my_last = -1;
      _Pragma("unroll") for (uint32_t k = 0; k < 8; ++k) {
        z[k] = 0;
        if (k < cnt) {
          const uint64_t i = i0 + k;
          const uint32_t bi = bucket_of(k);
          z[k] = gz::ref::qsgd_zeta(v[k] * sC[bi], sR[bi], s65536, U.at(lo + i));
          if (z[k]) my_last = (long long)i;
        }
      }
      long long prev = -1;
      if (g.sparse) {
        ScanI(tmp.i).ExclusiveScan(my_last, prev, -1ll, MaxOp());
        __syncthreads();
        prev = max(prev, last_carry);
      }
      // lengths
      uint64_t bits = 0;
      {
        long long lastnz = prev;
        _Pragma("unroll") for (uint32_t k = 0; k < 8; ++k) if (k < cnt) {
          const uint64_t i = i0 + k;
          const uint32_t bi = bucket_of(k);
          if (g.sparse) {
            const uint64_t bstart = uint64_t(bi) * g.b;
            if (i == bstart) bits += glen(uint64_t(snnz[bi]) + 1);
            if (z[k]) {
              const long long l = max(lastnz, (long long)bstart - 1);
              bits += glen(uint64_t((long long)i - l)) + glen(z[k]) + 1;
              lastnz = (long long)i;
            }
          } else {
            bits += glen(uint64_t(z[k]) + 1) + (z[k] ? 1 : 0);
          }
        }
      }
      uint64_t off, total;
      Scan(tmp.s).ExclusiveSum(bits, off, total);
      const uint64_t w0 = cur >> 5;  // first stream word of this tile (stage[0] holds its carried bits)
      const bool staged = ((cur & 31) + total) <= uint64_t(STAGE_WORDS - 2) * 32;
      uint32_t* dst = staged ? stage : sw + nb + w0;
      if (!staged) {  // the carried partial word goes to the slot first
        if (tid == 0) sw[nb + w0] = stage[0];
        __syncthreads();
      }
      BitAcc W(dst, (cur & 31) + off);
      {
        long long lastnz = prev;
        _Pragma("unroll") for (uint32_t k = 0; k < 8; ++k) if (k < cnt) {
          const uint64_t i = i0 + k;
          const uint32_t bi = bucket_of(k);
          const uint32_t sg = (z[k] && v[k] < 0.f) ? 1u : 0u;
          if (g.sparse) {
            const uint64_t bstart = uint64_t(bi) * g.b;
            if (i == bstart) W.gamma(uint64_t(snnz[bi]) + 1);
            if (z[k]) {
              const long long l = max(lastnz, (long long)bstart - 1);
              W.gamma(uint64_t((long long)i - l));
              W.gamma(z[k]);
              W.put(sg, 1);
              lastnz = (long long)i;
            }
          } else {
            W.gamma(uint64_t(z[k]) + 1);
            if (z[k]) W.put(sg, 1);
          }
        }
        W.flush();
      }
      if (g.sparse) {
        // carry of the last non-zero index: the block max of my_last
        if (tid == TB - 1) s_last = max(prev, my_last);
        // (prev of the last thread already includes all earlier threads)
      }
      __syncthreads();
      if (g.sparse) last_carry = max(last_carry, s_last);
      const uint64_t end = cur + total;
      if (staged) {
        const uint64_t full = (end >> 5) - w0;  // complete words
        for (uint64_t w = tid; w < full; w += TB) sw[nb + w0 + w] = stage[w];
        __syncthreads();
        const uint32_t carry = (end & 31) ? stage[full] : 0u;  // read by every thread before anyone zeroes
        __syncthreads();
        for (int w = tid; w < STAGE_WORDS; w += TB) stage[w] = 0;
        __syncthreads();
        if (tid == 0) stage[0] = carry;
      } else {
        // written straight to the slot (with atomics); reload the partial word into stage[0]
        __syncthreads();
        for (int w = tid; w < STAGE_WORDS; w += TB) stage[w] = 0;
        __syncthreads();
        if (tid == 0) stage[0] = (end & 31) ? sw[nb + (end >> 5)] : 0u;
      }
      __syncthreads();
      cur = end;
    }
    if ((cur & 31) && tid == 0) sw[nb + (cur >> 5)] = stage[0];
    if (tid == 0) st_u32(table + 4 * c, uint32_t(uint64_t(nb) * 4 + (cur + 7) / 8));
    (void)sbase;
    __syncthreads();
  }
  if (bad) flag(flags, kErrNonFinite);
  if (ovf) flag(flags, kErrOverflow);
}

// Copies slot c (its first len bytes) to payload + off[c]; block c; writes payloadBytes and the packet length.
__global__ void __launch_bounds__(256) k_compact(const uint8_t* __restrict__ slots, uint64_t slot, const uint64_t* __restrict__ off,
                                                uint64_t C, uint8_t* __restrict__ payload, uint8_t* pkt, uint64_t fixed_part,
                                                uint64_t* d_len) {
  for (uint64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const uint64_t o = off[c], len = off[c + 1] - o;
    const uint8_t* s = slots + c * slot;
    uint8_t* d = payload + o;
    for (uint64_t i = threadIdx.x; i < len; i += blockDim.x) d[i] = s[i];
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    const uint64_t pb = off[C];
    for (int i = 0; i < 8; ++i) pkt[40 + i] = uint8_t(pb >> (8 * i));
    *d_len = fixed_part + pb + 4;
  }
}

// Decoder: one warp per 32 consecutive chunks, one lane per chunk; the warp first stages the 32 chunks'
// bytes (contiguous in the payload) into shared memory, so the serial bit reading hits shared memory.
// STORE = false: validation only.
constexpr uint32_t kStageBytes = 40 * 1024;
template <bool STORE, bool ADD>
__global__ void __launch_bounds__(32) k_dec(const uint8_t* __restrict__ payload, const uint64_t* __restrict__ off, GGeom g,
                                           float* __restrict__ out, float alpha, uint32_t* flags) {
  __shared__ uint32_t sbuf[kStageBytes / 4];
  if (STORE && flags_set(flags)) return;
  const float fs = float(g.s);
  const int maxN_z1 = floor_log2_u64(uint64_t(g.s) + 1), maxN_z = floor_log2_u64(uint64_t(g.s));
  const int lane = threadIdx.x & 31;
  for (uint64_t c0 = uint64_t(blockIdx.x) * 32; c0 < g.C; c0 += uint64_t(gridDim.x) * 32) {
    const uint64_t c1 = min(g.C, c0 + 32);
    const uint8_t* st = stage_warp(payload + off[c0], off[c1] - off[c0], sbuf, kStageBytes);
    const uint64_t c = c0 + lane;
    if (c < c1) {
      const uint64_t lo = c * g.E, hi = min(g.n, lo + g.E);
      const uint64_t nb = (hi - lo + g.b - 1) / g.b;
      const uint8_t* ck = st ? st + (off[c] - off[c0]) : payload + off[c];
      const uint64_t clen = off[c + 1] - off[c];
      bool bad = clen < 4 * nb;
      DevBitReader br(ck + 4 * nb, bad ? 0 : clen - 4 * nb);
      for (uint64_t bi = 0; bi < nb && !bad; ++bi) {
        const uint64_t b0 = lo + bi * g.b, m = min(g.b, hi - b0);
        const uint32_t nbits = ld_u32(ck + 4 * bi);
        if (nbits >= 0x7F800000u) { bad = true; break; }
        const float w = u2f(nbits) / fs;
        float* o = out + b0;
        if (g.sparse) {
          const uint64_t nnz = br.gamma(floor_log2_u64(m + 1)) - 1;
          if (br.bad || nnz > m) { bad = true; break; }
          uint64_t i = 0;
          for (uint64_t j = 0; j < nnz; ++j) {
            const uint64_t r = br.gamma(floor_log2_u64(m)) - 1;
            if (br.bad || r >= m - i) { bad = true; break; }
            if (STORE)
              for (uint64_t q = 0; q < r; ++q) o[i + q] = ADD ? __fadd_rn(o[i + q], __fmul_rn(alpha, 0.f)) : 0.f;
            i += r;
            const uint64_t z = br.gamma(maxN_z);
            if (br.bad || z > g.s) { bad = true; break; }
            const uint32_t sg = br.bit();
            if (STORE) {
              const float val = gz::ref::qsgd_value(w, uint32_t(z), sg);
              o[i] = ADD ? __fadd_rn(o[i], __fmul_rn(alpha, val)) : val;
            }
            ++i;
          }
          if (bad) break;
          if (STORE)
            for (; i < m; ++i) o[i] = ADD ? __fadd_rn(o[i], __fmul_rn(alpha, 0.f)) : 0.f;
        } else {
          for (uint64_t i = 0; i < m; ++i) {
            const uint64_t z = br.gamma(maxN_z1) - 1;
            if (br.bad || z > g.s) { bad = true; break; }
            const uint32_t sg = z ? br.bit() : 0u;
            if (STORE) {
              const float val = gz::ref::qsgd_value(w, uint32_t(z), sg);
              o[i] = ADD ? __fadd_rn(o[i], __fmul_rn(alpha, val)) : val;
            }
          }
        }
      }
      if (!bad) br.finish();
      if (bad || br.bad) flag(flags, kErrCorrupt);
    }
    __syncwarp();
  }
}

GGeom geom(const gz::Params& p, uint64_t n) {
  GGeom g;
  g.n = n; g.b = p.bucket; g.s = p.levels;
  g.sparse = p.coding == gz::CODING_SPARSE;
  g.l2 = p.norm == gz::NORM_L2;
  g.E = g.b * (g.b >= 2048 ? 1 : 2048 / g.b);
  g.C = n ? (n + g.E - 1) / g.E : 0;
  const uint64_t m = std::min(g.E, n ? n : 1);
  const uint64_t nbE = (m + g.b - 1) / g.b;
  const uint64_t bits = g.sparse ? nbE * bucket_max_bits(g, std::min(g.b, m)) : bucket_max_bits(g, m);
  g.slot = (4 * nbE + (bits + 7) / 8 + 8 + 15) / 16 * 16;
  return g;
}

}  // namespace

void gamma_encode(EncCtx& c) {
  c.var_len = true;
  const GGeom g = geom(*c.p, c.n);
  const uint64_t fixed_part = gz::kHeaderBytes + c.P + 4 * uint64_t(c.C);
  if (c.n == 0) {
    // empty: payloadBytes 0 (header kernel writes [0,40); write 40..47 and the length here)
    uint64_t* tmp = scratch<uint64_t>(1, c.st);
    GZC_CHECK(cudaMemsetAsync(c.pkt + 40, 0, 8, c.st));
    const uint64_t total = fixed_part + 4;
    GZC_CHECK(cudaMemcpyAsync(c.d_len, &total, 8, cudaMemcpyHostToDevice, c.st));
    GZC_CHECK(cudaStreamSynchronize(c.st));
    release(tmp, c.st);
    return;
  }
  uint8_t* slots = scratch<uint8_t>(g.C * g.slot, c.st);
  uint64_t* off = scratch<uint64_t>(g.C + 1, c.st);
  GZC_CHECK(cudaMemsetAsync(slots, 0, g.C * g.slot, c.st));
  const unsigned grid = unsigned(std::min<uint64_t>(g.C, 132 * 8));
  if (c.p->nonfinite_zero) k_enc<true><<<grid, TB, 0, c.st>>>(c.x, g, c.seed, slots, c.table, c.d_flags);
  else k_enc<false><<<grid, TB, 0, c.st>>>(c.x, g, c.seed, slots, c.table, c.d_flags);
  GZC_CHECK(cudaGetLastError());
  // exclusive offsets (no expected sum: pass the flag pointer of a dummy check that cannot fail)
  uint32_t* dummy = scratch<uint32_t>(1, c.st);
  chunk_offsets(c.table, uint32_t(g.C), 0, off, dummy, c.st);
  k_compact<<<unsigned(std::min<uint64_t>(g.C, 132 * 16)), 256, 0, c.st>>>(slots, g.slot, off, g.C, c.payload, c.pkt,
                                                                          fixed_part, c.d_len);
  GZC_CHECK(cudaGetLastError());
  release(dummy, c.st);
  release(off, c.st);
  release(slots, c.st);
}

void gamma_decode(const DecCtx& c) {
  const GGeom g = geom(c.h->p, c.n);
  if (c.n == 0) return;
  uint64_t* off = scratch<uint64_t>(g.C + 1, c.st);
  chunk_offsets(c.table, uint32_t(g.C), c.h->payload_bytes, off, c.d_flags, c.st);
  const unsigned grid = grid_for(g.C, 32, 132 * 64);
  if (c.add) {
    k_dec<false, false><<<grid, 32, 0, c.st>>>(c.payload, off, g, c.out, c.alpha, c.d_flags);
    k_dec<true, true><<<grid, 32, 0, c.st>>>(c.payload, off, g, c.out, c.alpha, c.d_flags);
  } else {
    k_dec<true, false><<<grid, 32, 0, c.st>>>(c.payload, off, g, c.out, c.alpha, c.d_flags);
  }
  GZC_CHECK(cudaGetLastError());
  release(off, c.st);
}

}  // namespace gzc
