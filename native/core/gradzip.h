// gradzip core: plain C++17, no N-API. The public surface used by the N-API binding, C++ tests and fuzzers.
// Wire format: docs/FORMAT.md (the contract). Errors are thrown as gz::Error with a stable code.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace gz {

enum class ErrCode : int { INVALID_ARG = 1, NONFINITE = 2, CORRUPT = 3, CUDA = 4, INTERNAL = 5 };
const char* err_code_name(ErrCode c);  // "ERR_GRADZIP_INVALID_ARG", ...

struct Error : std::runtime_error {
  ErrCode code;
  Error(ErrCode c, const std::string& m) : std::runtime_error(m), code(c) {}
};

enum Codec : uint8_t { QSGD = 1, TERNGRAD = 2, ONEBIT = 3, TOPK = 4, RANDOMK = 5, NONUNIFORM = 6 };
enum Norm : uint8_t { NORM_L2 = 0, NORM_LINF = 1 };
enum Coding : uint8_t { CODING_FIXED = 0, CODING_GAMMA = 1, CODING_SPARSE = 2 };
enum ValueType : uint8_t { VT_F32 = 0, VT_F16 = 1, VT_BF16 = 2 };

constexpr uint32_t kHeaderBytes = 48;
constexpr uint64_t kMaxN = uint64_t(1) << 34;
constexpr uint32_t kMaxNonuniformLevels = 64;

// Everything an encoder needs. Filled by the binding from the validated JS options.
struct Params {
  Codec codec = QSGD;
  uint32_t levels = 4;        // qsgd s, nonuniform L
  uint32_t bucket = 512;      // bucketed codecs
  Norm norm = NORM_L2;
  Coding coding = CODING_FIXED;
  // topk / randomk: k if has_k, else k = max(1, ceil(ratio * n)) (0 when n == 0), clamped to n
  bool has_k = false;
  uint64_t k = 0;
  double ratio = 0.01;
  ValueType vt = VT_F32;
  float shape = 0.f;          // nonuniform: 0 = fit from data
  bool nonfinite_zero = false;
  bool seed_given = false;    // false: a fresh seed is drawn and flags bit 0 is set
  uint64_t seed = 0;
  int threads = 0;            // 0 = default pool size
  bool force_scalar = false;  // tests: disable SIMD paths
};

// Parsed, validated header (points into the packet).
struct Header {
  uint8_t version = 0, codec = 0, flags = 0;
  uint64_t n = 0, seed = 0;
  uint32_t bucket = 0, param_bytes = 0, chunk_count = 0, chunk_elems = 0;
  uint64_t payload_bytes = 0;
  Params p;                          // codec parameters decoded from the param block
  float nu_shape = 0, nu_scale = 0;  // nonuniform fitted values
  float nu_levels[kMaxNonuniformLevels + 1] = {0};
  const uint8_t* params = nullptr;
  const uint8_t* chunk_table = nullptr;  // C little-endian u32
  const uint8_t* payload = nullptr;
  uint64_t total_bytes = 0;
};

// Validates params (throws INVALID_ARG). Resolves k for topk/randomk into p.k given n.
void check_params(const Params& p);
uint64_t resolve_k(const Params& p, uint64_t n);

// Upper bound of the packet size for n elements (header, params, table, payload, crc).
uint64_t max_bytes(const Params& p, uint64_t n);

// Compresses x[0..n) into out[0..cap). Returns the packet length. cap must be >= max_bytes(p, n)
// (INVALID_ARG otherwise). Throws NONFINITE / INVALID_ARG.
uint64_t encode(const Params& p, const float* x, uint64_t n, uint8_t* out, uint64_t cap);

// Parses and validates header, sizes, chunk table sums and CRC (the CRC on up to `threads` threads, 0 = the
// default count, as for decode). Throws CORRUPT.
Header parse(const uint8_t* pkt, uint64_t len, int threads = 1, bool check_crc = true);
// The shared first half of parse(): the 48-byte header and the parameter block of a packet of `len` bytes, with
// every size rule that needs no chunk table and no CRC. Reads only pkt[0, 48 + P) (P <= 12 + 4*65), after checking
// 48 + P + 4 <= len, so pkt may hold just a packet's first min(len, 320) bytes (the CUDA path reads device packets
// this way). The Header's pointers stay null. Throws CORRUPT.
Header parse_header(const uint8_t* pkt, uint64_t len);
// Fixed layouts (C = 0): payloadBytes equals the size computed from (n, bucketSize, params). Throws CORRUPT.
void check_fixed_payload(const Header& h);

// Decodes into out[0..n) (n must equal the header's n: INVALID_ARG otherwise).
// add=false: out = v; add=true: out = out + alpha * v (multiply then add, no FMA).
// crc_checked: the caller has just verified this packet's CRC with parse() (the CRC pass is skipped; every other
// check still runs, so a packet changed in between can give wrong floats but never an unsafe access).
void decode(const uint8_t* pkt, uint64_t len, float* out, uint64_t n, bool add, float alpha, int threads,
            bool force_scalar = false, bool crc_checked = false);

// Error feedback (ECQ-SGD): v = g + alpha*h; packet = Q(v); h = beta*h + (g - decode(packet)).
// scratch must hold n floats. Returns the packet length.
uint64_t ef_step(const Params& p, const float* g, float* h, uint64_t n, float alpha, float beta, uint8_t* out,
                 uint64_t cap, float* scratch);

// Runtime info.
struct CpuInfo { bool avx2, bmi2, fma, f16c, sse42; int threads; bool pclmul = false; };
CpuInfo cpu_info();
void set_default_threads(int t);  // 0 = hardware concurrency
int default_threads();

}  // namespace gz
