// Runtime CPU features (cpuid + xgetbv) and the default thread count.
#include <atomic>
#include <cpuid.h>
#include <thread>

#include "gradzip.h"

namespace gz {
namespace {

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

CpuInfo detect() {
  CpuInfo c{false, false, false, false, false, 1};
  unsigned a, b, cx, d;
  if (__get_cpuid(1, &a, &b, &cx, &d)) {
    c.sse42 = (cx >> 20) & 1;
    c.pclmul = (cx >> 1) & 1;
    const bool osxsave = (cx >> 27) & 1, avx = (cx >> 28) & 1;
    const bool ymm_os = osxsave && (xgetbv0() & 6) == 6;  // XMM and YMM state enabled by the OS
    c.fma = ymm_os && avx && ((cx >> 12) & 1);
    c.f16c = ymm_os && avx && ((cx >> 29) & 1);
    if (__get_cpuid_max(0, nullptr) >= 7) {
      __cpuid_count(7, 0, a, b, cx, d);
      c.avx2 = ymm_os && avx && ((b >> 5) & 1);
      c.bmi2 = (b >> 8) & 1;
    }
  }
  unsigned hc = std::thread::hardware_concurrency();
  c.threads = hc ? int(hc) : 1;
  return c;
}

std::atomic<int> g_default_threads{0};

}  // namespace

CpuInfo cpu_info() {
  static const CpuInfo base = detect();
  CpuInfo c = base;
  c.threads = default_threads();
  return c;
}

void set_default_threads(int t) {
  if (t < 0) throw Error(ErrCode::INVALID_ARG, "threads must be >= 0");
  g_default_threads.store(t > 256 ? 256 : t);
}

int default_threads() {
  int t = g_default_threads.load();
  if (t > 0) return t;
  // hardware_concurrency() reads /sys on Linux (three syscalls, ~15 us): ask once, not on every encode.
  static const int hw = [] { unsigned hc = std::thread::hardware_concurrency(); return hc ? int(hc > 256 ? 256 : hc) : 1; }();
  return hw;
}

}  // namespace gz
