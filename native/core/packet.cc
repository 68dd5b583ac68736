// Packet layer: header, parameter block, chunk table, CRC, validation and dispatch (docs/FORMAT.md).
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "codec.h"
#include "crc32c.h"
#include "gradzip.h"

namespace gz {
namespace {

inline void st32(uint8_t* p, uint32_t v) { for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i)); }
inline void st64(uint8_t* p, uint64_t v) { for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i)); }
inline uint32_t ld32(const uint8_t* p) { uint32_t v = 0; for (int i = 3; i >= 0; --i) v = (v << 8) | p[i]; return v; }
inline uint64_t ld64(const uint8_t* p) { uint64_t v = 0; for (int i = 7; i >= 0; --i) v = (v << 8) | p[i]; return v; }
inline float ldf(const uint8_t* p) { uint32_t u = ld32(p); float f; std::memcpy(&f, &u, 4); return f; }
inline void stf(uint8_t* p, float f) { uint32_t u; std::memcpy(&u, &f, 4); st32(p, u); }

[[noreturn]] void corrupt(const std::string& m) { throw Error(ErrCode::CORRUPT, "corrupt packet: " + m); }
[[noreturn]] void invalid(const std::string& m) { throw Error(ErrCode::INVALID_ARG, m); }

const char* codec_name(int c) {
  switch (c) {
    case QSGD: return "qsgd"; case TERNGRAD: return "terngrad"; case ONEBIT: return "onebit";
    case TOPK: return "topk"; case RANDOMK: return "randomk"; case NONUNIFORM: return "nonuniform";
    default: return "?";
  }
}

bool bucketed(int c) { return c == QSGD || c == TERNGRAD || c == ONEBIT || c == NONUNIFORM; }
bool deterministic(int c) { return c == ONEBIT || c == TOPK; }
bool variable_qsgd(const Params& p) { return p.codec == QSGD && p.coding != CODING_FIXED; }

uint64_t add_ck(uint64_t a, uint64_t b) {
  if (a > std::numeric_limits<uint64_t>::max() - b) invalid("size overflow");
  return a + b;
}

// Family payload bound (exact for fixed layouts).
uint64_t family_max_payload(const Params& p, uint64_t n) {
  switch (p.codec) {
    case QSGD: return p.coding == CODING_FIXED ? qsgd_fixed_payload_bytes(p, n) : qsgd_var_max_payload(p, n);
    case TERNGRAD: return qsgd_fixed_payload_bytes(p, n);
    case ONEBIT: return onebit_payload_bytes(p, n);
    case TOPK: return topk_max_payload(p, n);
    case RANDOMK: return randomk_payload_bytes(p, n);
    case NONUNIFORM: return nonuniform_payload_bytes(p, n);
  }
  invalid("unknown codec");
}

// Canonical params for the codecs whose parameters are fixed by the format.
Params canonical(const Params& in) {
  Params p = in;
  if (p.codec == TERNGRAD) { p.levels = 1; p.norm = NORM_LINF; p.coding = CODING_FIXED; }
  if (p.codec == ONEBIT) { p.coding = CODING_FIXED; }
  if (!bucketed(p.codec)) p.bucket = 0;
  return p;
}

int resolve_threads(int t) { return t > 0 ? (t > 256 ? 256 : t) : default_threads(); }

}  // namespace

const char* err_code_name(ErrCode c) {
  switch (c) {
    case ErrCode::INVALID_ARG: return "ERR_GRADZIP_INVALID_ARG";
    case ErrCode::NONFINITE: return "ERR_GRADZIP_NONFINITE";
    case ErrCode::CORRUPT: return "ERR_GRADZIP_CORRUPT";
    case ErrCode::CUDA: return "ERR_GRADZIP_CUDA";
    case ErrCode::INTERNAL: return "ERR_GRADZIP_INTERNAL";
  }
  return "ERR_GRADZIP_INTERNAL";
}

void check_params(const Params& p) {
  if (p.codec < QSGD || p.codec > NONUNIFORM) invalid("unknown codec " + std::to_string(int(p.codec)));
  if (bucketed(p.codec) && p.bucket < 1) invalid("bucketSize must be >= 1");
  if (p.codec == QSGD) {
    if (p.levels < 1 || p.levels > 65535) invalid("qsgd levels must be in 1..65535");
    if (p.norm != NORM_L2 && p.norm != NORM_LINF) invalid("qsgd norm must be 'l2' or 'linf'");
    if (p.coding > CODING_SPARSE) invalid("qsgd coding must be 'fixed', 'gamma' or 'sparse'");
  }
  if (p.codec == NONUNIFORM) {
    if (p.levels < 1 || p.levels > kMaxNonuniformLevels) invalid("nonuniform levels must be in 1..64");
    if (!std::isfinite(p.shape) || p.shape < 0.f) invalid("nonuniform shape must be a finite number >= 0 (0 = fit from the data)");
  }
  if (p.codec == TOPK || p.codec == RANDOMK) {
    if (p.has_k) {
      if (p.k < 1) invalid("k must be >= 1");
    } else if (!(p.ratio > 0.0 && p.ratio <= 1.0)) {
      invalid("ratio must be in (0, 1]");
    }
    if (p.codec == TOPK && p.vt > VT_BF16) invalid("topk values must be 'f32', 'f16' or 'bf16'");
  }
  if (p.threads < 0) invalid("threads must be >= 0");
}

uint64_t resolve_k(const Params& p, uint64_t n) {
  if (n == 0) return 0;
  uint64_t k;
  if (p.has_k) {
    k = p.k;
  } else {
    const double r = std::ceil(p.ratio * double(n));
    k = r >= double(n) ? n : uint64_t(r);
    if (k < 1) k = 1;
  }
  return k > n ? n : k;
}

uint32_t param_bytes(const Params& p) {
  switch (p.codec) {
    case QSGD: return 8;
    case TERNGRAD: case ONEBIT: return 0;
    case TOPK: return 16;
    case RANDOMK: return 8;
    case NONUNIFORM: return 12 + 4 * (p.levels + 1);
  }
  invalid("unknown codec");
}

void chunk_layout(const Params& p, uint64_t n, uint32_t* C, uint32_t* E) {
  *C = 0; *E = 0;
  if (variable_qsgd(p)) {
    if (n == 0) return;
    const uint64_t b = p.bucket;
    const uint64_t e = b * (b >= 2048 ? 1 : 2048 / b);
    *E = uint32_t(e);
    *C = uint32_t((n + e - 1) / e);
  } else if (p.codec == TOPK) {
    const uint64_t k = resolve_k(p, n);
    if (k == 0) return;
    *E = 4096;
    *C = uint32_t((k + 4095) / 4096);
  }
}

uint64_t max_bytes(const Params& pin, uint64_t n) {
  check_params(pin);
  if (n > kMaxN) invalid("n must be <= 2^34");
  Params p = canonical(pin);
  p.k = resolve_k(p, n);
  p.has_k = true;
  uint32_t C, E;
  chunk_layout(p, n, &C, &E);
  uint64_t t = add_ck(kHeaderBytes, param_bytes(p));
  t = add_ck(t, uint64_t(C) * 4);
  t = add_ck(t, family_max_payload(p, n));
  return add_ck(t, 4);
}

uint64_t encode(const Params& pin, const float* x, uint64_t n, uint8_t* out, uint64_t cap) {
  check_params(pin);
  if (n > kMaxN) invalid("n must be <= 2^34");
  if (n > 0 && !x) invalid("input is null");
  const uint64_t need = max_bytes(pin, n);
  if (cap < need || !out)
    invalid("output buffer too small: " + std::to_string(cap) + " < maxCompressedBytes = " + std::to_string(need));
  Params p = canonical(pin);
  p.k = resolve_k(p, n);
  p.has_k = true;

  // seed
  uint64_t seed = 0;
  uint8_t flags = 0;
  if (!deterministic(p.codec)) {
    if (p.seed_given) {
      seed = p.seed;
    } else {
      // A std::random_device per call costs ~20 us here; seed a per-thread splitmix64 stream once instead.
      thread_local uint64_t state = [] {
        std::random_device rd;
        return (uint64_t(rd()) << 32) ^ uint64_t(rd());
      }();
      uint64_t z = (state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      seed = z ^ (z >> 31);
      flags |= 1;
    }
  }

  // nonFinite: 'zero' -> sanitized copy only when needed.
  std::vector<float> clean;
  if (p.nonfinite_zero) {
    uint64_t i = 0;
    for (; i < n; ++i) { uint32_t u; std::memcpy(&u, x + i, 4); if ((u & 0x7FFFFFFFu) >= 0x7F800000u) break; }
    if (i < n) {
      clean.assign(x, x + n);
      for (uint64_t j = i; j < n; ++j) {
        uint32_t u; std::memcpy(&u, &clean[j], 4);
        if ((u & 0x7FFFFFFFu) >= 0x7F800000u) clean[j] = 0.f;
      }
      x = clean.data();
    }
  }

  const uint32_t P = param_bytes(p);
  uint32_t C, E;
  chunk_layout(p, n, &C, &E);
  uint8_t* params = out + kHeaderBytes;
  uint8_t* table = params + P;
  uint8_t* payload = table + uint64_t(C) * 4;

  EncodeArgs a{};
  a.p = &p;
  a.seed = seed;
  a.x = x;
  a.n = n;
  a.payload = payload;
  a.cap = family_max_payload(p, n);
  std::vector<uint32_t> lens(C);
  a.chunk_lens = C ? lens.data() : nullptr;
  a.threads = resolve_threads(p.threads);
  a.scalar = p.force_scalar || !(cpu_info().avx2 && cpu_info().bmi2);
  a.nu_shape = 1.f;
  a.nu_scale = 1.f;
  for (uint32_t t = 0; t <= kMaxNonuniformLevels; ++t) a.nu_levels[t] = 0.f;

  uint64_t pb = 0;
  switch (p.codec) {
    case QSGD: pb = p.coding == CODING_FIXED ? qsgd_fixed_encode(a) : qsgd_var_encode(a); break;
    case TERNGRAD: pb = qsgd_fixed_encode(a); break;
    case ONEBIT: pb = onebit_encode(a); break;
    case TOPK: pb = topk_encode(a); break;
    case RANDOMK: pb = randomk_encode(a); break;
    case NONUNIFORM: pb = nonuniform_encode(a); break;
  }
  if (pb > a.cap) throw Error(ErrCode::INTERNAL, std::string(codec_name(p.codec)) + " encoder overran its payload bound");

  // header
  std::memcpy(out, "GZPK", 4);
  out[4] = 1;
  out[5] = uint8_t(p.codec);
  out[6] = flags;
  out[7] = 0;
  st64(out + 8, n);
  st64(out + 16, seed);
  st32(out + 24, p.bucket);
  st32(out + 28, P);
  st32(out + 32, C);
  st32(out + 36, E);
  st64(out + 40, pb);
  // params
  std::memset(params, 0, P);
  switch (p.codec) {
    case QSGD: st32(params, p.levels); params[4] = p.norm; params[5] = p.coding; break;
    case TOPK: st64(params, p.k); params[8] = p.vt; break;
    case RANDOMK: st64(params, p.k); break;
    case NONUNIFORM:
      st32(params, p.levels);
      stf(params + 4, a.nu_shape);
      stf(params + 8, a.nu_scale);
      for (uint32_t t = 0; t <= p.levels; ++t) stf(params + 12 + 4 * t, a.nu_levels[t]);
      break;
    default: break;
  }
  for (uint32_t c = 0; c < C; ++c) st32(table + 4 * uint64_t(c), lens[c]);
  const uint64_t body = kHeaderBytes + P + uint64_t(C) * 4 + pb;
  st32(out + body, crc32c_threads(out, body, a.threads));
  return body + 4;
}

Header parse_header(const uint8_t* pkt, uint64_t len) {
  Header h;
  if (!pkt && len) corrupt("null packet");
  if (len < kHeaderBytes + 4) corrupt("too short (" + std::to_string(len) + " bytes; a packet has at least 52)");
  if (std::memcmp(pkt, "GZPK", 4) != 0) corrupt("bad magic (not a gradzip packet)");
  h.version = pkt[4];
  if (h.version != 1) corrupt("unsupported format version " + std::to_string(h.version));
  h.codec = pkt[5];
  if (h.codec < QSGD || h.codec > NONUNIFORM) corrupt("unknown codec id " + std::to_string(h.codec));
  h.flags = pkt[6];
  if (h.flags & ~1u) corrupt("unknown flag bits");
  if (pkt[7] != 0) corrupt("reserved header byte is not 0");
  h.n = ld64(pkt + 8);
  if (h.n > kMaxN) corrupt("n > 2^34");
  h.seed = ld64(pkt + 16);
  if (deterministic(h.codec) && (h.seed != 0 || h.flags != 0)) corrupt("deterministic codec with a seed");
  h.bucket = ld32(pkt + 24);
  if (bucketed(h.codec) ? h.bucket < 1 : h.bucket != 0) corrupt("bad bucketSize");
  h.param_bytes = ld32(pkt + 28);
  h.chunk_count = ld32(pkt + 32);
  h.chunk_elems = ld32(pkt + 36);
  h.payload_bytes = ld64(pkt + 40);

  Params& p = h.p;
  p.codec = Codec(h.codec);
  p.bucket = h.bucket;
  p.seed = h.seed;
  p.seed_given = true;
  const uint64_t avail = len - kHeaderBytes - 4;  // bytes for params, table, payload
  // Param block size: known up front except nonuniform (needs L from the block).
  uint64_t Pexp = 0;
  const uint8_t* prm = pkt + kHeaderBytes;
  switch (h.codec) {
    case QSGD: Pexp = 8; break;
    case TOPK: Pexp = 16; break;
    case RANDOMK: Pexp = 8; break;
    case NONUNIFORM: {
      if (h.param_bytes < 12 || avail < 12) corrupt("nonuniform parameter block too short");
      const uint32_t L = ld32(prm);
      if (L < 1 || L > kMaxNonuniformLevels) corrupt("nonuniform levels out of range");
      Pexp = 12 + 4 * uint64_t(L + 1);
      break;
    }
    default: Pexp = 0;
  }
  if (h.param_bytes != Pexp) corrupt("parameter block size " + std::to_string(h.param_bytes) + " != " + std::to_string(Pexp));
  if (avail < Pexp) corrupt("truncated parameter block");
  switch (h.codec) {
    case QSGD:
      p.levels = ld32(prm);
      if (p.levels < 1 || p.levels > 65535) corrupt("qsgd levels out of range");
      if (prm[4] > NORM_LINF) corrupt("qsgd norm id out of range");
      if (prm[5] > CODING_SPARSE) corrupt("qsgd coding id out of range");
      if (prm[6] || prm[7]) corrupt("reserved parameter bytes are not 0");
      p.norm = Norm(prm[4]);
      p.coding = Coding(prm[5]);
      break;
    case TERNGRAD: p.levels = 1; p.norm = NORM_LINF; p.coding = CODING_FIXED; break;
    case ONEBIT: p.coding = CODING_FIXED; break;
    case TOPK: case RANDOMK: {
      const uint64_t k = ld64(prm);
      if (k > h.n || (h.n >= 1 && k < 1)) corrupt("k out of range");
      p.has_k = true;
      p.k = k;
      if (h.codec == TOPK) {
        if (prm[8] > VT_BF16) corrupt("topk value type out of range");
        p.vt = ValueType(prm[8]);
        for (int i = 9; i < 16; ++i) if (prm[i]) corrupt("reserved parameter bytes are not 0");
      }
      break;
    }
    case NONUNIFORM: {
      p.levels = ld32(prm);
      h.nu_shape = ldf(prm + 4);
      h.nu_scale = ldf(prm + 8);
      if (!(std::isfinite(h.nu_shape) && h.nu_shape > 0.f)) corrupt("nonuniform shape not finite and > 0");
      if (!(std::isfinite(h.nu_scale) && h.nu_scale > 0.f)) corrupt("nonuniform scale not finite and > 0");
      for (uint32_t t = 0; t <= p.levels; ++t) {
        const float q = ldf(prm + 12 + 4 * t);
        if (!std::isfinite(q)) corrupt("nonuniform level not finite");
        if (t > 0 && !(q > h.nu_levels[t - 1])) corrupt("nonuniform levels not strictly increasing");
        h.nu_levels[t] = q;
      }
      if (h.nu_levels[0] != 0.f || h.nu_levels[p.levels] != 1.f) corrupt("nonuniform levels must run from 0 to 1");
      p.shape = h.nu_shape;
      break;
    }
  }
  uint32_t C, E;
  chunk_layout(p, h.n, &C, &E);
  if (h.chunk_count != C) corrupt("chunk count " + std::to_string(h.chunk_count) + " != " + std::to_string(C));
  if (h.chunk_elems != E) corrupt("elements per chunk " + std::to_string(h.chunk_elems) + " != " + std::to_string(E));
  const uint64_t fixed_part = Pexp + uint64_t(C) * 4;  // <= 2^32 + 4 * 2^32: no overflow
  if (avail < fixed_part) corrupt("truncated chunk table");
  if (h.payload_bytes != avail - fixed_part)
    corrupt("length " + std::to_string(len) + " does not match the header (payloadBytes " +
            std::to_string(h.payload_bytes) + ")");
  h.total_bytes = len;
  return h;
}

void check_fixed_payload(const Header& h) {
  const Params& p = h.p;
  uint64_t exact = 0;
  switch (h.codec) {
    case QSGD: exact = p.coding == CODING_FIXED ? qsgd_fixed_payload_bytes(p, h.n) : 0; break;
    case TERNGRAD: exact = qsgd_fixed_payload_bytes(p, h.n); break;
    case ONEBIT: exact = onebit_payload_bytes(p, h.n); break;
    case RANDOMK: exact = randomk_payload_bytes(p, h.n); break;
    case NONUNIFORM: exact = nonuniform_payload_bytes(p, h.n); break;
    default: exact = 0;  // variable codings with n = 0, topk with k = 0
  }
  if (h.payload_bytes != exact)
    corrupt("payload is " + std::to_string(h.payload_bytes) + " bytes, the layout needs " + std::to_string(exact));
}

Header parse(const uint8_t* pkt, uint64_t len, int threads, bool check_crc) {
  Header h = parse_header(pkt, len);
  const uint32_t C = h.chunk_count;
  const uint32_t crc = ld32(pkt + len - 4);
  if (check_crc && crc32c_threads(pkt, len - 4, resolve_threads(threads)) != crc) corrupt("CRC32C mismatch");
  h.params = pkt + kHeaderBytes;
  h.chunk_table = h.params + h.param_bytes;
  h.payload = h.chunk_table + uint64_t(C) * 4;
  const Params& p = h.p;
  // payload size rules
  if (C == 0) {
    check_fixed_payload(h);
  } else {
    uint64_t sum = 0;
    for (uint32_t c = 0; c < C; ++c) sum += ld32(h.chunk_table + 4 * uint64_t(c));
    if (h.codec == TOPK) {
      const uint64_t vb = p.vt == VT_F32 ? 4 : 2;
      sum += p.k * vb;  // k <= 2^34
    }
    if (sum != h.payload_bytes) corrupt("chunk lengths do not add up to payloadBytes");
  }
  return h;
}

void decode(const uint8_t* pkt, uint64_t len, float* out, uint64_t n, bool add, float alpha, int threads,
            bool force_scalar, bool crc_checked) {
  if (threads < 0) invalid("threads must be >= 0");
  const Header h = parse(pkt, len, threads, !crc_checked);
  if (n != h.n) invalid("output has " + std::to_string(n) + " elements, the packet holds " + std::to_string(h.n));
  if (n == 0) return;
  if (!out) invalid("output is null");
  DecodeArgs a{};
  a.h = &h;
  a.out = out;
  a.add = add;
  a.alpha = alpha;
  a.threads = resolve_threads(threads);
  a.scalar = force_scalar || !(cpu_info().avx2 && cpu_info().bmi2);
  switch (h.codec) {
    case QSGD:
      if (h.p.coding == CODING_FIXED) { qsgd_fixed_decode(a); break; }
      qsgd_var_decode(a);  // validates the whole packet itself before its first store when add is set
      break;
    case TERNGRAD: qsgd_fixed_decode(a); break;
    case ONEBIT: onebit_decode(a); break;
    case TOPK:
      // Always validated first (cheap: k entries): besides keeping acc untouched, this rejects index chunks whose
      // ranges overlap before the chunk-parallel scatter, where two threads could otherwise write one element.
      topk_validate(h);
      topk_decode(a);
      break;
    case RANDOMK: randomk_decode(a); break;
    case NONUNIFORM: nonuniform_decode(a); break;
  }
}

uint64_t ef_step(const Params& p, const float* g, float* h, uint64_t n, float alpha, float beta, uint8_t* out,
                 uint64_t cap, float* scratch) {
  check_params(p);
  if (n > kMaxN) invalid("n must be <= 2^34");
  if (n > 0 && (!g || !h || !scratch)) invalid("null buffer");
  const bool z = p.nonfinite_zero;
  auto gi = [&](uint64_t i) {
    float v = g[i];
    if (z && !std::isfinite(v)) v = 0.f;
    return v;
  };
  for (uint64_t i = 0; i < n; ++i) {
    const float ah = alpha * h[i];
    scratch[i] = gi(i) + ah;
  }
  const uint64_t len = encode(p, scratch, n, out, cap);
  decode(out, len, scratch, n, false, 1.f, p.threads, p.force_scalar);
  for (uint64_t i = 0; i < n; ++i) {
    const float bh = beta * h[i];
    const float d = gi(i) - scratch[i];
    h[i] = bh + d;
  }
  return len;
}

}  // namespace gz
