// 1-bit SGD (codec 3): FORMAT sections 3.3 and 4.1. Bucket layout: [pos f32][neg f32][ceil(m/8) sign bytes].
#include "cuda/fixed.cuh"
#include "cuda/kernels.h"

namespace gzc {
namespace {

struct Shape { uint64_t n, b, B, stride; };

// Encoder, one warp per bucket, a single read of x. Invariants: in iteration t lane j holds element
// i = 32t + j of the bucket, so the class sums follow the FORMAT lane order (lane[i mod 32] += v_i in
// increasing i, rounded adds), then the shuffle-down tree; the warp ballot of (v_i < 0) is exactly the
// 32 sign bits of elements 32t..32t+31 = sign bytes 4t..4t+3 (LSB-first), written by lanes 0..3.
template <bool NZ>
__global__ void __launch_bounds__(256) k_enc(const float* __restrict__ x, Shape f, uint8_t* __restrict__ pay,
                                            uint32_t* flags) {
  const int lane = threadIdx.x & 31;
  const uint64_t nw = gstride() >> 5;
  bool bad = false;
  for (uint64_t j = gtid() >> 5; j < f.B; j += nw) {
    const uint64_t start = j * f.b, m = min(f.b, f.n - start);
    const float* v = x + start;
    uint8_t* o = pay + j * f.stride;
    const uint64_t nbytes = (m + 7) >> 3;
    float sp = 0.f, sn = 0.f;
    uint32_t cp = 0, cn = 0;
    // batches of U iterations: U independent loads per lane in flight, then the in-order accumulation
    constexpr int U = 8;
    for (uint64_t t0 = 0; t0 < m; t0 += 32 * U) {
      float xs[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const uint64_t i = t0 + 32u * u + lane;
        xs[u] = i < m ? __ldg(v + i) : 0.f;
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const uint64_t tb = t0 + 32u * u;
        if (tb >= m) break;  // warp-uniform
        const uint64_t i = tb + lane;
        const float xv = i < m ? sanitize(xs[u], NZ, bad) : 0.f;
        const bool neg = i < m && xv < 0.f;
        const uint32_t mask = __ballot_sync(kFull, neg);
        if (i < m) {
          if (neg) { sn = __fadd_rn(sn, xv); ++cn; } else { sp = __fadd_rn(sp, xv); ++cp; }
        }
        const uint64_t byte = (tb >> 3) + lane;
        if (lane < 4 && byte < nbytes) o[8 + byte] = uint8_t(mask >> (8 * lane));
      }
    }
    for (int w = 16; w >= 1; w >>= 1) {
      sp = __fadd_rn(sp, __shfl_down_sync(kFull, sp, w));
      sn = __fadd_rn(sn, __shfl_down_sync(kFull, sn, w));
    }
    cp = __reduce_add_sync(kFull, cp);
    cn = __reduce_add_sync(kFull, cn);
    if (lane == 0) {
      st_f32(o, cp ? sp / float(cp) : 0.f);
      st_f32(o + 4, cn ? sn / float(cn) : 0.f);
    }
  }
  if (bad) flag(flags, kErrNonFinite);
}

// Decoder, one warp per bucket; lane j expands sign bytes j, j+32, ... (8 elements each).
template <bool ADD, bool VALIDATE>
__global__ void __launch_bounds__(256) k_dec(const uint8_t* __restrict__ pay, Shape f, float* __restrict__ out,
                                            float alpha, uint32_t* flags) {
  if (!VALIDATE && flags_set(flags)) return;
  const int lane = threadIdx.x & 31;
  const uint64_t nw = gstride() >> 5;
  for (uint64_t j = gtid() >> 5; j < f.B; j += nw) {
    const uint64_t start = j * f.b, m = min(f.b, f.n - start);
    const uint8_t* o = pay + j * f.stride;
    const float pos = ld_f32(o), neg = ld_f32(o + 4);
    if (!isfinite(pos) || !isfinite(neg)) { if (lane == 0) flag(flags, kErrCorrupt); continue; }
    if (VALIDATE) continue;
    const uint64_t G = (m + 7) >> 3;
    for (uint64_t g = lane; g < G; g += 32) {
      const uint64_t i0 = g << 3;
      const uint32_t cnt = uint32_t(min(uint64_t(8), m - i0));
      const uint32_t bits = o[8 + g];
      float vals[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) vals[k] = (bits >> k) & 1u ? neg : pos;
      store8<ADD>(out + start + i0, cnt, vals, alpha);
    }
  }
}

Shape shape_of(uint64_t n, uint32_t b) {
  Shape f;
  f.n = n; f.b = b; f.B = (n + b - 1) / b;
  f.stride = 8 + (uint64_t(b) + 7) / 8;
  return f;
}

}  // namespace

void onebit_encode(EncCtx& c) {
  if (c.n == 0) return;
  const Shape f = shape_of(c.n, c.p->bucket);
  const unsigned grid = grid_for(f.B * 32, 256, 132 * 64);
  if (c.p->nonfinite_zero) k_enc<true><<<grid, 256, 0, c.st>>>(c.x, f, c.payload, c.d_flags);
  else k_enc<false><<<grid, 256, 0, c.st>>>(c.x, f, c.payload, c.d_flags);
  GZC_CHECK(cudaGetLastError());
}

void onebit_decode(const DecCtx& c) {
  if (c.n == 0) return;
  const Shape f = shape_of(c.n, c.h->bucket);
  const unsigned grid = grid_for(f.B * 32, 256, 132 * 64);
  if (c.add) {
    k_dec<true, true><<<grid, 256, 0, c.st>>>(c.payload, f, c.out, c.alpha, c.d_flags);
    k_dec<true, false><<<grid, 256, 0, c.st>>>(c.payload, f, c.out, c.alpha, c.d_flags);
  } else {
    k_dec<false, false><<<grid, 256, 0, c.st>>>(c.payload, f, c.out, c.alpha, c.d_flags);
  }
  GZC_CHECK(cudaGetLastError());
}

}  // namespace gzc
