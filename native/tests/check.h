// Tiny test helper for the native C++ tests (one binary per tests/*.cc; run by native/tests/run.sh).
//   TEST(name) { CHECK(cond); CHECK_EQ(a, b); CHECK_THROWS_CODE(expr, gz::ErrCode::CORRUPT); }
// A failed check prints file:line and the expression, marks the test failed and returns from it.
// main() (defined here unless GZ_CHECK_NO_MAIN) runs every test, or those whose name contains argv[1].
#pragma once
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/gradzip.h"

namespace gzt {

struct TestCase { const char* name; void (*fn)(); };
inline std::vector<TestCase>& registry() { static std::vector<TestCase> r; return r; }
inline bool& failed_flag() { static bool f = false; return f; }
struct Registrar { Registrar(const char* n, void (*f)()) { registry().push_back({n, f}); } };

template <class T> std::string show(const T& v) { std::ostringstream o; o << v; return o.str(); }
inline std::string show(uint8_t v) { return std::to_string(int(v)); }

inline void fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, what.c_str());
  failed_flag() = true;
}

}  // namespace gzt

#define TEST(name)                                                  \
  static void name();                                               \
  static ::gzt::Registrar gzt_reg_##name(#name, name);              \
  static void name()

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) { ::gzt::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); return; } \
  } while (0)

#define CHECK_MSG(cond, msg)                                                                  \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::ostringstream gzt_o; gzt_o << "CHECK(" #cond ") " << msg;                          \
      ::gzt::fail(__FILE__, __LINE__, gzt_o.str()); return;                                   \
    }                                                                                         \
  } while (0)

#define CHECK_EQ(a, b)                                                                                  \
  do {                                                                                                  \
    const auto gzt_a = (a); const auto gzt_b = (b);                                                     \
    if (!(gzt_a == gzt_b)) {                                                                            \
      ::gzt::fail(__FILE__, __LINE__, "CHECK_EQ(" #a ", " #b "): " + ::gzt::show(gzt_a) + " != " + ::gzt::show(gzt_b)); \
      return;                                                                                           \
    }                                                                                                   \
  } while (0)

// expr must throw gz::Error with the given code.
#define CHECK_THROWS_CODE(expr, ecode)                                                                 \
  do {                                                                                                 \
    bool gzt_ok = false; std::string gzt_got = "no exception";                                         \
    try { (void)(expr); } catch (const ::gz::Error& e) {                                               \
      gzt_ok = e.code == (ecode); gzt_got = std::string(::gz::err_code_name(e.code)) + ": " + e.what(); \
    } catch (const std::exception& e) { gzt_got = std::string("std::exception: ") + e.what(); }        \
    if (!gzt_ok) { ::gzt::fail(__FILE__, __LINE__, "CHECK_THROWS_CODE(" #expr ", " #ecode "): got " + gzt_got); return; } \
  } while (0)

#ifndef GZ_CHECK_NO_MAIN
int main(int argc, char** argv) {
  int nfail = 0, nrun = 0;
  for (const auto& t : ::gzt::registry()) {
    if (argc > 1 && !std::strstr(t.name, argv[1])) continue;
    ::gzt::failed_flag() = false;
    ++nrun;
    try {
      t.fn();
    } catch (const ::gz::Error& e) {
      std::fprintf(stderr, "  FAIL uncaught gz::Error %s: %s\n", ::gz::err_code_name(e.code), e.what());
      ::gzt::failed_flag() = true;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  FAIL uncaught exception: %s\n", e.what());
      ::gzt::failed_flag() = true;
    }
    std::fprintf(stderr, "%s %s\n", ::gzt::failed_flag() ? "FAIL" : "ok  ", t.name);
    if (::gzt::failed_flag()) ++nfail;
  }
  std::fprintf(stderr, "%d/%d tests passed\n", nrun - nfail, nrun);
  return nfail ? 1 : 0;
}
#endif
