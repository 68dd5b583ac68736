// Bit I/O for the variable-length codings (docs/FORMAT.md section 4): LSB-first bit streams and the
// LSB-first Elias-gamma variant. The writer is branchless on its fast path (one unaligned 64-bit store per
// put); the reader is bounds-checked: it never loads a byte outside [base, base + nbytes) and any read past
// the end of its stream throws ERR_GRADZIP_CORRUPT.
#pragma once
#include <cstdint>
#include <cstring>
#include "gradzip.h"

namespace gz {

inline uint64_t load_u64le(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }
inline uint32_t load_u32le(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline void store_u64le(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline void store_u32le(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline float load_f32le(const uint8_t* p) { float f; std::memcpy(&f, p, 4); return f; }
inline void store_f32le(uint8_t* p, float f) { std::memcpy(p, &f, 4); }

inline int ctz64(uint64_t x) { return __builtin_ctzll(x); }    // x != 0 (tzcnt/bsf)
inline int floor_log2_u64(uint64_t x) { return 63 - __builtin_clzll(x); }  // x != 0

[[noreturn]] inline void corrupt(const char* what) { throw Error(ErrCode::CORRUPT, std::string("corrupt packet: ") + what); }

// Elias-gamma code (LSB-first variant) of x >= 1 as a (2N+1)-bit value; N = floor(log2 x).
inline uint64_t gamma_code(uint64_t x, int N) { return ((x & ((uint64_t(1) << N) - 1)) << (N + 1)) | (uint64_t(1) << N); }
inline int gamma_len(uint64_t x) { return 2 * floor_log2_u64(x) + 1; }
// The value of the Elias-gamma code at the bottom of w, whose N = ctz(w) leading zeros are known (N <= 28: the
// whole 2N+1-bit code is in a 57-bit peek).
inline uint64_t gamma_peek_value(uint64_t w, int N) {
  return ((w >> (N + 1)) & ((uint64_t(1) << N) - 1)) | (uint64_t(1) << N);
}

// Bit writer. Bits not yet final live in `buf` (bit 0 = bit (pos mod 8) ... of byte p); every put stores the
// whole 64-bit buffer at p, so the bytes [p, p+8) must be writable: when p + 8 > end the store is cut at end.
// The caller sizes the region so that every bit it writes lies before `end`.
// put(code, len): len <= 56 and code < 2^len (no stray high bits).
struct BitWriter {
  uint8_t* p;
  uint8_t* end;
  uint8_t* start;
  uint64_t buf = 0;
  unsigned nbits = 0;  // < 8 between puts
  BitWriter(uint8_t* s, uint8_t* e) : p(s), end(e), start(s) {}
  inline void put(uint64_t code, unsigned len) {
    buf |= code << nbits;
    nbits += len;
    if (__builtin_expect(p + 8 <= end, 1)) store_u64le(p, buf);
    else if (p < end) std::memcpy(p, &buf, size_t(end - p));
    const unsigned adv = nbits >> 3;
    p += adv;
    buf = adv ? (buf >> (adv * 8)) : buf;  // adv <= 7 (nbits <= 63)
    nbits &= 7;
  }
  // Elias-gamma of x (1 <= x < 2^63).
  inline void put_gamma(uint64_t x) {
    const int N = floor_log2_u64(x);
    if (N <= 27) put(gamma_code(x, N), unsigned(2 * N + 1));
    else { put(uint64_t(1) << N, unsigned(N + 1)); put(x & ((uint64_t(1) << N) - 1), unsigned(N)); }
  }
  // Byte length written so far, the final partial byte (zero-padded) included.
  uint64_t bytes() const { return uint64_t(p - start) + (nbits ? 1 : 0); }
  uint64_t bits() const { return uint64_t(p - start) * 8 + nbits; }
};

// Bounds-checked LSB-first bit reader over [base, base + nbytes).
struct BitReader {
  const uint8_t* base;
  uint64_t nbytes;
  uint64_t pos = 0;     // bit position
  uint64_t end_bits;
  BitReader(const uint8_t* b, uint64_t n) : base(b), nbytes(n), end_bits(n * 8) {}
  // The next bits from pos; at least 57 valid bits, zeros past the end of the stream.
  inline uint64_t peek() const {
    const uint64_t byte = pos >> 3;
    uint64_t w;
    if (__builtin_expect(byte + 8 <= nbytes, 1)) w = load_u64le(base + byte);
    else {
      w = 0;
      if (byte < nbytes) std::memcpy(&w, base + byte, size_t(nbytes - byte));
    }
    return w >> (pos & 7);
  }
  inline void skip(unsigned n) {
    pos += n;
    if (__builtin_expect(pos > end_bits, 0)) corrupt("bit stream read past the end of its chunk");
  }
  inline uint64_t get(unsigned n) {  // n <= 56
    const uint64_t v = peek() & ((uint64_t(1) << n) - 1);
    skip(n);
    return v;
  }
  inline uint32_t get_bit() {
    const uint32_t v = uint32_t(peek() & 1);
    skip(1);
    return v;
  }
  // Elias-gamma value x with floor(log2 x) <= maxN (maxN <= 40), else CORRUPT.
  inline uint64_t get_gamma(int maxN) {
    const uint64_t w = peek();
    if (__builtin_expect(w == 0, 0)) corrupt("Elias-gamma code too long");
    const int N = ctz64(w);
    if (__builtin_expect(N > maxN, 0)) corrupt("Elias-gamma code too long");
    if (N <= 28) {
      const uint64_t x = gamma_peek_value(w, N);
      skip(unsigned(2 * N + 1));
      return x;
    }
    skip(unsigned(N + 1));
    return get(unsigned(N)) | (uint64_t(1) << N);
  }
  // End of stream: the remaining bits (padding) must be zero and fewer than 8, and nothing may follow.
  inline void finish() const {
    if (end_bits - pos >= 8) corrupt("leftover bytes after a bit stream");
    if (pos < end_bits && (base[pos >> 3] >> (pos & 7)) != 0) corrupt("non-zero padding bits");
  }
};

}  // namespace gz
