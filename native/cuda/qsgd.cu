// QSGD with fixed-width codes and TernGrad (= qsgd s=1, l-inf, fixed): FORMAT sections 3.1, 3.2, 4.1.
#include <algorithm>
#include "cuda/fixed.cuh"
#include "cuda/kernels.h"

namespace gzc {
namespace {

struct FixedShape {
  uint64_t n, b, B, stride;  // stride: bytes of a full bucket (4 + ceil(b*W/8))
  uint32_t s, W;
};

// Encoder, one warp per bucket (grid-stride over buckets).
// Invariants: the scale is the FORMAT norm (warp_l2_norm's fixed lane order, or the exact max); lane j then
// owns the 8-element groups g = j, j+32, ... of the bucket, whose codes are exactly W bytes at byte g*W of the
// bucket's code area (8 codes * W bits), so no two lanes write the same byte. Uniforms come from the Philox
// block of each element's global index (never from thread ids).
template <bool NZ, int WC>  // WC: compile-time code width (0 = f.W at run time)
__global__ void __launch_bounds__(256, 4) k_enc(const float* __restrict__ x, FixedShape f, bool l2, uint8_t* __restrict__ pay,
                                            uint64_t seed, uint32_t* flags) {
  const uint32_t W = WC ? uint32_t(WC) : f.W;
  const int lane = threadIdx.x & 31;
  const uint64_t nw = gstride() >> 5;
  bool bad = false, ovf = false;
  for (uint64_t j = gtid() >> 5; j < f.B; j += nw) {
    const uint64_t start = j * f.b, m = min(f.b, f.n - start);
    const float* v = x + start;
    float N;
    if (m <= 512) {
      uint32_t amax;
      N = warp_norm_regs<NZ, 16>(v, m, lane, l2, &amax, bad);
    } else {
      const uint32_t amax = warp_amax<NZ>(v, m, lane, bad);
      N = l2 ? warp_l2_norm<NZ>(v, m, lane, amax, bad) : u2f(amax);
    }
    if (isinf(N)) ovf = true;
    uint8_t* o = pay + j * f.stride;
    if (lane == 0) st_f32(o, N);
    o += 4;
    float r65536, s65536, cpre;  // cpre: FORMAT 3.1 tiny-scale pre-scaling
    gz::ref::qsgd_bucket_consts(N, f.s, &r65536, &s65536, &cpre);
    Uniforms U(seed);
    const bool aligned8 = (start & 7) == 0;  // then group g is exactly Philox block (start + 8g) / 8
    const uint64_t G = (m + 7) >> 3;
    for (uint64_t g = lane; g < G; g += 32) {
      const uint64_t i0 = g << 3;
      const uint32_t cnt = uint32_t(min(uint64_t(8), m - i0));
      float vals[8];
      load8<NZ>(v + i0, cnt, vals, bad);
      gz::Philox4 ph;
      if (aligned8) ph = gz::philox_block(seed, (start + i0) >> 3, 0);
      Bits3 bb{{0, 0, 0}};
#pragma unroll
      for (uint32_t k = 0; k < 8; ++k) {
        if (k < cnt) {
          const uint32_t u = aligned8 ? (ph.v[k >> 1] >> (16 * (k & 1))) & 0xFFFFu : U.at(start + i0 + k);
          const uint32_t z = gz::ref::qsgd_zeta(vals[k] * cpre, r65536, s65536, u);
          const uint32_t sg = (z > 0 && vals[k] < 0.f) ? 1u : 0u;
          put_bits(bb, k * W, W, (uint64_t(z) << 1) | sg);
        }
      }
      store_bytes(o + g * W, bb, uint32_t((uint64_t(cnt) * W + 7) >> 3));
    }
  }
  if (bad) flag(flags, kErrNonFinite);
  if (ovf) flag(flags, kErrOverflow);
}

// Decoder, one warp per bucket (lane j: groups j, j+32, ...; one division per lane and bucket, no 64-bit
// integer division). VALIDATE: checks only (scale finite and >= 0, zeta <= s), no stores. Otherwise returns at
// once when an earlier step flagged the packet (CRC, table, validation pass).
template <bool ADD, bool VALIDATE, int WC>
__global__ void __launch_bounds__(256) k_dec(const uint8_t* __restrict__ pay, FixedShape f, float* __restrict__ out,
                                            float alpha, uint32_t* flags) {
  if (!VALIDATE && flags_set(flags)) return;
  const uint32_t W = WC ? uint32_t(WC) : f.W;
  const int lane = threadIdx.x & 31;
  const uint64_t nw = gstride() >> 5;
  for (uint64_t j = gtid() >> 5; j < f.B; j += nw) {
    const uint64_t start = j * f.b, m = min(f.b, f.n - start);
    const uint8_t* o = pay + j * f.stride;
    const uint32_t nbits = ld_u32(o);
    if (nbits >= 0x7F800000u) { if (lane == 0) flag(flags, kErrCorrupt); continue; }
    const float w = u2f(nbits) / float(f.s);
    const uint64_t G = (m + 7) >> 3;
    bool corrupt = false;
    for (uint64_t g = lane; g < G; g += 32) {
      const uint64_t i0 = g << 3;
      const uint32_t cnt = uint32_t(min(uint64_t(8), m - i0));
      Bits3 bb;
      load_bytes(o + 4 + g * W, uint32_t((uint64_t(cnt) * W + 7) >> 3), bb);
      float vals[8];
#pragma unroll
      for (uint32_t k = 0; k < 8; ++k) {
        const uint32_t code = k < cnt ? get_bits(bb, k * W, W) : 0u;
        const uint32_t z = code >> 1;
        if (z > f.s) corrupt = true;
        vals[k] = gz::ref::qsgd_value(w, z, code & 1u);
      }
      if (!VALIDATE && !corrupt) store8<ADD>(out + start + i0, cnt, vals, alpha);
    }
    if (corrupt) flag(flags, kErrCorrupt);
  }
}

FixedShape shape_of(uint64_t n, uint32_t b, uint32_t s, uint32_t W) {
  FixedShape f;
  f.n = n; f.b = b; f.B = (n + b - 1) / b; f.s = s; f.W = W;
  f.stride = 4 + (uint64_t(b) * W + 7) / 8;
  return f;
}

template <int WC>
void enc_w(const EncCtx& c, const FixedShape& f, bool l2, unsigned grid) {
  if (c.p->nonfinite_zero) k_enc<true, WC><<<grid, 256, 0, c.st>>>(c.x, f, l2, c.payload, c.seed, c.d_flags);
  else k_enc<false, WC><<<grid, 256, 0, c.st>>>(c.x, f, l2, c.payload, c.seed, c.d_flags);
}
template <int WC>
void dec_w(const DecCtx& c, const FixedShape& f, unsigned grid) {
  if (c.add) {
    k_dec<true, true, WC><<<grid, 256, 0, c.st>>>(c.payload, f, c.out, c.alpha, c.d_flags);
    k_dec<true, false, WC><<<grid, 256, 0, c.st>>>(c.payload, f, c.out, c.alpha, c.d_flags);
  } else {
    k_dec<false, false, WC><<<grid, 256, 0, c.st>>>(c.payload, f, c.out, c.alpha, c.d_flags);
  }
}

}  // namespace

void qsgd_fixed_encode(EncCtx& c) {
  const gz::Params& p = *c.p;
  const bool tern = p.codec == gz::TERNGRAD;
  const uint32_t s = tern ? 1 : p.levels;
  const FixedShape f = shape_of(c.n, p.bucket, s, tern ? 2 : 1 + bits_for(s));
  if (c.n == 0) return;
  const bool l2 = !tern && p.norm == gz::NORM_L2;
  const unsigned grid = grid_for(f.B * 32, 256, 132 * 64);
  switch (f.W) {  // compile-time widths for the common level counts (s <= 127)
    case 2: enc_w<2>(c, f, l2, grid); break;
    case 3: enc_w<3>(c, f, l2, grid); break;
    case 4: enc_w<4>(c, f, l2, grid); break;
    case 5: enc_w<5>(c, f, l2, grid); break;
    case 6: enc_w<6>(c, f, l2, grid); break;
    case 7: enc_w<7>(c, f, l2, grid); break;
    case 8: enc_w<8>(c, f, l2, grid); break;
    default: enc_w<0>(c, f, l2, grid); break;
  }
  GZC_CHECK(cudaGetLastError());
}

void qsgd_fixed_decode(const DecCtx& c) {
  const gz::Params& p = c.h->p;
  const bool tern = c.h->codec == gz::TERNGRAD;
  const uint32_t s = tern ? 1 : p.levels;
  const FixedShape f = shape_of(c.n, c.h->bucket, s, tern ? 2 : 1 + bits_for(s));
  if (c.n == 0) return;
  const unsigned grid = grid_for(f.B * 32, 256, 132 * 64);
  switch (f.W) {
    case 2: dec_w<2>(c, f, grid); break;
    case 3: dec_w<3>(c, f, grid); break;
    case 4: dec_w<4>(c, f, grid); break;
    case 5: dec_w<5>(c, f, grid); break;
    case 6: dec_w<6>(c, f, grid); break;
    case 7: dec_w<7>(c, f, grid); break;
    case 8: dec_w<8>(c, f, grid); break;
    default: dec_w<0>(c, f, grid); break;
  }
  GZC_CHECK(cudaGetLastError());
}

}  // namespace gzc
