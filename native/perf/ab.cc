// Paired A/B timing of two builds of the native core in one process (see ab.sh). For each codec configuration:
// the packets of A and B and their decodes are compared byte for byte, then `rounds` rounds each time one call of
// A and one of B per operation (encode, decode, decode-add), the order swapped every round, and a memcpy of the
// same bytes. Prints medians and minima in ms, B/A of the medians, and the ratio to memcpy. On this shared 2-vCPU
// host a speed difference is believed when B/A holds across two runs with the libraries swapped.
#include <dlfcn.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {
using clk = std::chrono::steady_clock;
struct Lib {
  void* h = nullptr;
  int (*count)() = nullptr;
  const char* (*name)(int) = nullptr;
  const char* (*error)() = nullptr;
  uint64_t (*max_bytes)(int, uint64_t) = nullptr;
  uint64_t (*encode)(int, int, const float*, uint64_t, uint8_t*, uint64_t) = nullptr;
  int (*decode)(const uint8_t*, uint64_t, float*, uint64_t, int, int) = nullptr;
};
template <class T>
void sym(void* h, const char* s, T& f) {
  f = reinterpret_cast<T>(dlsym(h, s));
  if (!f) { std::fprintf(stderr, "missing symbol %s\n", s); std::exit(2); }
}
Lib load(const char* path) {
  Lib l;
  l.h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!l.h) { std::fprintf(stderr, "dlopen %s: %s\n", path, dlerror()); std::exit(2); }
  sym(l.h, "gzab_cfg_count", l.count);
  sym(l.h, "gzab_cfg_name", l.name);
  sym(l.h, "gzab_error", l.error);
  sym(l.h, "gzab_max_bytes", l.max_bytes);
  sym(l.h, "gzab_encode", l.encode);
  sym(l.h, "gzab_decode", l.decode);
  return l;
}
template <class F>
double ms(F f) {
  const auto t0 = clk::now();
  f();
  return std::chrono::duration<double>(clk::now() - t0).count() * 1e3;
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double minimum(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
float* at64(std::vector<float>& v, uint64_t off) {  // off floats past a 64-byte boundary
  return reinterpret_cast<float*>(((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t(63)) + 4 * off);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: ab libA.so libB.so [n] [rounds] [threads] [filter]\n");
    return 2;
  }
  const Lib L[2] = {load(argv[1]), load(argv[2])};
  const uint64_t n = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : (uint64_t(1) << 24);
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 15;
  const int threads = argc > 5 ? std::atoi(argv[5]) : 1;
  const std::string filter = argc > 6 ? argv[6] : "";
  std::vector<float> x(n), dst(n), outb(n + 32), accb(n + 32, 0.f), refb(n + 32);
  float* const out = at64(outb, 4);  // 16 mod 32, as a large JS Float32Array usually is
  float* const acc = at64(accb, 4);
  float* const ref = at64(refb, 4);
  std::mt19937_64 rng(12345);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : x) v = nd(rng);
  std::printf("n = %llu (%.0f MiB), threads %d, %d rounds; A = %s, B = %s\n", (unsigned long long)n,
              4.0 * double(n) / 1048576, threads, rounds, argv[1], argv[2]);
  std::printf("%-12s %-8s %9s %9s %9s %9s %7s %7s %7s\n", "codec", "op", "A med", "A min", "B med", "B min", "B/A",
              "A x mem", "B x mem");
  int bad = 0;
  for (int c = 0; c < L[0].count(); ++c) {
    const std::string name = L[0].name(c);
    if (!filter.empty() && name.find(filter) == std::string::npos) continue;
    if (c >= L[1].count() || name != L[1].name(c)) { std::printf("%s: not in B\n", name.c_str()); continue; }
    std::vector<uint8_t> pk[2];
    uint64_t len[2];
    for (int i = 0; i < 2; ++i) {
      pk[i].resize(L[i].max_bytes(c, n));
      len[i] = L[i].encode(c, threads, x.data(), n, pk[i].data(), pk[i].size());
      if (!len[i]) { std::printf("%s: %c encode failed: %s\n", name.c_str(), 'A' + i, L[i].error()); return 1; }
    }
    const bool same_pkt = len[0] == len[1] && std::memcmp(pk[0].data(), pk[1].data(), len[0]) == 0;
    if (!same_pkt) { std::printf("%s: PACKETS DIFFER (A %llu bytes, B %llu)\n", name.c_str(), (unsigned long long)len[0], (unsigned long long)len[1]); ++bad; }
    // both builds decode A's packet to the same floats
    if (!L[0].decode(pk[0].data(), len[0], ref, n, 0, threads) || !L[1].decode(pk[0].data(), len[0], out, n, 0, threads)) {
      std::printf("%s: decode failed: %s / %s\n", name.c_str(), L[0].error(), L[1].error());
      return 1;
    }
    if (std::memcmp(ref, out, 4 * n) != 0) { std::printf("%s: DECODES DIFFER\n", name.c_str()); ++bad; }
    std::vector<double> t[3][2], m;
    std::vector<uint8_t> scratch(std::max(pk[0].size(), pk[1].size()));
    for (int r = 0; r < rounds; ++r) {
      for (int j = 0; j < 2; ++j) {
        const int i = (r & 1) ? 1 - j : j;
        t[0][i].push_back(ms([&] { L[i].encode(c, threads, x.data(), n, scratch.data(), scratch.size()); }));
        t[1][i].push_back(ms([&] { L[i].decode(pk[i].data(), len[i], out, n, 0, threads); }));
        t[2][i].push_back(ms([&] { L[i].decode(pk[i].data(), len[i], acc, n, 1, threads); }));
      }
      m.push_back(ms([&] { std::memcpy(dst.data(), x.data(), 4 * n); }));
    }
    const double mm = median(m);
    const char* op[3] = {"encode", "decode", "add"};
    for (int o = 0; o < 3; ++o) {
      const double a = median(t[o][0]), b = median(t[o][1]);
      std::printf("%-12s %-8s %9.3f %9.3f %9.3f %9.3f %7.3f %7.2f %7.2f\n", name.c_str(), op[o], a, minimum(t[o][0]), b,
                  minimum(t[o][1]), b / a, mm / a, mm / b);
    }
    std::printf("%-12s memcpy   %9.3f %9.3f   (bits/element A %.3f, B %.3f)\n", name.c_str(), mm, minimum(m),
                8.0 * double(len[0]) / double(n), 8.0 * double(len[1]) / double(n));
  }
  return bad ? 1 : 0;
}
