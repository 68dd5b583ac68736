// Parity checks of the fast qsgd gamma/sparse decoders (s <= 127, and the wide paths for 128 <= s <= 65535;
// native/codecs/gamma.cc): the SIMD decode, the
// non-temporal decode (n >= 2^20, every output alignment), the one-pass decode-add (symbol scratch of the whole
// packet) against the scalar path (decode_chunk), bit for bit; corrupt chunks anywhere (first, middle, last) give
// CORRUPT from both paths and leave acc untouched. Self-contained (own main); run under ASan+UBSan by run.sh.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/crc32c.h"
#include "core/gradzip.h"

using namespace gz;

#include "counting_check.h"

using Bytes = std::vector<uint8_t>;
static const ErrCode kOK = ErrCode(0);

static Bytes enc(const Params& p, const std::vector<float>& x) {
  Bytes out(size_t(max_bytes(p, x.size())));
  const uint64_t len = encode(p, x.data(), x.size(), out.data(), out.size());
  out.resize(size_t(len));
  return out;
}

static ErrCode err_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code;
  }
  return kOK;
}

// Decodes into a buffer at float offset `off` (alignment), guards around it.
struct Out {
  std::vector<float> buf;
  uint64_t off, n;
  Out(uint64_t n_, uint64_t off_, float fill) : buf(size_t(n_ + off_ + 16), fill), off(off_), n(n_) {}
  float* p() { return buf.data() + off; }
};

static bool same(const Out& a, const Out& b) {
  return a.buf.size() == b.buf.size() && std::memcmp(a.buf.data(), b.buf.data(), a.buf.size() * 4) == 0;
}

static std::vector<float> data(uint64_t n, int kind, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x((size_t(n)));
  for (uint64_t i = 0; i < n; ++i) {
    float v = nd(rng);
    if (kind == 1) v = (i % 211 == 0) ? v : 0.f;           // long zero runs (sparse: table misses)
    if (kind == 2) v = (i / 700) % 2 ? 0.f : v;            // zero buckets
    if (kind == 3) v = (i % 3 == 0) ? v * 1e6f : v * 1e-6f;  // large levels
    if (kind == 4) v = (i % 600 == 17) ? v : 0.f;           // runs of 599 zeros (sparse: several records each)
    x[size_t(i)] = v;
  }
  return x;
}

// Every decode variant against the scalar path.
static void parity(const Params& p, const Bytes& pk, uint64_t n, const char* what) {
  const uint64_t offs[] = {0, 1, 4, 8};
  Out ref(n, 0, 7.f);
  CHECK_MSG(err_of([&] { decode(pk.data(), pk.size(), ref.p(), n, false, 1.f, 1, true); }) == kOK, "%s", what);
  for (uint64_t off : offs)
    for (int th : {1, 2}) {
      Out o(n, off, 7.f);
      CHECK_MSG(err_of([&] { decode(pk.data(), pk.size(), o.p(), n, false, 1.f, th, false); }) == kOK,
                "%s", what);
      CHECK_MSG(std::memcmp(o.p(), ref.p(), size_t(n) * 4) == 0, "%s: decode off %llu th %d", what,
                (unsigned long long)off, th);
      CHECK_MSG(o.buf[size_t(off + n)] == 7.f && (off == 0 || o.buf[size_t(off - 1)] == 7.f), "%s: guard", what);
      // decode-add (alpha = 1e-3 on a non-zero acc, -0.0 included)
      Out a(n, off, 0.f), b(n, off, 0.f);
      for (uint64_t i = 0; i < n; ++i) a.p()[i] = b.p()[i] = (i % 7 == 0) ? -0.f : float(i % 13) * 0.25f - 1.f;
      decode(pk.data(), pk.size(), a.p(), n, true, 1e-3f, th, false);
      decode(pk.data(), pk.size(), b.p(), n, true, 1e-3f, 1, true);
      CHECK_MSG(same(a, b), "%s: decode-add off %llu th %d", what, (unsigned long long)off, th);
    }
  (void)p;
}

static void fix_crc(Bytes& b) {
  const uint32_t c = crc32c(b.data(), b.size() - 4);
  std::memcpy(b.data() + b.size() - 4, &c, 4);
}

// Corrupts chunk c's stream (flips payload bits) and checks: both paths agree on CORRUPT or decode the same;
// decode-add on CORRUPT leaves acc untouched.
static void corrupt_checks(const Bytes& pk, uint64_t n, std::mt19937_64& rng, const char* what) {
  const Header h = parse(pk.data(), pk.size());
  const uint64_t C = h.chunk_count;
  std::vector<uint64_t> off(C + 1, 0);
  for (uint64_t c = 0; c < C; ++c) {
    uint32_t l;
    std::memcpy(&l, h.chunk_table + 4 * c, 4);
    off[c + 1] = off[c] + l;
  }
  const uint64_t pay = uint64_t(h.payload - pk.data());
  for (int t = 0; t < 24; ++t) {
    const uint64_t c = t % 3 == 0 ? 0 : t % 3 == 1 ? C - 1 : rng() % C;
    Bytes b = pk;
    const uint64_t lo = pay + off[c], hi = pay + off[c + 1];
    const int nflip = 1 + int(rng() % 3);
    for (int f = 0; f < nflip; ++f) {
      // mostly in the bit stream, sometimes its last bytes (padding)
      const uint64_t at = (rng() % 4 == 0) ? hi - 1 - rng() % std::min<uint64_t>(4, hi - lo) : lo + rng() % (hi - lo);
      b[size_t(at)] ^= uint8_t(1u << (rng() % 8));
    }
    fix_crc(b);
    Out s(n, 0, 3.f), v(n, 4, 3.f);
    const ErrCode es = err_of([&] { decode(b.data(), b.size(), s.p(), n, false, 1.f, 1, true); });
    const ErrCode ev = err_of([&] { decode(b.data(), b.size(), v.p(), n, false, 1.f, 2, false); });
    CHECK_MSG(es == ev, "%s: corrupt chunk %llu: scalar %d simd %d", what, (unsigned long long)c, int(es), int(ev));
    CHECK_MSG(es == kOK || es == ErrCode::CORRUPT, "%s: code %d", what, int(es));
    if (es == kOK && ev == kOK)
      CHECK_MSG(std::memcmp(s.p(), v.p(), size_t(n) * 4) == 0, "%s: accepted corrupt packet decodes differ", what);
    for (int th : {1, 2}) {
      Out a(n, 4, 0.5f);
      const ErrCode ea = err_of([&] { decode(b.data(), b.size(), a.p(), n, true, 0.25f, th, false); });
      CHECK_MSG(ea == es, "%s: decode-add %d vs %d", what, int(ea), int(es));
      if (ea != kOK) {
        bool untouched = true;
        for (float x : a.buf) untouched &= x == 0.5f;
        CHECK_MSG(untouched, "%s: decode-add changed acc on a corrupt packet (chunk %llu)", what,
                  (unsigned long long)c);
      }
    }
  }
}

// Moves the last byte of chunk c into chunk c + 1 (the chunk table still sums to the payload; CRC fixed): chunk c
// now ends inside a code, so its decode must read past its end. The fast path reads 8 bytes at a time from the
// packet (not the chunk) and so sees chunk c + 1's bytes there; it must still reject the packet, as the scalar
// path does, and leave acc untouched.
static void boundary_checks(const Bytes& pk, uint64_t n, const char* what) {
  const Header h = parse(pk.data(), pk.size());
  const uint64_t C = h.chunk_count;
  const uint64_t tab = uint64_t(h.chunk_table - pk.data());
  for (uint64_t c = 0; c + 1 < C; c += 1 + C / 6) {
    Bytes b = pk;
    uint32_t l0, l1;
    std::memcpy(&l0, b.data() + tab + 4 * c, 4);
    std::memcpy(&l1, b.data() + tab + 4 * (c + 1), 4);
    --l0;
    ++l1;
    std::memcpy(b.data() + tab + 4 * c, &l0, 4);
    std::memcpy(b.data() + tab + 4 * (c + 1), &l1, 4);
    fix_crc(b);
    Out s(n, 0, 3.f), v(n, 4, 3.f);
    const ErrCode es = err_of([&] { decode(b.data(), b.size(), s.p(), n, false, 1.f, 1, true); });
    const ErrCode ev = err_of([&] { decode(b.data(), b.size(), v.p(), n, false, 1.f, 2, false); });
    CHECK_MSG(es == ErrCode::CORRUPT, "%s: chunk %llu cut short: scalar %d", what, (unsigned long long)c, int(es));
    CHECK_MSG(ev == ErrCode::CORRUPT, "%s: chunk %llu cut short: simd %d", what, (unsigned long long)c, int(ev));
    Out a(n, 4, 0.5f);
    const ErrCode ea = err_of([&] { decode(b.data(), b.size(), a.p(), n, true, 0.25f, 1, false); });
    CHECK_MSG(ea == ErrCode::CORRUPT, "%s: chunk %llu cut short: decode-add %d", what, (unsigned long long)c, int(ea));
    bool untouched = true;
    for (float x : a.buf) untouched &= x == 0.5f;
    CHECK_MSG(untouched, "%s: decode-add changed acc (chunk %llu cut short)", what, (unsigned long long)c);
  }
}

static Params qparams(uint32_t s, uint32_t b, int coding, uint64_t seed, Norm nm = NORM_L2) {
  Params p;
  p.codec = QSGD;
  p.levels = s;
  p.bucket = b;
  p.coding = Coding(coding);
  p.norm = nm;
  p.seed_given = true;
  p.seed = seed;
  return p;
}

// The scalar path, the SIMD decode (one and two threads) and decode-add must all reject b with CORRUPT; decode-add
// must leave acc untouched.
static void expect_corrupt(const Bytes& b, uint64_t n, const char* what) {
  Out r(n, 0, 3.f), v(n, 4, 3.f);
  CHECK_MSG(err_of([&] { decode(b.data(), b.size(), r.p(), n, false, 1.f, 1, true); }) == ErrCode::CORRUPT,
            "%s: scalar", what);
  for (int th : {1, 2}) {
    CHECK_MSG(err_of([&] { decode(b.data(), b.size(), v.p(), n, false, 1.f, th, false); }) == ErrCode::CORRUPT,
              "%s: simd th %d", what, th);
    Out a(n, 4, 0.5f);
    CHECK_MSG(err_of([&] { decode(b.data(), b.size(), a.p(), n, true, 0.25f, th, false); }) == ErrCode::CORRUPT,
              "%s: decode-add th %d", what, th);
    bool untouched = true;
    for (float f : a.buf) untouched &= f == 0.5f;
    CHECK_MSG(untouched, "%s: decode-add changed acc", what);
  }
}

int main() {
  std::mt19937_64 rng(20240601);
  // small and medium sizes, every s of the table stage 2 (s <= 7), some of the computed one (8..127), and s >= 128
  // (the wide paths: codes of up to 33 bits, 17-bit symbols, sparse records of 64 bits), bucket sizes with
  // b % 16 != 0, chunk tails
  const uint64_t sizes[] = {1, 15, 17, 100, 2047, 2048, 2049, 4096 * 4 + 13, 70001};
  const uint32_t buckets[] = {1, 7, 16, 100, 512, 2048, 5000};
  const uint32_t levels[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 31, 64, 127, 128, 129, 255, 1000, 65535};
  for (int coding : {1, 2})
    for (uint32_t s : levels)
      for (uint32_t b : buckets)
        for (uint64_t n : sizes) {
          if ((rng() % 3) != 0 && !(b == 512 || b == 7)) continue;
          const int kind = int(rng() % 4);
          const std::vector<float> x = data(n, kind, rng);
          Params p;
          p.codec = QSGD;
          p.levels = s;
          p.bucket = b;
          p.coding = Coding(coding);
          p.norm = (rng() & 1) ? NORM_L2 : NORM_LINF;
          p.seed_given = true;
          p.seed = rng();
          const Bytes pk = enc(p, x);
          char what[160];
          std::snprintf(what, sizeof what, "coding %d s %u b %u n %llu kind %d", coding, s, b, (unsigned long long)n,
                        kind);
          parity(p, pk, n, what);
          if (n >= 100) corrupt_checks(pk, n, rng, what);
          if (n >= 100) boundary_checks(pk, n, what);
        }
  // sparse records: zero runs longer than 255 inside a bucket and before a bucket's end (the jump to the next
  // bucket), zero buckets, every decode path including decode-add
  for (uint32_t b : {300u, 2048u, 5000u})
    for (int kind : {2, 4})
      for (uint32_t s : {1u, 4u, 7u, 8u, 127u})
        for (uint64_t n : {uint64_t(3) * b + 11, uint64_t(70001)}) {
          const std::vector<float> x = data(n, kind, rng);
          Params p;
          p.codec = QSGD;
          p.levels = s;
          p.bucket = b;
          p.coding = CODING_SPARSE;
          p.seed_given = true;
          p.seed = rng();
          const Bytes pk = enc(p, x);
          char what[160];
          std::snprintf(what, sizeof what, "long runs: b %u kind %d s %u n %llu", b, kind, s, (unsigned long long)n);
          parity(p, pk, n, what);
          Out ref(n, 0, 0.5f), got(n, 4, 0.5f);
          CHECK_MSG(err_of([&] { decode(pk.data(), pk.size(), ref.p(), n, true, 0.25f, 1, true); }) == kOK, "%s", what);
          CHECK_MSG(err_of([&] { decode(pk.data(), pk.size(), got.p(), n, true, 0.25f, 1, false); }) == kOK, "%s", what);
          CHECK_MSG(std::memcmp(got.p(), ref.p(), size_t(n) * 4) == 0, "%s: decode-add", what);
          corrupt_checks(pk, n, rng, what);
        }
  // decode-add calls at the same time: one borrows the cached symbol scratch, the others allocate their own; all
  // give the scalar result (and a later, larger call grows the cache)
  for (int coding : {1, 2}) {
    const uint64_t n = 300001;
    const std::vector<float> x = data(n, 0, rng);
    Params p;
    p.codec = QSGD;
    p.levels = 4;
    p.bucket = 512;
    p.coding = Coding(coding);
    p.seed_given = true;
    p.seed = 7;
    const Bytes pk = enc(p, x);
    Out ref(n, 0, 0.5f);
    CHECK(err_of([&] { decode(pk.data(), pk.size(), ref.p(), n, true, 0.25f, 1, true); }) == kOK);
    for (int round = 0; round < 3; ++round) {
      std::vector<Out> outs;
      for (int t = 0; t < 4; ++t) outs.emplace_back(n, 0, 0.5f);
      std::vector<std::thread> th;
      std::vector<ErrCode> ec(4, kOK);
      for (int t = 0; t < 4; ++t)
        th.emplace_back([&, t] { ec[size_t(t)] = err_of([&] { decode(pk.data(), pk.size(), outs[size_t(t)].p(), n, true, 0.25f, 1 + t % 2, false); }); });
      for (auto& t : th) t.join();
      for (int t = 0; t < 4; ++t) {
        CHECK(ec[size_t(t)] == kOK);
        CHECK_MSG(std::memcmp(outs[size_t(t)].p(), ref.p(), size_t(n) * 4) == 0, "concurrent decode-add coding %d", coding);
      }
    }
  }
  // wide paths (gamma and sparse): a level above s. A packet made at s (L-infinity norm: every bucket's largest element has
  // level s) is given a header that says s2 < s with the same code length bound (floor(log2(s2 + 1)) = that of s),
  // so only the level check can reject it: the scalar path, the SIMD decode and decode-add (acc untouched) must.
  // With s2 > s instead, the packet is valid and both paths decode it alike.
  for (int coding : {1, 2})
  for (uint32_t s : {200u, 1000u, 60000u})
    for (uint64_t n : {uint64_t(700), uint64_t(70001)})
      for (int up = 0; up < 2; ++up) {
        const std::vector<float> x = data(n, 3, rng);
        const Params p = qparams(s, 512, coding, rng(), NORM_LINF);
        Bytes b = enc(p, x);
        const Header h = parse(b.data(), b.size());
        const uint32_t s2 = up ? s + 40 : s - 40;  // down: 160, 960, 59960 keep floor(log2(s + 1))
        std::memcpy(b.data() + (h.params - b.data()), &s2, 4);
        fix_crc(b);
        char what[120];
        std::snprintf(what, sizeof what, "wide level check coding %d s %u -> %u n %llu", coding, s, s2,
                      (unsigned long long)n);
        if (up) parity(p, b, n, what);
        else expect_corrupt(b, n, what);
      }
  // wide paths: a chunk whose bit stream is all zero bits (every peek has no 1 bit: a code "too long"). The steps
  // must not move past the batch bound (a step that took the 64 + 64 bits of such a peek read past the packet's end,
  // found by the fuzzer); the last chunk ends 4 bytes before the packet does, so ASan sees any read past it.
  for (int coding : {1, 2})
    for (uint32_t s : {200u, 60000u})
      for (uint64_t n : {uint64_t(700), uint64_t(9000)}) {
        const std::vector<float> x = data(n, 0, rng);
        const Bytes pk = enc(qparams(s, 128, coding, rng()), x);
        const Header h = parse(pk.data(), pk.size());
        const uint64_t C = h.chunk_count, E = 2048;  // bucket 128: 16 buckets per chunk
        uint64_t off = uint64_t(h.payload - pk.data());
        for (uint64_t c = 0; c < C; ++c) {
          uint32_t l;
          std::memcpy(&l, h.chunk_table + 4 * c, 4);
          const uint64_t m = std::min<uint64_t>(E, n - c * E), nb = (m + 127) / 128;
          if (c == 0 || c + 1 == C) {
            Bytes b = pk;
            for (uint64_t j = off + 4 * nb; j < off + l; ++j) b[size_t(j)] = 0;
            fix_crc(b);
            char what[120];
            std::snprintf(what, sizeof what, "zero stream coding %d s %u n %llu chunk %llu", coding, s,
                          (unsigned long long)n, (unsigned long long)c);
            expect_corrupt(b, n, what);
          }
          off += l;
        }
      }
  // large: non-temporal stores (n >= 2^20), both phases of 16 mod 32, the add scratch (s = 255 and 65535: the
  // wide paths)
  for (int coding : {1, 2})
    for (uint32_t s : {1u, 4u, 7u, 8u, 127u, 255u, 65535u}) {
      const uint64_t n = (uint64_t(1) << 20) + 37;
      const std::vector<float> x = data(n, s == 7 ? 1 : 0, rng);
      Params p;
      p.codec = QSGD;
      p.levels = s;
      p.bucket = s == 7 ? 96 : 512;
      p.coding = Coding(coding);
      p.seed_given = true;
      p.seed = 99 + s;
      const Bytes pk = enc(p, x);
      char what[120];
      std::snprintf(what, sizeof what, "large coding %d s %u", coding, s);
      parity(p, pk, n, what);
      corrupt_checks(pk, n, rng, what);
      boundary_checks(pk, n, what);
    }
  std::printf("test_gammadec: %d checks, %d failed\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
