// The codec configurations the C++ perf drivers time (perf.cc, ab_api.cc): the ones of the benny suites at their
// defaults (s = 4, bucket 512, top-k/random-k 1 %, nonuniform 8 levels), plus qsgd s = 2, 8, 63, 255 and 1000 (3-,
// 5-, 7-, 9- and 11-bit codes), the gamma/sparse codings at s = 8 and 127 (and both at 255) and
// nonuniform L = 16 and 64, seeded so every run makes the same bytes.
#pragma once
#include <vector>
#include "core/gradzip.h"

namespace gzperf {

struct Cfg {
  const char* name;
  gz::Params p;
};

inline std::vector<Cfg> configs(int threads) {
  std::vector<Cfg> cfgs;
  auto add = [&](const char* name, gz::Params p) {
    p.threads = threads;
    p.seed = 1;
    p.seed_given = true;
    cfgs.push_back({name, p});
  };
  gz::Params p;
  p.codec = gz::QSGD; p.levels = 4; p.bucket = 512; add("qsgd-fixed", p);
  p.coding = gz::CODING_GAMMA; add("qsgd-gamma", p);
  p.coding = gz::CODING_SPARSE; add("qsgd-sparse", p);
  p = gz::Params(); p.codec = gz::QSGD; p.levels = 2; p.bucket = 512; add("qsgd-s2", p);  // 3-bit codes
  p.levels = 8; add("qsgd-s8", p);  // 5-bit codes
  p.levels = 63; add("qsgd-s63", p);  // 7-bit codes
  p.levels = 255; add("qsgd-s255", p);  // 9-bit codes
  p.levels = 1000; add("qsgd-s1000", p);  // 11-bit codes
  p.levels = 8; p.coding = gz::CODING_GAMMA; add("qsgd-gamma-s8", p);  // gamma/sparse past the 16-entry tables
  p.coding = gz::CODING_SPARSE; add("qsgd-sparse-s8", p);
  p.levels = 127; p.coding = gz::CODING_GAMMA; add("qsgd-gamma-s127", p);
  p.coding = gz::CODING_SPARSE; add("qsgd-sparse-s127", p);
  p.levels = 255; p.coding = gz::CODING_GAMMA; add("qsgd-gamma-s255", p);  // the wide gamma path (s >= 128)
  p.coding = gz::CODING_SPARSE; add("qsgd-sparse-s255", p);  // the general sparse encoder
  p = gz::Params(); p.codec = gz::TERNGRAD; add("terngrad", p);
  p = gz::Params(); p.codec = gz::ONEBIT; add("onebit", p);
  p = gz::Params(); p.codec = gz::TOPK; p.ratio = 0.01; add("topk-1%", p);
  p = gz::Params(); p.codec = gz::RANDOMK; p.ratio = 0.01; add("randomk-1%", p);
  p = gz::Params(); p.codec = gz::NONUNIFORM; p.levels = 8; add("nonuniform", p);
  p.levels = 16; add("nonuniform-16", p);  // 6-bit codes (the four-table decoder)
  p.levels = 64; add("nonuniform-64", p);  // 8-bit codes (the gather decoder)
  return cfgs;
}

}  // namespace gzperf
