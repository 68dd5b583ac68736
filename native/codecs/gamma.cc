// QSGD with the variable-length codings `gamma` and `sparse` (docs/FORMAT.md sections 3.1, 4.2, 5).
// The quantizer (norm order, r = s/N, the 16-bit stochastic rounding) is the one of the fixed coding
// (core/quant_ref.h): for the same input and seed the three codings carry the same zeta and signs, only the
// way they are written differs, so their decodes are bit-identical.
//
// Encoder: chunks of E elements (a whole number of buckets) are encoded independently, in parallel, each into
// its own max-size slot of the payload region; then the chunks are compacted left with memmove and chunk_lens
// is filled. One fused pass per bucket: norm, uniforms, quantize, code.
// Decoder: chunk-parallel; every read is bounds-checked against its chunk (bitio.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "core/bitio.h"
#include "core/codec.h"
#include "core/threadpool.h"
#include "core/philox.h"
#include "core/quant_ref.h"

namespace gz {
namespace {

template <class F>
inline void par_for(int threads, uint64_t count, F&& fn) {
  if (threads <= 1 || count <= 1) {
    for (uint64_t i = 0; i < count; ++i) fn(i);
    return;
  }
  parallel_for(threads, count, std::function<void(uint64_t)>(fn));
}

struct Geom {
  uint64_t n;
  uint32_t b, s, E;
  uint64_t C;
  bool sparse;
  bool linf;
};

Geom geom_of(const Params& p, uint64_t n) {
  Geom g;
  g.n = n;
  g.b = p.bucket;
  g.s = p.levels;
  g.E = p.bucket * std::max<uint32_t>(1u, 2048u / p.bucket);
  g.C = n ? (n + g.E - 1) / g.E : 0;
  g.sparse = p.coding == CODING_SPARSE;
  g.linf = p.norm == NORM_LINF;
  return g;
}

// Upper bound (bits) of the bit stream of one bucket of m elements.
//  gamma:  each element writes Elias-gamma(zeta+1) (2*floor(log2(zeta+1))+1 <= 2*L1+1 bits, L1 = floor(log2(s+1)))
//          plus at most one sign bit: m * (2*L1 + 2).
//  sparse: Elias-gamma(nnz+1) <= 2*floor(log2(m+1))+1 bits; then per non-zero element j, with r_j zeros before it:
//          Elias-gamma(r_j+1) <= 2*r_j + 1 bits (floor(log2(r+1)) <= r), Elias-gamma(zeta) <= 2*Ls+1 bits
//          (Ls = floor(log2 s)), 1 sign bit. With R = sum r_j <= m - nnz the total is at most
//          2(m - nnz) + nnz*(3 + 2*Ls), increasing in nnz (slope 1 + 2*Ls > 0), so at most m*(3 + 2*Ls).
uint64_t bucket_max_bits(const Geom& g, uint64_t m) {
  if (!g.sparse) return m * uint64_t(2 * floor_log2_u64(uint64_t(g.s) + 1) + 2);
  return uint64_t(2 * floor_log2_u64(m + 1) + 1) + m * uint64_t(3 + 2 * floor_log2_u64(g.s));
}

// Upper bound (bytes) of chunk c: its scales plus its bit stream rounded up to a byte.
uint64_t chunk_max_bytes(const Geom& g, uint64_t c) {
  const uint64_t lo = c * g.E, hi = std::min(g.n, lo + g.E);
  uint64_t bits = 0, nb = 0;
  for (uint64_t i = lo; i < hi; i += g.b, ++nb) bits += bucket_max_bits(g, std::min<uint64_t>(g.b, hi - i));
  return 4 * nb + (bits + 7) / 8;
}

// ---------------------------------------------------------------- encoder

// Norm of one bucket; throws NONFINITE.
inline float bucket_norm(const Geom& g, const float* v, uint64_t m) {
  uint32_t amax = 0;
  for (uint64_t i = 0; i < m; ++i) {
    const uint32_t a = ref::f2u(v[i]) & 0x7FFFFFFFu;
    amax = a > amax ? a : amax;
  }
  if (amax >= 0x7F800000u) throw Error(ErrCode::NONFINITE, "input contains NaN or Inf");
  if (g.linf) return ref::u2f(amax);
  const float N = ref::l2_norm(v, m);
  if (!(N < INFINITY)) throw Error(ErrCode::NONFINITE, "bucket l2 norm overflows float32");
  return N;
}

// Code table for (zeta, sign) when s is small: code bits and length.
struct CodeTab {
  std::vector<uint64_t> code;  // index 2*zeta + sign
  std::vector<uint8_t> len;
};

void build_gamma_tab(uint32_t s, CodeTab& t) {
  t.code.assign(2 * (size_t(s) + 1), 0);
  t.len.assign(2 * (size_t(s) + 1), 0);
  for (uint32_t z = 0; z <= s; ++z)
    for (uint32_t sg = 0; sg < 2; ++sg) {
      const uint64_t x = uint64_t(z) + 1;
      const int N = floor_log2_u64(x);
      uint64_t c = gamma_code(x, N);
      unsigned l = unsigned(2 * N + 1);
      if (z > 0) { c |= uint64_t(sg) << l; ++l; }
      t.code[2 * z + sg] = c;
      t.len[2 * z + sg] = uint8_t(l);
    }
}

uint64_t encode_chunk(const Geom& g, uint64_t seed, const float* x, uint64_t c, uint8_t* dst, uint64_t cap,
                      const CodeTab* tab) {
  const uint64_t lo = c * g.E, hi = std::min(g.n, lo + g.E);
  const uint64_t nb = (hi - lo + g.b - 1) / g.b;
  BitWriter bw(dst + 4 * nb, dst + cap);
  uint16_t u16[8];
  uint64_t ublk = ~uint64_t(0);
  std::vector<uint32_t> zeta;  // per bucket, sparse only
  for (uint64_t bi = 0; bi < nb; ++bi) {
    const uint64_t b0 = lo + bi * g.b, m = std::min<uint64_t>(g.b, hi - b0);
    const float* v = x + b0;
    const float N = bucket_norm(g, v, m);
    store_u32le(dst + 4 * bi, ref::f2u(N));
    float r65536, s65536, pre;
    ref::qsgd_bucket_consts(N, g.s, &r65536, &s65536, &pre);
    if (g.sparse) {
      uint32_t nnz = 0;
      zeta.resize(m);
      for (uint64_t i = 0; i < m; ++i) {
        const uint64_t gi = b0 + i;
        if ((gi >> 3) != ublk) {
          ublk = gi >> 3;
          const Philox4 w = philox_block(seed, ublk, 0);
          for (int q = 0; q < 8; ++q) u16[q] = uint16_t(w.v[q >> 1] >> (16 * (q & 1)));
        }
        const uint32_t z = ref::qsgd_zeta(v[i] * pre, r65536, s65536, u16[gi & 7]);
        zeta[i] = z;
        nnz += z != 0;
      }
      bw.put_gamma(uint64_t(nnz) + 1);
      uint64_t run = 0;
      for (uint64_t i = 0; i < m; ++i) {
        const uint32_t z = zeta[i];
        if (!z) { ++run; continue; }
        bw.put_gamma(run + 1);
        run = 0;
        bw.put_gamma(z);
        bw.put(v[i] < 0.f ? 1 : 0, 1);
      }
    } else {
      for (uint64_t i = 0; i < m; ++i) {
        const uint64_t gi = b0 + i;
        if ((gi >> 3) != ublk) {
          ublk = gi >> 3;
          const Philox4 w = philox_block(seed, ublk, 0);
          for (int q = 0; q < 8; ++q) u16[q] = uint16_t(w.v[q >> 1] >> (16 * (q & 1)));
        }
        const uint32_t z = ref::qsgd_zeta(v[i] * pre, r65536, s65536, u16[gi & 7]);
        const uint32_t sg = (z != 0) & (v[i] < 0.f);
        if (tab) {
          bw.put(tab->code[2 * z + sg], tab->len[2 * z + sg]);
        } else {
          bw.put_gamma(uint64_t(z) + 1);
          if (z) bw.put(sg, 1);
        }
      }
    }
  }
  return 4 * nb + bw.bytes();
}

// ---------------------------------------------------------------- decoder

struct ChunkView {
  const uint8_t* p;
  uint64_t len;
};

template <bool STORE, bool ADD>
void decode_chunk(const Geom& g, ChunkView ck, uint64_t c, float* out, float alpha) {
  const uint64_t lo = c * g.E, hi = std::min(g.n, lo + g.E);
  const uint64_t nb = (hi - lo + g.b - 1) / g.b;
  if (ck.len < 4 * nb) corrupt("chunk shorter than its scales");
  BitReader br(ck.p + 4 * nb, ck.len - 4 * nb);
  const int maxN_z1 = floor_log2_u64(uint64_t(g.s) + 1);  // gamma: zeta + 1 <= s + 1
  const int maxN_z = floor_log2_u64(uint64_t(g.s));       // sparse: zeta <= s
  const float fs = float(g.s);
  for (uint64_t bi = 0; bi < nb; ++bi) {
    const uint64_t b0 = lo + bi * g.b, m = std::min<uint64_t>(g.b, hi - b0);
    const uint32_t nbits = load_u32le(ck.p + 4 * bi);
    if (nbits >= 0x7F800000u) corrupt("negative or non-finite bucket scale");
    const float w = ref::u2f(nbits) / fs;
    float* o = STORE ? out + b0 : nullptr;
    if (g.sparse) {
      const uint64_t nnz = br.get_gamma(floor_log2_u64(m + 1)) - 1;
      if (nnz > m) corrupt("non-zero count larger than the bucket");
      uint64_t i = 0;
      for (uint64_t j = 0; j < nnz; ++j) {
        const uint64_t r = br.get_gamma(floor_log2_u64(m)) - 1;
        if (r >= m - i) corrupt("zero run past the bucket end");
        if (STORE) {
          for (uint64_t q = 0; q < r; ++q) {
            if (ADD) o[i + q] = o[i + q] + alpha * 0.f;
            else o[i + q] = 0.f;
          }
        }
        i += r;
        const uint64_t z = br.get_gamma(maxN_z);
        if (z > g.s) corrupt("level above s");
        const uint32_t sg = br.get_bit();
        if (STORE) {
          const float val = ref::qsgd_value(w, uint32_t(z), sg);
          if (ADD) o[i] = o[i] + alpha * val;
          else o[i] = val;
        }
        ++i;
      }
      if (STORE) {
        for (; i < m; ++i) {
          if (ADD) o[i] = o[i] + alpha * 0.f;
          else o[i] = 0.f;
        }
      }
    } else {
      for (uint64_t i = 0; i < m; ++i) {
        const uint64_t z = br.get_gamma(maxN_z1) - 1;
        if (z > g.s) corrupt("level above s");
        const uint32_t sg = z ? br.get_bit() : 0u;
        if (STORE) {
          const float val = ref::qsgd_value(w, uint32_t(z), sg);
          if (ADD) o[i] = o[i] + alpha * val;
          else o[i] = val;
        }
      }
    }
  }
  br.finish();
}

std::vector<uint64_t> chunk_offsets(const Header& h) {
  std::vector<uint64_t> off(size_t(h.chunk_count) + 1);
  off[0] = 0;
  for (uint64_t c = 0; c < h.chunk_count; ++c) off[c + 1] = off[c] + load_u32le(h.chunk_table + 4 * c);
  if (off[h.chunk_count] != h.payload_bytes) corrupt("chunk lengths do not sum to the payload size");
  return off;
}

Geom geom_checked(const Header& h) {
  Geom g = geom_of(h.p, h.n);
  if (g.C != h.chunk_count || (g.C && g.E != h.chunk_elems)) corrupt("chunk layout does not match n and bucket size");
  return g;
}

}  // namespace

uint64_t qsgd_var_max_payload(const Params& p, uint64_t n) {
  const Geom g = geom_of(p, n);
  if (!g.C) return 0;
  return (g.C - 1) * chunk_max_bytes(g, 0) + chunk_max_bytes(g, g.C - 1);
}

uint64_t qsgd_var_encode(EncodeArgs& a) {
  const Geom g = geom_of(*a.p, a.n);
  if (!g.C) return 0;
  const uint64_t slot = chunk_max_bytes(g, 0);
  if (slot > 0xFFFFFFFFull)
    throw Error(ErrCode::INVALID_ARG, "bucketSize too large for the gamma/sparse coding (a chunk must fit in 4 GiB)");
  const uint64_t need = (g.C - 1) * slot + chunk_max_bytes(g, g.C - 1);
  if (a.cap < need) throw Error(ErrCode::INTERNAL, "qsgd_var_encode: payload region too small");
  CodeTab tab;
  const bool use_tab = !g.sparse && g.s <= 4096;
  if (use_tab) build_gamma_tab(g.s, tab);
  std::vector<uint64_t> lens(g.C);
  par_for(a.threads, g.C, [&](uint64_t c) {
    const uint64_t cap = c + 1 < g.C ? slot : a.cap - c * slot;
    lens[c] = encode_chunk(g, a.seed, a.x, c, a.payload + c * slot, cap, use_tab ? &tab : nullptr);
  });
  uint64_t off = 0;
  for (uint64_t c = 0; c < g.C; ++c) {
    if (off != c * slot) std::memmove(a.payload + off, a.payload + c * slot, lens[c]);
    a.chunk_lens[c] = uint32_t(lens[c]);
    off += lens[c];
  }
  return off;
}

void qsgd_var_validate(const Header& h, int threads) {
  const Geom g = geom_checked(h);
  if (!g.C) return;
  const std::vector<uint64_t> off = chunk_offsets(h);
  par_for(threads, g.C, [&](uint64_t c) {
    decode_chunk<false, false>(g, ChunkView{h.payload + off[c], off[c + 1] - off[c]}, c, nullptr, 0.f);
  });
}

void qsgd_var_decode(const DecodeArgs& a) {
  const Header& h = *a.h;
  const Geom g = geom_checked(h);
  if (!g.C) return;
  const std::vector<uint64_t> off = chunk_offsets(h);
  par_for(a.threads, g.C, [&](uint64_t c) {
    const ChunkView ck{h.payload + off[c], off[c + 1] - off[c]};
    if (a.add) decode_chunk<true, true>(g, ck, c, a.out, a.alpha);
    else decode_chunk<true, false>(g, ck, c, a.out, 0.f);
  });
}

}  // namespace gz
