// N-API binding of the optional CUDA addon gradzip_cuda.node (loaded by lib/cuda.ts). Thin: argument
// unpacking, device buffers, streams, and async completion. Every async operation is queued on its Stream's
// host worker thread (so operations on one stream keep their order, host-side steps included), which enqueues
// the kernels, waits for the stream (cudaStreamSynchronize, on the worker, never on the event loop), and
// settles the Promise on the JS thread through the stream's ThreadSafeFunction.
#include <napi.h>
#include <cuda_runtime.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

#include "core/gradzip.h"
#include "cuda/gzcuda.h"
#include "cuda/nccl.h"

namespace {

[[noreturn]] void ThrowCode(Napi::Env env, const char* code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}
[[noreturn]] void ThrowInvalid(Napi::Env env, const std::string& msg) { ThrowCode(env, "ERR_GRADZIP_INVALID_ARG", msg); }

Napi::Error ToJs(Napi::Env env, gz::ErrCode code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, gz::err_code_name(code)));
  return e;
}

template <class F>
auto Guard(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const gz::Error& e) {
    throw ToJs(env, e.code, e.what());
  } catch (const std::bad_alloc&) {
    throw ToJs(env, gz::ErrCode::INVALID_ARG, "out of host memory");
  }
}

uint64_t U64(Napi::Env env, const Napi::Value& v, const char* what) {
  if (v.IsNumber()) {
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d > 9007199254740991.0 || d != double(uint64_t(d))) ThrowInvalid(env, std::string(what) + " must be a safe integer >= 0");
    return uint64_t(d);
  }
  if (v.IsBigInt()) {
    bool lossless = false;
    const uint64_t r = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowInvalid(env, std::string(what) + " must be in [0, 2^64)");
    return r;
  }
  ThrowInvalid(env, std::string(what) + " must be a number or a bigint");
}

uint32_t U32(const Napi::Object& o, const char* key, uint32_t def) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) return def;
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 4294967295.0) return def;
  return uint32_t(d);
}
double Num(const Napi::Object& o, const char* key, double def) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : def;
}
bool Bool(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

// Same fields as the CPU binding's makeParams (lib/binding.ts NativeOptions) plus the seed.
gz::Params ReadParams(Napi::Env env, const Napi::Value& ov, const Napi::Value& seed) {
  if (!ov.IsObject()) ThrowInvalid(env, "internal: options object expected");
  Napi::Object o = ov.As<Napi::Object>();
  gz::Params p;
  p.codec = gz::Codec(U32(o, "codec", gz::QSGD));
  p.levels = U32(o, "levels", p.levels);
  p.bucket = U32(o, "bucket", p.bucket);
  p.norm = gz::Norm(U32(o, "norm", gz::NORM_L2));
  p.coding = gz::Coding(U32(o, "coding", gz::CODING_FIXED));
  p.has_k = Bool(o, "hasK");
  const double k = Num(o, "k", 0);
  p.k = k >= 0 && k <= 9007199254740991.0 ? uint64_t(k) : 0;
  p.ratio = Num(o, "ratio", p.ratio);
  p.vt = gz::ValueType(U32(o, "vt", gz::VT_F32));
  p.shape = float(Num(o, "shape", 0));
  p.nonfinite_zero = Bool(o, "nonfiniteZero");
  if (seed.IsUndefined() || seed.IsNull()) {
    p.seed_given = false;
  } else {
    p.seed = U64(env, seed, "seed");
    p.seed_given = true;
  }
  Guard(env, [&] { gz::check_params(p); return 0; });
  return p;
}

// ------------------------------------------------------------------ device buffers
class DevBuf : public Napi::ObjectWrap<DevBuf> {
 public:
  static Napi::FunctionReference ctor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "DevBuf", {InstanceMethod("free", &DevBuf::Free),
                                                   InstanceAccessor("byteLength", &DevBuf::ByteLength, nullptr),
                                                   InstanceAccessor("freed", &DevBuf::Freed, nullptr)});
    ctor = Napi::Persistent(f);
    return f;
  }
  explicit DevBuf(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DevBuf>(info) {
    Napi::Env env = info.Env();
    bytes_ = U64(env, info[0], "byteLength");
    if (bytes_ > 0) Guard(env, [&] { gzc::check(cudaMalloc(&ptr_, bytes_), "cudaMalloc"); return 0; });
  }
  ~DevBuf() override { if (ptr_) cudaFree(ptr_); }
  uint8_t* ptr(Napi::Env env, const char* what) {
    if (bytes_ > 0 && !ptr_) ThrowInvalid(env, std::string(what) + ": device array was freed");
    return static_cast<uint8_t*>(ptr_);
  }
  uint64_t bytes() const { return bytes_; }

 private:
  Napi::Value Free(const Napi::CallbackInfo& info) {
    if (ptr_) { cudaFree(ptr_); ptr_ = nullptr; }
    return info.Env().Undefined();
  }
  Napi::Value ByteLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(bytes_)); }
  Napi::Value Freed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), bytes_ > 0 && !ptr_); }
  void* ptr_ = nullptr;
  uint64_t bytes_ = 0;
};
Napi::FunctionReference DevBuf::ctor;

DevBuf* AsDev(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(DevBuf::ctor.Value())) ThrowInvalid(env, std::string(what) + " must be a device buffer");
  return DevBuf::Unwrap(v.As<Napi::Object>());
}

void CheckRange(Napi::Env env, DevBuf* b, uint64_t off, uint64_t bytes, const char* what) {
  if (off > b->bytes() || bytes > b->bytes() - off) ThrowInvalid(env, std::string(what) + ": range outside the device array");
}

struct HostView { uint8_t* data; size_t bytes; };
HostView AsHost(Napi::Env env, const Napi::Value& v, const char* what) {
  if (v.IsTypedArray()) {
    Napi::TypedArray t = v.As<Napi::TypedArray>();
    Napi::ArrayBuffer ab = t.ArrayBuffer();
    return {static_cast<uint8_t*>(ab.Data()) + t.ByteOffset(), t.ByteLength()};
  }
  if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    return {static_cast<uint8_t*>(ab.Data()), ab.ByteLength()};
  }
  ThrowInvalid(env, std::string(what) + " must be a TypedArray or ArrayBuffer");
}

// ------------------------------------------------------------------ streams
struct Job {
  std::function<void()> work;                         // worker thread
  std::function<Napi::Value(Napi::Env)> value;        // JS thread, on success
  Napi::Promise::Deferred deferred;
  std::vector<Napi::Reference<Napi::Value>> keep;     // keeps buffers alive until settled
  bool failed = false;
  gz::ErrCode code = gz::ErrCode::INTERNAL;
  std::string msg;
  explicit Job(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

class Stream;
// Live streams, shut down by an environment cleanup hook before node tears the environment down: a stream's
// worker thread and thread-safe function must not outlive the environment (a live Stream at process exit
// aborted the process on the H100 otherwise).
static std::mutex g_streams_mu;
static std::unordered_set<Stream*> g_streams;

class Stream : public Napi::ObjectWrap<Stream> {
 public:
  static Napi::FunctionReference ctor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Stream", {InstanceMethod("synchronize", &Stream::Synchronize),
                                                   InstanceMethod("destroy", &Stream::Destroy)});
    ctor = Napi::Persistent(f);
    return f;
  }
  explicit Stream(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Stream>(info) {
    Napi::Env env = info.Env();
    Guard(env, [&] {
      gzc::check(cudaStreamCreateWithFlags(&st_, cudaStreamNonBlocking), "cudaStreamCreate");
      gzc::check(cudaMallocHost(&res_, sizeof(gzc::OpResult)), "cudaMallocHost");
      return 0;
    });
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "gradzip-cuda-stream", 0, 1);
    tsfn_.Unref(env);
    worker_ = std::thread([this] { Loop(); });
    std::lock_guard<std::mutex> g(g_streams_mu);
    g_streams.insert(this);
  }
  ~Stream() override { Shutdown(); }

  static void ShutdownAll(void*) {
    std::unordered_set<Stream*> live;
    {
      std::lock_guard<std::mutex> g(g_streams_mu);
      live.swap(g_streams);
    }
    for (Stream* st : live) st->Shutdown();
  }

  cudaStream_t stream() const { return st_; }
  gzc::OpResult* res() { return res_; }
  std::mutex& mu() { return run_mu_; }

  // Queues a job; returns its promise.
  Napi::Value Submit(Napi::Env env, std::unique_ptr<Job> job) {
    if (closed_) ThrowInvalid(env, "stream was destroyed");
    Napi::Promise p = job->deferred.Promise();
    if (pending_++ == 0) tsfn_.Ref(env);
    {
      std::lock_guard<std::mutex> g(q_mu_);
      q_.push_back(std::move(job));
    }
    q_cv_.notify_one();
    return p;
  }

  void RunSync(Napi::Env env, const std::function<void()>& f) {
    std::lock_guard<std::mutex> g(run_mu_);
    Guard(env, [&] { f(); gzc::check(cudaStreamSynchronize(st_), "cudaStreamSynchronize"); return 0; });
  }

 private:
  void Loop() {
    for (;;) {
      std::unique_ptr<Job> job;
      {
        std::unique_lock<std::mutex> l(q_mu_);
        q_cv_.wait(l, [&] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        job = std::move(q_.front());
        q_.pop_front();
      }
      {
        std::lock_guard<std::mutex> g(run_mu_);
        try {
          job->work();
          gzc::check(cudaStreamSynchronize(st_), "cudaStreamSynchronize");
        } catch (const gz::Error& e) {
          job->failed = true; job->code = e.code; job->msg = e.what();
        } catch (const std::exception& e) {
          job->failed = true; job->code = gz::ErrCode::INTERNAL; job->msg = e.what();
        }
      }
      Job* raw = job.release();
      Stream* self = this;
      const napi_status s = tsfn_.BlockingCall(raw, [self](Napi::Env env, Napi::Function, Job* j) {
        std::unique_ptr<Job> own(j);
        if (env == nullptr) return;
        Napi::HandleScope scope(env);
        if (own->failed) {
          own->deferred.Reject(ToJs(env, own->code, own->msg).Value());
        } else {
          try {
            own->deferred.Resolve(own->value ? own->value(env) : env.Undefined());
          } catch (const Napi::Error& e) {
            own->deferred.Reject(e.Value());
          }
        }
        own->keep.clear();
        if (--self->pending_ == 0 && !self->closed_) self->tsfn_.Unref(env);
      });
      if (s != napi_ok) delete raw;
    }
  }

  void Shutdown() {
    {
      std::lock_guard<std::mutex> g(g_streams_mu);
      g_streams.erase(this);
    }
    if (worker_.joinable()) {
      {
        std::lock_guard<std::mutex> g(q_mu_);
        stop_ = true;
      }
      q_cv_.notify_one();
      worker_.join();
    }
    if (!closed_) { closed_ = true; tsfn_.Release(); }
    if (res_) { cudaFreeHost(res_); res_ = nullptr; }
    if (st_) { cudaStreamDestroy(st_); st_ = nullptr; }
  }

  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    RunSync(info.Env(), [] {});
    return info.Env().Undefined();
  }
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  cudaStream_t st_ = nullptr;
  gzc::OpResult* res_ = nullptr;
  Napi::ThreadSafeFunction tsfn_;
  std::thread worker_;
  std::mutex q_mu_, run_mu_;
  std::condition_variable q_cv_;
  std::deque<std::unique_ptr<Job>> q_;
  bool stop_ = false, closed_ = false;
  int pending_ = 0;
};
Napi::FunctionReference Stream::ctor;

Stream* AsStream(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Stream::ctor.Value())) ThrowInvalid(env, "stream must be a Stream");
  return Stream::Unwrap(v.As<Napi::Object>());
}

// Runs `work` on the stream: sync (returns value) or async (returns a Promise of value).
Napi::Value Run(Napi::Env env, Stream* s, bool async, std::function<void()> work,
                std::function<Napi::Value(Napi::Env)> value, std::vector<Napi::Value> keep) {
  if (!async) {
    s->RunSync(env, work);
    return value ? value(env) : env.Undefined();
  }
  auto job = std::make_unique<Job>(env);
  job->work = std::move(work);
  job->value = std::move(value);
  for (auto& v : keep) job->keep.push_back(Napi::Persistent(v));
  return s->Submit(env, std::move(job));
}

// ------------------------------------------------------------------ operations
// encode(stream, options, seed, x, xOff, n, out, outOff, cap, async) -> packet length
Napi::Value Encode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Stream* s = AsStream(env, info[0]);
  const gz::Params p = ReadParams(env, info[1], info[2]);
  DevBuf* x = AsDev(env, info[3], "input");
  const uint64_t xo = U64(env, info[4], "input offset"), n = U64(env, info[5], "n");
  DevBuf* out = AsDev(env, info[6], "output");
  const uint64_t oo = U64(env, info[7], "output offset"), cap = U64(env, info[8], "capacity");
  const bool async = info[9].ToBoolean();
  if (n > gz::kMaxN) ThrowInvalid(env, "n must be <= 2^34");
  CheckRange(env, x, xo, n * 4, "input");
  CheckRange(env, out, oo, cap, "output");
  const float* xp = reinterpret_cast<const float*>(x->ptr(env, "input") + xo);
  uint8_t* op = out->ptr(env, "output") + oo;
  gzc::OpResult* res = s->res();
  cudaStream_t st = s->stream();
  auto work = [=] {
    gzc::encode(p, xp, n, op, cap, st, res);
    gzc::check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
    gzc::raise_flags(res->flags, "encode");
  };
  auto value = [res](Napi::Env e) { return Napi::Number::New(e, double(res->length)); };
  return Run(env, s, async, work, value, {info[0], info[3], info[6]});
}

// decode(stream, pkt, pktOff, len, out, outOff, n, add, alpha, async)
Napi::Value Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Stream* s = AsStream(env, info[0]);
  DevBuf* pk = AsDev(env, info[1], "packet");
  const uint64_t po = U64(env, info[2], "packet offset"), len = U64(env, info[3], "packet length");
  DevBuf* out = AsDev(env, info[4], "output");
  const uint64_t oo = U64(env, info[5], "output offset"), n = U64(env, info[6], "n");
  const bool add = info[7].ToBoolean();
  const float alpha = float(info[8].IsNumber() ? info[8].As<Napi::Number>().DoubleValue() : 1.0);
  const bool async = info[9].ToBoolean();
  CheckRange(env, pk, po, len, "packet");
  if (n > gz::kMaxN) ThrowInvalid(env, "n must be <= 2^34");
  CheckRange(env, out, oo, n * 4, "output");
  const uint8_t* pp = pk->ptr(env, "packet") + po;
  float* op = reinterpret_cast<float*>(out->ptr(env, "output") + oo);
  gzc::OpResult* res = s->res();
  cudaStream_t st = s->stream();
  auto work = [=] {
    gzc::decode(pp, len, op, n, add, alpha, st, res);
    gzc::check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
    gzc::raise_flags(res->flags, "decode");
  };
  return Run(env, s, async, work, nullptr, {info[0], info[1], info[4]});
}

// header(stream, pkt, pktOff, len) -> n (validated header of a device packet)
Napi::Value Header(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Stream* s = AsStream(env, info[0]);
  DevBuf* pk = AsDev(env, info[1], "packet");
  const uint64_t po = U64(env, info[2], "packet offset"), len = U64(env, info[3], "packet length");
  CheckRange(env, pk, po, len, "packet");
  gz::Header h;
  std::lock_guard<std::mutex> g(s->mu());
  Guard(env, [&] { h = gzc::read_header(pk->ptr(env, "packet") + po, len, s->stream()); return 0; });
  Napi::Object o = Napi::Object::New(env);
  o.Set("n", Napi::Number::New(env, double(h.n)));
  o.Set("codec", Napi::Number::New(env, h.codec));
  return o;
}

// copy(stream, kind, a, aOff, b, bOff, bytes, async): kind 0 = upload (a DevBuf <- b host), 1 = download
// (a host <- b DevBuf), 2 = device to device (a <- b).
Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Stream* s = AsStream(env, info[0]);
  const uint32_t kind = info[1].As<Napi::Number>().Uint32Value();
  const uint64_t ao = U64(env, info[3], "offset"), bo = U64(env, info[5], "offset"), bytes = U64(env, info[6], "byteLength");
  const bool async = info[7].ToBoolean();
  void* dst = nullptr;
  const void* src = nullptr;
  cudaMemcpyKind k;
  if (kind == 0) {
    DevBuf* d = AsDev(env, info[2], "destination");
    HostView h = AsHost(env, info[4], "source");
    CheckRange(env, d, ao, bytes, "destination");
    if (bo > h.bytes || bytes > h.bytes - bo) ThrowInvalid(env, "source range outside the host array");
    dst = d->ptr(env, "destination") + ao; src = h.data + bo; k = cudaMemcpyHostToDevice;
  } else if (kind == 1) {
    HostView h = AsHost(env, info[2], "destination");
    DevBuf* d = AsDev(env, info[4], "source");
    CheckRange(env, d, bo, bytes, "source");
    if (ao > h.bytes || bytes > h.bytes - ao) ThrowInvalid(env, "destination range outside the host array");
    dst = h.data + ao; src = d->ptr(env, "source") + bo; k = cudaMemcpyDeviceToHost;
  } else {
    DevBuf* d = AsDev(env, info[2], "destination");
    DevBuf* sb = AsDev(env, info[4], "source");
    CheckRange(env, d, ao, bytes, "destination");
    CheckRange(env, sb, bo, bytes, "source");
    dst = d->ptr(env, "destination") + ao; src = sb->ptr(env, "source") + bo; k = cudaMemcpyDeviceToDevice;
  }
  cudaStream_t st = s->stream();
  auto work = [=] { if (bytes) gzc::check(cudaMemcpyAsync(dst, src, bytes, k, st), "cudaMemcpyAsync"); };
  return Run(env, s, async, work, nullptr, {info[0], info[2], info[4]});
}

Napi::Value MaxBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const gz::Params p = ReadParams(env, info[0], env.Undefined());
  const uint64_t n = U64(env, info[1], "n");
  return Napi::Number::New(env, double(Guard(env, [&] { return gz::max_bytes(p, n); })));
}

// Pinned host memory as an ArrayBuffer (freed by its finalizer).
Napi::Value AllocHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint64_t bytes = U64(env, info[0], "byteLength");
  void* p = nullptr;
  Guard(env, [&] { gzc::check(cudaMallocHost(&p, bytes ? bytes : 1), "cudaMallocHost"); return 0; });
  return Napi::ArrayBuffer::New(env, p, bytes, [](Napi::Env, void* d) { cudaFreeHost(d); });
}

// ------------------------------------------------------------------ timing (benchmarks)
// time(stream, what, iters, ...): what = 'copy' (dst, src, bytes) | 'encode' (options, seed, x, n, out, cap)
// | 'decode' (pkt, len, out, n, add). Returns milliseconds per iteration (CUDA events around the loop, one
// warm-up call first). Host-side steps inside encode/decode (waits, Floyd, fits) are included.
Napi::Value Time(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Stream* s = AsStream(env, info[0]);
  const std::string what = info[1].As<Napi::String>().Utf8Value();
  const uint32_t iters = info[2].As<Napi::Number>().Uint32Value();
  cudaStream_t st = s->stream();
  gzc::OpResult* res = s->res();
  std::function<void()> once;
  if (what == "copy") {
    DevBuf* d = AsDev(env, info[3], "dst");
    DevBuf* sb = AsDev(env, info[4], "src");
    const uint64_t bytes = U64(env, info[5], "bytes");
    CheckRange(env, d, 0, bytes, "dst");
    CheckRange(env, sb, 0, bytes, "src");
    void* dp = d->ptr(env, "dst");
    const void* sp = sb->ptr(env, "src");
    once = [=] { gzc::check(cudaMemcpyAsync(dp, sp, bytes, cudaMemcpyDeviceToDevice, st), "cudaMemcpyAsync"); };
  } else if (what == "encode") {
    const gz::Params p = ReadParams(env, info[3], info[4]);
    DevBuf* x = AsDev(env, info[5], "x");
    const uint64_t n = U64(env, info[6], "n");
    DevBuf* out = AsDev(env, info[7], "out");
    const uint64_t cap = U64(env, info[8], "cap");
    CheckRange(env, x, 0, n * 4, "x");
    CheckRange(env, out, 0, cap, "out");
    const float* xp = reinterpret_cast<const float*>(x->ptr(env, "x"));
    uint8_t* op = out->ptr(env, "out");
    once = [=] { gzc::encode(p, xp, n, op, cap, st, res); };
  } else if (what == "decode") {
    DevBuf* pk = AsDev(env, info[3], "pkt");
    const uint64_t len = U64(env, info[4], "len");
    DevBuf* out = AsDev(env, info[5], "out");
    const uint64_t n = U64(env, info[6], "n");
    const bool add = info[7].ToBoolean();
    CheckRange(env, pk, 0, len, "pkt");
    CheckRange(env, out, 0, n * 4, "out");
    const uint8_t* pp = pk->ptr(env, "pkt");
    float* op = reinterpret_cast<float*>(out->ptr(env, "out"));
    once = [=] { gzc::decode(pp, len, op, n, add, 1.f, st, res); };
  } else {
    ThrowInvalid(env, "time: unknown operation");
  }
  double ms = 0;
  std::lock_guard<std::mutex> g(s->mu());
  Guard(env, [&] {
    cudaEvent_t a, b;
    gzc::check(cudaEventCreate(&a), "cudaEventCreate");
    gzc::check(cudaEventCreate(&b), "cudaEventCreate");
    once();
    gzc::check(cudaStreamSynchronize(st), "sync");
    gzc::raise_flags(res->flags, what.c_str());
    gzc::check(cudaEventRecord(a, st), "cudaEventRecord");
    for (uint32_t i = 0; i < iters; ++i) once();
    gzc::check(cudaEventRecord(b, st), "cudaEventRecord");
    gzc::check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float t = 0;
    gzc::check(cudaEventElapsedTime(&t, a, b), "cudaEventElapsedTime");
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    ms = double(t) / (iters ? iters : 1);
    return 0;
  });
  return Napi::Number::New(env, ms);
}

// probe() -> { compiled, available, devices: [{ name, cc, memory, sms }], runtimeVersion, driverVersion, reason? }
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", Napi::Boolean::New(env, true));
  int rv = 0, dv = 0;
  cudaRuntimeGetVersion(&rv);
  cudaDriverGetVersion(&dv);
  o.Set("runtimeVersion", Napi::Number::New(env, rv));
  o.Set("driverVersion", Napi::Number::New(env, dv));
  std::string err;
  const int n = gzc::device_count(&err);
  Napi::Array devs = Napi::Array::New(env);
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp pr;
    if (cudaGetDeviceProperties(&pr, i) != cudaSuccess) continue;
    Napi::Object d = Napi::Object::New(env);
    d.Set("index", Napi::Number::New(env, i));
    d.Set("name", Napi::String::New(env, pr.name));
    d.Set("computeCapability", Napi::String::New(env, std::to_string(pr.major) + "." + std::to_string(pr.minor)));
    d.Set("memory", Napi::Number::New(env, double(pr.totalGlobalMem)));
    d.Set("multiProcessors", Napi::Number::New(env, pr.multiProcessorCount));
    devs.Set(uint32_t(devs.Length()), d);
  }
  o.Set("devices", devs);
  o.Set("available", Napi::Boolean::New(env, n > 0));
  if (n == 0) o.Set("reason", Napi::String::New(env, err.empty() ? "no CUDA device" : err));
  return o;
}

// Hooks for the NCCL transport (native/cuda/nccl.cc): access to device buffers, streams, options and Run.
gzc_nccl::DevView HookDev(Napi::Env env, const Napi::Value& v, const char* what) {
  DevBuf* b = AsDev(env, v, what);
  return {b->ptr(env, what), b->bytes()};
}
gzc_nccl::StreamView HookStream(Napi::Env env, const Napi::Value& v) {
  Stream* s = AsStream(env, v);
  return {s->stream(), s->res()};
}
Napi::Value HookRun(Napi::Env env, const Napi::Value& sv, bool async, std::function<void()> work,
                    std::function<Napi::Value(Napi::Env)> value, std::vector<Napi::Value> keep) {
  return Run(env, AsStream(env, sv), async, std::move(work), std::move(value), std::move(keep));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  napi_add_env_cleanup_hook(env, &Stream::ShutdownAll, nullptr);
  exports.Set("DevBuf", DevBuf::Init(env));
  exports.Set("Stream", Stream::Init(env));
  exports.Set("encode", Napi::Function::New(env, Encode, "encode"));
  exports.Set("decode", Napi::Function::New(env, Decode, "decode"));
  exports.Set("header", Napi::Function::New(env, Header, "header"));
  exports.Set("copy", Napi::Function::New(env, Copy, "copy"));
  exports.Set("maxBytes", Napi::Function::New(env, MaxBytes, "maxBytes"));
  exports.Set("allocHost", Napi::Function::New(env, AllocHost, "allocHost"));
  exports.Set("time", Napi::Function::New(env, Time, "time"));
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
  gzc_nccl::Register(env, exports, gzc_nccl::Hooks{HookDev, HookStream, ReadParams, HookRun});
  return exports;
}

}  // namespace

NODE_API_MODULE(gradzip_cuda, Init)
