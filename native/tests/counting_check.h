// Counting checks for the self-contained C++ test programs (test_variable, test_nonuniform): a failed check is
// counted and printed (the first 60), and the test goes on, so one run reports every failure; main() prints
// g_checks / g_fail and returns non-zero when any failed. (check.h is the other style: TEST() cases that return
// at their first failure.)
#pragma once
#include <cstdio>

static int g_fail = 0, g_checks = 0;
#define CHECK_MSG(cond, ...)                                                          \
  do {                                                                                \
    ++g_checks;                                                                       \
    if (!(cond)) {                                                                    \
      ++g_fail;                                                                       \
      if (g_fail < 60) {                                                              \
        std::fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
        std::fprintf(stderr, __VA_ARGS__);                                            \
        std::fprintf(stderr, "\n");                                                   \
      }                                                                               \
    }                                                                                 \
  } while (0)
#define CHECK(cond) CHECK_MSG(cond, "%s", "")
