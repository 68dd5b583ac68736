#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace gz {
namespace {

struct Job {
  const std::function<void(uint64_t)>* fn = nullptr;
  uint64_t n = 0;
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> done{0};
  std::atomic<bool> failed{false};
  int slots = 0;  // helpers still allowed to join (guarded by Pool::m)
  std::mutex m;
  std::condition_variable cv;
  std::exception_ptr err;

  // Runs tasks until none are left. Returns after the last task it ran.
  void work() {
    for (;;) {
      uint64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= n) return;
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          (*fn)(t);
        } catch (...) {
          std::lock_guard<std::mutex> g(m);
          if (!err) err = std::current_exception();
          failed.store(true);
        }
      }
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
        std::lock_guard<std::mutex> g(m);
        cv.notify_all();
      }
    }
  }
};

class Pool {
 public:
  static Pool& get() {
    static Pool* p = new Pool();  // leaked on purpose: workers may outlive static destruction
    return *p;
  }
  void ensure(int workers) {
    std::lock_guard<std::mutex> g(m_);
    while (int(threads_.size()) < workers) {
      threads_.emplace_back([this] { loop(); });
      threads_.back().detach();
    }
  }
  void post(const std::shared_ptr<Job>& j) {
    const bool one = j->slots == 1;
    {
      std::lock_guard<std::mutex> g(m_);
      jobs_.push_back(j);
    }
    if (one) cv_.notify_one(); else cv_.notify_all();
  }
  void retire(const std::shared_ptr<Job>& j) {
    std::lock_guard<std::mutex> g(m_);
    auto it = std::find(jobs_.begin(), jobs_.end(), j);
    if (it != jobs_.end()) jobs_.erase(it);
  }
  int size() {
    std::lock_guard<std::mutex> g(m_);
    return int(threads_.size());
  }

 private:
  void loop() {
    for (;;) {
      std::shared_ptr<Job> j;
      {
        std::unique_lock<std::mutex> g(m_);
        cv_.wait(g, [this] { return !jobs_.empty(); });
        j = jobs_.front();
        if (--j->slots <= 0 || j->next.load() >= j->n) jobs_.pop_front();
      }
      j->work();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> jobs_;
  std::vector<std::thread> threads_;
};

constexpr int kMaxThreads = 256;

}  // namespace

void parallel_for(int threads, uint64_t ntasks, const std::function<void(uint64_t)>& fn) {
  if (ntasks == 0) return;
  if (threads > kMaxThreads) threads = kMaxThreads;
  if (threads <= 1 || ntasks == 1) {
    for (uint64_t t = 0; t < ntasks; ++t) fn(t);
    return;
  }
  const int helpers = int(std::min<uint64_t>(uint64_t(threads), ntasks)) - 1;
  Pool& pool = Pool::get();
  pool.ensure(helpers);
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = ntasks;
  job->slots = helpers;
  pool.post(job);
  job->work();
  {
    std::unique_lock<std::mutex> g(job->m);
    job->cv.wait(g, [&] { return job->done.load() == job->n; });
  }
  pool.retire(job);
  if (job->err) std::rethrow_exception(job->err);
}

int pool_size() { return Pool::get().size(); }

}  // namespace gz
