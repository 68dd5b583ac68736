// Arithmetic modulo the CRC32C polynomial, for combining CRCs (zlib's multmodp / x2nmodp, Castagnoli polynomial),
// shared by the CPU code (core/crc32c.cc) and the device CRC (cuda/packet.cu). Polynomials are reflected 32-bit
// words: bit 31 is x^0. The CRC register after A B is x^(8|B|) * (register after A) + (register of B from 0).
#pragma once
#include <cstdint>

#include "philox.h"  // GZ_HD

namespace gz {
namespace gf2 {

constexpr uint32_t kPoly = 0x82F63B78u;

// a * b mod P (a != 0).
GZ_HD uint32_t multmodp(uint32_t a, uint32_t b) {
  uint32_t m = 1u << 31, p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>= 1;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;
  }
  return p;
}

// x^(2^k) mod P repeats with period 31 in k (x^(2^31) = x mod P; checked by test_core), so a table of k = 0..30
// serves every k.
constexpr int kX2nPeriod = 31;
struct X2n {
  uint32_t t[kX2nPeriod];
};
inline X2n make_x2n() {
  X2n x;
  uint32_t p = 1u << 30;  // x^1
  x.t[0] = p;
  for (int k = 1; k < kX2nPeriod; ++k) x.t[k] = p = multmodp(p, p);
  return x;
}

// x^(n 2^k) mod P.
GZ_HD uint32_t x2nmodp(const X2n& x, uint64_t n, unsigned k) {
  uint32_t p = 1u << 31;  // x^0
  for (; n; n >>= 1, ++k)
    if (n & 1) p = multmodp(x.t[k % kX2nPeriod], p);
  return p;
}

}  // namespace gf2
}  // namespace gz
