// Table decoders of the fixed-width codecs (qsgd W = 2/4 incl. TernGrad, onebit; native/codecs/put16.h): decoded
// floats of the AVX2 path equal the scalar path bit for bit for every output alignment (0..7 floats past 32 bytes),
// bucket size, tail length, mode (decode, decode-add, the streaming decode of n >= 2^21) and thread count; random
// payloads with every code (including -0 codes and the largest scales); a level above s is CORRUPT and leaves acc
// untouched in decode-add.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/codec.h"
#include "core/gradzip.h"
#include "counting_check.h"

using namespace gz;

namespace {

float u2f(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

struct Pkt {
  std::vector<uint8_t> pay;
  Header h;
};

// Random payload: scales of every kind, codes 0..2s+1 (or one-bit signs), zero padding.
Pkt make(Codec codec, uint32_t s, uint32_t b, uint64_t n, uint64_t seed) {
  Pkt k;
  Params p;
  p.codec = codec;
  p.levels = s;
  p.bucket = b;
  std::mt19937_64 r(seed);
  auto scale = [&]() -> float {
    switch (r() % 6) {
      case 0: return 0.f;
      case 1: return u2f(uint32_t(r() % 0x7FFFFF) + 1);
      case 2: return u2f(0x7F7FFFFFu);
      case 3: return u2f(uint32_t(r() % 0x7F800000u));
      default: return float(r() % 1000 + 1) * 1e-3f;
    }
  };
  const uint64_t B = (n + b - 1) / b;
  if (codec == ONEBIT) {
    k.pay.resize(onebit_payload_bytes(p, n));
    const uint64_t stride = 8 + (uint64_t(b) + 7) / 8;
    for (uint64_t j = 0; j < B; ++j) {
      uint8_t* d = k.pay.data() + j * stride;
      const float P = scale(), N = -scale();
      std::memcpy(d, &P, 4);
      std::memcpy(d + 4, &N, 4);
      const uint64_t m = std::min<uint64_t>(b, n - j * b);
      for (uint64_t i = 0; i < (m + 7) / 8; ++i) d[8 + i] = uint8_t(r());
      if (m & 7) d[8 + (m + 7) / 8 - 1] &= uint8_t((1u << (m & 7)) - 1);
    }
    k.h.payload_bytes = onebit_payload_bytes(p, n);
  } else {
    if (codec == TERNGRAD) { s = 1; p.norm = NORM_LINF; }
    const uint32_t W = 1 + (32 - __builtin_clz(s));
    k.pay.resize(qsgd_fixed_payload_bytes(p, n));
    const uint64_t stride = 4 + (uint64_t(b) * W + 7) / 8;
    for (uint64_t j = 0; j < B; ++j) {
      uint8_t* d = k.pay.data() + j * stride;
      const float N = scale();
      std::memcpy(d, &N, 4);
      const uint64_t m = std::min<uint64_t>(b, n - j * b);
      uint64_t acc = 0;
      unsigned nb = 0;
      uint8_t* o = d + 4;
      for (uint64_t i = 0; i < m; ++i) {
        acc |= uint64_t(r() % (2 * s + 2)) << nb;
        nb += W;
        while (nb >= 8) { *o++ = uint8_t(acc); acc >>= 8; nb -= 8; }
      }
      if (nb) *o++ = uint8_t(acc);
    }
    k.h.payload_bytes = qsgd_fixed_payload_bytes(p, n);
  }
  k.h.codec = codec;
  k.h.n = n;
  k.h.p = p;
  k.h.payload = k.pay.data();
  return k;
}

void run(Pkt& k, float* out, bool add, int threads, bool scalar) {
  DecodeArgs a{};
  a.h = &k.h;
  a.out = out;
  a.add = add;
  a.alpha = 1e-3f;
  a.threads = threads;
  a.scalar = scalar;
  if (k.h.codec == ONEBIT) onebit_decode(a);
  else qsgd_fixed_decode(a);
}

// out (aligned 32 + off, 8 guard floats after it) decoded by AVX2 and by scalar, on top of the same acc; bits compared.
void compare(Pkt& k, int off, int threads, const char* what) {
  const uint64_t n = k.h.n;
  std::vector<float> b1(n + 24, 7.f), b2(n + 24, 7.f), init(n);
  std::mt19937 r(uint32_t(n * 31 + off));
  for (auto& v : init) v = std::normal_distribution<float>(0.f, 1.f)(r);
  auto base = [&](std::vector<float>& b) {
    float* p = b.data();
    while (reinterpret_cast<uintptr_t>(p) & 31) ++p;
    return p + off;
  };
  float* o1 = base(b1);
  float* o2 = base(b2);
  for (int add = 0; add < 2; ++add) {
    std::memcpy(o1, init.data(), n * 4);
    std::memcpy(o2, init.data(), n * 4);
    run(k, o1, add, threads, false);
    run(k, o2, add, 1, true);
    // the 8 floats past the end too (a tail store must not spill)
    CHECK_MSG(std::memcmp(o1, o2, (n + 8) * 4) == 0, "%s codec %d s %u b %u n %llu off %d threads %d add %d", what,
              int(k.h.codec), k.h.p.levels, k.h.p.bucket, (unsigned long long)n, off, threads, add);
  }
}

}  // namespace

// A packet with a level above s (code `code`): CORRUPT from every path (SIMD and scalar, decode and decode-add),
// and decode-add leaves acc untouched.
static void expect_level_rejected(Pkt& k, uint64_t n, uint32_t s, uint64_t code) {
  for (int scalar = 0; scalar < 2; ++scalar)
    for (int add = 0; add < 2; ++add) {
      std::vector<float> acc(n, 0.5f);
      bool threw = false;
      try {
        run(k, acc.data(), add, 2, scalar);
      } catch (const Error& e) {
        threw = e.code == ErrCode::CORRUPT;
      }
      CHECK_MSG(threw, "level above s accepted: s %u n %llu code %llu scalar %d add %d", s, (unsigned long long)n,
                (unsigned long long)code, scalar, add);
      if (add) {
        bool same = true;
        for (float v : acc) same = same && v == 0.5f;
        CHECK_MSG(same, "decode-add wrote acc before rejecting: s %u n %llu scalar %d", s, (unsigned long long)n,
                  scalar);
      }
    }
}

int main() {
  uint64_t seed = 1;
  const uint32_t bs[] = {32, 33, 35, 48, 64, 99, 100, 512, 1000};
  const uint64_t ns[] = {1, 15, 16, 17, 31, 33, 63, 65, 100, 513, 1031, 4099};
  // s = 2, 8, 255, 1000, 32767: the per-element decoder (3-, 5-, 9-, 11- and 16-bit codes); the others the table
  // decoders
  struct C { Codec c; uint32_t s; } cs[] = {{QSGD, 4}, {QSGD, 5}, {QSGD, 6}, {QSGD, 7}, {QSGD, 1}, {QSGD, 2}, {QSGD, 8},
                                           {QSGD, 255}, {QSGD, 1000}, {QSGD, 32767}, {TERNGRAD, 1}, {ONEBIT, 0}};
  for (auto cc : cs)
    for (uint32_t b : bs)
      for (uint64_t n : ns) {
        Pkt k = make(cc.c, cc.s, b, n, ++seed);
        for (int off = 0; off < 8; ++off) compare(k, off, 1, "small");
      }
  // streaming decode (n >= 2^21) and two threads; offsets 0 / 4 / 1 give the store phases 0 / 4 / -1 (put16.h)
  for (auto cc : cs) {
    Pkt k = make(cc.c, cc.s, 512, (uint64_t(1) << 21) + 37, ++seed);
    for (int off : {0, 4, 1}) compare(k, off, 1, "large");
    compare(k, 4, 2, "large");
    Pkt k2 = make(cc.c, cc.s, 96, (uint64_t(1) << 21) + 5, ++seed);
    compare(k2, 4, 2, "large b96");
    // buckets whose starts change the store phase (b % 8 != 0): the run-time phase path of put16.h
    Pkt k3 = make(cc.c, cc.s, 100, (uint64_t(1) << 21) + 3, ++seed);
    for (int off : {0, 4}) compare(k3, off, 2, "large b100");
  }
  // level above s: CORRUPT, acc untouched by decode-add (every W = 4 s that can overflow, both paths)
  for (uint32_t s : {4u, 5u, 6u})
    for (uint64_t n : {uint64_t(40), uint64_t(5000), uint64_t(1) << 21}) {
      Pkt k = make(QSGD, s, 512, n, ++seed);
      const uint64_t j = (n / 512) / 2, i = std::min<uint64_t>(n - j * 512, 512) - 1;  // last code of a bucket
      const uint64_t stride = 4 + 512 * 4 / 8;
      uint8_t& by = k.pay[j * stride + 4 + i / 2];
      const uint8_t bad = uint8_t(2 * s + 2 + (seed & 1));
      by = (i & 1) ? uint8_t((by & 0x0F) | (bad << 4)) : uint8_t((by & 0xF0) | bad);
      expect_level_rejected(k, n, s, j * 512 + i);
    }
  // level above s at other code widths (W = 3, 5, 6, 7, 8, 11; s + 1 not a power of two, so a code can hold it):
  // the validation pass before a decode-add (16-bit lanes, two groups per register for W <= 8) and the decoders
  // find it wherever it is: first code, the upper group of a 16-code pair, the last full pair, a bucket's last code
  // (a partial group in the last bucket)
  for (uint32_t s : {2u, 8u, 16u, 40u, 100u, 1000u}) {
    const uint32_t W = 1 + (32 - __builtin_clz(s));
    const uint64_t stride = 4 + (512 * uint64_t(W) + 7) / 8;
    for (uint64_t n : {uint64_t(40), uint64_t(5000), (uint64_t(1) << 21) + 3})
      for (int where = 0; where < 5; ++where) {
        if (n > 5000 && where != 4) continue;  // (ASan time)
        Pkt k = make(QSGD, s, 512, n, ++seed);
        const uint64_t B = (n + 511) / 512, j = where == 4 ? B - 1 : (B - 1) / 2;
        const uint64_t m = std::min<uint64_t>(512, n - j * 512);
        const uint64_t pos[5] = {0, 9, 16 * ((m - 8) / 16) + 3, 16 * (m / 16) - 1, m - 1};
        const uint64_t i = std::min<uint64_t>(pos[where], m - 1);
        const uint32_t bad = 2 * s + 2 + uint32_t(seed & 1);
        uint8_t* codes = k.pay.data() + j * stride + 4;
        for (uint32_t t = 0; t < W; ++t) {
          const uint64_t bit = i * W + t;
          codes[bit / 8] = uint8_t((codes[bit / 8] & ~(1u << (bit % 8))) | (((bad >> t) & 1u) << (bit % 8)));
        }
        expect_level_rejected(k, n, s, j * 512 + i);
      }
  }
  std::printf("test_fixdec: %d checks, %d failed\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
