// AVX2 Philox (vector batches with scalar blocks riding along, scalar tails) against the scalar reference of
// philox.h: every block count 0 .. 300 (every split of batches / scalar blocks / tail), starts beside the counter
// word 1 boundaries (2^32, 2^33, 2^64), both streams, plain and complemented, a reused schedule across calls with
// different high words, and the Random123 known-answer vectors. Also the qsgd-shaped use: one schedule, consecutive
// bucket ranges.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "counting_check.h"
#include "core/gradzip.h"
#include "core/philox.h"
#include "core/simd_philox.h"

using namespace gz;

namespace {

bool have_avx2() { return cpu_info().avx2 && cpu_info().bmi2; }

void check_range(philox_detail::Sched* s, uint64_t seed, uint64_t j0, uint64_t nb, uint32_t stream, bool NOT) {
  std::vector<uint32_t> v(4 * nb + 8, 0xdeadbeefu);
  if (s) {
    if (NOT) philox_detail::blocks_sched<true>(*s, seed, j0, nb, v.data(), stream);
    else philox_detail::blocks_sched<false>(*s, seed, j0, nb, v.data(), stream);
  } else {
    if (NOT) philox_blocks_not_avx2(seed, j0, nb, v.data(), stream);
    else philox_blocks_avx2(seed, j0, nb, v.data(), stream);
  }
  uint64_t bad = 0;
  for (uint64_t k = 0; k < nb; ++k) {
    Philox4 w = philox_block(seed, j0 + k, stream);
    for (int q = 0; q < 4; ++q) bad += v[4 * k + q] != (NOT ? ~w.v[q] : w.v[q]);
  }
  CHECK_MSG(bad == 0, "seed %llx j0 %llx nb %llu stream %u not %d: %llu wrong words", (unsigned long long)seed,
            (unsigned long long)j0, (unsigned long long)nb, stream, int(NOT), (unsigned long long)bad);
  for (int q = 0; q < 8; ++q) CHECK_MSG(v[4 * nb + q] == 0xdeadbeefu, "write past the end (nb %llu)", (unsigned long long)nb);
}

}  // namespace

int main() {
  {  // known answers (scalar reference)
    Philox4 a = philox4x32_10(0, 0, 0, 0, 0, 0);
    const uint32_t ea[4] = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};
    for (int i = 0; i < 4; ++i) CHECK(a.v[i] == ea[i]);
  }
  if (!have_avx2()) {
    std::printf("test_philox: no AVX2/BMI2, skipped (%d checks)\n", g_checks);
    return 0;
  }
  {  // known answer through the AVX2 path: counter {0,0,0,0}, key {0,0} is block 0 of seed 0, stream 0
    for (uint64_t nb : {1ull, 9ull, 10ull, 64ull}) {
      std::vector<uint32_t> v(4 * nb);
      philox_blocks_avx2(0, 0, nb, v.data(), 0);
      const uint32_t ea[4] = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};
      for (int i = 0; i < 4; ++i) CHECK_MSG(v[i] == ea[i], "nb %llu word %d", (unsigned long long)nb, i);
    }
  }
  const uint64_t seeds[] = {0, 1, 0xffffffffffffffffull, 0x0123456789abcdefull};
  for (uint64_t seed : seeds)
    for (uint32_t stream = 0; stream < 2; ++stream)
      for (int NOT = 0; NOT < 2; ++NOT) {
        for (uint64_t nb = 0; nb <= 300; ++nb) check_range(nullptr, seed, 1000 + nb, nb, stream, NOT);
        // starts beside the counter-word-1 boundaries: batches must stop there, the rest goes to the tails
        const uint64_t starts[] = {0xFFFFFFFFull - 300, 0xFFFFFFFFull - 37, 0xFFFFFFFFull - 9, 0xFFFFFFFFull - 8,
                                   0xFFFFFFFFull - 7, 0xFFFFFFFFull, (1ull << 33) - 11, (1ull << 33) - 1,
                                   ~0ull - 200, ~0ull - 9};
        for (uint64_t j0 : starts)
          for (uint64_t nb : {1ull, 7ull, 8ull, 9ull, 10ull, 11ull, 12ull, 17ull, 20ull, 21ull, 64ull, 65ull, 199ull})
            if (j0 + nb - 1 >= j0) check_range(nullptr, seed, j0, nb, stream, NOT);
      }
  // one schedule reused across calls whose high words and streams change (the batch constants must follow)
  for (uint64_t seed : seeds) {
    philox_detail::Sched s;
    philox_detail::sched_init(s, seed);
    const uint64_t js[] = {0, (1ull << 32) + 5, 77, (3ull << 32) - 20, 1ull << 40, 12345};
    for (uint64_t j0 : js)
      for (uint32_t stream : {0u, 1u, 0u})
        for (uint64_t nb : {3ull, 64ull, 65ull, 130ull}) check_range(&s, seed, j0, nb, stream, stream == 0);
    // qsgd-shaped: consecutive buckets of 512 and 100 elements with one schedule
    for (uint64_t b : {512ull, 100ull, 2048ull + 8})
      for (uint64_t g = 0; g < 40 * b; g += b) {
        const uint64_t blk0 = g >> 3, nblk = ((g + b - 1) >> 3) - blk0 + 1;
        check_range(&s, seed, blk0, nblk, 0, true);
      }
  }
  std::printf("test_philox: %d checks, %d failed\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
