#include "crc32c.h"

#include <algorithm>
#include <cstring>
#include <vector>
#include <nmmintrin.h>
#include <wmmintrin.h>

#include "crc32c_gf2.h"
#include "gradzip.h"
#include "threadpool.h"

namespace gz {
namespace {

constexpr uint32_t kPoly = gf2::kPoly;

struct Tables {
  uint32_t t[8][256];
  Tables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? kPoly : 0);
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  }
};
const Tables& tables() { static const Tables t; return t; }

constexpr size_t kBlock = 4096;  // bytes per stream per round of the 3-way interleave
uint32_t op_block() { static const uint32_t z = crc32c_shift_op(kBlock); return z; }
uint32_t op_block2() { static const uint32_t z = crc32c_shift_op(2 * kBlock); return z; }

}  // namespace

uint32_t crc32c_update_table(uint32_t c, const uint8_t* p, size_t len) {
  const Tables& T = tables();
  while (len && (reinterpret_cast<uintptr_t>(p) & 7)) { c = (c >> 8) ^ T.t[0][(c ^ *p++) & 0xFF]; --len; }
  while (len >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = T.t[7][lo & 0xFF] ^ T.t[6][(lo >> 8) & 0xFF] ^ T.t[5][(lo >> 16) & 0xFF] ^ T.t[4][lo >> 24] ^
        T.t[3][hi & 0xFF] ^ T.t[2][(hi >> 8) & 0xFF] ^ T.t[1][(hi >> 16) & 0xFF] ^ T.t[0][hi >> 24];
    p += 8;
    len -= 8;
  }
  while (len--) c = (c >> 8) ^ T.t[0][(c ^ *p++) & 0xFF];
  return c;
}

uint32_t crc32c_table(const uint8_t* p, size_t len) { return ~crc32c_update_table(0xFFFFFFFFu, p, len); }

__attribute__((target("sse4.2"))) static uint32_t hw_update(uint32_t c, const uint8_t* p, size_t len) {
  uint64_t c64 = c;
  while (len >= 8) { uint64_t v; std::memcpy(&v, p, 8); c64 = _mm_crc32_u64(c64, v); p += 8; len -= 8; }
  c = uint32_t(c64);
  while (len--) c = _mm_crc32_u8(c, *p++);
  return c;
}

__attribute__((target("sse4.2"))) uint32_t crc32c_hw(const uint8_t* p, size_t len) {
  uint32_t c = 0xFFFFFFFFu;
  // Three independent streams over consecutive blocks hide the 3-cycle latency of crc32; combined with
  // the "append zeros" operator (linear over GF(2)).
  while (len >= 3 * kBlock) {
    uint64_t a = c, b = 0, d = 0;
    const uint8_t* p1 = p + kBlock;
    const uint8_t* p2 = p + 2 * kBlock;
    for (size_t i = 0; i < kBlock; i += 8) {
      uint64_t v0, v1, v2;
      std::memcpy(&v0, p + i, 8); std::memcpy(&v1, p1 + i, 8); std::memcpy(&v2, p2 + i, 8);
      a = _mm_crc32_u64(a, v0); b = _mm_crc32_u64(b, v1); d = _mm_crc32_u64(d, v2);
    }
    // state after all three = shift(a, 2 blocks) ^ shift(b, 1 block) ^ d  (streams b, d started from 0)
    c = crc32c_shift(op_block2(), uint32_t(a)) ^ crc32c_shift(op_block(), uint32_t(b)) ^ uint32_t(d);
    p += 3 * kBlock;
    len -= 3 * kBlock;
  }
  return ~hw_update(c, p, len);
}

// ---- carry-less multiply folding (PCLMULQDQ), after Intel's "Fast CRC Computation for Generic Polynomials Using
// PCLMULQDQ" (2009). A 128-bit register X loaded little-endian from the stream is the reflected form of a degree-127
// polynomial (bit k <-> x^(127-k)). Moving X forward by D bits onto a later 128-bit block: X * x^D = L * x^(64+D) +
// H * x^D (L = low qword, the earlier 64 bits); pclmul of a reflected 64-bit L with reflect64(x^(e-1) mod P)
// gives the reflected 128-bit form of L * x^e mod-equivalent (the product of two reflected operands lands one bit
// low, hence e - 1). Four lanes advance 64 bytes per step; at the end they fold into one block, whose CRC (from a
// zero state: the 0xFFFFFFFF init is xored into the first 4 bytes) the crc32 instruction finishes with the tail.
// Why: on Zen 1 the crc32 instruction sustains ~4.5 GB/s even with three streams; pclmul folding ~2x that.
namespace {
uint64_t xpow_reflected(unsigned e) {  // reflect64(x^e mod P), P = 0x1EDC6F41 (normal form) + x^32
  uint64_t v = 1;
  for (unsigned i = 0; i < e; ++i) {
    v <<= 1;
    if (v & (uint64_t(1) << 32)) v ^= 0x11EDC6F41ull;
  }
  uint64_t r = 0;
  for (unsigned d = 0; d < 32; ++d)
    if ((v >> d) & 1) r |= uint64_t(1) << (63 - d);
  return r;
}
struct FoldK {
  uint64_t k512[2], k128[2];
  FoldK() {
    k512[0] = xpow_reflected(64 + 512 - 1);
    k512[1] = xpow_reflected(512 - 1);
    k128[0] = xpow_reflected(64 + 128 - 1);
    k128[1] = xpow_reflected(128 - 1);
  }
};
const FoldK& fold_k() { static const FoldK k; return k; }

__attribute__((target("pclmul,sse4.2"))) inline __m128i fold(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next);
}
}  // namespace

// Raw state in and out (state = ~crc of the bytes so far; ~0u at the start).
__attribute__((target("pclmul,sse4.2"))) static uint32_t pclmul_update(uint32_t state, const uint8_t* p, size_t len) {
  if (len < 128) return hw_update(state, p, len);
  const FoldK& K = fold_k();
  const __m128i k512 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(K.k512));
  const __m128i k128 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(K.k128));
  auto ld = [](const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); };
  __m128i a0 = _mm_xor_si128(ld(p), _mm_cvtsi32_si128(int(state))), a1 = ld(p + 16), a2 = ld(p + 32), a3 = ld(p + 48);
  p += 64;
  len -= 64;
  while (len >= 64) {
    a0 = fold(a0, k512, ld(p));
    a1 = fold(a1, k512, ld(p + 16));
    a2 = fold(a2, k512, ld(p + 32));
    a3 = fold(a3, k512, ld(p + 48));
    p += 64;
    len -= 64;
  }
  a1 = fold(a0, k128, a1);
  a2 = fold(a1, k128, a2);
  a3 = fold(a2, k128, a3);
  uint64_t c = _mm_crc32_u64(0, uint64_t(_mm_cvtsi128_si64(a3)));
  c = _mm_crc32_u64(c, uint64_t(_mm_extract_epi64(a3, 1)));
  return hw_update(uint32_t(c), p, len);
}

uint32_t crc32c_pclmul(const uint8_t* p, size_t len) { return ~pclmul_update(0xFFFFFFFFu, p, len); }

static bool have_clmul() {
  static const bool b = cpu_info().sse42 && cpu_info().pclmul;
  return b;
}

uint32_t crc32c(const uint8_t* p, size_t len) {
  static const bool hw = cpu_info().sse42;
  if (have_clmul()) return crc32c_pclmul(p, len);
  return hw ? crc32c_hw(p, len) : crc32c_table(p, len);
}

static const gf2::X2n& x2n() {
  static const gf2::X2n x = gf2::make_x2n();
  return x;
}

uint32_t crc32c_shift_op(uint64_t len) { return gf2::x2nmodp(x2n(), len, 3); }  // x^(8 len)

uint32_t crc32c_shift(uint32_t op, uint32_t state) { return gf2::multmodp(op, state); }  // op != 0

// Large buffers on several threads: T pieces, each piece's raw state from zero (the first from ~0), combined in
// order with "append |piece| zero bytes" operators (CRC is linear over GF(2)): state(A B) = shift_|B|(state(A)) ^
// state_0(B). Only buffers of 2 MiB and more are split (a pool dispatch costs a few µs).
uint32_t crc32c_threads(const uint8_t* p, size_t len, int threads) {
  constexpr size_t kMin = size_t(1) << 21;
  if (threads < 2 || len < kMin || !cpu_info().sse42) return crc32c(p, len);
  const size_t T = std::min<size_t>(size_t(threads), len / (kMin / 2));
  const size_t piece = (len / T) & ~size_t(63);
  const bool clmul = have_clmul();
  std::vector<uint32_t> st(T);
  par_for(int(T), T, [&](uint64_t t) {
    const size_t lo = t * piece, hi = t + 1 == T ? len : lo + piece;
    const uint32_t init = t == 0 ? 0xFFFFFFFFu : 0u;
    st[t] = clmul ? pclmul_update(init, p + lo, hi - lo) : hw_update(init, p + lo, hi - lo);
  });
  const uint32_t op = crc32c_shift_op(piece);
  uint32_t c = st[0];
  for (size_t t = 1; t < T; ++t) {
    const size_t plen = t + 1 == T ? len - t * piece : piece;
    c = crc32c_shift(plen == piece ? op : crc32c_shift_op(plen), c) ^ st[t];
  }
  return ~c;
}

}  // namespace gz
