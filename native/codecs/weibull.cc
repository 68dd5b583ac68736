// TinyScript Weibull fit and Theorem-1 levels (see weibull.h, docs/NONUNIFORM.md). Double precision,
// deterministic: plain IEEE arithmetic plus libm exp/log/pow/lgamma, no dependence on threads.
#include "codecs/weibull.h"

#include <cmath>
#include <limits>

namespace gz {
namespace weibull {

namespace {

constexpr double kEps = 1e-16;
constexpr int kMaxIter = 100000;

// Series P(a, x) for x < a + 1, with log Γ(a) given.
double p_series(double a, double x, double lga) {
  if (x <= 0) return 0.0;
  double ap = a, del = 1.0 / a, sum = del;
  for (int i = 0; i < kMaxIter; ++i) {
    ap += 1.0;
    del *= x / ap;
    sum += del;
    if (std::fabs(del) < std::fabs(sum) * kEps) break;
  }
  return sum * std::exp(-x + a * std::log(x) - lga);
}

// Continued fraction Q(a, x) for x >= a + 1 (modified Lentz), with log Γ(a) given.
double q_cfrac(double a, double x, double lga) {
  if (!(x < 1e300)) return 0.0;  // Q(a, ∞) = 0 (and avoids ∞ − ∞ below)
  const double tiny = 1e-300;
  double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
  for (int i = 1; i < kMaxIter; ++i) {
    const double an = -i * (i - a);
    b += 2.0;
    d = an * d + b;
    if (std::fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1.0) < kEps) break;
  }
  return std::exp(-x + a * std::log(x) - lga) * h;
}

// Everything about exp(-x^k) that does not depend on x.
struct Ctx {
  double k, alpha, lga, gam1a, xc;  // alpha = 1/k, lga = lgamma(alpha), gam1a = Γ(1+alpha), xc = (alpha+1)^(1/k)
  explicit Ctx(double k_) : k(k_), alpha(1.0 / k_) {
    lga = std::lgamma(alpha);
    gam1a = std::exp(std::lgamma(1.0 + alpha));
    xc = std::pow(alpha + 1.0, alpha);
  }
  double f(double x) const { return x <= 0 ? 1.0 : std::exp(-std::pow(x, k)); }
  // ∫_0^x f for x <= xc (P side, no cancellation there).
  double lower(double x) const { return x <= 0 ? 0.0 : gam1a * p_series(alpha, std::pow(x, k), lga); }
  // ∫_x^∞ f for x >= xc (Q side).
  double upper(double x) const { return gam1a * q_cfrac(alpha, std::pow(x, k), lga); }
  // ∫_a^b f, 0 <= a <= b: split at xc so each piece comes from the side where it does not cancel.
  double integral(double a, double b) const {
    if (b <= a) return 0.0;
    if (b <= xc) return lower(b) - lower(a);
    if (a >= xc) return upper(a) - upper(b);
    return (lower(xc) - lower(a)) + (upper(xc) - upper(b));
  }
};

// g(y) = ∫_{sp}^{y} f - (y - sp) f(sc): g(sc) > 0, strictly decreasing for y > sc (g' = f(y) - f(sc) < 0).
bool next_level_ctx(const Ctx& c, double sp, double sc, double smax, double* out) {
  const double fc = c.f(sc);
  auto g = [&](double y) { return c.integral(sp, y) - (y - sp) * fc; };
  const double gmax = g(smax);
  if (!(gmax <= 0.0)) return false;  // root beyond smax (or NaN): overshoot
  double lo = sc, hi = smax;
  double y = sc + (sc - sp);  // the linear guess
  if (!(y > lo && y < hi)) y = lo + 0.5 * (hi - lo);
  for (int it = 0; it < 400; ++it) {
    const double gy = g(y);
    if (gy > 0.0) lo = y; else hi = y;
    if (gy == 0.0) { lo = hi = y; break; }
    // Newton step, kept inside the bracket (bisection otherwise).
    double yn = y - gy / (c.f(y) - fc);
    if (!(yn > lo && yn < hi)) yn = lo + 0.5 * (hi - lo);
    if (yn <= lo || yn >= hi) break;  // bracket is down to adjacent doubles
    if (std::fabs(yn - y) <= 1e-15 * y) { y = yn; break; }
    y = yn;
  }
  *out = (lo == hi) ? lo : y;
  if (*out < sc) *out = sc;
  if (*out > smax) *out = smax;
  return true;
}

bool chain_ctx(const Ctx& c, double smax, uint32_t L, double s1, double* s) {
  s[0] = 0.0;
  s[1] = s1;
  if (s1 > smax) return true;
  for (uint32_t t = 1; t < L; ++t)
    if (!next_level_ctx(c, s[t - 1], s[t], smax, &s[t + 1])) return true;
  return false;
}

}  // namespace

double gamma_p(double a, double x) {
  if (x <= 0) return 0.0;
  const double lga = std::lgamma(a);
  return x < a + 1.0 ? p_series(a, x, lga) : 1.0 - q_cfrac(a, x, lga);
}

double gamma_q(double a, double x) {
  if (x <= 0) return 1.0;
  const double lga = std::lgamma(a);
  return x < a + 1.0 ? 1.0 - p_series(a, x, lga) : q_cfrac(a, x, lga);
}

double f_exp(double k, double x) { return x <= 0 ? 1.0 : std::exp(-std::pow(x, k)); }

double integral_exp(double k, double a, double b) { return Ctx(k).integral(a, b); }

double moment_ratio(double k) { return std::exp(std::lgamma(1.0 + 2.0 / k) - 2.0 * std::lgamma(1.0 + 1.0 / k)); }

double fit_shape(double ratio) {
  if (!(ratio == ratio)) return 1.0;
  auto lr = [](double k) { return std::lgamma(1.0 + 2.0 / k) - 2.0 * std::lgamma(1.0 + 1.0 / k); };
  const double target = std::log(ratio);
  if (target >= lr(kShapeMin)) return kShapeMin;
  if (target <= lr(kShapeMax)) return kShapeMax;
  double lo = kShapeMin, hi = kShapeMax;  // lr(lo) > target > lr(hi)
  for (int it = 0; it < 200; ++it) {
    const double mid = lo + 0.5 * (hi - lo);
    if (mid <= lo || mid >= hi) break;
    if (lr(mid) > target) lo = mid; else hi = mid;
  }
  return lo + 0.5 * (hi - lo);
}

double fit_scale(double k, double m1) { return m1 / std::exp(std::lgamma(1.0 + 1.0 / k)); }

bool next_level(double k, double s_prev, double s_cur, double smax, double* s_next) {
  return next_level_ctx(Ctx(k), s_prev, s_cur, smax, s_next);
}

bool chain_overshoots(double k, double smax, uint32_t L, double s1, double* s) {
  return chain_ctx(Ctx(k), smax, L, s1, s);
}

bool solve_levels(double k, double smax, uint32_t L, double* s) {
  s[0] = 0.0;
  s[L] = smax;
  if (L == 1) return std::isfinite(smax) && smax > 0;
  if (!(std::isfinite(smax) && smax > 0 && std::isfinite(k) && k > 0)) return false;
  const Ctx c(k);
  // Invariant: the chain from lo does not overshoot, the chain from hi does (ŝ_1 = smax forces ŝ_2 > smax).
  double lo = 0.0, hi = smax;
  for (int it = 0; it < 4000; ++it) {
    double mid;
    if (lo == 0.0) mid = hi * 0.0625;                     // shrink fast toward tiny ŝ_1 (heavy tails)
    else if (hi > 4.0 * lo) mid = std::sqrt(lo) * std::sqrt(hi);  // geometric while the ratio is large
    else mid = lo + 0.5 * (hi - lo);
    if (!(mid > lo && mid < hi)) break;
    if (chain_ctx(c, smax, L, mid, s)) hi = mid; else lo = mid;
  }
  if (lo == 0.0 || chain_ctx(c, smax, L, lo, s)) return false;
  s[L] = smax;
  for (uint32_t t = 1; t <= L; ++t)
    if (!(std::isfinite(s[t]) && s[t] > s[t - 1])) return false;
  return true;
}

void normalized_levels(double k, double lambda, uint32_t L, float* q) {
  double s[65];
  bool ok = L >= 1 && L <= 64 && std::isfinite(lambda) && lambda > 0 && solve_levels(k, 1.0 / lambda, L, s);
  if (ok) {
    q[0] = 0.f;
    q[L] = 1.f;
    for (uint32_t t = 1; t < L; ++t) q[t] = float(s[t] * lambda);
    // Strictly increasing as float32 on (0, 1): push up past the previous level, then down below the next.
    for (uint32_t t = 1; t < L; ++t)
      if (!(q[t] > q[t - 1])) q[t] = std::nextafter(q[t - 1], 2.f);
    for (uint32_t t = L - 1; t >= 1; --t)
      if (!(q[t] < q[t + 1])) q[t] = std::nextafter(q[t + 1], 0.f);
    for (uint32_t t = 1; t <= L; ++t)
      if (!(std::isfinite(q[t]) && q[t] > q[t - 1])) ok = false;
  }
  if (!ok)
    for (uint32_t t = 0; t <= L; ++t) q[t] = float(t) / float(L);
}

Fit fit_from_sums(double S1, double S2, uint64_t cnt, double given_shape, uint32_t L, float* q) {
  Fit r;
  if (cnt == 0) {
    r.k = given_shape > 0 ? given_shape : 1.0;
    r.lambda = 1.0;
    for (uint32_t t = 0; t <= L; ++t) q[t] = float(t) / float(L);
    return r;
  }
  const double m1 = S1 / double(cnt), m2 = S2 / double(cnt);
  r.k = given_shape > 0 ? given_shape : fit_shape(m2 / (m1 * m1));
  r.lambda = fit_scale(r.k, m1);
  normalized_levels(r.k, r.lambda, L, q);
  return r;
}

}  // namespace weibull
}  // namespace gz
