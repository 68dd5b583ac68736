// Persistent thread pool (no thread creation per call). parallel_for(threads, ntasks, fn) runs fn(t) for every
// t in [0, ntasks) on up to `threads` threads (the caller included) and returns when all are done. Tasks must
// write disjoint outputs; results never depend on the thread count. The first exception thrown by a task is
// rethrown in the caller (remaining unstarted tasks are skipped). Safe to call concurrently from several threads
// and from inside a task (the caller always works on its own job, so nesting cannot deadlock).
#pragma once
#include <cstdint>
#include <functional>

namespace gz {
void parallel_for(int threads, uint64_t ntasks, const std::function<void(uint64_t)>& fn);
int pool_size();  // worker threads created so far (tests)

// fn(i) for i in [0, count): inline (no pool, no std::function) when one thread or one task suffices.
template <class F>
inline void par_for(int threads, uint64_t count, F&& fn) {
  if (threads <= 1 || count <= 1) {
    for (uint64_t i = 0; i < count; ++i) fn(i);
    return;
  }
  parallel_for(threads, count, std::function<void(uint64_t)>(fn));
}

// Task count for B buckets of an n-element tensor: about 32K elements per task, at most 4096 tasks per thread,
// never more than B. (The bytes never depend on it: tasks own whole buckets.)
inline uint64_t bucket_tasks(uint64_t B, uint64_t n, int threads) {
  if (threads <= 1 || B <= 1) return 1;
  uint64_t t = n / 32768 + 1;
  if (t > 4096 * uint64_t(threads)) t = 4096 * uint64_t(threads);
  return t < B ? t : B;
}
}  // namespace gz
