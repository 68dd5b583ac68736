// TinyScript (non-uniform quantization) math, host code, double precision: the Weibull fit by moment matching
// and the optimal levels of Theorem 1 of the TinyScript supplement (docs/FORMAT.md section 3.6,
// docs/NONUNIFORM.md). Standalone functions, no dependency on the packet layer, so the C++ tests and the
// CUDA host code call exactly the same arithmetic.
#pragma once
#include <cstdint>

namespace gz {
namespace weibull {

constexpr double kShapeMin = 0.05, kShapeMax = 20.0;

// Regularized incomplete gamma functions P(a, x) (lower) and Q(a, x) = 1 - P(a, x) (upper), a > 0, x >= 0.
// Series for x < a + 1, Lentz continued fraction otherwise (relative accuracy about 1e-14).
double gamma_p(double a, double x);
double gamma_q(double a, double x);

// f(x) = exp(-x^k) and its integral I(a, b) = ∫_a^b exp(-x^k) dx for 0 <= a <= b, via
// ∫_0^x exp(-t^k) dt = Γ(1 + 1/k) · P(1/k, x^k) (substitute u = t^k), each piece taken from P or Q on the
// side where it does not cancel.
double f_exp(double k, double x);
double integral_exp(double k, double a, double b);

// R(k) = Γ(1 + 2/k) / Γ(1 + 1/k)² (= E[X²]/E[X]² for a Weibull law of shape k), strictly decreasing in k.
double moment_ratio(double k);
// Shape k with R(k) = ratio by bisection on [kShapeMin, kShapeMax] (clamped to the ends outside).
double fit_shape(double ratio);
// Weibull scale from the first moment: λ = m1 / Γ(1 + 1/k).
double fit_scale(double k, double m1);

// Theorem 1 chain: given ŝ_{t-1} < ŝ_t, the unique ŝ_{t+1} > ŝ_t with
//   ∫_{ŝ_{t-1}}^{ŝ_{t+1}} exp(-x^k) dx = (ŝ_{t+1} - ŝ_{t-1}) · exp(-ŝ_t^k)      (condition (***)).
// Searched in (ŝ_t, smax]; returns false when the root lies beyond smax (the chain overshoots).
bool next_level(double k, double s_prev, double s_cur, double smax, double* s_next);

// Runs the chain from ŝ_0 = 0, ŝ_1 = s1 up to ŝ_L. Returns true iff it overshoots smax (some ŝ_t > smax,
// t <= L); otherwise s[0..L] holds the chain (s[L] <= smax). Monotone in s1 (Claim 2 (I)).
bool chain_overshoots(double k, double smax, uint32_t L, double s1, double* s);

// Optimal levels 0 = ŝ_0 < ŝ_1 < … < ŝ_L = smax (units of λ; smax = 1/λ) by bisection on ŝ_1.
// Returns false when the problem is numerically degenerate (non-finite or non-increasing result).
bool solve_levels(double k, double smax, uint32_t L, double* s);

// Normalized float levels for the packet: q_t = (float)(ŝ_t · λ) on [0, 1], q_0 = 0, q_L = 1 exactly,
// made strictly increasing as float32 (see docs/NONUNIFORM.md). Falls back to uniform t/L when the
// solver reports a degenerate problem. L in [1, 64].
void normalized_levels(double k, double lambda, uint32_t L, float* q);

// The whole fit from the pooled sums (FORMAT 3.6): cnt = 0 -> k = given shape or 1, λ = 1, uniform levels.
struct Fit { double k, lambda; };
Fit fit_from_sums(double S1, double S2, uint64_t cnt, double given_shape /* 0 = fit */, uint32_t L, float* q);

}  // namespace weibull
}  // namespace gz
