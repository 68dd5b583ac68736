// libFuzzer target: gz::decode and gz::decode(add = true) on arbitrary bytes (docs/FORMAT.md section 5).
// Every input must either decode or throw gz::Error with code CORRUPT; decode-add must leave the accumulator
// untouched when it throws. Anything else (another error code, another exception type, a sanitizer report,
// a hang) is a finding. Each input is tried twice: as given, and with its last four bytes replaced by the
// correct CRC32C, so that mutations reach the checks behind the CRC.
// Built with -DGZ_FUZZ_GEN instead, this file is the seed-corpus generator (see build.sh).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/crc32c.h"
#include "core/gradzip.h"

namespace {

constexpr uint64_t kMaxFuzzN = uint64_t(1) << 20;  // larger n: only parse (the output would be too big)

void try_one(const uint8_t* data, size_t size) {
  uint64_t n = 0;
  try {
    n = gz::parse(data, size).n;
  } catch (const gz::Error& e) {
    if (e.code != gz::ErrCode::CORRUPT) std::abort();
    return;
  }
  if (n > kMaxFuzzN) return;
  std::vector<float> out(size_t(n) + 1, 0.f);
  bool ok = true;
  try {
    gz::decode(data, size, out.data(), n, false, 1.f, 1);
  } catch (const gz::Error& e) {
    if (e.code != gz::ErrCode::CORRUPT) std::abort();
    ok = false;
  }
  {  // differential: the scalar path accepts exactly the same packets and decodes the same bits
    std::vector<float> ref(size_t(n) + 1, 0.f);
    bool ok2 = true;
    try {
      gz::decode(data, size, ref.data(), n, false, 1.f, 2, true);
    } catch (const gz::Error& e) {
      if (e.code != gz::ErrCode::CORRUPT) std::abort();
      ok2 = false;
    }
    if (ok != ok2) std::abort();
    if (ok && n && std::memcmp(out.data(), ref.data(), size_t(n) * 4) != 0) std::abort();
  }
  std::vector<float> acc(size_t(n) + 1, 0.5f);
  try {
    gz::decode(data, size, acc.data(), n, true, 0.25f, 2);
  } catch (const gz::Error& e) {
    if (e.code != gz::ErrCode::CORRUPT) std::abort();
    for (float v : acc)
      if (v != 0.5f) std::abort();  // decompressAdd changed acc on a corrupt packet
  }
}

}  // namespace

#ifndef GZ_FUZZ_GEN
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try_one(data, size);
  if (size >= 52) {
    std::vector<uint8_t> fixed(data, data + size);
    const uint32_t crc = gz::crc32c(fixed.data(), size - 4);
    std::memcpy(fixed.data() + size - 4, &crc, 4);  // little-endian host
    try_one(fixed.data(), size);
  }
  return 0;
}
#else
// Seed corpus: one small packet of every codec / coding / value type, written to argv[1]/seed_*.
int main(int argc, char** argv) {
  if (argc < 2) { std::fprintf(stderr, "usage: %s DIR\n", argv[0]); return 2; }
  const std::string dir = argv[1];
  int count = 0;
  auto emit = [&](gz::Params p, uint64_t n) {
    std::vector<float> x((size_t)n);
    uint64_t st = 0x9E3779B97F4A7C15ull * (count + 1);
    for (auto& v : x) {  // deterministic pseudo-random values with zeros and negatives
      st ^= st << 13; st ^= st >> 7; st ^= st << 17;
      v = (st % 5 == 0) ? 0.f : float(int64_t(st % 2001) - 1000) / 250.f;
    }
    p.seed_given = true;
    p.seed = 12345 + count;
    p.threads = 1;
    std::vector<uint8_t> out((size_t)gz::max_bytes(p, n));
    const uint64_t len = gz::encode(p, x.data(), n, out.data(), out.size());
    const std::string path = dir + "/seed_" + std::to_string(count++);
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) { std::perror(path.c_str()); std::exit(1); }
    std::fwrite(out.data(), 1, size_t(len), f);
    std::fclose(f);
  };
  for (uint64_t n : {0ull, 1ull, 9ull, 100ull, 700ull}) {
    for (uint8_t coding = 0; coding < 3; ++coding)
      for (uint32_t s : {1u, 2u, 4u, 8u, 127u, 300u}) {  // code widths 2, 3, 4, 5, 8 and 10
        gz::Params p; p.codec = gz::QSGD; p.levels = s; p.coding = gz::Coding(coding);
        p.bucket = n > 200 ? 128 : 7; p.norm = s == 300 ? gz::NORM_LINF : gz::NORM_L2;
        emit(p, n);
      }
    for (uint8_t vt = 0; vt < 3; ++vt) { gz::Params p; p.codec = gz::TOPK; p.ratio = 0.1; p.vt = gz::ValueType(vt); emit(p, n); }
    { gz::Params p; p.codec = gz::RANDOMK; p.ratio = 0.1; emit(p, n); }
    { gz::Params p; p.codec = gz::TERNGRAD; p.bucket = 16; emit(p, n); }
    { gz::Params p; p.codec = gz::ONEBIT; p.bucket = 16; emit(p, n); }
    { gz::Params p; p.codec = gz::NONUNIFORM; p.levels = 4; p.bucket = 16; emit(p, n); }
  }
  std::printf("wrote %d seed packets to %s\n", count, dir.c_str());
  return 0;
}
#endif
