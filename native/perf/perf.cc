// C++ timing driver: every codec's encode, decode and decode-add on n Gaussian floats against memcpy of the same
// data, timed in the same process (best of R). Not a test: speed figures for docs/PERFORMANCE.md; the benny suites
// in bench/ are the published numbers. Build and run: bash native/perf/run.sh [n] [reps] [threads] [filter]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>
#include "core/gradzip.h"
#include "configs.h"

using clk = std::chrono::steady_clock;
static double best_of(int reps, const std::function<void()>& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = clk::now();
    f();
    best = std::min(best, std::chrono::duration<double>(clk::now() - t0).count());
  }
  return best;
}

int main(int argc, char** argv) {
  const uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : (uint64_t(1) << 24);
  const int reps = argc > 2 ? std::atoi(argv[2]) : 7;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 1;
  const std::string filter = argc > 4 ? argv[4] : "";
  std::vector<float> x(n), dst(n);
  // Output and accumulator: GZ_PERF_OFF=k puts them k floats past a 64-byte boundary (default 4: 16 mod 32, as a
  // large JS Float32Array usually is).
  const uint64_t off = std::getenv("GZ_PERF_OFF") ? std::strtoull(std::getenv("GZ_PERF_OFF"), nullptr, 10) % 16 : 4;
  std::vector<float> outb(n + 32), accb(n + 32, 0.f);
  auto at = [&](std::vector<float>& v) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(v.data());
    return reinterpret_cast<float*>(((a + 63) & ~uintptr_t(63)) + 4 * off);
  };
  float* const out = at(outb);
  float* const acc = at(accb);
  std::mt19937_64 rng(12345);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : x) v = nd(rng);
  const std::vector<gzperf::Cfg> cfgs = gzperf::configs(threads);
  const double bytes = 4.0 * double(n);
  auto gbs = [&](double s) { return bytes / s / 1e9; };
  const double m0 = best_of(reps, [&] { std::memcpy(dst.data(), x.data(), 4 * n); });
  std::printf("n = %llu (%.0f MiB), threads %d, best of %d\nmemcpy %.2f GB/s\n", (unsigned long long)n,
              bytes / 1048576, threads, reps, gbs(m0));
  std::printf("%-12s %10s %7s %10s %7s %10s %7s %8s\n", "codec", "enc GB/s", "x mem", "dec GB/s", "x mem",
              "add GB/s", "x mem", "bits/el");
  double msum = m0;
  for (const auto& c : cfgs) {
    if (!filter.empty() && std::string(c.name).find(filter) == std::string::npos) continue;
    std::vector<uint8_t> pkt(gz::max_bytes(c.p, n));
    uint64_t len = 0;
    const double te = best_of(reps, [&] { len = gz::encode(c.p, x.data(), n, pkt.data(), pkt.size()); });
    const double td = best_of(reps, [&] { gz::decode(pkt.data(), len, out, n, false, 1.f, threads); });
    const double ta = best_of(reps, [&] { gz::decode(pkt.data(), len, acc, n, true, 1e-3f, threads); });
    const double m = best_of(reps, [&] { std::memcpy(dst.data(), x.data(), 4 * n); });
    const double mm = std::min(m, m0);
    std::printf("%-12s %10.2f %7.2f %10.2f %7.2f %10.2f %7.2f %8.3f\n", c.name, gbs(te), gbs(te) / gbs(mm),
                gbs(td), gbs(td) / gbs(mm), gbs(ta), gbs(ta) / gbs(mm), 8.0 * double(len) / double(n));
    msum = mm;
  }
  (void)msum;
  return 0;
}
