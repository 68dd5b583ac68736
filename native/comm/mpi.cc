// gradzip_mpi: the MPI transport of gradzip's collectives (a separate addon, built by scripts/build-mpi.sh
// only where an MPI implementation is installed).
//
// One communication thread owns MPI: it calls MPI_Init_thread (MPI_THREAD_MULTIPLE requested), runs every
// operation in the order JavaScript queued it, and calls MPI_Finalize (the standard wants Init and
// Finalize on the same thread). JavaScript never blocks: each call queues an operation and returns a
// Promise, settled on the main thread through a thread-safe function. Operations use the non-blocking
// MPI calls; with a deadline the thread polls MPI_Testall (spinning briefly, then sleeping in growing
// steps up to 200 us) and rejects with ERR_GRADZIP_TIMEOUT when the deadline passes. Errors are returned,
// not fatal (MPI_ERRORS_RETURN on the communicator). After a timeout or an MPI error the requests in
// flight cannot be cancelled (collectives) or reused: the transport is marked broken and every later
// operation rejects at once; buffers MPI may still touch are kept alive (leaked) on purpose.
#include <mpi.h>
#include <napi.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

enum class Kind { Init, Allreduce, Bcast, Barrier, Allgatherv, Exchange, Finalize };
enum Status { OK = 0, TIMEOUT = 1, PEER = 2, INVALID = 3, INTERNAL = 4 };

struct Op {
  explicit Op(Napi::Env env, Kind k) : kind(k), deferred(Napi::Promise::Deferred::New(env)) {}
  Kind kind;
  uint8_t* buf = nullptr;
  size_t len = 0;  // bytes (allreduce: floats)
  int root = 0;
  int tag = 0;
  double timeout_ms = 0;
  std::vector<int> to, from;
  std::vector<size_t> caps;
  // results
  int status = OK;
  std::string msg;
  std::vector<std::vector<uint8_t>*> recv;
  std::vector<uint8_t>* gathered = nullptr;
  std::vector<int64_t> counts;
  int provided = 0;
  Napi::Promise::Deferred deferred;
  std::vector<Napi::ObjectReference> keep;
};

struct State {
  std::thread th;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Op*> q;
  Napi::ThreadSafeFunction tsfn;
  bool started = false;
  bool finished = false;  // comm thread has exited
  std::atomic<bool> broken{false};
  std::string broken_msg;
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = -1, size = 0, provided = 0;
  int pending = 0;  // main thread only
  std::mutex done_mu;
  std::condition_variable done_cv;
};
State* S = nullptr;

std::string mpi_error(int rc, const char* what) {
  char buf[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(rc, buf, &n) != MPI_SUCCESS) n = 0;
  return std::string(what) + ": " + std::string(buf, static_cast<size_t>(n));
}

// Waits for all requests; returns OK, TIMEOUT or PEER (an MPI error).
int wait_all(std::vector<MPI_Request>& reqs, std::vector<MPI_Status>* st, double timeout_ms, std::string& msg, const char* what) {
  if (reqs.empty()) return OK;
  MPI_Status* sp = st ? (st->resize(reqs.size()), st->data()) : MPI_STATUSES_IGNORE;
  int rc;
  if (timeout_ms <= 0) {
    rc = MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), sp);
    if (rc != MPI_SUCCESS) { msg = mpi_error(rc, what); return PEER; }
    return OK;
  }
  const auto t0 = Clock::now();
  const auto deadline = t0 + std::chrono::microseconds(static_cast<int64_t>(timeout_ms * 1000.0));
  int sleep_us = 0;
  for (;;) {
    int flag = 0;
    rc = MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &flag, sp);
    if (rc != MPI_SUCCESS) { msg = mpi_error(rc, what); return PEER; }
    if (flag) return OK;
    const auto now = Clock::now();
    if (now >= deadline) {
      msg = std::string(what) + ": timed out after " + std::to_string(static_cast<int64_t>(timeout_ms)) + " ms (a peer is slow, stalled or gone)";
      return TIMEOUT;
    }
    if (now - t0 > std::chrono::milliseconds(2)) {
      sleep_us = sleep_us < 200 ? sleep_us + 10 : 200;
      std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    }
  }
}

void run_op(Op* op) {
  State& s = *S;
  if (op->kind != Kind::Init && op->kind != Kind::Finalize && s.broken.load()) {
    op->status = PEER;
    op->msg = "the MPI transport is unusable after an earlier failure: " + s.broken_msg;
    return;
  }
  std::vector<MPI_Request> reqs;
  int rc = MPI_SUCCESS;
  auto fail = [&](int st, const std::string& m) {
    op->status = st;
    op->msg = m;
    if (st == TIMEOUT || st == PEER) {
      s.broken_msg = m;
      s.broken.store(true);
    }
  };
  switch (op->kind) {
    case Kind::Init: {
      int inited = 0;
      MPI_Initialized(&inited);
      if (!inited) {
        rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &s.provided);
        if (rc != MPI_SUCCESS) { fail(INTERNAL, "MPI_Init_thread failed"); return; }
      } else {
        MPI_Query_thread(&s.provided);
      }
      MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
      rc = MPI_Comm_dup(MPI_COMM_WORLD, &s.comm);
      if (rc != MPI_SUCCESS) { fail(INTERNAL, mpi_error(rc, "MPI_Comm_dup")); return; }
      MPI_Comm_set_errhandler(s.comm, MPI_ERRORS_RETURN);
      MPI_Comm_rank(s.comm, &s.rank);
      MPI_Comm_size(s.comm, &s.size);
      op->provided = s.provided;
      return;
    }
    case Kind::Finalize: {
      if (s.comm != MPI_COMM_NULL && !s.broken.load()) MPI_Comm_free(&s.comm);
      int fin = 0;
      MPI_Finalized(&fin);
      if (!fin) {
        if (s.broken.load()) MPI_Abort(MPI_COMM_WORLD, 1);  // requests in flight: MPI_Finalize could hang
        MPI_Finalize();
      }
      return;
    }
    case Kind::Allreduce: {
      float* x = reinterpret_cast<float*>(op->buf);
      size_t n = op->len;
      const size_t step = size_t(1) << 30;
      for (size_t off = 0; off < n; off += step) {
        int cnt = static_cast<int>(std::min(step, n - off));
        MPI_Request r;
        rc = MPI_Iallreduce(MPI_IN_PLACE, x + off, cnt, MPI_FLOAT, MPI_SUM, s.comm, &r);
        if (rc != MPI_SUCCESS) { fail(PEER, mpi_error(rc, "MPI_Iallreduce")); return; }
        reqs.assign(1, r);
        int st = wait_all(reqs, nullptr, op->timeout_ms, op->msg, "allreduce");
        if (st != OK) { fail(st, op->msg); return; }
      }
      return;
    }
    case Kind::Bcast: {
      const size_t step = size_t(1) << 30;
      for (size_t off = 0; off < op->len; off += step) {
        int cnt = static_cast<int>(std::min(step, op->len - off));
        MPI_Request r;
        rc = MPI_Ibcast(op->buf + off, cnt, MPI_BYTE, op->root, s.comm, &r);
        if (rc != MPI_SUCCESS) { fail(PEER, mpi_error(rc, "MPI_Ibcast")); return; }
        reqs.assign(1, r);
        int st = wait_all(reqs, nullptr, op->timeout_ms, op->msg, "broadcast");
        if (st != OK) { fail(st, op->msg); return; }
      }
      return;
    }
    case Kind::Barrier: {
      MPI_Request r;
      rc = MPI_Ibarrier(s.comm, &r);
      if (rc != MPI_SUCCESS) { fail(PEER, mpi_error(rc, "MPI_Ibarrier")); return; }
      reqs.assign(1, r);
      int st = wait_all(reqs, nullptr, op->timeout_ms, op->msg, "barrier");
      if (st != OK) fail(st, op->msg);
      return;
    }
    case Kind::Allgatherv: {
      int64_t mine = static_cast<int64_t>(op->len);
      op->counts.assign(static_cast<size_t>(s.size), 0);
      MPI_Request r;
      rc = MPI_Iallgather(&mine, 1, MPI_INT64_T, op->counts.data(), 1, MPI_INT64_T, s.comm, &r);
      if (rc != MPI_SUCCESS) { fail(PEER, mpi_error(rc, "MPI_Iallgather")); return; }
      reqs.assign(1, r);
      int st = wait_all(reqs, nullptr, op->timeout_ms, op->msg, "allgather (sizes)");
      if (st != OK) { fail(st, op->msg); return; }
      int64_t total = 0;
      std::vector<int> cnt(static_cast<size_t>(s.size)), disp(static_cast<size_t>(s.size));
      for (int j = 0; j < s.size; j++) {
        int64_t c = op->counts[static_cast<size_t>(j)];
        if (c < 0 || c > INT_MAX || total > INT_MAX - c) {
          // the peers agree on the sizes, so every rank fails here alike
          fail(INVALID, "allgather: packets of more than 2 GiB in total are not supported by the MPI transport");
          return;
        }
        cnt[static_cast<size_t>(j)] = static_cast<int>(c);
        disp[static_cast<size_t>(j)] = static_cast<int>(total);
        total += c;
      }
      op->gathered = new std::vector<uint8_t>(static_cast<size_t>(total > 0 ? total : 1));
      rc = MPI_Iallgatherv(op->buf, static_cast<int>(op->len), MPI_BYTE, op->gathered->data(), cnt.data(), disp.data(),
                           MPI_BYTE, s.comm, &r);
      if (rc != MPI_SUCCESS) { fail(PEER, mpi_error(rc, "MPI_Iallgatherv")); return; }
      reqs.assign(1, r);
      st = wait_all(reqs, nullptr, op->timeout_ms, op->msg, "allgather");
      if (st != OK) fail(st, op->msg);
      return;
    }
    case Kind::Exchange: {
      if (op->len > static_cast<size_t>(INT_MAX)) { fail(INVALID, "exchange: packets above 2 GiB are not supported"); return; }
      for (int dst : op->to) {
        MPI_Request r;
        rc = MPI_Isend(op->buf, static_cast<int>(op->len), MPI_BYTE, dst, op->tag, s.comm, &r);
        if (rc != MPI_SUCCESS) { fail(PEER, mpi_error(rc, "MPI_Isend")); return; }
        reqs.push_back(r);
      }
      const size_t nsend = reqs.size();
      for (size_t k = 0; k < op->from.size(); k++) {
        size_t cap = op->caps[k];
        if (cap > static_cast<size_t>(INT_MAX)) { fail(INVALID, "exchange: packets above 2 GiB are not supported"); return; }
        auto* v = new std::vector<uint8_t>(cap > 0 ? cap : 1);
        op->recv.push_back(v);
        MPI_Request r;
        rc = MPI_Irecv(v->data(), static_cast<int>(cap), MPI_BYTE, op->from[k], op->tag, s.comm, &r);
        if (rc != MPI_SUCCESS) { fail(PEER, mpi_error(rc, "MPI_Irecv")); return; }
        reqs.push_back(r);
      }
      std::vector<MPI_Status> st;
      int w = wait_all(reqs, &st, op->timeout_ms, op->msg, "exchange");
      if (w != OK) { fail(w, op->msg); return; }
      for (size_t k = 0; k < op->from.size(); k++) {
        int count = 0;
        MPI_Get_count(&st[nsend + k], MPI_BYTE, &count);
        op->recv[k]->resize(static_cast<size_t>(count));
      }
      return;
    }
  }
}

void comm_thread() {
  State& s = *S;
  for (;;) {
    Op* op;
    {
      std::unique_lock<std::mutex> lk(s.mu);
      s.cv.wait(lk, [&] { return !s.q.empty(); });
      op = s.q.front();
      s.q.pop_front();
    }
    run_op(op);
    const bool last = op->kind == Kind::Finalize;
    s.tsfn.BlockingCall(op, [](Napi::Env env, Napi::Function, Op* o) {
      Napi::HandleScope scope(env);
      State& st = *S;
      if (o->status != OK) {
        Napi::Error e = Napi::Error::New(env, o->msg);
        const char* code = o->status == TIMEOUT ? "ERR_GRADZIP_TIMEOUT"
                         : o->status == PEER    ? "ERR_GRADZIP_PEER_LOST"
                         : o->status == INVALID ? "ERR_GRADZIP_INVALID_ARG"
                                                : "ERR_GRADZIP_INTERNAL";
        e.Set("code", Napi::String::New(env, code));
        o->deferred.Reject(e.Value());
        // on timeout / MPI errors MPI may still own the buffers: keep them (references and vectors) alive
        if (o->status == TIMEOUT || o->status == PEER) {
          for (auto& k : o->keep) k.SuppressDestruct();
          o->recv.clear();
          o->gathered = nullptr;
        }
      } else {
        Napi::Value result = env.Undefined();
        switch (o->kind) {
          case Kind::Init: {
            Napi::Object r = Napi::Object::New(env);
            r.Set("rank", st.rank);
            r.Set("size", st.size);
            r.Set("provided", o->provided);
            r.Set("threadMultiple", o->provided == MPI_THREAD_MULTIPLE);
            char lib[MPI_MAX_LIBRARY_VERSION_STRING];
            int len = 0;
            MPI_Get_library_version(lib, &len);
            r.Set("library", std::string(lib, strnlen(lib, static_cast<size_t>(len))));
            result = r;
            break;
          }
          case Kind::Allgatherv: {
            auto* g = o->gathered;
            o->gathered = nullptr;
            size_t total = 0;
            for (auto c : o->counts) total += static_cast<size_t>(c);
            Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, g->data(), g->size(),
                [](Napi::Env, void*, std::vector<uint8_t>* v) { delete v; }, g);
            Napi::Object r = Napi::Object::New(env);
            r.Set("data", Napi::Uint8Array::New(env, total, ab, 0));
            Napi::Array counts = Napi::Array::New(env, o->counts.size());
            for (size_t j = 0; j < o->counts.size(); j++) counts.Set(static_cast<uint32_t>(j), static_cast<double>(o->counts[j]));
            r.Set("counts", counts);
            result = r;
            break;
          }
          case Kind::Exchange: {
            Napi::Array arr = Napi::Array::New(env, o->recv.size());
            for (size_t k = 0; k < o->recv.size(); k++) {
              auto* v = o->recv[k];
              size_t n = v->size();
              if (v->capacity() == 0) v->reserve(1);
              Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, v->data(), v->capacity(),
                  [](Napi::Env, void*, std::vector<uint8_t>* p) { delete p; }, v);
              arr.Set(static_cast<uint32_t>(k), Napi::Uint8Array::New(env, n, ab, 0));
            }
            o->recv.clear();
            result = arr;
            break;
          }
          default:
            break;
        }
        o->deferred.Resolve(result);
      }
      for (auto* v : o->recv) delete v;
      delete o->gathered;
      o->keep.clear();
      if (--st.pending == 0) st.tsfn.Unref(env);
      delete o;
    });
    if (last) break;
  }
  {
    std::lock_guard<std::mutex> lk(s.done_mu);
    s.finished = true;
  }
  s.done_cv.notify_all();
}

void cleanup(void*) {
  // Process exit without close(): finalize so that mpirun does not report an abnormal end.
  if (!S || !S->started) return;
  bool finished;
  {
    std::lock_guard<std::mutex> lk(S->done_mu);
    finished = S->finished;
  }
  if (!finished) {
    // The thread-safe function cannot call into JS any more; finalize directly on the comm thread by
    // queueing a bare finalize is not possible either (its completion needs JS). Ask MPI to finalize from
    // here only when the comm thread is idle; otherwise leave (mpirun reports it).
    std::unique_lock<std::mutex> lk(S->mu);
    if (S->q.empty()) {
      lk.unlock();
      // best effort: the thread is blocked in cv.wait, so MPI is quiescent
      int fin = 0;
      MPI_Finalized(&fin);
      if (!fin) {
        if (S->broken.load()) MPI_Abort(MPI_COMM_WORLD, 1);
        MPI_Finalize();
      }
    }
  }
  if (S->th.joinable()) S->th.detach();
}

Napi::Promise enqueue(Napi::Env env, Op* op) {
  State& s = *S;
  Napi::Promise p = op->deferred.Promise();
  if (!s.started) {
    s.tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "gradzip_mpi", 0, 1);
    s.tsfn.Unref(env);
    s.started = true;
    s.th = std::thread(comm_thread);
    napi_add_env_cleanup_hook(env, cleanup, nullptr);
  }
  {
    std::lock_guard<std::mutex> lk(s.done_mu);
    if (s.finished) {
      Napi::Error e = Napi::Error::New(env, "MPI has been finalized (group closed)");
      e.Set("code", Napi::String::New(env, "ERR_GRADZIP_INVALID_ARG"));
      op->deferred.Reject(e.Value());
      delete op;
      return p;
    }
  }
  if (s.pending++ == 0) s.tsfn.Ref(env);
  {
    std::lock_guard<std::mutex> lk(s.mu);
    s.q.push_back(op);
  }
  s.cv.notify_one();
  return p;
}

double timeout_arg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() > i && info[i].IsNumber()) return info[i].As<Napi::Number>().DoubleValue();
  return 0;
}

void buffer_arg(const Napi::CallbackInfo& info, size_t i, Op* op, size_t elem) {
  if (!info[i].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "expected a typed array");
  Napi::TypedArray ta = info[i].As<Napi::TypedArray>();
  op->buf = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  op->len = ta.ByteLength() / elem;
  op->keep.push_back(Napi::Persistent(ta.As<Napi::Object>()));
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  if (!S) S = new State();
  return enqueue(info.Env(), new Op(info.Env(), Kind::Init));
}
Napi::Value Finalize(const Napi::CallbackInfo& info) {
  return enqueue(info.Env(), new Op(info.Env(), Kind::Finalize));
}
Napi::Value Allreduce(const Napi::CallbackInfo& info) {
  Op* op = new Op(info.Env(), Kind::Allreduce);
  buffer_arg(info, 0, op, 4);
  op->timeout_ms = timeout_arg(info, 1);
  return enqueue(info.Env(), op);
}
Napi::Value Bcast(const Napi::CallbackInfo& info) {
  Op* op = new Op(info.Env(), Kind::Bcast);
  buffer_arg(info, 0, op, 1);
  op->root = info[1].As<Napi::Number>().Int32Value();
  op->timeout_ms = timeout_arg(info, 2);
  return enqueue(info.Env(), op);
}
Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Op* op = new Op(info.Env(), Kind::Barrier);
  op->timeout_ms = timeout_arg(info, 0);
  return enqueue(info.Env(), op);
}
// allgatherv(u8, len, timeoutMs) -> { data, counts }
Napi::Value Allgatherv(const Napi::CallbackInfo& info) {
  Op* op = new Op(info.Env(), Kind::Allgatherv);
  buffer_arg(info, 0, op, 1);
  size_t len = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
  if (len > op->len) { delete op; throw Napi::RangeError::New(info.Env(), "allgatherv: len exceeds the buffer"); }
  op->len = len;
  op->timeout_ms = timeout_arg(info, 2);
  return enqueue(info.Env(), op);
}
// exchange(u8, len, to[], from[], caps[], tag, timeoutMs) -> Uint8Array[] (in `from` order)
Napi::Value Exchange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Op* op = new Op(env, Kind::Exchange);
  buffer_arg(info, 0, op, 1);
  size_t len = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
  if (len > op->len) { delete op; throw Napi::RangeError::New(env, "exchange: len exceeds the buffer"); }
  op->len = len;
  auto ints = [&](size_t i, std::vector<int>& v) {
    Napi::Array a = info[i].As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); k++) v.push_back(a.Get(k).As<Napi::Number>().Int32Value());
  };
  ints(2, op->to);
  ints(3, op->from);
  Napi::Array caps = info[4].As<Napi::Array>();
  for (uint32_t k = 0; k < caps.Length(); k++) op->caps.push_back(static_cast<size_t>(caps.Get(k).As<Napi::Number>().Int64Value()));
  if (op->caps.size() != op->from.size()) { delete op; throw Napi::RangeError::New(env, "exchange: caps and from differ in length"); }
  op->tag = info[5].As<Napi::Number>().Int32Value();
  op->timeout_ms = timeout_arg(info, 6);
  return enqueue(env, op);
}

Napi::Object Module(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init));
  exports.Set("finalize", Napi::Function::New(env, Finalize));
  exports.Set("allreduceF32", Napi::Function::New(env, Allreduce));
  exports.Set("bcast", Napi::Function::New(env, Bcast));
  exports.Set("barrier", Napi::Function::New(env, Barrier));
  exports.Set("allgatherv", Napi::Function::New(env, Allgatherv));
  exports.Set("exchange", Napi::Function::New(env, Exchange));
  return exports;
}

}  // namespace

NODE_API_MODULE(gradzip_mpi, Module)
