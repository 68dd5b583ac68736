// TinyScript non-uniform quantizer (codec 6): FORMAT sections 3.6 and 4.1. Bucket layout: [M f32][codes].
// Encode: (1) a device pass writes M per bucket and the fit sums S1_b = sum y_i, S2_b = sum y_i^2 in double,
// element order, y_i = double(|v_i|) * (1.0 / double(M)) -- the exact CPU expression (native/codecs/
// nonuniform.cc); (2) the host adds them in bucket order and runs the same fit (weibull::fit_from_sums), so the
// levels are bit-identical; (3) a device pass quantizes with gz::ref::nu_zeta.
#include <vector>
#include "codecs/weibull.h"
#include "cuda/fixed.cuh"
#include "cuda/kernels.h"

namespace gzc {
namespace {

struct Shape { uint64_t n, b, B, stride; uint32_t L, W; };
struct Levels { float q[gz::kMaxNonuniformLevels + 1]; };

// Pass 1, one warp per bucket: exact max (warp reduce), then lane 0 sums in element order (the order is
// fixed by the format, so this part is serial per bucket; buckets run in parallel). Buckets with M = 0 get
// sums 0 and do not count (adding 0.0 to the host total is exact), their element count is not added to *cnt.
template <bool NZ>
__global__ void __launch_bounds__(256) k_stats(const float* __restrict__ x, Shape f, uint8_t* __restrict__ pay,
                                              double* __restrict__ s1, double* __restrict__ s2,
                                              unsigned long long* cnt, uint32_t* flags) {
  const int lane = threadIdx.x & 31;
  const uint64_t nw = gstride() >> 5;
  bool bad = false;
  unsigned long long c = 0;
  for (uint64_t j = gtid() >> 5; j < f.B; j += nw) {
    const uint64_t start = j * f.b, m = min(f.b, f.n - start);
    const float* v = x + start;
    const uint32_t amax = warp_amax<NZ>(v, m, lane, bad);
    if (lane == 0) {
      const float M = u2f(amax);
      st_f32(pay + j * f.stride, M);
      double t1 = 0, t2 = 0;
      if (amax != 0 && amax < 0x7F800000u) {
        const double inv = 1.0 / double(M);
        for (uint64_t i = 0; i < m; ++i) {
          bool b2 = false;
          const double y = __dmul_rn(double(fabsf(sanitize(__ldg(v + i), NZ, b2))), inv);
          t1 = __dadd_rn(t1, y);
          t2 = __dadd_rn(t2, __dmul_rn(y, y));
        }
        c += m;
      }
      s1[j] = t1;
      s2[j] = t2;
    }
  }
  if (bad) flag(flags, kErrNonFinite);
  if (c) atomicAdd(cnt, c);
}

// Pass 2, one thread per 8-element group; M comes from the payload written by pass 1.
template <bool NZ>
__global__ void __launch_bounds__(256) k_quant(const float* __restrict__ x, Shape f, Levels lv, uint8_t* __restrict__ pay,
                                              uint64_t seed) {
  const uint64_t G = (f.b + 7) >> 3;
  const uint64_t last_m = f.n - (f.B - 1) * f.b;
  const uint64_t T = (f.B - 1) * G + ((last_m + 7) >> 3);
  bool bad = false;
  Uniforms U(seed);
  for (uint64_t t = gtid(); t < T; t += gstride()) {
    const uint64_t j = t / G, g = t - j * G;
    const uint64_t start = j * f.b, m = min(f.b, f.n - start), i0 = g << 3;
    const uint32_t cnt = uint32_t(min(uint64_t(8), m - i0));
    uint8_t* o = pay + j * f.stride;
    const float M = ld_f32(o);
    float vals[8];
    load8<NZ>(x + start + i0, cnt, vals, bad);
    Bits3 bb{{0, 0, 0}};
    if (M > 0.f) {
      // FORMAT 3.6: c = 2^64 when M is subnormal (1/M would overflow), both products exact
      const float cm = M < 1.17549435e-38f ? 18446744073709551616.f : 1.f;
      const float rM = 1.f / (M * cm);
#pragma unroll
      for (uint32_t k = 0; k < 8; ++k) {
        if (k < cnt) {
          const uint32_t z = gz::ref::nu_zeta(vals[k] * cm, rM, lv.q, f.L, U.at(start + i0 + k));
          const uint32_t sg = (z > 0 && vals[k] < 0.f) ? 1u : 0u;
          put_bits(bb, k * f.W, f.W, (uint64_t(z) << 1) | sg);
        }
      }
    }
    store_bytes(o + 4 + g * f.W, bb, uint32_t((uint64_t(cnt) * f.W + 7) >> 3));
  }
}

template <bool ADD, bool VALIDATE>
__global__ void __launch_bounds__(256) k_dec(const uint8_t* __restrict__ pay, Shape f, Levels lv, float* __restrict__ out,
                                            float alpha, uint32_t* flags) {
  if (!VALIDATE && flags_set(flags)) return;
  const uint64_t G = (f.b + 7) >> 3;
  const uint64_t last_m = f.n - (f.B - 1) * f.b;
  const uint64_t T = (f.B - 1) * G + ((last_m + 7) >> 3);
  for (uint64_t t = gtid(); t < T; t += gstride()) {
    const uint64_t j = t / G, g = t - j * G;
    const uint64_t start = j * f.b, m = min(f.b, f.n - start), i0 = g << 3;
    const uint32_t cnt = uint32_t(min(uint64_t(8), m - i0));
    const uint8_t* o = pay + j * f.stride;
    const float M = ld_f32(o);
    if (!(M >= 0.f) || isinf(M)) { flag(flags, kErrCorrupt); continue; }
    Bits3 bb;
    load_bytes(o + 4 + g * f.W, uint32_t((uint64_t(cnt) * f.W + 7) >> 3), bb);
    float vals[8];
    bool corrupt = false;
#pragma unroll
    for (uint32_t k = 0; k < 8; ++k) {
      const uint32_t code = k < cnt ? get_bits(bb, k * f.W, f.W) : 0u;
      const uint32_t z = code >> 1;
      if (z > f.L) { corrupt = true; vals[k] = 0.f; continue; }
      const float a = M * lv.q[z];
      vals[k] = (code & 1u) ? -a : a;
    }
    if (corrupt) { flag(flags, kErrCorrupt); continue; }
    if (!VALIDATE) store8<ADD>(out + start + i0, cnt, vals, alpha);
  }
}

Shape shape_of(uint64_t n, uint32_t b, uint32_t L) {
  Shape f;
  f.n = n; f.b = b; f.B = (n + b - 1) / b; f.L = L; f.W = 1 + bits_for(L);
  f.stride = 4 + (uint64_t(b) * f.W + 7) / 8;
  return f;
}

}  // namespace

void nonuniform_encode(EncCtx& c) {
  const gz::Params& p = *c.p;
  const Shape f = shape_of(c.n, p.bucket, p.levels);
  double S1 = 0, S2 = 0;
  uint64_t cnt = 0;
  if (c.n > 0) {
    double* d_s = scratch<double>(2 * f.B + 2, c.st);
    unsigned long long* d_cnt = reinterpret_cast<unsigned long long*>(d_s + 2 * f.B);
    GZC_CHECK(cudaMemsetAsync(d_cnt, 0, 8, c.st));
    const unsigned grid = grid_for(f.B * 32, 256, 132 * 64);
    if (p.nonfinite_zero) k_stats<true><<<grid, 256, 0, c.st>>>(c.x, f, c.payload, d_s, d_s + f.B, d_cnt, c.d_flags);
    else k_stats<false><<<grid, 256, 0, c.st>>>(c.x, f, c.payload, d_s, d_s + f.B, d_cnt, c.d_flags);
    GZC_CHECK(cudaGetLastError());
    // The fit needs the sums on the host, in bucket order (a serial double sum: the order is the contract).
    double* h = nullptr;
    GZC_CHECK(cudaMallocHost(&h, (2 * f.B + 1) * sizeof(double)));
    cudaError_t e = cudaMemcpyAsync(h, d_s, (2 * f.B + 1) * sizeof(double), cudaMemcpyDeviceToHost, c.st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c.st);
    if (e != cudaSuccess) { cudaFreeHost(h); check(e, "nonuniform fit sums"); }
    for (uint64_t j = 0; j < f.B; ++j) { S1 += h[j]; S2 += h[f.B + j]; }
    uint64_t hc;
    std::memcpy(&hc, h + 2 * f.B, 8);
    cnt = hc;
    uint32_t hflags = 0;
    e = cudaMemcpy(&hflags, c.d_flags, 4, cudaMemcpyDeviceToHost);
    cudaFreeHost(h);
    release(d_s, c.st);
    check(e, "nonuniform flags");
    if (hflags) raise_flags(hflags, "nonuniform");
  }
  const gz::weibull::Fit fit = gz::weibull::fit_from_sums(S1, S2, cnt, double(p.shape), p.levels, c.nu_levels);
  c.nu_shape = float(fit.k);
  c.nu_scale = float(fit.lambda);
  if (c.n == 0) return;
  Levels lv;
  for (uint32_t t = 0; t <= gz::kMaxNonuniformLevels; ++t) lv.q[t] = c.nu_levels[t];
  const uint64_t groups = (c.n + 7) / 8 + f.B;
  const unsigned grid = grid_for(groups, 256, 132 * 64);
  if (p.nonfinite_zero) k_quant<true><<<grid, 256, 0, c.st>>>(c.x, f, lv, c.payload, c.seed);
  else k_quant<false><<<grid, 256, 0, c.st>>>(c.x, f, lv, c.payload, c.seed);
  GZC_CHECK(cudaGetLastError());
}

void nonuniform_decode(const DecCtx& c) {
  if (c.n == 0) return;
  const gz::Header& h = *c.h;
  const Shape f = shape_of(c.n, h.bucket, h.p.levels);
  Levels lv;
  for (uint32_t t = 0; t <= gz::kMaxNonuniformLevels; ++t) lv.q[t] = h.nu_levels[t];
  const unsigned grid = grid_for((c.n + 7) / 8 + f.B, 256, 132 * 64);
  if (c.add) {
    k_dec<true, true><<<grid, 256, 0, c.st>>>(c.payload, f, lv, c.out, c.alpha, c.d_flags);
    k_dec<true, false><<<grid, 256, 0, c.st>>>(c.payload, f, lv, c.out, c.alpha, c.d_flags);
  } else {
    k_dec<false, false><<<grid, 256, 0, c.st>>>(c.payload, f, lv, c.out, c.alpha, c.d_flags);
  }
  GZC_CHECK(cudaGetLastError());
}

}  // namespace gzc
