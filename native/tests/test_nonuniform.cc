// Tests of the TinyScript non-uniform codec (native/codecs/nonuniform.cc) and its math (native/codecs/weibull.cc).
// Self-contained (own main); run under ASan+UBSan by native/tests/run.sh. Every statistical check uses fixed
// seeds and a tolerance derived from theory (see the comments at each check).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "codecs/weibull.h"
#include "core/codec.h"
#include "core/gradzip.h"
#include "core/philox.h"
#include "core/quant_ref.h"

using namespace gz;
namespace wb = gz::weibull;

#include "counting_check.h"

template <class F>
static ErrCode code_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code;
  }
  return ErrCode(0);
}

// Deterministic uniforms in (0, 1) from Philox (stream 7, independent of the codec's streams).
static double unif(uint64_t seed, uint64_t i) {
  Philox4 w = philox_block(seed, i, 7);
  const uint64_t r = (uint64_t(w.v[0]) << 21) ^ (uint64_t(w.v[1]) >> 11);  // 53 bits
  return (double(r & ((uint64_t(1) << 53) - 1)) + 0.5) / 9007199254740992.0;
}
static double gauss(uint64_t seed, uint64_t i) {  // Box-Muller from two uniforms
  const double u1 = unif(seed, 2 * i), u2 = unif(seed, 2 * i + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// ---------------------------------------------------------------------------------------------------------
// Independent reference quadrature: composite tanh-sinh (double exponential) on `pieces` sub-intervals, with the
// distance to the nearer end computed without cancellation, so the x^k singularity at 0 costs nothing.
static double ts_integral(const std::function<double(double)>& f, double a, double b, int pieces = 16) {
  double total = 0;
  const double h = 1.0 / 64;
  for (int pc = 0; pc < pieces; ++pc) {
    const double lo = a + (b - a) * pc / pieces, hi = pc + 1 == pieces ? b : a + (b - a) * (pc + 1) / pieces;
    const double w = hi - lo;
    double s = 0;
    for (int j = -6 * 64; j <= 6 * 64; ++j) {
      const double t = j * h;
      const double y = 1.5707963267948966 * std::sinh(t);
      const double ch = std::cosh(y);
      const double wt = 1.5707963267948966 * std::cosh(t) / (ch * ch);
      // x - lo = w / (1 + e^{-2y}), hi - x = w / (1 + e^{2y})
      const double dl = w / (1.0 + std::exp(-2 * y)), dh = w / (1.0 + std::exp(2 * y));
      const double x = dl < dh ? lo + dl : hi - dh;
      if (!(x > lo || dl > 0) || wt == 0) continue;
      s += wt * f(x);
    }
    total += s * h * w / 2;
  }
  return total;
}
static double ref_int_exp(double k, double a, double b) {
  return ts_integral([k](double x) { return std::exp(-std::pow(x, k)); }, a, b);
}

static void test_incomplete_gamma() {
  // Closed forms: P(1/2, x) = erf(sqrt x); P(n, x) = 1 - e^-x Σ_{j<n} x^j/j!; P(a+1, x) = P(a, x) - x^a e^-x / Γ(a+1).
  for (double x : {1e-6, 0.01, 0.3, 1.0, 1.5, 2.5, 4.0, 9.0, 30.0, 80.0}) {
    const double p05 = std::erf(std::sqrt(x)), q05 = std::erfc(std::sqrt(x));
    CHECK_MSG(std::fabs(wb::gamma_p(0.5, x) / p05 - 1) < 1e-13, "P(0.5,%g)", x);
    CHECK_MSG(std::fabs(wb::gamma_q(0.5, x) / q05 - 1) < 1e-12, "Q(0.5,%g) = %.17g vs %.17g", x, wb::gamma_q(0.5, x), q05);
    for (int n : {1, 2, 3, 7}) {
      double sum = 0, term = 1;
      for (int j = 0; j < n; ++j) { sum += term; term *= x / (j + 1); }
      const double q = std::exp(-x) * sum;
      // P from the series side is accurate relative to P; compare P where P is not tiny-by-cancellation of 1 - q.
      if (q < 0.5) CHECK_MSG(std::fabs(wb::gamma_p(n, x) - (1 - q)) < 1e-14, "P(%d,%g)", n, x);
      CHECK_MSG(std::fabs(wb::gamma_q(n, x) / q - 1) < 1e-12, "Q(%d,%g) = %.17g vs %.17g", n, x, wb::gamma_q(n, x), q);
      if (x < 1) {  // lower tail: P(n, x) = Σ_{j>=n} e^-x x^j/j! (relative check)
        double t = std::exp(-x), s = 0;
        for (int j = 0; j < 60; ++j) { if (j >= n) s += t; t *= x / (j + 1); }
        CHECK_MSG(std::fabs(wb::gamma_p(n, x) / s - 1) < 1e-12, "P(%d,%g) tail", n, x);
      }
    }
    const double p25 = (p05 - std::pow(x, 0.5) * std::exp(-x) / std::tgamma(1.5)) - std::pow(x, 1.5) * std::exp(-x) / std::tgamma(2.5);
    if (p25 > 1e-3) CHECK_MSG(std::fabs(wb::gamma_p(2.5, x) / p25 - 1) < 1e-11, "P(2.5,%g)", x);
  }
  // ∫ exp(-x^k) against the tanh-sinh quadrature, over short, long, tail and from-zero intervals.
  for (double k : {0.05, 0.3, 0.5, 1.0, 1.7, 2.0, 5.0, 20.0}) {
    const double xs = std::pow(10.0, 1.0 / k);  // x^k = 10 there
    const double iv[][2] = {{0, 0.001 * xs}, {0, 0.5 * xs}, {0.1 * xs, 0.2 * xs}, {0.3 * xs, 0.31 * xs},
                            {0.5 * xs, xs}, {0, xs}, {0.9 * xs, 1.1 * xs}, {0.01 * xs, 0.6 * xs}};
    for (auto& I : iv) {
      const double got = wb::integral_exp(k, I[0], I[1]), want = ref_int_exp(k, I[0], I[1]);
      CHECK_MSG(std::fabs(got / want - 1) < 1e-10, "k=%g [%g,%g]: %.17g vs %.17g", k, I[0], I[1], got, want);
    }
    CHECK_MSG(std::fabs(wb::integral_exp(k, 0, 1e300) / std::tgamma(1 + 1 / k) - 1) < 1e-12, "k=%g total", k);
  }
}

// ---------------------------------------------------------------------------------------------------------
static void test_solver() {
  // Realistic smax = 1/λ for each shape: the max of a bucket of 512 Weibull samples is near (ln 512)^(1/k) in
  // units of λ; also a larger and a smaller value. k > 1 is outside the paper's 0 < k <= 1 but the same
  // bisection applies (f = exp(-x^k) is still strictly decreasing, which is all Claim 2 (I) uses).
  for (double k : {0.05, 0.2, 0.5, 0.8, 1.0, 2.0, 5.0, 20.0}) {
    const double base = std::pow(std::log(512.0), 1 / k);
    for (double smax : {0.5 * base, base, 3 * base}) {
      for (uint32_t L : {1u, 2u, 3u, 8u, 16u, 64u}) {
        double s[65];
        const bool ok = wb::solve_levels(k, smax, L, s);
        CHECK_MSG(ok, "solve k=%g smax=%g L=%u", k, smax, L);
        if (!ok) continue;
        CHECK(s[0] == 0 && s[L] == smax);
        for (uint32_t t = 1; t <= L; ++t) CHECK_MSG(s[t] > s[t - 1], "increasing k=%g L=%u t=%u", k, L, t);
        // Condition (***) at every interior level, integral from the independent quadrature.
        double worst = 0;
        for (uint32_t t = 1; t < L; ++t) {
          const double F = ref_int_exp(k, s[t - 1], s[t + 1]) / (s[t + 1] - s[t - 1]);
          const double r = std::fabs(F / std::exp(-std::pow(s[t], k)) - 1);
          worst = std::max(worst, r);
        }
        CHECK_MSG(worst < 1e-6, "(***) k=%g smax=%g L=%u: worst relative residual %.3g", k, smax, L, worst);
      }
    }
  }
  // Claim 3's gradient vanishes at the solution (the same optimum seen through the incomplete gamma function):
  // dV/ds_t = -Γ(1+1/k, s_{t+1}^k) + Γ(1+1/k, s_{t-1}^k) + s_{t+1} f(s_{t+1}) - s_{t-1} f(s_{t-1}) - (s_{t+1} - s_{t-1}) f(s_t).
  for (double k : {0.5, 1.0, 2.0}) {
    const double smax = std::pow(std::log(512.0), 1 / k);
    double s[9];
    wb::solve_levels(k, smax, 8, s);
    const double g1 = std::tgamma(1 + 1 / k);
    for (int t = 1; t < 8; ++t) {
      auto uG = [&](double x) { return g1 * wb::gamma_q(1 + 1 / k, std::pow(x, k)); };  // Γ(1+1/k, x^k)
      auto f = [&](double x) { return std::exp(-std::pow(x, k)); };
      const double d = -uG(s[t + 1]) + uG(s[t - 1]) + s[t + 1] * f(s[t + 1]) - s[t - 1] * f(s[t - 1]) -
                       (s[t + 1] - s[t - 1]) * f(s[t]);
      CHECK_MSG(std::fabs(d) < 1e-9 * (s[t + 1] - s[t - 1]) * f(s[t]), "Claim 3 gradient k=%g t=%d: %g", k, t, d);
    }
  }
  // The ŝ1 bisection predicate is monotone (Claim 2 (I)): once the chain overshoots it keeps overshooting, and
  // every ŝ_t of the chain increases with ŝ1.
  for (double k : {0.3, 1.0, 2.0}) {
    const double smax = std::pow(std::log(512.0), 1 / k);
    for (uint32_t L : {2u, 8u, 16u}) {
      bool seen = false;
      std::vector<double> prev;
      for (int i = 1; i <= 400; ++i) {
        const double s1 = smax * i / 400.0 * 0.6;
        double s[65];
        const bool over = wb::chain_overshoots(k, smax, L, s1, s);
        if (seen) CHECK_MSG(over, "monotone predicate k=%g L=%u s1=%g", k, L, s1);
        seen = seen || over;
        if (!over) {
          std::vector<double> cur(s, s + L + 1);
          if (!prev.empty())
            for (uint32_t t = 1; t <= L; ++t) CHECK_MSG(cur[t] > prev[t], "s_%u increasing in s1 (k=%g)", t, k);
          prev = cur;
        }
      }
      CHECK_MSG(seen, "the chain overshoots for large s1 (k=%g L=%u)", k, L);
      // With no cap (smax huge) the full chain is increasing in s1 for every t.
      double a[17], b[17];
      CHECK(!wb::chain_overshoots(k, 1e6, L, 0.05, a));
      CHECK(!wb::chain_overshoots(k, 1e6, L, 0.050001, b));
      for (uint32_t t = 1; t <= L; ++t) CHECK_MSG(b[t] > a[t], "chain increasing t=%u k=%g", t, k);
    }
  }
  // normalized_levels: q_0 = 0, q_L = 1, strictly increasing floats, equal to (float)(s_t λ).
  for (double k : {0.05, 0.5, 1.0, 20.0})
    for (uint32_t L : {1u, 2u, 8u, 64u}) {
      const double lambda = 1.0 / std::pow(std::log(512.0), 1 / k);
      float q[65];
      wb::normalized_levels(k, lambda, L, q);
      CHECK(q[0] == 0.f && q[L] == 1.f);
      for (uint32_t t = 1; t <= L; ++t) CHECK_MSG(q[t] > q[t - 1], "q increasing k=%g L=%u t=%u", k, L, t);
      double s[65];
      wb::solve_levels(k, 1.0 / lambda, L, s);
      for (uint32_t t = 1; t < L; ++t) CHECK_MSG(std::fabs(q[t] - s[t] * lambda) <= 1e-6, "q_t = s_t λ (k=%g)", k);
    }
}

// ---------------------------------------------------------------------------------------------------------
static void test_fit() {
  for (double k = 0.05; k <= 20.0; k *= 1.37) CHECK_MSG(std::fabs(wb::fit_shape(wb::moment_ratio(k)) / k - 1) < 1e-9, "fit_shape(R(%g))", k);
  CHECK(wb::fit_shape(1.0) == wb::kShapeMax);
  CHECK(wb::fit_shape(1e30) == wb::kShapeMin);
  // Synthetic Weibull samples x = λ (-ln u)^(1/k), N of them: moment matching recovers k. Tolerance: 5 standard
  // errors of k̂ by the delta method: R̂ = m̂2/m̂1², Var R̂ ≈ ∇ᵀΣ∇/N with ∇ = (-2μ2/μ1³, 1/μ1²) and Σ the covariance
  // of (X, X²) from the Weibull moments μ_r = λ^r Γ(1 + r/k); SE(k̂) = SE(R̂)/|dR/dk|.
  const uint64_t N = 400000;
  for (double k : {0.5, 1.0, 2.0}) {
    const double lambda = 0.37;
    double s1 = 0, s2 = 0;
    for (uint64_t i = 0; i < N; ++i) {
      const double x = lambda * std::pow(-std::log(unif(100 + uint64_t(k * 10), i)), 1 / k);
      s1 += x;
      s2 += x * x;
    }
    const double m1 = s1 / N, m2 = s2 / N;
    const double kh = wb::fit_shape(m2 / (m1 * m1));
    double mu[5];
    for (int r = 1; r <= 4; ++r) mu[r] = std::pow(lambda, r) * std::tgamma(1 + r / k);
    const double d1 = -2 * mu[2] / (mu[1] * mu[1] * mu[1]), d2 = 1 / (mu[1] * mu[1]);
    const double v11 = mu[2] - mu[1] * mu[1], v12 = mu[3] - mu[1] * mu[2], v22 = mu[4] - mu[2] * mu[2];
    const double varR = (d1 * d1 * v11 + 2 * d1 * d2 * v12 + d2 * d2 * v22) / N;
    const double dRdk = (wb::moment_ratio(k * 1.001) - wb::moment_ratio(k * 0.999)) / (0.002 * k);
    const double se = std::sqrt(varR) / std::fabs(dRdk);
    CHECK_MSG(std::fabs(kh - k) < 5 * se, "fitted k %.5f vs %g (5 SE = %.5f)", kh, k, 5 * se);
    const double lh = wb::fit_scale(kh, m1);
    // λ̂ = m̂1/Γ(1+1/k̂): its error is dominated by k̂'s; 5 SE of k̂ moves Γ(1+1/k) by a few per cent at most here.
    CHECK_MSG(std::fabs(lh / lambda - 1) < 0.02, "fitted lambda %.5f vs %g", lh, lambda);
    std::printf("  fit: k=%.1f N=%llu -> k^=%.5f (5 SE = %.5f), lambda^=%.5f\n", k, (unsigned long long)N, kh, 5 * se, lh);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Codec-level helpers (the codec entry points of codec.h, without the packet layer).
struct Enc {
  std::vector<uint8_t> payload;
  float shape = 0, scale = 0;
  float levels[kMaxNonuniformLevels + 1] = {0};
};

static Params nu_params(uint32_t L, uint32_t b, float shape = 0) {
  Params p;
  p.codec = NONUNIFORM;
  p.levels = L;
  p.bucket = b;
  p.shape = shape;
  return p;
}

static Enc encode_nu(const Params& p, const std::vector<float>& x, uint64_t seed, int threads, bool scalar) {
  Enc e;
  const uint64_t pb = nonuniform_payload_bytes(p, x.size());
  e.payload.assign(pb + 16, 0xCD);  // canary after the payload
  EncodeArgs a{};
  a.p = &p;
  a.seed = seed;
  a.x = x.data();
  a.n = x.size();
  a.payload = e.payload.data();
  a.cap = pb;
  a.threads = threads;
  a.scalar = scalar;
  const uint64_t got = nonuniform_encode(a);
  CHECK(got == pb);
  for (uint64_t i = pb; i < pb + 16; ++i) CHECK_MSG(e.payload[i] == 0xCD, "wrote past the payload");
  e.payload.resize(pb);
  e.shape = a.nu_shape;
  e.scale = a.nu_scale;
  std::memcpy(e.levels, a.nu_levels, sizeof e.levels);
  return e;
}

static Header header_for(const Params& p, uint64_t n, const Enc& e) {
  Header h;
  h.codec = NONUNIFORM;
  h.n = n;
  h.bucket = p.bucket;
  h.p = p;
  h.nu_shape = e.shape;
  h.nu_scale = e.scale;
  std::memcpy(h.nu_levels, e.levels, sizeof h.nu_levels);
  h.payload = e.payload.data();
  h.payload_bytes = e.payload.size();
  return h;
}

static std::vector<float> decode_nu(const Header& h, int threads, bool add = false, float alpha = 1.f,
                                    std::vector<float> acc = {}, bool scalar = false) {
  std::vector<float> out = add ? acc : std::vector<float>(h.n, 123.f);
  DecodeArgs d{&h, out.data(), add, alpha, threads, scalar};
  nonuniform_decode(d);
  return out;
}

static uint32_t width(uint32_t L) {
  uint32_t b = 0;
  while ((1u << b) < L + 1) ++b;
  return 1 + b;
}

// Test vectors: heavy tails, Gaussian, zeros, one-hot buckets, -0.0, subnormals, huge values, mixed scales.
static std::vector<float> make_data(int kind, uint64_t n, uint64_t seed) {
  std::vector<float> x(n);
  for (uint64_t i = 0; i < n; ++i) {
    const double g = gauss(seed, i), h = gauss(seed + 1, i);
    float v = 0;
    switch (kind) {
      case 0: v = float(g * h); break;                                   // product of Gaussians
      case 1: v = float(g); break;                                       // Gaussian
      case 2: v = 0.f; break;                                            // zeros
      case 3: v = (i % 97 == 5) ? float(g) : 0.f; break;                 // sparse / one-hot buckets
      case 4: v = (i % 3 == 0) ? -0.f : float(g * 1e-40); break;         // subnormals and -0.0
      case 5: v = float(g * 1e37); break;                                // near FLT_MAX
      case 6: v = float(g * std::pow(10.0, double(int(i / 64) % 20 - 10))); break;  // bucket scales vary
      case 7: v = (i % 2) ? 1.f : -1.f; break;                           // constant magnitude
    }
    x[i] = v;
  }
  return x;
}

static void test_round_trip_and_parity() {
  const uint32_t Ls[] = {1, 2, 3, 7, 8, 15, 16, 31, 64};
  const uint32_t bs[] = {1, 7, 8, 100, 512, 1000, 9000};
  int combo = 0;
  for (int kind = 0; kind < 8; ++kind)
    for (uint32_t L : Ls)
      for (uint32_t b : bs) {
        if ((combo++ % 3) != 0 && b != 512) continue;  // a third of the grid, all of bucket 512
        const uint64_t n = 1 + (uint64_t(b) * 5 + 3 * L + kind * 11) % 20000;
        const std::vector<float> x = make_data(kind, n, 11 + kind);
        const Params p = nu_params(L, b);
        const Enc s1 = encode_nu(p, x, 99, 1, true);
        const Enc v1 = encode_nu(p, x, 99, 1, false);
        const Enc v2 = encode_nu(p, x, 99, 2, false);
        const Enc v3 = encode_nu(p, x, 99, 3, true);
        CHECK_MSG(s1.payload == v1.payload, "scalar vs SIMD bytes: kind=%d L=%u b=%u n=%llu", kind, L, b, (unsigned long long)n);
        CHECK_MSG(v1.payload == v2.payload && v1.payload == v3.payload, "threads 1/2/3 bytes: kind=%d L=%u b=%u", kind, L, b);
        CHECK(std::memcmp(s1.levels, v2.levels, sizeof s1.levels) == 0 && s1.shape == v2.shape && s1.scale == v2.scale);
        CHECK_MSG(s1.payload.size() == (n / b) * (4 + (uint64_t(b) * width(L) + 7) / 8) +
                                           ((n % b) ? 4 + ((n % b) * width(L) + 7) / 8 : 0), "payload size formula");
        CHECK(s1.levels[0] == 0.f && s1.levels[L] == 1.f);
        for (uint32_t t = 1; t <= L; ++t) CHECK(s1.levels[t] > s1.levels[t - 1]);
        CHECK(std::isfinite(s1.shape) && s1.shape > 0 && std::isfinite(s1.scale) && s1.scale > 0);
        const Header h = header_for(p, n, s1);
        const std::vector<float> y = decode_nu(h, 2);
        CHECK(decode_nu(h, 1) == y);
        {
          const std::vector<float> ys = decode_nu(h, 1, false, 1.f, {}, true);  // scalar decoder: same bits (-0.0 too)
          CHECK_MSG(std::memcmp(ys.data(), y.data(), 4 * n) == 0, "decode scalar vs SIMD kind=%d L=%u b=%u", kind, L, b);
        }
        // Every decoded value is ±M·q_ζ with ζ ∈ {τ, τ+1}: it brackets |x| between adjacent levels, same sign.
        bool ok = true;
        for (uint64_t j = 0; j * b < n && ok; ++j) {
          float M = 0;
          for (uint64_t i = j * b; i < std::min<uint64_t>(n, (j + 1) * b); ++i) M = std::max(M, std::fabs(x[i]));
          for (uint64_t i = j * b; i < std::min<uint64_t>(n, (j + 1) * b); ++i) {
            if (M == 0.f) { ok = ok && y[i] == 0.f; continue; }
            const float ay = std::fabs(y[i]);
            int z = -1;
            for (uint32_t t = 0; t <= L; ++t) if (ay == M * s1.levels[t]) { z = int(t); break; }
            if (z < 0) { ok = false; break; }
            const double ax = std::fabs(double(x[i]));
            const double lo = z > 0 ? double(M) * s1.levels[z - 1] : 0, hi = z < int(L) ? double(M) * s1.levels[z + 1] : M;
            // |x| lies within the two levels around the chosen one (relative slack for the float a = |x|/M).
            const double slack = 4e-7 * M;
            ok = ok && ax >= lo - slack && ax <= hi + slack;
            if (y[i] != 0.f) ok = ok && (std::signbit(y[i]) == std::signbit(x[i]));
          }
        }
        CHECK_MSG(ok, "decoded values are adjacent levels of |x|: kind=%d L=%u b=%u", kind, L, b);
        // decompressAdd: acc + alpha·v (multiply then add).
        std::vector<float> acc(n);
        for (uint64_t i = 0; i < n; ++i) acc[i] = float(i % 13) - 6.f;
        const std::vector<float> z = decode_nu(h, 2, true, 0.25f, acc);
        const std::vector<float> zs = decode_nu(h, 2, true, 0.25f, acc, true);
        CHECK_MSG(std::memcmp(zs.data(), z.data(), 4 * n) == 0, "decode-add scalar vs SIMD kind=%d L=%u", kind, L);
        bool add_ok = true;
        for (uint64_t i = 0; i < n; ++i) {
          const float t = 0.25f * y[i];
          add_ok = add_ok && z[i] == acc[i] + t;
        }
        CHECK_MSG(add_ok, "decode-add kind=%d L=%u b=%u", kind, L, b);
      }
  // Every L of the unrolled AVX2 paths (1..16) and some of the table path: scalar = AVX2 on ragged buckets.
  for (uint32_t L = 1; L <= 24; ++L)
    for (int kind : {0, 6}) {
      const std::vector<float> x = make_data(kind, 3001, 40 + L);
      const Params p = nu_params(L, 333);
      CHECK_MSG(encode_nu(p, x, 17, 1, true).payload == encode_nu(p, x, 17, 2, false).payload, "scalar vs SIMD, L=%u kind=%d", L, kind);
    }
  // Same seed, same bytes; another seed, other bytes.
  const std::vector<float> x = make_data(0, 5000, 3);
  const Params p = nu_params(8, 512);
  CHECK(encode_nu(p, x, 5, 2, false).payload == encode_nu(p, x, 5, 1, false).payload);
  CHECK(encode_nu(p, x, 5, 2, false).payload != encode_nu(p, x, 6, 2, false).payload);
  // Zero vector -> zeros, k = 1, λ = 1, uniform levels; n = 0 -> empty payload.
  {
    const std::vector<float> zero(1000, 0.f);
    const Enc e = encode_nu(p, zero, 1, 2, false);
    CHECK(e.shape == 1.f && e.scale == 1.f && e.levels[3] == 3.f / 8.f);
    const std::vector<float> y = decode_nu(header_for(p, 1000, e), 2);
    CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 0.f && !std::signbit(v); }));
    const Enc e0 = encode_nu(p, {}, 1, 2, false);
    CHECK(e0.payload.empty());
    CHECK(nonuniform_payload_bytes(p, 0) == 0);
  }
  // A given shape travels as given; λ is still fitted. Out-of-range shapes are INVALID_ARG.
  {
    const Enc e = encode_nu(nu_params(8, 512, 0.5f), x, 1, 2, false);
    CHECK(e.shape == 0.5f);
    CHECK(code_of([&] { encode_nu(nu_params(8, 512, 0.01f), x, 1, 1, false); }) == ErrCode::INVALID_ARG);
    CHECK(code_of([&] { encode_nu(nu_params(8, 512, 25.f), x, 1, 1, false); }) == ErrCode::INVALID_ARG);
    CHECK(code_of([&] { encode_nu(nu_params(0, 512), x, 1, 1, false); }) == ErrCode::INVALID_ARG);
    CHECK(code_of([&] { encode_nu(nu_params(65, 512), x, 1, 1, false); }) == ErrCode::INVALID_ARG);
  }
  // Fit on the pooled |x|/M_b of a whole tensor (bucket 512) of Weibull data: reported, and checked loosely: the
  // per-bucket max makes the pooled sample a scale mixture, which biases k̂ low (by design of FORMAT 3.6).
  for (double k : {0.5, 1.0, 2.0}) {
    std::vector<float> w(1 << 18);
    for (uint64_t i = 0; i < w.size(); ++i) w[i] = float(std::pow(-std::log(unif(500, i)), 1 / k)) * ((i & 1) ? 1.f : -1.f);
    const Enc e = encode_nu(p, w, 1, 2, false);
    std::printf("  codec fit (bucket 512): Weibull k=%.1f -> k^=%.4f lambda^=%.4f\n", k, e.shape, e.scale);
    CHECK_MSG(e.shape > 0.7 * k && e.shape < 1.1 * k, "codec fit k=%g -> %g", k, e.shape);
  }
}

static void test_nonfinite() {
  const Params p = nu_params(8, 64);
  for (float bad : {NAN, INFINITY, -INFINITY})
    for (uint64_t pos : {0ull, 63ull, 64ull, 999ull}) {
      std::vector<float> x = make_data(1, 1000, 2);
      x[pos] = bad;
      for (bool scalar : {false, true})
        CHECK_MSG(code_of([&] { encode_nu(p, x, 1, 2, scalar); }) == ErrCode::NONFINITE, "non-finite at %llu", (unsigned long long)pos);
    }
}

static void test_corrupt() {
  const Params p = nu_params(8, 100);  // W = 5: codes 9..15 are invalid
  const std::vector<float> x = make_data(0, 1050, 4);  // last bucket: 50 elements, 250 bits -> 2 padding bits
  const Enc good = encode_nu(p, x, 8, 2, false);
  std::vector<float> acc(x.size(), 1.5f);
  auto expect_corrupt = [&](Enc e, Header h, const char* what) {
    h.payload = e.payload.data();
    h.payload_bytes = e.payload.size();
    for (bool scalar : {false, true}) {
      CHECK_MSG(code_of([&] { decode_nu(h, 2, false, 1.f, {}, scalar); }) == ErrCode::CORRUPT, "%s (decompress)", what);
      std::vector<float> a = acc;
      DecodeArgs d{&h, a.data(), true, 1.f, 2, scalar};
      CHECK_MSG(code_of([&] { nonuniform_decode(d); }) == ErrCode::CORRUPT, "%s (add)", what);
      CHECK_MSG(a == acc, "%s: decompressAdd changed acc", what);
    }
  };
  const Header h0 = header_for(p, x.size(), good);
  const uint64_t fb = 4 + (100 * 5 + 7) / 8;  // full bucket bytes
  {
    Enc e = good; const float m = -1.f; std::memcpy(&e.payload[fb * 3], &m, 4);
    expect_corrupt(e, h0, "negative bucket max");
  }
  {
    Enc e = good; const float m = NAN; std::memcpy(&e.payload[fb * 10], &m, 4);
    expect_corrupt(e, h0, "NaN bucket max (last bucket)");
  }
  {
    Enc e = good; const float m = INFINITY; std::memcpy(&e.payload[0], &m, 4);
    expect_corrupt(e, h0, "Inf bucket max");
  }
  {
    Enc e = good; e.payload[fb * 5 + 4] = uint8_t((e.payload[fb * 5 + 4] & 0xE0) | (9 << 1));  // first code ζ = 9
    expect_corrupt(e, h0, "level index > L");
  }
  {
    Enc e = good;  // ζ = 12 as code 7 of group 3 in bucket 2 (bits 3·40 + 35 .. +39 of its codes)
    const uint64_t bit = 3 * 40 + 7 * 5, base = fb * 2 + 4;
    uint64_t w = 0;
    std::memcpy(&w, &e.payload[base + bit / 8], 4);
    w = (w & ~(uint64_t(31) << (bit % 8))) | (uint64_t(12 << 1) << (bit % 8));
    std::memcpy(&e.payload[base + bit / 8], &w, 4);
    expect_corrupt(e, h0, "level index > L inside a group");
  }
  // L = 16 (W = 6, the four-table decoder) and L = 40 (W = 7, the gather): zeta = 2^(W-1) - 1 > L as code 7 of
  // group 3 in bucket 2
  for (uint32_t L : {16u, 40u}) {
    const Params pL = nu_params(L, 100);
    const uint32_t W = L == 16 ? 6 : 7;
    const Enc gL = encode_nu(pL, x, 8, 2, false);
    const Header hL = header_for(pL, x.size(), gL);
    Enc e = gL;
    const uint64_t bit = 3 * 8 * W + 7 * W, base = (4 + (100 * W + 7) / 8) * 2 + 4;
    const uint64_t mask = (uint64_t(1) << W) - 1, code = (mask >> 1) << 1;
    uint64_t w = 0;
    std::memcpy(&w, &e.payload[base + bit / 8], 4);
    w = (w & ~(mask << (bit % 8))) | (code << (bit % 8));
    std::memcpy(&e.payload[base + bit / 8], &w, 4);
    expect_corrupt(e, hL, L == 16 ? "L = 16: level index > L inside a group" : "L = 40: level index > L inside a group");
  }
  {
    Enc e = good; e.payload.back() |= 0x80;  // a padding bit of the last bucket
    expect_corrupt(e, h0, "non-zero padding");
  }
  {
    Header h = h0; h.nu_levels[3] = h.nu_levels[2];
    expect_corrupt(good, h, "levels not increasing");
  }
  {
    Header h = h0; h.nu_levels[8] = 0.99f;
    expect_corrupt(good, h, "q_L != 1");
  }
  {
    Enc e = good; e.payload.pop_back();
    expect_corrupt(e, h0, "payload one byte short");
  }
  // A hand-built valid packet: ζ = L everywhere decodes to ±M.
  {
    Enc e = good;
    Header h = h0;
    h.n = 8; h.bucket = 8;
    Params q = p; q.bucket = 8; h.p = q;
    e.payload.assign(4 + 5, 0);
    const float M = 2.5f; std::memcpy(e.payload.data(), &M, 4);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t((8u << 1) | (i & 1)) << (5 * i);
    std::memcpy(e.payload.data() + 4, &v, 5);
    h.payload = e.payload.data(); h.payload_bytes = e.payload.size();
    const std::vector<float> y = decode_nu(h, 1);
    for (int i = 0; i < 8; ++i) CHECK(y[i] == ((i & 1) ? -2.5f : 2.5f));
  }
}

// Unbiasedness: per coordinate, the mean over S seeds is within 5 standard errors of x, the standard error taken
// from the exact two-point law of the rounding (values lo = M·q_τ, hi = M·q_{τ+1}, P(hi) = T/65536 with
// T = (u32)(p·65536)), plus the rounding's deterministic bias bound: (p − T/65536)·(hi − lo) ≤ 2^-16·(hi − lo),
// and float rounding of a = |x|/M and of M·q (a few ulps of M).
static void test_unbiased() {
  const uint32_t L = 8, b = 256;
  const uint64_t S = 2000;
  std::vector<float> x = make_data(0, 2 * b, 21);
  x[7] = 0.f; x[300] = -0.f;
  const Params p = nu_params(L, b);
  std::vector<double> sum(x.size(), 0), sumsq(x.size(), 0);
  Enc first;
  for (uint64_t seed = 0; seed < S; ++seed) {
    const Enc e = encode_nu(p, x, 0x9E3779B97F4A7C15ull * (seed + 1), 1, false);
    if (seed == 0) first = e;
    const std::vector<float> y = decode_nu(header_for(p, x.size(), e), 1);
    for (uint64_t i = 0; i < x.size(); ++i) { sum[i] += y[i]; sumsq[i] += double(y[i]) * y[i]; }
  }
  int bad = 0;
  double worst = 0;
  for (uint64_t j = 0; j < 2; ++j) {
    float M = 0;
    for (uint64_t i = j * b; i < (j + 1) * b; ++i) M = std::max(M, std::fabs(x[i]));
    const float rM = 1.f / M;
    for (uint64_t i = j * b; i < (j + 1) * b; ++i) {
      float a = std::fabs(x[i]) * rM;
      a = a < 1.f ? a : 1.f;
      uint32_t t = 0;
      while (t + 1 < L && first.levels[t + 1] <= a) ++t;
      float pf = (a - first.levels[t]) / (first.levels[t + 1] - first.levels[t]);
      pf = pf < 1.f ? pf : 1.f;
      const double P = double(uint32_t(pf * 65536.f)) / 65536.0;
      const double lo = double(M * first.levels[t]), hi = double(M * first.levels[t + 1]);
      const double sd = (hi - lo) * std::sqrt(P * (1 - P));
      const double mean = sum[i] / S * (std::signbit(x[i]) ? -1 : 1);
      const double tol = 5 * sd / std::sqrt(double(S)) + (hi - lo) / 65536.0 + 4 * 6e-8 * M;
      const double err = std::fabs(mean - std::fabs(double(x[i])));
      worst = std::max(worst, err / tol);
      if (err > tol) ++bad;
    }
  }
  CHECK_MSG(bad == 0, "%d coordinates biased beyond 5 SE (worst %.2f of the tolerance)", bad, worst);
  std::printf("  unbiasedness: %llu seeds, %zu coordinates, worst |mean - x| = %.2f of (5 SE + bias bound)\n",
              (unsigned long long)S, x.size(), worst);
}

// The figure of docs/NONUNIFORM.md at C++ level (the vitest file measures the same through the public API):
// products of two Gaussians, n = 2^20, bucket 512; MSE of nonuniform L = 8 vs uniform (qsgd l-inf, the
// reference arithmetic of FORMAT 3.1) with 8 and 16 levels.
static void test_figure() {
  const uint64_t n = 1 << 20;
  const std::vector<float> x = make_data(0, n, 77);
  const Params p = nu_params(8, 512);
  const Enc e = encode_nu(p, x, 1, 2, false);
  const std::vector<float> y = decode_nu(header_for(p, n, e), 2);
  double se = 0;
  for (uint64_t i = 0; i < n; ++i) se += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
  double mse_u[2];
  for (int which = 0; which < 2; ++which) {
    const uint32_t s = which ? 16 : 8;
    double se2 = 0;
    for (uint64_t j = 0; j < n; j += 512) {
      float M = 0;
      for (uint64_t i = j; i < j + 512; ++i) M = std::max(M, std::fabs(x[i]));
      float r65536, s65536;
      ref::qsgd_bucket_consts(M, s, &r65536, &s65536);
      const float w = M / float(s);
      for (uint64_t i = j; i < j + 512; ++i) {
        const uint32_t z = ref::qsgd_zeta(x[i], r65536, s65536, uniform16(1, i));
        const float v = ref::qsgd_value(w, z, (z > 0 && std::signbit(x[i])) ? 1 : 0);
        se2 += (double(v) - x[i]) * (double(v) - x[i]);
      }
    }
    mse_u[which] = se2 / n;
  }
  const double mse = se / n;
  std::printf("  figure: MSE nonuniform-8 %.5g, uniform-8 %.5g (ratio %.3f), uniform-16 %.5g (ratio %.3f); k^=%.4f\n",
              mse, mse_u[0], mse / mse_u[0], mse_u[1], mse / mse_u[1], e.shape);
  CHECK(mse < mse_u[0]);
}

int main() {
  struct { const char* name; void (*fn)(); } tests[] = {
      {"incomplete gamma and the integral", test_incomplete_gamma},
      {"Theorem-1 solver", test_solver},
      {"Weibull fit", test_fit},
      {"round trips, scalar = AVX2, threads", test_round_trip_and_parity},
      {"non-finite input", test_nonfinite},
      {"corrupt payloads", test_corrupt},
      {"unbiasedness", test_unbiased},
      {"figure", test_figure},
  };
  for (auto& t : tests) {
    const int before = g_fail;
    t.fn();
    std::printf("%s %s\n", g_fail == before ? "ok  " : "FAIL", t.name);
  }
  std::printf("test_nonuniform: %d checks, %d failed\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
