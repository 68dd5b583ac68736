// Tests of the variable-length codec families: qsgd gamma/sparse, topk, randomk, and the bit I/O under them.
// Self-contained (own main); run under ASan+UBSan by native/tests/run.sh.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/bitio.h"
#include "core/codec.h"
#include "core/crc32c.h"
#include "core/gradzip.h"
#include "core/philox.h"
#include "core/quant_ref.h"

using namespace gz;

#include "counting_check.h"

using Bytes = std::vector<uint8_t>;
static uint32_t fbits(float f) { return ref::f2u(f); }

static Bytes enc(const Params& p, const std::vector<float>& x) {
  Bytes out(size_t(max_bytes(p, x.size())));
  const uint64_t len = encode(p, x.data(), x.size(), out.data(), out.size());
  out.resize(size_t(len));
  return out;
}
static std::vector<float> dec(const Bytes& pk, uint64_t n, int threads = 1, bool scalar = false) {
  std::vector<float> out(size_t(n), 12345.f);
  decode(pk.data(), pk.size(), out.data(), n, false, 1.f, threads, scalar);
  return out;
}
static bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}
static ErrCode err_of(const std::function<void()>& f) {
  try { f(); } catch (const Error& e) { return e.code; }
  return ErrCode(0);
}

static std::vector<float> gauss(uint64_t n, uint32_t seed, float sd = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, sd);
  std::vector<float> x((size_t)(n));
  for (auto& v : x) v = nd(rng);
  return x;
}

static Params qp(uint32_t s, uint32_t b, Coding c, Norm nm = NORM_L2, uint64_t seed = 42) {
  Params p;
  p.codec = QSGD; p.levels = s; p.bucket = b; p.coding = c; p.norm = nm;
  p.seed_given = true; p.seed = seed; p.threads = 1;
  return p;
}

// Reference decode of QSGD straight from quant_ref.h (independent of any coding).
static std::vector<float> qsgd_reference(const std::vector<float>& x, uint32_t s, uint32_t b, Norm nm, uint64_t seed) {
  std::vector<float> out(x.size());
  for (uint64_t b0 = 0; b0 < x.size(); b0 += b) {
    const uint64_t m = std::min<uint64_t>(b, x.size() - b0);
    const float N = nm == NORM_L2 ? ref::l2_norm(&x[b0], m) : ref::linf_norm(&x[b0], m);
    float r65536, s65536, pre;
    ref::qsgd_bucket_consts(N, s, &r65536, &s65536, &pre);
    const float w = N / float(s);
    for (uint64_t i = 0; i < m; ++i) {
      const uint32_t z = ref::qsgd_zeta(x[b0 + i] * pre, r65536, s65536, uniform16(seed, b0 + i));
      out[b0 + i] = ref::qsgd_value(w, z, z && x[b0 + i] < 0.f);
    }
  }
  return out;
}

// ---------------------------------------------------------------- bit I/O

static void test_bitio() {
  std::mt19937_64 rng(5);
  std::vector<uint64_t> xs;
  for (int i = 0; i < 5000; ++i) {
    const int w = int(rng() % 40);
    xs.push_back((rng() >> (63 - w)) | 1);  // 1 .. 2^40
  }
  xs.push_back(1); xs.push_back((uint64_t(1) << 34)); xs.push_back((uint64_t(1) << 40) - 1);
  uint64_t bits = 0;
  for (uint64_t x : xs) bits += uint64_t(gamma_len(x));
  Bytes buf((bits + 7) / 8, 0xEE);
  BitWriter bw(buf.data(), buf.data() + buf.size());
  for (uint64_t x : xs) bw.put_gamma(x);
  CHECK(bw.bits() == bits);
  CHECK(bw.bytes() == buf.size());
  BitReader br(buf.data(), buf.size());
  bool ok = true;
  for (uint64_t x : xs) ok &= br.get_gamma(40) == x;
  CHECK(ok);
  br.finish();
  // LSB-first layout of FORMAT 4: gamma(1) = "1", gamma(2) = 0,1,0 ; gamma(5) = 0,0,1,1,0 (x=5=101b: N=2, low bits 01)
  Bytes b2(2, 0);
  BitWriter w2(b2.data(), b2.data() + 2);
  w2.put_gamma(1); w2.put_gamma(2); w2.put_gamma(5);
  // bits: pos0=1 | pos1..3 = 0,1,0 | pos4..8 = 0,0,1,1,0  -> byte0 = 1 + 4 + 64 + 128 = 0xC5, byte1 = 0
  CHECK(b2[0] == 0xC5 && b2[1] == 0x00);
  CHECK(w2.bits() == 9);
  // reading past the end
  Bytes z1{0x00};
  CHECK(err_of([&] { BitReader r(z1.data(), 1); r.get_gamma(40); }) == ErrCode::CORRUPT);
  Bytes z2{0x80};  // gamma with N = 7 needs 15 bits
  CHECK(err_of([&] { BitReader r(z2.data(), 1); r.get_gamma(40); }) == ErrCode::CORRUPT);
  CHECK(err_of([&] { BitReader r(z2.data(), 1); r.get_gamma(3); }) == ErrCode::CORRUPT);  // N > maxN
  // padding checks
  Bytes p1{0x03};
  CHECK(err_of([&] { BitReader r(p1.data(), 1); r.get_bit(); r.finish(); }) == ErrCode::CORRUPT);
  CHECK(err_of([&] { BitReader r(p1.data(), 1); r.get_bit(); r.get_bit(); r.finish(); }) == ErrCode(0));
  Bytes p2{0x01, 0x00};
  CHECK(err_of([&] { BitReader r(p2.data(), 2); r.get_bit(); r.finish(); }) == ErrCode::CORRUPT);  // leftover byte
}

// ---------------------------------------------------------------- qsgd gamma / sparse

static void test_qsgd_roundtrip() {
  const uint64_t sizes[] = {0, 1, 7, 1000, 4097, 100003};
  const uint32_t buckets[] = {1, 7, 33, 511, 2049};
  const uint32_t levels[] = {1, 2, 4, 15, 255, 65535};
  int combos = 0;
  for (uint64_t n : sizes)
    for (uint32_t b : buckets)
      for (uint32_t s : levels)
        for (int nmi = 0; nmi < 2; ++nmi) {
          if (n == 100003 && !(b == 511 || b == 33) ) continue;  // keep the ASan run short
          const Norm nm = Norm(nmi);
          std::vector<float> x = gauss(n, uint32_t(n * 31 + b * 7 + s));
          // special values: zeros bucket, -0.0, one-hot
          if (n >= 7) { x[0] = -0.f; x[1] = 0.f; x[n / 2] = 1e-30f; }
          if (n >= 1000) for (uint64_t i = 100; i < 100 + 2 * b && i < n; ++i) x[i] = 0.f;
          if (n >= 4097) {  // tiny buckets (N < 2^-64: pre-scaled quantizer), subnormals, huge values
            for (uint64_t i = 3000; i < 3000 + 2 * b && i < n; ++i) x[i] *= (i & 1) ? 1e-30f : 1e-40f;
            for (uint64_t i = 4000; i < 4000 + b && i < n; ++i) x[i] *= 1e30f;
          }
          const uint64_t seed = 1000 + n + s;
          const std::vector<float> want = qsgd_reference(x, s, b, nm, seed);
          std::vector<float> dg, ds;
          for (Coding c : {CODING_GAMMA, CODING_SPARSE}) {
            Params p = qp(s, b, c, nm, seed);
            const Bytes pk = enc(p, x);
            CHECK(pk.size() <= max_bytes(p, n));
            const std::vector<float> got = dec(pk, n);
            CHECK_MSG(same_bits(got, want), "n=%llu b=%u s=%u norm=%d coding=%d", (unsigned long long)n, b, s, nmi, int(c));
            (c == CODING_GAMMA ? dg : ds) = got;
            // threads and scalar: same bytes, same decode
            Params p2 = p; p2.threads = 2;
            Params p3 = p; p3.force_scalar = true;
            CHECK(enc(p2, x) == pk);
            CHECK(enc(p3, x) == pk);
            CHECK(same_bits(dec(pk, n, 2), got));
            CHECK(same_bits(dec(pk, n, 1, true), got));
            // decode-add: acc + alpha * v, multiply then add
            std::vector<float> acc = gauss(n, 99);
            std::vector<float> wa(acc);
            const float alpha = 0.37f;
            for (uint64_t i = 0; i < n; ++i) { const float t = alpha * got[i]; wa[i] = wa[i] + t; }
            decode(pk.data(), pk.size(), acc.data(), n, true, alpha, 2, false);
            CHECK(same_bits(acc, wa));
          }
          CHECK(same_bits(dg, ds));
          ++combos;
        }
  std::printf("qsgd gamma/sparse round trips: %d combinations\n", combos);
}

// The general sparse encoder (s > 127, or buckets larger than 2048 elements): a run code and the value code from
// a table (s <= 4096) go into one flush when the run is shorter than 2^14; longer runs and s > 4096 (5000, 65535)
// take the one-code-at-a-time writer. Zero runs of 20000 and of 9000 elements inside 40000-element buckets, against
// the scalar encoder's bytes and the reference values.
static void test_sparse_general_encoder() {
  const uint64_t n = 100000;
  std::vector<float> x = gauss(n, 77);
  for (uint64_t i = 100; i < 20100; ++i) x[i] = 0.f;
  for (uint64_t i = 50000; i < 59000; ++i) x[i] = 0.f;
  for (uint32_t s : {4u, 255u, 4096u, 5000u, 65535u})
    for (int nmi = 0; nmi < 2; ++nmi) {
      const uint64_t seed = 4242 + s;
      Params p = qp(s, 40000, CODING_SPARSE, Norm(nmi), seed);
      Params ps = p;
      ps.force_scalar = true;
      const Bytes pk = enc(p, x);
      CHECK_MSG(pk == enc(ps, x), "sparse general encoder s=%u norm=%d: bytes differ from the scalar encoder", s, nmi);
      CHECK_MSG(same_bits(dec(pk, n), qsgd_reference(x, s, 40000, Norm(nmi), seed)), "sparse general s=%u", s);
    }
}

static void test_qsgd_fixed_equal() {
  std::vector<float> x = gauss(10007, 3);
  for (uint64_t i = 2000; i < 3100; ++i) x[i] *= 1e-41f;   // subnormal buckets
  for (uint64_t i = 5000; i < 6100; ++i) x[i] *= 3e-25f;   // N < 2^-64
  for (uint64_t i = 7000; i < 8100; ++i) x[i] *= 1e35f;
  for (uint32_t s : {1u, 4u, 15u, 255u, 65535u})
    for (uint32_t b : {7u, 512u}) {
      Bytes pf;
      try {
        pf = enc(qp(s, b, CODING_FIXED), x);
      } catch (const Error& e) {
        if (e.code == ErrCode::INTERNAL) { std::printf("qsgd fixed not available (%s): skipped\n", e.what()); return; }
        throw;
      }
      const std::vector<float> df = dec(pf, x.size());
      CHECK(same_bits(df, dec(enc(qp(s, b, CODING_GAMMA), x), x.size())));
      CHECK(same_bits(df, dec(enc(qp(s, b, CODING_SPARSE), x), x.size())));
    }
}

static void test_qsgd_bits_and_bounds() {
  // Gaussian, s = 4, b = 512: zeta is 0 or 1 for most elements; PERF-NOTES measured 1.42 bits/element for
  // gamma with a sign only on non-zeros. Accept a band around it.
  const uint64_t n = 1 << 20;
  const std::vector<float> x = gauss(n, 8);
  const Bytes g = enc(qp(4, 512, CODING_GAMMA), x);
  const Bytes sp = enc(qp(4, 512, CODING_SPARSE), x);
  const Bytes sp2 = enc(qp(23, 512, CODING_SPARSE), x);   // s ~ sqrt(b)
  const double bg = 8.0 * g.size() / n, bs = 8.0 * sp.size() / n, bs2 = 8.0 * sp2.size() / n;
  std::printf("bits/element (Gaussian, b=512): gamma s=4 %.3f, sparse s=4 %.3f, sparse s=23 %.3f\n", bg, bs, bs2);
  CHECK(bg > 1.3 && bg < 1.55);
  // worst-case bound: alternating signs, every element a high level (one element per bucket dominates nothing)
  for (Coding c : {CODING_GAMMA, CODING_SPARSE})
    for (uint32_t s : {1u, 3u, 4u, 65535u})
      for (uint32_t b : {1u, 2u, 3u, 5u, 64u}) {
        std::vector<float> y(5000);
        for (size_t i = 0; i < y.size(); ++i) y[i] = (i & 1) ? -1.f : 1.f;  // all |v| equal: l-inf puts all at s
        Params p = qp(s, b, c, NORM_LINF);
        const Bytes pk = enc(p, y);
        CHECK(pk.size() <= max_bytes(p, y.size()));
      }
  // non-finite input
  std::vector<float> bad(3000, 1.f);
  bad[2500] = NAN;
  CHECK(err_of([&] { enc(qp(4, 512, CODING_GAMMA), bad); }) == ErrCode::NONFINITE);
  bad[2500] = -INFINITY;
  CHECK(err_of([&] { enc(qp(4, 512, CODING_SPARSE), bad); }) == ErrCode::NONFINITE);
  std::vector<float> big(600, 3e38f);  // l2 norm overflows float
  CHECK(err_of([&] { enc(qp(4, 512, CODING_GAMMA), big); }) == ErrCode::NONFINITE);
  Params pz = qp(4, 512, CODING_GAMMA);
  pz.nonfinite_zero = true;
  bad[2500] = NAN;
  std::vector<float> clean(bad);
  clean[2500] = 0.f;
  CHECK(enc(pz, bad) == enc(qp(4, 512, CODING_GAMMA), clean));
}

// ---------------------------------------------------------------- topk

static std::vector<uint64_t> brute_topk(const std::vector<float>& x, uint64_t k) {
  std::vector<uint64_t> id(x.size());
  for (size_t i = 0; i < x.size(); ++i) id[i] = i;
  std::sort(id.begin(), id.end(), [&](uint64_t a, uint64_t b) {
    const uint32_t ma = fbits(x[a]) & 0x7FFFFFFF, mb = fbits(x[b]) & 0x7FFFFFFF;
    return ma != mb ? ma > mb : a < b;
  });
  id.resize(size_t(k));
  std::sort(id.begin(), id.end());
  return id;
}

static uint16_t ref_f16(float f) {  // RNE, saturating, via double arithmetic (independent of the codec's code)
  const double a = std::fabs(double(f));
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (a >= 65504.0) return sign | 0x7BFF;
  // exponent of a in half: normal when a >= 2^-14
  double unit;
  if (a < std::ldexp(1.0, -14)) unit = std::ldexp(1.0, -24);
  else unit = std::ldexp(1.0, std::ilogb(a) - 10);
  const double q = a / unit, fl = std::floor(q), fr = q - fl;
  double r = fl;
  if (fr > 0.5 || (fr == 0.5 && std::fmod(fl, 2.0) == 1.0)) r = fl + 1;
  const double v = r * unit;  // the rounded magnitude
  if (v >= 65520.0) return sign | 0x7BFF;
  // encode v
  if (v < std::ldexp(1.0, -14)) return uint16_t(sign | uint16_t(v / std::ldexp(1.0, -24)));
  const int e = std::ilogb(v);
  const uint32_t m = uint32_t(v / std::ldexp(1.0, e - 10)) - 1024;
  return uint16_t(sign | uint16_t((e + 15) << 10) | m);
}
static float half_to_float(uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  const double v = e ? std::ldexp(1024.0 + m, e - 25) : std::ldexp(double(m), -24);
  return float((h & 0x8000) ? -v : v);
}
static uint16_t ref_bf16(float f) {
  const uint32_t u = fbits(f);
  uint32_t r = (u >> 16) + (((u & 0xFFFF) > 0x8000 || ((u & 0xFFFF) == 0x8000 && ((u >> 16) & 1))) ? 1 : 0);
  if ((r & 0x7F80) == 0x7F80) r = (u >> 16 & 0x8000) | 0x7F7F;
  return uint16_t(r);
}

static void check_topk(const std::vector<float>& x, uint64_t k, ValueType vt, const char* what) {
  Params p;
  p.codec = TOPK; p.has_k = true; p.k = k; p.vt = vt; p.threads = 1;
  const Bytes pk = enc(p, x);
  CHECK(pk.size() <= max_bytes(p, x.size()));
  Params p2 = p; p2.threads = 2;
  Params p3 = p; p3.force_scalar = true;
  CHECK_MSG(enc(p2, x) == pk, "%s threads", what);
  CHECK_MSG(enc(p3, x) == pk, "%s scalar", what);
  const std::vector<uint64_t> want = brute_topk(x, std::min<uint64_t>(k, x.size()));
  std::vector<float> w(x.size(), 0.f);
  for (uint64_t i : want) {
    float v = x[i];
    if (vt == VT_F16) v = half_to_float(ref_f16(v));
    if (vt == VT_BF16) v = ref::u2f(uint32_t(ref_bf16(v)) << 16);
    w[i] = v;
  }
  const std::vector<float> got = dec(pk, x.size());
  CHECK_MSG(same_bits(got, w), "%s: n=%zu k=%llu vt=%d", what, x.size(), (unsigned long long)k, int(vt));
  CHECK(same_bits(dec(pk, x.size(), 2), got));
  std::vector<float> acc = gauss(x.size(), 5), wa(acc);
  for (uint64_t i : want) { const float t = 0.5f * w[i]; wa[i] = wa[i] + t; }
  decode(pk.data(), pk.size(), acc.data(), x.size(), true, 0.5f, 2, false);
  CHECK(same_bits(acc, wa));
}

static void test_topk() {
  for (uint64_t n : {1ull, 7ull, 1000ull, 4097ull, 100003ull, 300000ull}) {
    std::vector<float> x = gauss(n, uint32_t(n));
    for (uint64_t k : std::vector<uint64_t>{1, 2, n / 100 + 1, n / 3 + 1, n}) {
      if (k > n) continue;
      for (int vt = 0; vt < 3; ++vt) check_topk(x, k, ValueType(vt), "gauss");
    }
  }
  // ties and signed zeros: many equal magnitudes, -0.0 and +0.0 have the same magnitude
  std::vector<float> t(70001);
  std::mt19937 rng(3);
  for (auto& v : t) { const int r = int(rng() % 7); v = r == 0 ? -0.f : r == 1 ? 0.f : float(int(rng() % 5) - 2); }
  for (uint64_t k : {1ull, 5ull, 700ull, 20000ull, 69999ull, 70001ull}) check_topk(t, k, VT_F32, "ties");
  std::vector<float> z(5000, 0.f);
  for (size_t i = 0; i < z.size(); i += 3) z[i] = -0.f;
  check_topk(z, 17, VT_F32, "zeros");
  // values for the conversions: subnormal halves, ties in rounding, overflow to saturation
  std::vector<float> c;
  for (int e = -30; e <= 20; ++e)
    for (float m : {1.f, 1.0004883f, 1.0009766f, 1.5f, 1.99951171875f, 1.9997559f})
      for (float s : {1.f, -1.f}) c.push_back(s * std::ldexp(m, e));
  for (float v : {65504.f, 65519.f, 65520.f, 1e6f, -1e6f, 3.4e38f, -3.4e38f, 3.3961e38f, 1e-40f, 5.9604645e-8f,
                  2.9802322e-8f, 2.9802326e-8f, 8.940697e-8f})
    c.push_back(v);
  std::vector<float> cc(c);
  for (int r = 0; r < 50000; ++r) {  // random bit patterns (finite)
    uint32_t u = uint32_t(rng());
    if ((u & 0x7F800000u) == 0x7F800000u) continue;
    cc.push_back(ref::u2f(u));
  }
  for (int vt = 0; vt < 3; ++vt) check_topk(cc, cc.size(), ValueType(vt), "conversions");
  // k = n, and k resolved from a ratio
  {
    Params p; p.codec = TOPK; p.ratio = 0.01; p.threads = 1;
    const std::vector<float> x = gauss(12345, 4);
    const Bytes pk = enc(p, x);
    const Header h = parse(pk.data(), pk.size());
    CHECK(h.p.k == 124);
  }
  std::vector<float> bad(200000, 1.f);
  bad[199999] = NAN;
  Params p; p.codec = TOPK; p.has_k = true; p.k = 10;
  CHECK(err_of([&] { enc(p, bad); }) == ErrCode::NONFINITE);
  bad[199999] = 1.f; bad[3] = INFINITY;
  CHECK(err_of([&] { enc(p, bad); }) == ErrCode::NONFINITE);
  p.force_scalar = true;
  CHECK(err_of([&] { enc(p, bad); }) == ErrCode::NONFINITE);
}

// ---------------------------------------------------------------- randomk

static void test_randomk() {
  // Floyd reference with std::set
  auto floyd = [](uint64_t seed, uint64_t n, uint64_t k) {
    std::set<uint64_t> S;
    for (uint64_t t = 0; t < k; ++t) {
      const uint64_t J = n - k + t;
      const uint64_t x = uint64_t((unsigned __int128)randomk_draw(seed, t) * (J + 1) >> 64);
      if (S.count(x)) S.insert(J); else S.insert(x);
    }
    return std::vector<uint64_t>(S.begin(), S.end());
  };
  for (uint64_t n : {1ull, 10ull, 1000ull, 100003ull, 5000000ull})
    for (uint64_t k : std::vector<uint64_t>{1, 3, n / 100 + 1, n / 2 + 1, n}) {
      if (k > n || (n > 100000 && k > 60000)) continue;
      std::vector<uint64_t> idx((size_t)(k));
      randomk_indices(77 + n, n, k, idx.data());
      CHECK_MSG(idx == floyd(77 + n, n, k), "n=%llu k=%llu", (unsigned long long)n, (unsigned long long)k);
    }
  // uniformity: n = 100, k = 10, 4000 seeds: each index count ~ Binomial(4000, 0.1): mean 400, sd 19;
  // allow 5.5 sd (P(any of 100 outside) < 1e-6). Also a chi-square over the 100 cells (df 99): < 99 + 6*sqrt(198).
  {
    std::vector<int> cnt(100, 0);
    std::vector<uint64_t> idx(10);
    for (uint64_t seed = 0; seed < 4000; ++seed) {
      randomk_indices(seed, 100, 10, idx.data());
      for (int j = 0; j < 10; ++j) {
        cnt[size_t(idx[j])]++;
        if (j) CHECK(idx[j] > idx[j - 1]);
      }
    }
    double chi = 0;
    bool in = true;
    for (int c : cnt) { chi += (c - 400.0) * (c - 400.0) / 400.0; in &= std::fabs(c - 400.0) < 5.5 * 19.0; }
    CHECK(in);
    CHECK(chi < 99 + 6 * std::sqrt(198.0));
  }
  // round trip
  for (uint64_t n : {1ull, 1000ull, 100003ull}) {
    const std::vector<float> x = gauss(n, 9);
    Params p; p.codec = RANDOMK; p.ratio = 0.05; p.seed_given = true; p.seed = 1234; p.threads = 1;
    const Bytes pk = enc(p, x);
    const uint64_t k = resolve_k(p, n);
    CHECK(pk.size() == max_bytes(p, n));
    std::vector<uint64_t> idx((size_t)(k));
    randomk_indices(1234, n, k, idx.data());
    const float sc = float(double(n) / double(k));
    std::vector<float> w(size_t(n), 0.f);
    for (uint64_t i : idx) w[i] = x[i] * sc;
    const std::vector<float> got = dec(pk, n);
    CHECK(same_bits(got, w));
    std::vector<float> acc = gauss(n, 2), wa(acc);
    for (uint64_t i : idx) { const float t = 2.f * w[i]; wa[i] = wa[i] + t; }
    decode(pk.data(), pk.size(), acc.data(), n, true, 2.f, 1, false);
    CHECK(same_bits(acc, wa));
  }
  std::vector<float> bad(1000, 1.f);
  bad[999] = NAN;
  Params p; p.codec = RANDOMK; p.has_k = true; p.k = 1; p.seed_given = true;
  CHECK(err_of([&] { enc(p, bad); }) == ErrCode::NONFINITE);
}

// ---------------------------------------------------------------- hostile packets

struct Pkt {  // editable view of a packet with a chunk table
  Bytes head;  // 48 + P bytes
  std::vector<uint32_t> lens;
  Bytes payload;
  Bytes build() const {
    Bytes out(head);
    store_u32le(out.data() + 32, uint32_t(lens.size()));
    uint64_t pb = payload.size();
    store_u64le(out.data() + 40, pb);
    for (uint32_t l : lens) { uint8_t b[4]; store_u32le(b, l); out.insert(out.end(), b, b + 4); }
    out.insert(out.end(), payload.begin(), payload.end());
    const uint32_t crc = crc32c(out.data(), out.size());
    uint8_t b[4];
    store_u32le(b, crc);
    out.insert(out.end(), b, b + 4);
    return out;
  }
};
static Pkt split(const Bytes& pk) {
  const Header h = parse(pk.data(), pk.size());
  Pkt p;
  p.head.assign(pk.begin(), pk.begin() + 48 + h.param_bytes);
  for (uint32_t c = 0; c < h.chunk_count; ++c) p.lens.push_back(load_u32le(h.chunk_table + 4 * c));
  p.payload.assign(h.payload, h.payload + h.payload_bytes);
  return p;
}

// A packet must give CORRUPT from decode and from decode-add, and decode-add must leave acc unchanged.
static void expect_corrupt(const Bytes& pk, uint64_t n, const char* what) {
  std::vector<float> out(size_t(n), 1.f);
  const ErrCode e1 = err_of([&] { decode(pk.data(), pk.size(), out.data(), n, false, 1.f, 2, false); });
  CHECK_MSG(e1 == ErrCode::CORRUPT, "%s: decode gave %d", what, int(e1));
  std::vector<float> acc(size_t(n), 3.f);
  const ErrCode e2 = err_of([&] { decode(pk.data(), pk.size(), acc.data(), n, true, 1.f, 2, false); });
  CHECK_MSG(e2 == ErrCode::CORRUPT, "%s: decode-add gave %d", what, int(e2));
  bool unchanged = true;
  for (float v : acc) unchanged &= v == 3.f;
  CHECK_MSG(unchanged, "%s: decode-add changed acc", what);
}

// Builds a qsgd gamma/sparse packet of one chunk from explicit scales and bits.
static Bytes qsgd_var_packet(Coding c, uint32_t s, uint32_t b, uint64_t n, const std::vector<uint32_t>& scales,
                             const std::function<void(BitWriter&)>& bits, int extra_bytes = 0) {
  std::vector<float> x(size_t(n), 0.f);
  Pkt p = split(enc(qp(s, b, c), x));
  Bytes pl(scales.size() * 4 + 64 + size_t(extra_bytes), 0);
  for (size_t i = 0; i < scales.size(); ++i) store_u32le(pl.data() + 4 * i, scales[i]);
  BitWriter bw(pl.data() + 4 * scales.size(), pl.data() + pl.size());
  bits(bw);
  pl.resize(4 * scales.size() + size_t(bw.bytes()) + size_t(extra_bytes));
  p.payload = pl;
  p.lens = {uint32_t(pl.size())};
  return p.build();
}

static void test_hostile() {
  const uint32_t one = fbits(1.f);
  // sanity: a hand-built valid gamma packet decodes (n = 4, b = 4, s = 4: zeta 0, 1-, 4+, 0)
  {
    const Bytes ok = qsgd_var_packet(CODING_GAMMA, 4, 4, 4, {one}, [](BitWriter& w) {
      w.put_gamma(1); w.put_gamma(2); w.put(1, 1); w.put_gamma(5); w.put(0, 1); w.put_gamma(1);
    });
    const std::vector<float> d = dec(ok, 4);
    CHECK(d[0] == 0.f && d[1] == -0.25f && d[2] == 1.f && d[3] == 0.f);
  }
  auto G = [&](const char* what, std::vector<uint32_t> sc, std::function<void(BitWriter&)> f, int extra = 0) {
    expect_corrupt(qsgd_var_packet(CODING_GAMMA, 4, 4, 4, sc, f, extra), 4, what);
  };
  G("gamma zeta > s", {one}, [](BitWriter& w) { w.put_gamma(6); w.put(0, 1); w.put_gamma(1); w.put_gamma(1); w.put_gamma(1); });
  G("gamma code too long", {one}, [](BitWriter& w) { w.put_gamma(8); w.put(0, 1); w.put_gamma(1); w.put_gamma(1); w.put_gamma(1); });
  G("gamma truncated stream", {one}, [](BitWriter& w) { w.put_gamma(1); w.put_gamma(1); w.put_gamma(1); });
  G("gamma NaN scale", {0x7FC00000u}, [](BitWriter& w) { for (int i = 0; i < 4; ++i) w.put_gamma(1); });
  G("gamma Inf scale", {0x7F800000u}, [](BitWriter& w) { for (int i = 0; i < 4; ++i) w.put_gamma(1); });
  G("gamma negative scale", {fbits(-1.f)}, [](BitWriter& w) { for (int i = 0; i < 4; ++i) w.put_gamma(1); });
  G("gamma non-zero padding", {one}, [](BitWriter& w) { for (int i = 0; i < 4; ++i) w.put_gamma(1); w.put(1, 1); });
  G("gamma leftover byte", {one}, [](BitWriter& w) { for (int i = 0; i < 4; ++i) w.put_gamma(1); }, 1);
  G("gamma missing scale", {}, [](BitWriter&) {});
  auto S = [&](const char* what, std::vector<uint32_t> sc, std::function<void(BitWriter&)> f, int extra = 0) {
    expect_corrupt(qsgd_var_packet(CODING_SPARSE, 4, 4, 4, sc, f, extra), 4, what);
  };
  {
    const Bytes ok = qsgd_var_packet(CODING_SPARSE, 4, 4, 4, {one}, [](BitWriter& w) {
      w.put_gamma(3); w.put_gamma(2); w.put_gamma(1); w.put(1, 1); w.put_gamma(1); w.put_gamma(4); w.put(0, 1);
    });
    const std::vector<float> d = dec(ok, 4);
    CHECK(d[0] == 0.f && d[1] == -0.25f && d[2] == 1.f && d[3] == 0.f);
  }
  S("sparse nnz > m", {one}, [](BitWriter& w) { w.put_gamma(6); for (int i = 0; i < 5; ++i) { w.put_gamma(1); w.put_gamma(1); w.put(0, 1); } });
  S("sparse run past bucket end", {one}, [](BitWriter& w) { w.put_gamma(2); w.put_gamma(5); w.put_gamma(1); w.put(0, 1); });
  S("sparse second run past end", {one}, [](BitWriter& w) { w.put_gamma(3); w.put_gamma(3); w.put_gamma(1); w.put(0, 1); w.put_gamma(2); w.put_gamma(1); w.put(0, 1); });
  S("sparse zeta > s", {one}, [](BitWriter& w) { w.put_gamma(2); w.put_gamma(1); w.put_gamma(5); w.put(0, 1); });
  S("sparse zeta code too long", {one}, [](BitWriter& w) { w.put_gamma(2); w.put_gamma(1); w.put_gamma(8); w.put(0, 1); });
  S("sparse missing nonzeros", {one}, [](BitWriter& w) { w.put_gamma(3); w.put_gamma(1); w.put_gamma(1); w.put(0, 1); });
  S("sparse padding", {one}, [](BitWriter& w) { w.put_gamma(1); w.put(1, 1); });
  S("sparse leftover", {one}, [](BitWriter& w) { w.put_gamma(1); }, 1);
  S("sparse NaN scale", {0xFFC00000u}, [](BitWriter& w) { w.put_gamma(1); });
  // a chunk table whose lengths are shifted between chunks (sum unchanged)
  {
    const std::vector<float> x = gauss(5000, 1);
    for (Coding c : {CODING_GAMMA, CODING_SPARSE}) {
      Pkt p = split(enc(qp(4, 512, c), x));
      CHECK(p.lens.size() == 3);
      p.lens[0] += 1; p.lens[1] -= 1;
      expect_corrupt(p.build(), 5000, "shifted chunk lengths");
    }
  }
  // topk: indices out of range, not increasing across chunks, non-finite values
  {
    std::vector<float> x = gauss(20000, 2);
    Params p; p.codec = TOPK; p.has_k = true; p.k = 5000;
    Pkt base = split(enc(p, x));
    CHECK(base.lens.size() == 2);
    {  // NaN value
      Pkt q = base; store_u32le(q.payload.data() + 8, 0x7FC00000u);
      expect_corrupt(q.build(), 20000, "topk NaN value");
    }
    // rebuild the index chunks by hand
    auto with_chunks = [&](const std::vector<std::vector<uint64_t>>& codes) {
      Pkt q = base;
      q.payload.resize(5000 * 4);
      q.lens.clear();
      for (const auto& ch : codes) {
        Bytes b(ch.size() * 9 + 16, 0);
        BitWriter w(b.data(), b.data() + b.size());
        for (uint64_t v : ch) w.put_gamma(v);
        b.resize(size_t(w.bytes()));
        q.lens.push_back(uint32_t(b.size()));
        q.payload.insert(q.payload.end(), b.begin(), b.end());
      }
      return q.build();
    };
    std::vector<uint64_t> c0(4096, 1), c1(904, 1);  // indices 0..4095, then 4096..4999 when c1[0] = 4097
    c1[0] = 4097;
    {
      const Bytes ok = with_chunks({c0, c1});
      CHECK(err_of([&] { dec(ok, 20000); }) == ErrCode(0));
    }
    std::vector<uint64_t> b1 = c1; b1[0] = 4096;  // first of chunk 1 = 4095 = last of chunk 0
    expect_corrupt(with_chunks({c0, b1}), 20000, "topk non-increasing across chunks");
    b1 = c1; b1[903] = 20000;  // past n
    expect_corrupt(with_chunks({c0, b1}), 20000, "topk index out of range");
    b1 = c1; b1.pop_back();
    expect_corrupt(with_chunks({c0, b1}), 20000, "topk chunk short");
    b1 = c1; b1.push_back(1);
    expect_corrupt(with_chunks({c0, b1}), 20000, "topk chunk long");
    b1 = c1; b1[0] = uint64_t(1) << 20;  // gamma code longer than log2(n)
    expect_corrupt(with_chunks({c0, b1}), 20000, "topk code too long");
  }
  // randomk: non-finite value
  {
    Params p; p.codec = RANDOMK; p.has_k = true; p.k = 10; p.seed_given = true; p.seed = 5;
    const std::vector<float> x = gauss(100, 1);
    const Bytes pk = enc(p, x);
    const Header h = parse(pk.data(), pk.size());
    Pkt q;
    q.head.assign(pk.begin(), pk.begin() + 48 + h.param_bytes);
    q.payload.assign(h.payload, h.payload + h.payload_bytes);
    store_u32le(q.payload.data() + 36, 0xFF800000u);
    expect_corrupt(q.build(), 100, "randomk -Inf value");
  }
}

// Every truncation and every single-bit flip of small packets; random payload edits with a valid CRC.
static void test_truncation_flips() {
  std::vector<Bytes> pks;
  std::vector<uint64_t> ns;
  const std::vector<float> x = gauss(300, 11);
  for (Coding c : {CODING_GAMMA, CODING_SPARSE}) { pks.push_back(enc(qp(4, 64, c), x)); ns.push_back(300); }
  pks.push_back(enc(qp(255, 33, CODING_SPARSE), x)); ns.push_back(300);
  for (int vt = 0; vt < 3; ++vt) {
    Params p; p.codec = TOPK; p.has_k = true; p.k = 40; p.vt = ValueType(vt);
    pks.push_back(enc(p, x)); ns.push_back(300);
  }
  { Params p; p.codec = RANDOMK; p.has_k = true; p.k = 20; p.seed_given = true; p.seed = 3; pks.push_back(enc(p, x)); ns.push_back(300); }
  const size_t nsmall = pks.size();
  // multi-chunk packets (the four-stream gamma decoder, chunk groups): payload edits only
  const std::vector<float> x2 = gauss(20000, 12);
  for (uint32_t s : {1u, 4u, 7u}) { pks.push_back(enc(qp(s, 64, CODING_GAMMA), x2)); ns.push_back(20000); }
  pks.push_back(enc(qp(4, 100, CODING_SPARSE), x2)); ns.push_back(20000);
  for (size_t t = 0; t < pks.size(); ++t) {
    const Bytes& pk = pks[t];
    std::vector<float> out((size_t)(ns[t]));
    bool all = true;
    for (size_t L = 0; L < pk.size() && t < nsmall; ++L)
      all &= err_of([&] { decode(pk.data(), L, out.data(), ns[t], false, 1.f, 1, false); }) == ErrCode::CORRUPT;
    CHECK_MSG(all, "truncation of packet %zu", t);
    all = true;
    for (size_t bit = 0; bit < pk.size() * 8 && t < nsmall; ++bit) {
      Bytes q(pk);
      q[bit >> 3] ^= uint8_t(1u << (bit & 7));
      all &= err_of([&] { decode(q.data(), q.size(), out.data(), ns[t], false, 1.f, 1, false); }) == ErrCode::CORRUPT;
    }
    CHECK_MSG(all, "bit flips of packet %zu", t);
    // payload edits behind a recomputed CRC: must decode or give CORRUPT; decode-add leaves acc intact on error
    Pkt base = split(pk);
    std::mt19937 rng((uint32_t)t);
    int corrupt_cnt = 0, ok_cnt = 0;
    for (int it = 0; it < (t < nsmall ? 3000 : 400) && !base.payload.empty(); ++it) {
      Pkt q = base;
      const int edits = 1 + int(rng() % 3);
      for (int e = 0; e < edits; ++e) q.payload[rng() % q.payload.size()] ^= uint8_t(1u << (rng() % 8));
      const Bytes b = q.build();
      std::vector<float> acc(size_t(ns[t]), 2.f);
      const ErrCode e2 = err_of([&] { decode(b.data(), b.size(), acc.data(), ns[t], true, 1.f, 2, false); });
      if (e2 == ErrCode::CORRUPT) {
        ++corrupt_cnt;
        bool unchanged = true;
        for (float v : acc) unchanged &= v == 2.f;
        CHECK(unchanged);
      } else {
        CHECK(e2 == ErrCode(0));
        ++ok_cnt;
        // an accepted packet decodes the same on the SIMD and the scalar path
        std::vector<float> d1(size_t(ns[t])), d2(size_t(ns[t]));
        const ErrCode e3 = err_of([&] { decode(b.data(), b.size(), d1.data(), ns[t], false, 1.f, 2, false); });
        const ErrCode e4 = err_of([&] { decode(b.data(), b.size(), d2.data(), ns[t], false, 1.f, 1, true); });
        CHECK(e3 == ErrCode(0) && e4 == ErrCode(0) && same_bits(d1, d2));
      }
    }
    (void)ok_cnt;
    CHECK(base.payload.empty() || corrupt_cnt > 0);
  }
}

int main() {
  test_bitio();
  test_qsgd_roundtrip();
  test_sparse_general_encoder();
  test_qsgd_fixed_equal();
  test_qsgd_bits_and_bounds();
  test_topk();
  test_randomk();
  test_hostile();
  test_truncation_flips();
  std::printf("test_variable: %d checks, %d failed\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
