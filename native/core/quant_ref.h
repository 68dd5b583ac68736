// Scalar reference of the per-bucket arithmetic in docs/FORMAT.md section 2-3. Every backend (AVX2, CUDA)
// must produce the same bits as these functions. Compile with -ffp-contract=off (no FMA contraction).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include "philox.h"

namespace gz {
namespace ref {

GZ_HD uint32_t f2u(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
GZ_HD float u2f(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// Exact power of two 2^e as float for -126 <= e <= 127.
GZ_HD float pow2f(int e) { return u2f(uint32_t(e + 127) << 23); }

// Multiply by 2^e applied as one or two normal factors (FORMAT section 2, step 2/5).
GZ_HD float mul_pow2(float x, int e) {
  if (e >= -126 && e <= 127) return x * pow2f(e);
  int e1 = e < 0 ? -126 : 127;
  return (x * pow2f(e1)) * pow2f(e - e1);
}

// e with 2^e <= A < 2^(e+1), for finite A > 0 (subnormals included).
GZ_HD int floor_log2(float A) {
  uint32_t b = f2u(A) & 0x7FFFFFFFu;
  int ex = int(b >> 23);
  if (ex > 0) return ex - 127;
  // subnormal: value = m * 2^-149
#if defined(__CUDA_ARCH__)
  int msb = 31 - __clz(int(b));
#else
  int msb = 31 - __builtin_clz(b);
#endif
  return msb - 149;
}

// Bucket l2 norm with the fixed 32-lane order. Returns +inf on overflow (caller throws NONFINITE).
inline float l2_norm(const float* v, uint64_t m) {
  uint32_t amax = 0;
  for (uint64_t i = 0; i < m; ++i) { uint32_t a = f2u(v[i]) & 0x7FFFFFFFu; amax = a > amax ? a : amax; }
  if (amax == 0) return 0.f;
  const int e = floor_log2(u2f(amax));
  float lane[32] = {0};
  for (uint64_t i = 0; i < m; ++i) {
    float y = mul_pow2(std::fabs(v[i]), -e);
    float sq = y * y;
    lane[i & 31] = lane[i & 31] + sq;
  }
  for (int w = 16; w >= 1; w >>= 1)
    for (int j = 0; j < w; ++j) lane[j] = lane[j] + lane[j + w];
  return mul_pow2(std::sqrt(lane[0]), e);
}

inline float linf_norm(const float* v, uint64_t m) {
  uint32_t amax = 0;
  for (uint64_t i = 0; i < m; ++i) { uint32_t a = f2u(v[i]) & 0x7FFFFFFFu; amax = a > amax ? a : amax; }
  return u2f(amax);
}

// Sum in the 32-lane order + tree (used by onebit means).
template <class Pred>
inline float lane_sum(const float* v, uint64_t m, Pred pred, uint64_t* count) {
  float lane[32] = {0};
  uint64_t c = 0;
  for (uint64_t i = 0; i < m; ++i)
    if (pred(v[i])) { lane[i & 31] = lane[i & 31] + v[i]; ++c; }
  for (int w = 16; w >= 1; w >>= 1)
    for (int j = 0; j < w; ++j) lane[j] = lane[j] + lane[j + w];
  *count = c;
  return lane[0];
}

// QSGD level of one element: returns zeta in [0, s]; u = 16-bit uniform of its global index.
// r = s / N (0 when N == 0) computed once per bucket by the caller.
GZ_HD uint32_t qsgd_zeta(float x, float r65536, float s65536, uint32_t u) {
  float a = std::fabs(x) * r65536;
  a = a < s65536 ? a : s65536;
  uint32_t t = uint32_t(a);  // trunc toward zero
  return (t >> 16) + (u < (t & 0xFFFFu) ? 1u : 0u);
}

// Tiny-scale pre-scaling (FORMAT 3.1): c = 2^64 when N < 2^-64, else 1. The quantizer works on |v_i| * c against
// N * c (both products exact), so r * 65536 can never overflow (r = s / N would be +inf for subnormal N, and
// 0 * inf = NaN would round zeros to level s). Callers pass x * c to qsgd_zeta.
GZ_HD float qsgd_prescale(float N) { return N < 5.42101086e-20f ? 18446744073709551616.f : 1.f; }

// Per-bucket scalar quantities of QSGD: c (above), r = s/(N*c), then the two exact scalings.
GZ_HD void qsgd_bucket_consts(float N, uint32_t s, float* r65536, float* s65536, float* c = nullptr) {
  const float pre = qsgd_prescale(N);
  const float Nc = N * pre;
  float r = Nc > 0.f ? float(s) / Nc : 0.f;
  *r65536 = r * 65536.f;
  *s65536 = float(s) * 65536.f;
  if (c) *c = pre;
}

// Decoded value for zeta and canonical sign.
GZ_HD float qsgd_value(float w, uint32_t zeta, uint32_t sign) {
  float v = w * float(zeta);
  return sign ? -v : v;
}

// Nonuniform: level index for a = min(|x|*rM, 1), levels q[0..L].
GZ_HD uint32_t nu_zeta(float x, float rM, const float* q, uint32_t L, uint32_t u) {
  float a = std::fabs(x) * rM;
  a = a < 1.f ? a : 1.f;
  uint32_t t = 0;
  while (t + 1 < L && q[t + 1] <= a) ++t;  // largest t in [0, L-1] with q[t] <= a
  float p = (a - q[t]) / (q[t + 1] - q[t]);
  p = p < 1.f ? p : 1.f;
  uint32_t T = uint32_t(p * 65536.f);
  return t + (u < T ? 1u : 0u);
}

}  // namespace ref
}  // namespace gz
