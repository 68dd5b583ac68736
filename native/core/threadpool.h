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
}  // namespace gz
