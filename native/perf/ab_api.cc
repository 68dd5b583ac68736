// The C entry points of one build of the native core for the A/B driver (ab.cc, run by ab.sh): each build is a
// shared object with hidden symbols (-fvisibility=hidden -Wl,-Bsymbolic), so two builds of the same gz:: code load
// side by side in one process. Errors come back as a message and a zero result, never as an exception across the
// C boundary.
#include <cstdio>
#include <cstring>
#include <string>
#include "configs.h"

#define GZAB_API extern "C" __attribute__((visibility("default")))

namespace {
thread_local std::string g_err;
template <class F>
bool guarded(F f) {
  try {
    f();
    return true;
  } catch (const std::exception& e) {
    g_err = e.what();
    return false;
  }
}
}  // namespace

GZAB_API int gzab_cfg_count() { return int(gzperf::configs(1).size()); }
GZAB_API const char* gzab_cfg_name(int i) {
  static const std::vector<gzperf::Cfg> c = gzperf::configs(1);
  return i >= 0 && size_t(i) < c.size() ? c[size_t(i)].name : "";
}
GZAB_API const char* gzab_error() { return g_err.c_str(); }

GZAB_API uint64_t gzab_max_bytes(int cfg, uint64_t n) {
  uint64_t r = 0;
  guarded([&] { r = gz::max_bytes(gzperf::configs(1).at(size_t(cfg)).p, n); });
  return r;
}

// Packet length, 0 on error (gzab_error).
GZAB_API uint64_t gzab_encode(int cfg, int threads, const float* x, uint64_t n, uint8_t* out, uint64_t cap) {
  uint64_t r = 0;
  guarded([&] { r = gz::encode(gzperf::configs(threads).at(size_t(cfg)).p, x, n, out, cap); });
  return r;
}

// 1 on success. add: out += 1e-3 * decoded.
GZAB_API int gzab_decode(const uint8_t* pkt, uint64_t len, float* out, uint64_t n, int add, int threads) {
  return guarded([&] { gz::decode(pkt, len, out, n, add != 0, add ? 1e-3f : 1.f, threads); }) ? 1 : 0;
}
