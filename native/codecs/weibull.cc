// TinyScript Weibull fit and Theorem-1 levels (see weibull.h, docs/NONUNIFORM.md). Double precision,
// deterministic: plain IEEE arithmetic plus libm exp/log/pow/lgamma, no dependence on threads.
#include "codecs/weibull.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace gz {
namespace weibull {

namespace {

constexpr double kEps = 1e-16;
constexpr uint32_t kMaxLevels = 64;
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
  double lower_xc, upper_xc;        // ∫_0^xc f and ∫_xc^∞ f
  explicit Ctx(double k_) : k(k_), alpha(1.0 / k_) {
    lga = std::lgamma(alpha);
    gam1a = std::exp(std::lgamma(1.0 + alpha));
    xc = std::pow(alpha + 1.0, alpha);
    lower_xc = lower(xc);
    upper_xc = upper(xc);
  }
  double f(double x) const { return x <= 0 ? 1.0 : std::exp(-std::pow(x, k)); }
  // ∫_0^x f for x <= xc (P side, no cancellation there).
  double lower(double x) const { return x <= 0 ? 0.0 : gam1a * p_series(alpha, std::pow(x, k), lga); }
  // ∫_x^∞ f for x >= xc (Q side).
  double upper(double x) const { return gam1a * q_cfrac(alpha, std::pow(x, k), lga); }
  // A fixed left end a, so that ∫_a^y f costs one incomplete gamma evaluation per y.
  struct Left { double a, La, Ua; bool above; };
  Left left(double a) const {
    Left l;
    l.a = a;
    l.above = a >= xc;
    l.La = l.above ? 0.0 : lower(a);
    l.Ua = l.above ? upper(a) : 0.0;
    return l;
  }
  // ∫_a^y f, a <= y: split at xc so each piece comes from the side where it does not cancel.
  double from(const Left& l, double y) const {
    if (y <= l.a) return 0.0;
    if (l.above) return l.Ua - upper(y);
    if (y <= xc) return lower(y) - l.La;
    return (lower_xc - l.La) + (upper_xc - upper(y));
  }
  double integral(double a, double b) const { return from(left(a), b); }
};

// g(y) = ∫_{sp}^{y} f - (y - sp) f(sc): g(sc) > 0, strictly decreasing for y > sc (g' = f(y) - f(sc) < 0),
// concave (g'' = f'(y) < 0). Root searched in (sc, cap]; false when g(cap) > 0 (the root lies beyond cap).
// Newton steps kept inside the bracket, bisection otherwise.
bool next_level_ctx(const Ctx& c, double sp, double sc, double cap, double* out, double guess = -1.0) {
  const double fc = c.f(sc);
  const Ctx::Left lp = c.left(sp);
  auto g = [&](double y) { return c.from(lp, y) - (y - sp) * fc; };
  double lo = sc, hi = cap;
  bool hi_checked = false;
  double y = (guess > lo && guess < hi) ? guess : sc + (sc - sp);  // caller's guess, else the linear one
  if (!(y > lo && y < hi)) { y = hi; }
  for (int it = 0; it < 400; ++it) {
    const double gy = g(y);
    if (!(gy == gy)) return false;
    if (gy > 0.0) {
      if (y == cap) return false;  // overshoot
      lo = y;
    } else {
      hi = y;
      if (y == cap) hi_checked = true;
    }
    if (gy == 0.0) { lo = hi = y; break; }
    double yn = y - gy / (c.f(y) - fc);
    if (!(yn > lo && yn < hi)) yn = lo + 0.5 * (hi - lo);
    if (yn <= lo || yn >= hi) break;  // bracket down to adjacent doubles
    if (std::fabs(yn - y) <= 1e-13 * y) {
      y = yn;
      break;
    }
    y = yn;
  }
  // A root was bracketed below hi; make sure the cap itself does not overshoot when we never evaluated it and
  // never saw a non-positive g.
  if (!hi_checked && hi == cap) {
    if (!(g(cap) <= 0.0)) return false;
  }
  *out = (lo == hi) ? lo : y;
  if (*out < sc) *out = sc;
  if (*out > cap) *out = cap;
  return true;
}

// Runs the chain ŝ_0 = 0, ŝ_1 = s1, …, ŝ_L with every level searched up to `cap`. Returns false when some level
// lies beyond cap (then s is partial).
// prev (optional): a full chain from a nearby ŝ1; ŝ_{t+1} is then started from prev[t+1] + (ŝ_t − prev[t]),
// which is close to the root once the outer iteration converges (Newton then needs two or three evaluations).
bool chain_cap(const Ctx& c, double cap, uint32_t L, double s1, double* s, const double* prev = nullptr) {
  s[0] = 0.0;
  s[1] = s1;
  if (s1 > cap) return false;
  for (uint32_t t = 1; t < L; ++t) {
    const double guess = prev ? prev[t + 1] + (s[t] - prev[t]) : -1.0;
    if (!next_level_ctx(c, s[t - 1], s[t], cap, &s[t + 1], guess)) return false;
  }
  return true;
}

bool chain_ctx(const Ctx& c, double smax, uint32_t L, double s1, double* s) {
  return !chain_cap(c, smax, L, s1, s) || s[L] > smax;
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
  if (L < 1 || L > kMaxLevels) return false;
  s[0] = 0.0;
  s[L] = smax;
  if (L == 1) return std::isfinite(smax) && smax > 0;
  if (!(std::isfinite(smax) && smax > 0 && std::isfinite(k) && k > 0)) return false;
  const Ctx c(k);
  // h(ŝ1) = ŝ_L(ŝ1) − smax is continuous and increasing (Claim 2 (I)); the chain is searched up to cap = 2·smax,
  // and beyond it h is unknown (only its sign: positive). Bracket [lo, hi] with h(lo) <= 0 < h(hi):
  // bisection (geometric while the ratio is large) until h(hi) is known, then regula falsi with the Illinois
  // modification, falling back to bisection whenever an iterate lands beyond the cap or the bracket stalls.
  const double cap = 2.0 * smax;
  double lo = 0.0, hlo = -smax, hi = smax, hhi = 0.0;
  bool hv = false, have_prev = false;
  int side = 0;
  double prev[kMaxLevels + 1];
  double width = hi - lo;
  for (int it = 0; it < 2000; ++it) {
    double mid;
    const bool slow = (hi - lo) > 0.5 * width;  // the last two steps did not halve the bracket
    if (it % 2 == 0) width = hi - lo;
    if (hv && !(slow && it % 2 == 1)) {
      mid = lo - hlo * (hi - lo) / (hhi - hlo);
      if (!(mid > lo && mid < hi)) mid = lo + 0.5 * (hi - lo);
    } else if (lo == 0.0) {
      mid = hi * 0.0625;  // shrink fast toward tiny ŝ1 (heavy tails)
    } else if (hi > 4.0 * lo) {
      mid = std::sqrt(lo) * std::sqrt(hi);
    } else {
      mid = lo + 0.5 * (hi - lo);
    }
    if (!(mid > lo && mid < hi)) break;
    if (!chain_cap(c, cap, L, mid, s, have_prev ? prev : nullptr)) {  // beyond the cap: h > 0, value unknown
      hi = mid;
      hv = false;
      side = 0;
      continue;
    }
    std::memcpy(prev, s, sizeof(double) * (L + 1));
    have_prev = true;
    const double hm = s[L] - smax;
    if (hm <= 0.0) {
      lo = mid;
      hlo = hm;
      if (side == -1) hhi *= 0.5;
      side = -1;
    } else {
      hi = mid;
      hhi = hm;
      hv = true;
      if (side == 1) hlo *= 0.5;
      side = 1;
    }
    if (std::fabs(hm) <= 1e-14 * smax || hi - lo <= 1e-15 * hi) break;
  }
  // Final chain from the bracket end with the smaller |h| (recomputed: s may hold a later iterate).
  const double s1 = (hv && std::fabs(hhi) < std::fabs(hlo)) ? hi : lo;
  if (s1 == 0.0 || !chain_cap(c, cap, L, s1, s, have_prev ? prev : nullptr)) return false;
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
