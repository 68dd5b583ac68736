// CRC32C (Castagnoli, reflected polynomial 0x82F63B78, init 0xFFFFFFFF, final xor 0xFFFFFFFF): FORMAT section 1.
// crc32c() dispatches at run time to carry-less multiply folding (PCLMULQDQ, finished with crc32), the SSE4.2 crc32
// instruction (three interleaved streams) or a slicing-by-8 table fallback. All are exposed for tests.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gz {
uint32_t crc32c(const uint8_t* p, size_t len);
uint32_t crc32c_table(const uint8_t* p, size_t len);   // portable path
uint32_t crc32c_hw(const uint8_t* p, size_t len);      // requires SSE4.2 (caller checks cpu_info().sse42)
uint32_t crc32c_pclmul(const uint8_t* p, size_t len);  // requires SSE4.2 and PCLMULQDQ (cpu_info().pclmul)
// crc32c(p, len) computed on up to `threads` pool threads (pieces of >= 1 MiB, combined over GF(2)).
uint32_t crc32c_threads(const uint8_t* p, size_t len, int threads);
// Raw update on the un-inverted state (crc32c(p, n) == ~crc32c_update_table(~0u, p, n)).
uint32_t crc32c_update_table(uint32_t state, const uint8_t* p, size_t len);
// Combining over GF(2): the raw state after A B is crc32c_shift(crc32c_shift_op(|B|), state after A) ^ (state after
// B from 0). The operator is x^(8 |B|) mod P (zlib's x2nmodp, ~1 µs to build); crc32c_shift applies it (<= 32 steps).
uint32_t crc32c_shift_op(uint64_t len);
uint32_t crc32c_shift(uint32_t op, uint32_t state);
}  // namespace gz
