// Core tests: Philox, CRC32C, thread pool, packet layer, and the fixed-width codecs (qsgd fixed, terngrad, onebit):
// scalar vs AVX2 bytes, thread-count independence, round trips, corruption handling.
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "check.h"
#include "core/codec.h"
#include "core/crc32c.h"
#include "core/gradzip.h"
#include "core/philox.h"
#include "core/quant_ref.h"
#include "core/simd_philox.h"
#include "core/threadpool.h"

using namespace gz;

namespace {

bool have_avx2() { return cpu_info().avx2 && cpu_info().bmi2; }

std::vector<uint8_t> enc(const Params& p, const std::vector<float>& x) {
  std::vector<uint8_t> out(max_bytes(p, x.size()));
  const uint64_t len = encode(p, x.data(), x.size(), out.data(), out.size());
  out.resize(len);
  return out;
}

std::vector<float> dec(const std::vector<uint8_t>& pkt, uint64_t n, int threads = 1, bool scalar = false) {
  std::vector<float> out(n, 12345.f);
  decode(pkt.data(), pkt.size(), out.data(), n, false, 1.f, threads, scalar);
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

float bits2f(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// Data generators covering the edge cases of FORMAT section 2.
std::vector<float> gen(int kind, uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::uniform_int_distribution<uint32_t> ui;
  std::vector<float> x(n, 0.f);
  for (uint64_t i = 0; i < n; ++i) {
    switch (kind) {
      case 0: x[i] = g(rng); break;                                      // gaussian
      case 1: x[i] = 0.f; break;                                         // zeros
      case 2: x[i] = (i % 37 == 5) ? g(rng) : 0.f; break;                // one-hot-ish buckets
      case 3: x[i] = (i & 1) ? -0.f : g(rng) * 1e-3f; break;             // -0.0 mixed
      case 4: x[i] = bits2f((ui(rng) & 0x007FFFFFu) | (ui(rng) & 0x80000000u)); break;  // denormals
      case 5: x[i] = g(rng) * 1e-25f; break;                             // squares underflow
      case 6: x[i] = g(rng) * 1e30f; break;                              // squares overflow
      case 7: x[i] = g(rng) * std::pow(10.f, float(int(ui(rng) % 60) - 30)); break;  // mixed magnitudes
      case 8: x[i] = (i % 3 == 0) ? -1.f : (i % 3 == 1 ? 1.f : 0.5f); break;           // ties, exact values
      case 9: x[i] = bits2f(ui(rng) % 0x7F800000u | (ui(rng) & 0x80000000u)) * 1e-20f; break;  // any finite bits, scaled
    }
  }
  if (kind == 2 && n) x[n / 2] = 3.f;
  return x;
}
constexpr int kKinds = 10;

Params qsgd_p(uint32_t s, uint32_t b, Norm norm = NORM_L2) {
  Params p; p.codec = QSGD; p.levels = s; p.bucket = b; p.norm = norm; p.coding = CODING_FIXED;
  p.seed_given = true; p.seed = 0x123456789abcdefull; p.threads = 1;
  return p;
}
Params tern_p(uint32_t b) { Params p; p.codec = TERNGRAD; p.bucket = b; p.seed_given = true; p.seed = 42; p.threads = 1; return p; }
Params onebit_p(uint32_t b) { Params p; p.codec = ONEBIT; p.bucket = b; p.threads = 1; return p; }

// Encodes with scalar and AVX2 and threads 1/2/3; all must agree byte for byte (or all throw the same code).
// Returns the packet (empty on throw), sets *err to the code thrown (0 = none).
std::vector<uint8_t> enc_all_paths(Params p, const std::vector<float>& x, int* err, std::string* why) {
  std::vector<std::vector<uint8_t>> outs;
  std::vector<int> errs;
  for (int scalar = 0; scalar < 2; ++scalar) {
    if (!scalar && !have_avx2()) continue;
    for (int th = 1; th <= 3; ++th) {
      p.force_scalar = scalar;
      p.threads = th;
      try { outs.push_back(enc(p, x)); errs.push_back(0); }
      catch (const Error& e) { outs.emplace_back(); errs.push_back(int(e.code)); }
    }
  }
  *err = errs[0];
  for (size_t i = 1; i < outs.size(); ++i)
    if (outs[i] != outs[0] || errs[i] != errs[0]) { *why = "path " + std::to_string(i) + " differs"; *err = -1; }
  return outs[0];
}

}  // namespace

// ------------------------------------------------------------------------------------------------- Philox
TEST(philox_known_answers) {
  Philox4 a = philox4x32_10(0, 0, 0, 0, 0, 0);
  const uint32_t ea[4] = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};
  for (int i = 0; i < 4; ++i) CHECK_EQ(a.v[i], ea[i]);
  Philox4 b = philox4x32_10(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff);
  const uint32_t eb[4] = {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd};
  for (int i = 0; i < 4; ++i) CHECK_EQ(b.v[i], eb[i]);
  Philox4 c = philox4x32_10(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0);
  const uint32_t ec[4] = {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1};
  for (int i = 0; i < 4; ++i) CHECK_EQ(c.v[i], ec[i]);
}

TEST(philox_uniform_layout) {
  // u of element i = 16-bit half (i mod 2) of word (i mod 8) >> 1 of block i / 8.
  const uint64_t seed = 0xfeedbeef12345678ull;
  for (uint64_t i = 0; i < 64; ++i) {
    Philox4 w = philox_block(seed, i / 8, 0);
    uint16_t h[8];
    std::memcpy(h, w.v, 16);
    CHECK_EQ(uniform16(seed, i), uint32_t(h[i % 8]));
  }
}

TEST(philox_avx2_equals_scalar) {
  if (!have_avx2()) { std::fprintf(stderr, "  (no AVX2: skipped)\n"); return; }
  const uint64_t seeds[] = {0, 1, 0xffffffffffffffffull, 0x0123456789abcdefull};
  const uint64_t starts[] = {0, 1, 7, 12345, 0xFFFFFFF0ull, 0xFFFFFFFFull, (1ull << 40) - 3, ~0ull - 40};
  for (uint32_t stream = 0; stream < 2; ++stream)
    for (uint64_t seed : seeds)
      for (uint64_t j0 : starts)
        for (uint64_t nb : {0ull, 1ull, 3ull, 4ull, 15ull, 16ull, 17ull, 33ull, 100ull}) {
          std::vector<uint32_t> v(4 * nb + 4, 0xdeadbeef);
          philox_blocks_avx2(seed, j0, nb, v.data(), stream);
          for (uint64_t k = 0; k < nb; ++k) {
            Philox4 w = philox_block(seed, j0 + k, stream);
            for (int q = 0; q < 4; ++q) CHECK_MSG(v[4 * k + q] == w.v[q], "seed " << seed << " j " << j0 + k);
          }
          CHECK_EQ(v[4 * nb], 0xdeadbeefu);  // no write past the end
        }
}

// ------------------------------------------------------------------------------------------------- CRC32C
TEST(crc32c_vectors) {
  const char* s = "123456789";
  CHECK_EQ(crc32c_table(reinterpret_cast<const uint8_t*>(s), 9), 0xE3069283u);
  CHECK_EQ(crc32c(reinterpret_cast<const uint8_t*>(s), 9), 0xE3069283u);
  CHECK_EQ(crc32c_table(nullptr, 0), 0u);
  std::vector<uint8_t> z(32, 0), f(32, 0xFF);
  CHECK_EQ(crc32c_table(z.data(), 32), 0x8A9136AAu);   // RFC 3720 B.4
  CHECK_EQ(crc32c_table(f.data(), 32), 0x62A8AB43u);
  if (cpu_info().sse42) {
    CHECK_EQ(crc32c_hw(reinterpret_cast<const uint8_t*>(s), 9), 0xE3069283u);
    CHECK_EQ(crc32c_hw(z.data(), 32), 0x8A9136AAu);
    CHECK_EQ(crc32c_hw(f.data(), 32), 0x62A8AB43u);
    CHECK_EQ(crc32c_hw(nullptr, 0), 0u);
  }
}

TEST(crc32c_paths_agree) {
  if (!cpu_info().sse42) { std::fprintf(stderr, "  (no SSE4.2: skipped)\n"); return; }
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(70000);
  for (auto& b : buf) b = uint8_t(rng());
  const size_t lens[] = {0, 1, 7, 8, 9, 63, 4095, 4096, 12287, 12288, 12289, 24576, 24583, 40000, 69990};
  for (size_t len : lens)
    for (size_t off : {0, 1, 3, 7}) {
      CHECK_MSG(crc32c_hw(buf.data() + off, len) == crc32c_table(buf.data() + off, len), "len " << len << " off " << off);
    }
  if (!cpu_info().pclmul) { std::fprintf(stderr, "  (no PCLMULQDQ: folding path skipped)\n"); return; }
  // every length 0..1100 (the 128-byte cut-over, each 64-byte step and every tail length) and the long ones
  for (size_t len = 0; len <= 1100; ++len)
    for (size_t off : {0, 3}) {
      CHECK_MSG(crc32c_pclmul(buf.data() + off, len) == crc32c_table(buf.data() + off, len), "pclmul len " << len << " off " << off);
    }
  for (size_t len : lens) CHECK_MSG(crc32c_pclmul(buf.data() + 1, len) == crc32c_table(buf.data() + 1, len), "pclmul len " << len);
  CHECK_EQ(crc32c_pclmul(nullptr, 0), 0u);
}

TEST(crc32c_threads_agree) {
  std::mt19937 rng(11);
  std::vector<uint8_t> buf((size_t(5) << 20) + 200);
  for (auto& b : buf) b = uint8_t(rng());
  const size_t lens[] = {0, 100, (size_t(2) << 20) - 1, size_t(2) << 20, (size_t(2) << 20) + 77, (size_t(3) << 20) + 5,
                         size_t(5) << 20};
  for (size_t len : lens) {
    const uint32_t ref = crc32c_table(buf.data() + 3, len);
    for (int th : {1, 2, 3, 4}) CHECK_MSG(crc32c_threads(buf.data() + 3, len, th) == ref, "len " << len << " threads " << th);
  }
}

// The combine operator against a direct computation: state(A B) = shift_|B|(state(A)) ^ state_0(B) for cuts
// anywhere (empty parts included) and lengths whose operators use high powers (x^(2^k) for k up to 33).
TEST(crc32c_shift_combines) {
  std::mt19937 rng(13);
  std::vector<uint8_t> buf(200000);
  for (auto& b : buf) b = uint8_t(rng());
  for (size_t len : {size_t(0), size_t(1), size_t(9), size_t(4096), size_t(77777), size_t(200000)})
    for (size_t cut : {size_t(0), len / 3, len / 2, len}) {
      const uint32_t a = crc32c_update_table(0xFFFFFFFFu, buf.data(), cut);
      const uint32_t b = crc32c_update_table(0u, buf.data() + cut, len - cut);
      CHECK_MSG(~(crc32c_shift(crc32c_shift_op(len - cut), a) ^ b) == crc32c_table(buf.data(), len),
                "len " << len << " cut " << cut);
    }
  // shift by 2^30 + 3 zero bytes = shift by 2^30 then by 3 (operators compose), without 1 GiB of zeros
  const uint32_t s = 0x12345678u;
  CHECK_EQ(crc32c_shift(crc32c_shift_op((uint64_t(1) << 30) + 3), s),
           crc32c_shift(crc32c_shift_op(3), crc32c_shift(crc32c_shift_op(uint64_t(1) << 30), s)));
  // x^(8 2^j) by j squarings of x^8, without the x^(2^k) table: the table's period-31 wrap (k = 3 + j >= 31 here)
  uint32_t sq = crc32c_shift_op(1);
  for (int j = 1; j <= 45; ++j) {
    sq = crc32c_shift(sq, sq);
    if (j >= 26) CHECK_MSG(crc32c_shift_op(uint64_t(1) << j) == sq, "2^" << j);
  }
  // and a shift by n zero bytes is the table CRC over n zeros from that state
  std::vector<uint8_t> z(5000, 0);
  CHECK_EQ(crc32c_shift(crc32c_shift_op(z.size()), s), crc32c_update_table(s, z.data(), z.size()));
}

// ------------------------------------------------------------------------------------------------- thread pool
TEST(threadpool_basics) {
  for (int th : {1, 2, 3, 8}) {
    for (uint64_t n : {0ull, 1ull, 2ull, 5ull, 1000ull}) {
      std::vector<std::atomic<int>> hits(n);
      for (auto& h : hits) h = 0;
      parallel_for(th, n, [&](uint64_t t) { hits[t]++; });
      for (uint64_t t = 0; t < n; ++t) CHECK_EQ(hits[t].load(), 1);
    }
  }
  // exceptions propagate
  CHECK_THROWS_CODE(parallel_for(3, 100, [](uint64_t t) { if (t == 57) throw Error(ErrCode::CORRUPT, "x"); }),
                    ErrCode::CORRUPT);
  // nested and concurrent callers
  std::atomic<uint64_t> sum{0};
  std::vector<std::thread> ts;
  for (int c = 0; c < 4; ++c)
    ts.emplace_back([&] {
      parallel_for(2, 10, [&](uint64_t) { parallel_for(2, 10, [&](uint64_t t) { sum += t; }); });
    });
  for (auto& t : ts) t.join();
  CHECK_EQ(sum.load(), uint64_t(4 * 10 * 45));
  CHECK(pool_size() <= 8);
}

// ------------------------------------------------------------------------------------------------- params / sizes
TEST(params_and_sizes) {
  CHECK_EQ(std::string(err_code_name(ErrCode::CORRUPT)), std::string("ERR_GRADZIP_CORRUPT"));
  CHECK_EQ(std::string(err_code_name(ErrCode::INVALID_ARG)), std::string("ERR_GRADZIP_INVALID_ARG"));
  Params p = qsgd_p(4, 512);
  CHECK_EQ(param_bytes(p), 8u);
  // n = 1000, b = 512, W = 4: 2 buckets: (4 + 256) + (4 + 244)
  CHECK_EQ(qsgd_fixed_payload_bytes(p, 1000), uint64_t(260 + 248));
  CHECK_EQ(max_bytes(p, 1000), uint64_t(48 + 8 + 508 + 4));
  CHECK_EQ(max_bytes(p, 0), uint64_t(48 + 8 + 4));
  CHECK_EQ(max_bytes(tern_p(512), 1000), uint64_t(48 + 0 + (4 + 128) + (4 + 122) + 4));
  CHECK_EQ(max_bytes(onebit_p(512), 1000), uint64_t(48 + (8 + 64) + (8 + 61) + 4));
  CHECK_THROWS_CODE(max_bytes(p, kMaxN + 1), ErrCode::INVALID_ARG);
  CHECK(max_bytes(qsgd_p(65535, 1), kMaxN) > kMaxN);  // no overflow at the largest n
  Params bad = p; bad.levels = 0;
  CHECK_THROWS_CODE(check_params(bad), ErrCode::INVALID_ARG);
  bad.levels = 65536;
  CHECK_THROWS_CODE(check_params(bad), ErrCode::INVALID_ARG);
  bad = p; bad.bucket = 0;
  CHECK_THROWS_CODE(check_params(bad), ErrCode::INVALID_ARG);
  bad = p; bad.codec = Codec(9);
  CHECK_THROWS_CODE(check_params(bad), ErrCode::INVALID_ARG);
  Params tk; tk.codec = TOPK; tk.ratio = 0.01;
  CHECK_EQ(resolve_k(tk, 0), uint64_t(0));
  CHECK_EQ(resolve_k(tk, 1), uint64_t(1));
  CHECK_EQ(resolve_k(tk, 1000), uint64_t(10));
  CHECK_EQ(resolve_k(tk, 1001), uint64_t(11));
  tk.has_k = true; tk.k = 5000;
  CHECK_EQ(resolve_k(tk, 1000), uint64_t(1000));
  tk.ratio = 0; tk.has_k = false;
  CHECK_THROWS_CODE(check_params(tk), ErrCode::INVALID_ARG);
  uint32_t C, E;
  Params g = qsgd_p(4, 512); g.coding = CODING_GAMMA;
  chunk_layout(g, 10000, &C, &E);
  CHECK_EQ(E, 2048u); CHECK_EQ(C, 5u);
  g.bucket = 3000; chunk_layout(g, 10000, &C, &E);
  CHECK_EQ(E, 3000u); CHECK_EQ(C, 4u);
  g.bucket = 100; chunk_layout(g, 10000, &C, &E);
  CHECK_EQ(E, 2000u); CHECK_EQ(C, 5u);
  chunk_layout(g, 0, &C, &E);
  CHECK_EQ(C, 0u); CHECK_EQ(E, 0u);
  tk.has_k = true; tk.k = 4097;
  chunk_layout(tk, 10000, &C, &E);
  CHECK_EQ(C, 2u); CHECK_EQ(E, 4096u);
}

TEST(cap_too_small_is_invalid_arg) {
  Params p = qsgd_p(4, 64);
  std::vector<float> x = gen(0, 300, 1);
  std::vector<uint8_t> out(max_bytes(p, 300));
  CHECK_THROWS_CODE(encode(p, x.data(), 300, out.data(), out.size() - 1), ErrCode::INVALID_ARG);
  CHECK(encode(p, x.data(), 300, out.data(), out.size()) == out.size());  // fixed layout: exactly max_bytes
}

// ------------------------------------------------------------------------------------------------- header
TEST(header_fields) {
  Params p = qsgd_p(4, 512);
  std::vector<float> x = gen(0, 1000, 3);
  auto pkt = enc(p, x);
  CHECK_EQ(pkt.size(), size_t(48 + 8 + 508 + 4));
  CHECK(std::memcmp(pkt.data(), "GZPK", 4) == 0);
  CHECK_EQ(int(pkt[4]), 1);
  CHECK_EQ(int(pkt[5]), 1);
  CHECK_EQ(int(pkt[6]), 0);
  Header h = parse(pkt.data(), pkt.size());
  CHECK_EQ(h.n, uint64_t(1000));
  CHECK_EQ(h.seed, p.seed);
  CHECK_EQ(h.bucket, 512u);
  CHECK_EQ(h.param_bytes, 8u);
  CHECK_EQ(h.chunk_count, 0u);
  CHECK_EQ(h.payload_bytes, uint64_t(508));
  CHECK_EQ(h.p.levels, 4u);
  uint32_t crc; std::memcpy(&crc, pkt.data() + pkt.size() - 4, 4);
  CHECK_EQ(crc, crc32c(pkt.data(), pkt.size() - 4));
  // drawn seed: flag set, seed recorded, decodes
  Params q = p; q.seed_given = false;
  auto a = enc(q, x), b = enc(q, x);
  CHECK_EQ(int(a[6]), 1);
  Header ha = parse(a.data(), a.size()), hb = parse(b.data(), b.size());
  CHECK(ha.seed != hb.seed);  // 2^-64 chance of a false failure
  Params r = p; r.seed = ha.seed;
  auto c = enc(r, x);
  CHECK(std::equal(c.begin() + 16, c.end() - 4, a.begin() + 16));  // same bytes as with the seed given
  // deterministic codec: seed 0, flags 0
  Params o = onebit_p(512); o.seed_given = false;
  auto ob = enc(o, x);
  Header ho = parse(ob.data(), ob.size());
  CHECK_EQ(ho.seed, uint64_t(0));
  CHECK_EQ(int(ob[6]), 0);
}

// ------------------------------------------------------------------------------------------------- parity
TEST(fixed_codecs_scalar_equals_avx2_and_threads) {
  if (!have_avx2()) std::fprintf(stderr, "  (no AVX2: comparing threads only)\n");
  const uint32_t buckets[] = {1, 7, 31, 32, 33, 512, 4097};
  const uint64_t ns[] = {0, 1, 5, 100, 1003, 9000};
  // code widths W = 2 .. 17: W = 2 to 16 have vector packers (every width listed here: 300 -> 10, 2047 -> 12,
  // 4095 -> 13, 8191 -> 14, 16383 -> 15, 32767 -> 16), W = 17 (s >= 32768) the generic one
  const uint32_t levels[] = {1,   2,    3,    4,    7,    8,     15,    16,    31,    32,   63,
                             100, 127,  128,  255,  300,  1000,  2047,  4095,  8191,  16383, 32767, 32768, 65535};
  int combos = 0;
  for (int kind = 0; kind < kKinds; ++kind)
    for (uint32_t b : buckets)
      for (uint64_t n : ns) {
        if (n > 1003 && (b < 32 || kind % 3 != 0)) continue;  // keep the ASan run short
        const std::vector<float> x = gen(kind, n, uint32_t(kind * 1000 + b + n));
        std::vector<Params> ps;
        for (uint32_t s : levels) {
          if ((s > 8 && s != 16 && s != 100 && s != 65535) && (b != 33 || n != 1003)) continue;
          ps.push_back(qsgd_p(s, b, NORM_L2));
          ps.push_back(qsgd_p(s, b, NORM_LINF));
        }
        ps.push_back(tern_p(b));
        ps.push_back(onebit_p(b));
        for (const Params& p : ps) {
          int err = 0; std::string why;
          auto pkt = enc_all_paths(p, x, &err, &why);
          CHECK_MSG(err >= 0, why << " kind " << kind << " b " << b << " n " << n << " codec " << int(p.codec) << " s " << p.levels);
          ++combos;
          if (err) {
            // only huge values may overflow the l2 norm
            CHECK_MSG(err == int(ErrCode::NONFINITE) && kind == 6, "kind " << kind << " err " << err);
            continue;
          }
          // decoders agree (plain and add), threads agree
          auto d0 = dec(pkt, n, 1, true);
          for (int th = 1; th <= 3; ++th) {
            if (have_avx2()) CHECK_MSG(same_bits(dec(pkt, n, th, false), d0), "decode avx2 kind " << kind << " b " << b << " n " << n << " s " << p.levels);
            CHECK(same_bits(dec(pkt, n, th, true), d0));
          }
          std::vector<float> acc1 = gen(0, n, 99), acc2 = acc1;
          decode(pkt.data(), pkt.size(), acc1.data(), n, true, 0.25f, 1, true);
          decode(pkt.data(), pkt.size(), acc2.data(), n, true, 0.25f, 2, false);
          CHECK(same_bits(acc1, acc2));
          std::vector<float> base = gen(0, n, 99);
          for (uint64_t i = 0; i < n; ++i) {
            const float av = 0.25f * d0[i];
            const float e = base[i] + av;
            CHECK(std::memcmp(&e, &acc1[i], 4) == 0);
          }
        }
      }
  CHECK(combos > 1000);
}

// Large tensors: streaming-store decode path (n >= 2^21), many tasks, odd bucket sizes.
TEST(large_tensor_paths_agree) {
  const uint64_t n = (uint64_t(1) << 21) + 77;
  const std::vector<float> x = gen(0, n, 123);
  for (Params p : {qsgd_p(4, 512), qsgd_p(3, 100), tern_p(4097), onebit_p(512)}) {
    std::vector<std::vector<uint8_t>> pk;
    for (int scalar = 1; scalar >= 0; --scalar) {
      if (!scalar && !have_avx2()) continue;
      p.force_scalar = scalar;
      p.threads = scalar ? 1 : 2;
      pk.push_back(enc(p, x));
    }
    for (size_t i = 1; i < pk.size(); ++i) CHECK(pk[i] == pk[0]);
    auto d0 = dec(pk[0], n, 1, true);
    if (have_avx2()) {
      CHECK(same_bits(dec(pk[0], n, 2, false), d0));
      // unaligned output pointer
      std::vector<float> buf(n + 1);
      decode(pk[0].data(), pk[0].size(), buf.data() + 1, n, false, 1.f, 2, false);
      CHECK(std::memcmp(buf.data() + 1, d0.data(), n * 4) == 0);
    }
  }
}

// Scalar path against an independent transcription of FORMAT (uses quant_ref directly).
TEST(qsgd_scalar_matches_format) {
  const uint32_t b = 33;
  const uint64_t n = 100;
  for (int kind : {0, 2, 4, 5, 7})
    for (uint32_t s : {1u, 4u, 5u, 300u}) {
      const std::vector<float> x = gen(kind, n, 5 + s);
      Params p = qsgd_p(s, b);
      auto pkt = enc(p, x);
      const uint32_t W = 1 + (32 - __builtin_clz(s));
      const uint8_t* pay = pkt.data() + 48 + 8;
      uint64_t off = 0;
      for (uint64_t st = 0; st < n; st += b) {
        const uint64_t m = std::min<uint64_t>(b, n - st);
        const float N = ref::l2_norm(x.data() + st, m);
        float Nb; std::memcpy(&Nb, pay + off, 4);
        CHECK(std::memcmp(&N, &Nb, 4) == 0);
        float r, s6, c; ref::qsgd_bucket_consts(N, s, &r, &s6, &c);
        for (uint64_t i = 0; i < m; ++i) {
          const uint32_t z = ref::qsgd_zeta(x[st + i] * c, r, s6, uniform16(p.seed, st + i));
          const uint32_t code = (z << 1) | ((x[st + i] < 0 && z) ? 1 : 0);
          uint32_t got = 0;
          for (uint32_t k = 0; k < W; ++k) {
            const uint64_t bit = i * W + k;
            got |= uint32_t((pay[off + 4 + bit / 8] >> (bit % 8)) & 1) << k;
          }
          CHECK_MSG(got == code, "s " << s << " kind " << kind << " i " << st + i);
        }
        off += 4 + (m * W + 7) / 8;
      }
      CHECK_EQ(off, uint64_t(pkt.size() - 48 - 8 - 4));
    }
}

// ------------------------------------------------------------------------------------------------- round trips
TEST(round_trip_properties) {
  const uint64_t n = 5000;
  for (bool scalar : {true, false}) {
    if (!scalar && !have_avx2()) continue;
    // zeros -> zeros
    for (Params p : {qsgd_p(4, 512), tern_p(512), onebit_p(512)}) {
      p.force_scalar = scalar;
      std::vector<float> z(n, 0.f);
      auto d = dec(enc(p, z), n, 2, scalar);
      for (float v : d) CHECK(v == 0.f);
    }
    // qsgd: each value within one level of x (|q - x| <= N/s, relative slack for float rounding)
    const std::vector<float> x = gen(0, n, 11);
    for (uint32_t s : {1u, 4u, 16u, 1000u}) {
      Params p = qsgd_p(s, 128); p.force_scalar = scalar;
      auto pkt = enc(p, x);
      auto d = dec(pkt, n, 1, scalar);
      for (uint64_t st = 0; st < n; st += 128) {
        const uint64_t m = std::min<uint64_t>(128, n - st);
        const double N = ref::l2_norm(x.data() + st, m);
        for (uint64_t i = st; i < st + m; ++i) {
          CHECK(std::fabs(double(d[i]) - double(x[i])) <= N / s * (1 + 1e-5));
          CHECK(d[i] == 0.f || (d[i] < 0) == (x[i] < 0));
        }
      }
    }
    // terngrad: values in {-M, 0, M}
    {
      Params p = tern_p(100); p.force_scalar = scalar;
      auto d = dec(enc(p, x), n, 1, scalar);
      for (uint64_t st = 0; st < n; st += 100) {
        const float M = ref::linf_norm(x.data() + st, std::min<uint64_t>(100, n - st));
        for (uint64_t i = st; i < std::min(n, st + 100); ++i) CHECK(d[i] == 0.f || std::fabs(d[i]) == M);
      }
    }
    // onebit: sign class means
    {
      Params p = onebit_p(64); p.force_scalar = scalar;
      auto d = dec(enc(p, x), n, 1, scalar);
      for (uint64_t st = 0; st < n; st += 64) {
        const uint64_t m = std::min<uint64_t>(64, n - st);
        double sp = 0, sn = 0; int cp = 0, cn = 0;
        for (uint64_t i = st; i < st + m; ++i) { if (x[i] < 0) { sn += x[i]; ++cn; } else { sp += x[i]; ++cp; } }
        for (uint64_t i = st; i < st + m; ++i) {
          const double want = x[i] < 0 ? sn / cn : sp / cp;
          CHECK(std::fabs(d[i] - want) <= 1e-5 * (1 + std::fabs(want)));
        }
      }
    }
  }
}

// Unbiasedness of qsgd fixed: the mean of decoded values over T seeds is within 5 standard errors of x
// (per-element variance of stochastic rounding <= (N/s)^2 / 4, so the stderr is <= N/(2 s sqrt(T))),
// up to the 2^-16 rounding bias per level.
TEST(qsgd_unbiased) {
  const uint64_t n = 64;
  const int T = 2000;
  const std::vector<float> x = gen(0, n, 21);
  Params p = qsgd_p(2, 64);
  std::vector<double> mean(n, 0.0);
  for (int t = 0; t < T; ++t) {
    p.seed = uint64_t(t) * 0x9E3779B97F4A7C15ull + 1;
    auto d = dec(enc(p, x), n);
    for (uint64_t i = 0; i < n; ++i) mean[i] += d[i] / double(T);
  }
  const double N = ref::l2_norm(x.data(), n);
  const double se = N / (2 * 2 * std::sqrt(double(T)));
  for (uint64_t i = 0; i < n; ++i) CHECK_MSG(std::fabs(mean[i] - x[i]) <= 5 * se + N / 2 * 2e-5, "i " << i);
}

TEST(empty_and_single) {
  for (Params p : {qsgd_p(4, 512), tern_p(512), onebit_p(512)}) {
    std::vector<float> x;
    auto pkt = enc(p, x);
    CHECK_EQ(pkt.size(), size_t(48 + param_bytes(p) + 4));
    auto d = dec(pkt, 0);
    CHECK(d.empty());
    std::vector<float> one = {-2.5f};
    auto d1 = dec(enc(p, one), 1);
    CHECK_EQ(d1[0], -2.5f);  // a single element is its own norm / mean: decodes exactly
    CHECK_THROWS_CODE(dec(pkt, 1), ErrCode::INVALID_ARG);
  }
}

// ------------------------------------------------------------------------------------------------- non-finite
TEST(nonfinite_input) {
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  for (float bv : bad)
    for (bool scalar : {true, false}) {
      if (!scalar && !have_avx2()) continue;
      for (Params p : {qsgd_p(4, 33), qsgd_p(4, 33, NORM_LINF), tern_p(33), onebit_p(33)}) {
        p.force_scalar = scalar;
        std::vector<float> x = gen(0, 200, 3);
        x[150] = bv;
        CHECK_THROWS_CODE(enc(p, x), ErrCode::NONFINITE);
        p.nonfinite_zero = true;
        auto a = enc(p, x);
        x[150] = 0.f;
        p.nonfinite_zero = false;
        CHECK(a == enc(p, x));
      }
    }
  // l2 norm overflow (values within sqrt(b) of FLT_MAX) and onebit sum overflow
  std::vector<float> big(64, 3e38f);
  CHECK_THROWS_CODE(enc(qsgd_p(4, 64), big), ErrCode::NONFINITE);
  CHECK_THROWS_CODE(enc(onebit_p(64), big), ErrCode::NONFINITE);
  auto ok = enc(qsgd_p(4, 64, NORM_LINF), big);  // l-inf does not overflow
  auto d = dec(ok, 64);
  for (float v : d) CHECK(v == 3e38f);
}

// Tiny buckets (N < 2^-64, subnormal data): the 2^64 pre-scaling of FORMAT 3.1 keeps every value within one level
// of v and zeros at zero.
TEST(tiny_norm_buckets) {
  for (int kind : {4, 5}) {
    std::vector<float> x = gen(kind, 640, 77);
    for (uint64_t i = 0; i < x.size(); i += 3) x[i] = 0.f;
    if (kind == 5) for (float& v : x) v *= 1e-12f;  // ~1e-37: normal values with a norm below s * 2^-112
    for (bool scalar : {true, false}) {
      if (!scalar && !have_avx2()) continue;
      for (Norm nm : {NORM_L2, NORM_LINF})
        for (uint32_t s : {1u, 4u, 1000u}) {
          Params p = qsgd_p(s, 64, nm); p.force_scalar = scalar;
          auto d = dec(enc(p, x), x.size(), 1, scalar);
          for (uint64_t st = 0; st < x.size(); st += 64) {
            const float N = nm == NORM_L2 ? ref::l2_norm(x.data() + st, 64) : ref::linf_norm(x.data() + st, 64);
            const float w = N / float(s);
            for (uint64_t i = st; i < st + 64; ++i) {
              if (x[i] == 0.f) CHECK_MSG(d[i] == 0.f, "i " << i);
              CHECK_MSG(std::fabs(double(d[i]) - double(x[i])) <= double(w) * (1 + 1e-5) + 1e-45, "i " << i << " s " << s);
            }
          }
        }
    }
  }
}

// ------------------------------------------------------------------------------------------------- corruption
namespace {
void fix_crc(std::vector<uint8_t>& p) {
  const uint32_t c = crc32c(p.data(), p.size() - 4);
  std::memcpy(p.data() + p.size() - 4, &c, 4);
}
// decode and decode-add must throw CORRUPT; decode-add must leave acc untouched.
bool rejects(const std::vector<uint8_t>& p, uint64_t n, std::string* why) {
  for (bool scalar : {true, false}) {
    if (!scalar && !have_avx2()) continue;
    std::vector<float> out(n, 1.f), acc(n, 7.f);
    try { decode(p.data(), p.size(), out.data(), n, false, 1.f, 2, scalar); *why = "decode accepted"; return false; }
    catch (const Error& e) { if (e.code != ErrCode::CORRUPT) { *why = e.what(); return false; } }
    try { decode(p.data(), p.size(), acc.data(), n, true, 1.f, 2, scalar); *why = "decodeAdd accepted"; return false; }
    catch (const Error& e) { if (e.code != ErrCode::CORRUPT) { *why = e.what(); return false; } }
    for (float v : acc) if (v != 7.f) { *why = "acc changed"; return false; }
  }
  return true;
}
}  // namespace

TEST(every_byte_flip_and_truncation_is_corrupt) {
  const uint64_t n = 37;
  const std::vector<float> x = gen(0, n, 4);
  for (Params p : {qsgd_p(4, 8), tern_p(8), onebit_p(8), qsgd_p(300, 16, NORM_LINF)}) {
    const auto pkt = enc(p, x);
    std::string why;
    for (size_t i = 0; i < pkt.size(); ++i)
      for (uint8_t m : {0x01, 0x80, 0xFF}) {
        auto q = pkt;
        q[i] ^= m;
        CHECK_MSG(rejects(q, n, &why), "flip byte " << i << " codec " << int(p.codec) << ": " << why);
      }
    for (size_t len = 0; len < pkt.size(); ++len) {
      std::vector<uint8_t> q(pkt.begin(), pkt.begin() + len);
      CHECK_MSG(rejects(q, n, &why), "truncated to " << len << ": " << why);
    }
    auto q = pkt; q.push_back(0);
    CHECK_MSG(rejects(q, n, &why), "trailing byte: " << why);
  }
}

TEST(hostile_packets_with_valid_crc) {
  const uint64_t n = 37;
  const std::vector<float> x = gen(0, n, 4);
  const auto pkt = enc(qsgd_p(4, 8), x);  // payload at 56: bucket = [4 bytes N][4 bytes codes]
  std::string why;
  auto mut = [&](auto f) { auto q = pkt; f(q); fix_crc(q); return q; };
  auto set64 = [](std::vector<uint8_t>& q, size_t o, uint64_t v) { std::memcpy(q.data() + o, &v, 8); };
  auto set32 = [](std::vector<uint8_t>& q, size_t o, uint32_t v) { std::memcpy(q.data() + o, &v, 4); };
  CHECK(rejects(mut([&](auto& q) { q[56 + 4] = 0x0F; }), n, &why));            // zeta = 7 > s = 4
  CHECK(rejects(mut([&](auto& q) { q[56 + 8 * 3 + 7] |= 0xA0; }), n, &why));   // zeta > s in bucket 3
  CHECK(rejects(mut([&](auto& q) { set32(q, 56 + 8, 0xBF800000u); }), n, &why));  // N = -1
  CHECK(rejects(mut([&](auto& q) { set32(q, 56 + 8, 0x7FC00000u); }), n, &why));  // N = NaN
  CHECK(rejects(mut([&](auto& q) { set32(q, 56 + 8, 0x80000000u); }), n, &why));  // N = -0
  CHECK(rejects(mut([&](auto& q) { q[q.size() - 5] |= 0x80; }), n, &why));     // padding bits (last bucket m=5: 20 bits)
  CHECK(rejects(mut([&](auto& q) { set64(q, 8, 1ull << 40); }), n, &why));     // n too large
  CHECK(rejects(mut([&](auto& q) { set64(q, 8, 45); }), 45, &why));            // n mismatch with payload size
  CHECK(rejects(mut([&](auto& q) { set64(q, 40, ~0ull); }), n, &why));         // payloadBytes
  CHECK(rejects(mut([&](auto& q) { set64(q, 40, ~0ull - 60); }), n, &why));
  CHECK(rejects(mut([&](auto& q) { set32(q, 28, 0xFFFFFFFFu); }), n, &why));   // P
  CHECK(rejects(mut([&](auto& q) { set32(q, 32, 0xFFFFFFFFu); }), n, &why));   // C
  CHECK(rejects(mut([&](auto& q) { set32(q, 36, 4); }), n, &why));             // E
  CHECK(rejects(mut([&](auto& q) { set32(q, 24, 0); }), n, &why));             // bucket 0
  CHECK(rejects(mut([&](auto& q) { set32(q, 24, 9); }), n, &why));             // other bucket: size mismatch
  CHECK(rejects(mut([&](auto& q) { set32(q, 48, 0); }), n, &why));             // s = 0
  CHECK(rejects(mut([&](auto& q) { set32(q, 48, 70000); }), n, &why));         // s too large
  CHECK(rejects(mut([&](auto& q) { q[52] = 2; }), n, &why));                   // norm id
  CHECK(rejects(mut([&](auto& q) { q[53] = 3; }), n, &why));                   // coding id
  CHECK(rejects(mut([&](auto& q) { q[55] = 1; }), n, &why));                   // reserved
  CHECK(rejects(mut([&](auto& q) { q[6] = 2; }), n, &why));                    // flags
  CHECK(rejects(mut([&](auto& q) { q[7] = 1; }), n, &why));                    // reserved
  CHECK(rejects(mut([&](auto& q) { q[5] = 3; }), n, &why));                    // codec switched to onebit
  CHECK(rejects(mut([&](auto& q) { q[5] = 2; }), n, &why));                    // to terngrad
  CHECK(rejects(mut([&](auto& q) { q[4] = 2; }), n, &why));                    // version
  // onebit specifics
  const auto ob = enc(onebit_p(8), x);
  auto mo = [&](auto f) { auto q = ob; f(q); fix_crc(q); return q; };
  CHECK(rejects(mo([&](auto& q) { set32(q, 48, 0xBF800000u); }), n, &why));    // pos < 0
  CHECK(rejects(mo([&](auto& q) { set32(q, 52, 0x3F800000u); }), n, &why));    // neg > 0
  CHECK(rejects(mo([&](auto& q) { set32(q, 52, 0xFF800000u); }), n, &why));    // neg = -inf
  CHECK(rejects(mo([&](auto& q) { q[q.size() - 5] |= 0x80; }), n, &why));      // padding
  CHECK(rejects(mo([&](auto& q) { set64(q, 16, 5); }), n, &why));              // seed on a deterministic codec
  // random header/param mutations with a valid CRC never crash: accepted or CORRUPT
  std::mt19937 rng(5);
  int accepted = 0;
  for (int it = 0; it < 3000; ++it) {
    auto q = pkt;
    const int k = 1 + int(rng() % 3);
    for (int j = 0; j < k; ++j) q[rng() % 64] = uint8_t(rng());
    fix_crc(q);
    std::vector<float> out(n);
    try { decode(q.data(), q.size(), out.data(), n, it & 1, 1.f, 1 + it % 3, it & 2); ++accepted; }
    catch (const Error& e) { CHECK_MSG(e.code == ErrCode::CORRUPT || e.code == ErrCode::INVALID_ARG, e.what()); }
  }
  CHECK(accepted < 3000);
}

// ------------------------------------------------------------------------------------------------- error feedback
TEST(ef_step_identity) {
  const uint64_t n = 3000;
  for (Params p : {onebit_p(256), qsgd_p(4, 256)}) {
    std::vector<float> g = gen(0, n, 8), h(n, 0.f), scratch(n), sent(n, 0.f);
    std::vector<uint8_t> out(max_bytes(p, n));
    const int T = 20;
    for (int t = 0; t < T; ++t) {
      if (p.codec == QSGD) p.seed = 1000 + t;
      std::vector<float> h0 = h;
      const uint64_t len = ef_step(p, g.data(), h.data(), n, 1.f, 1.f, out.data(), out.size(), scratch.data());
      auto q = dec(std::vector<uint8_t>(out.begin(), out.begin() + len), n);
      // the packet encodes v = g + h0 exactly as encode() would
      std::vector<float> v(n);
      for (uint64_t i = 0; i < n; ++i) { const float ah = 1.f * h0[i]; v[i] = g[i] + ah; }
      auto ref_pkt = enc(p, v);
      CHECK(std::equal(ref_pkt.begin(), ref_pkt.end(), out.begin()) && ref_pkt.size() == len);
      for (uint64_t i = 0; i < n; ++i) {
        const float bh = 1.f * h0[i];
        const float d = g[i] - q[i];
        const float want = bh + d;
        CHECK(std::memcmp(&want, &h[i], 4) == 0);
        sent[i] += q[i];
      }
    }
    // sum sent = T g - h_T (float rounding: tolerance relative to T |g| + |h|)
    for (uint64_t i = 0; i < n; ++i)
      CHECK(std::fabs(double(sent[i]) - (T * double(g[i]) - h[i])) <= 1e-4 * (T * std::fabs(g[i]) + std::fabs(h[i]) + 1));
  }
}
