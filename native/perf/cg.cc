// One call of one operation of one codec configuration, for callgrind (run by callgrind.sh): instruction counts
// are exact and repeatable on a shared host, where wall times are not.
// Usage: cg CONFIG OP N   (OP: encode | decode | add | none: only the first calls, the baseline)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "configs.h"

int main(int argc, char** argv) {
  if (argc < 4) { std::fprintf(stderr, "usage: cg CONFIG encode|decode|add N\n"); return 2; }
  const std::string name = argv[1], op = argv[2];
  const uint64_t n = std::strtoull(argv[3], nullptr, 10);
  for (const auto& c : gzperf::configs(1)) {
    if (name != c.name) continue;
    std::vector<float> x(n), out(n, 0.f);
    std::mt19937_64 rng(12345);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (auto& v : x) v = nd(rng);
    std::vector<uint8_t> pkt(gz::max_bytes(c.p, n));
    // the first call builds the codec's tables (once per process); the measured call is the second
    uint64_t len = gz::encode(c.p, x.data(), n, pkt.data(), pkt.size());
    gz::decode(pkt.data(), len, out.data(), n, false, 1.f, 1);
    if (op == "encode") len = gz::encode(c.p, x.data(), n, pkt.data(), pkt.size());
    else if (op == "decode") gz::decode(pkt.data(), len, out.data(), n, false, 1.f, 1);
    else if (op == "add") gz::decode(pkt.data(), len, out.data(), n, true, 1e-3f, 1);
    else if (op != "none") { std::fprintf(stderr, "unknown op %s\n", op.c_str()); return 2; }
    std::printf("%s %s n=%llu packet %llu bytes\n", name.c_str(), op.c_str(), (unsigned long long)n,
                (unsigned long long)len);
    return 0;
  }
  std::fprintf(stderr, "unknown config %s\n", name.c_str());
  return 2;
}
