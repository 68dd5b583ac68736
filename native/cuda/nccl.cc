// NCCL transport of gradzip_cuda.node (docs/COLLECTIVES.md, section "NCCL"). libnccl.so.2 is loaded at run
// time with dlopen (never linked: the addon loads on machines without NCCL), from the paths the JS loader
// gives (lib/comm/nccl.ts: $GRADZIP_NCCL_LIB, libnccl.so.2, the NVIDIA pip wheel's directory).
//
// Every operation runs as one job on the communicator's Stream worker (the addon's async mechanism): the job
// enqueues the kernels and the NCCL call on the stream, then polls cudaStreamQuery and ncclCommGetAsyncError
// until the stream is done or the deadline passes; at the deadline the communicator is aborted
// (ncclCommAbort) and the job fails with a message starting "ERR_GRADZIP_TIMEOUT:" (the JS side maps it to
// that code). Device packets go to NCCL straight from device memory: no host copy of any payload.
//
// The NCCL API is declared by hand from the public header (NVIDIA/nccl src/nccl.h.in); only the ABI-stable
// entry points used here are resolved.
#include "cuda/nccl.h"

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

namespace gzc_nccl {

cudaError_t divide(float* x, uint64_t n, float d, cudaStream_t st);  // nccl_div.cu

namespace {

// ------------------------------------------------------------------ the NCCL API (from nccl.h.in)
typedef struct ncclComm* ncclComm_t;
constexpr int kUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
typedef struct { char internal[kUniqueIdBytes]; } ncclUniqueId;
typedef enum {
  ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3,
  ncclInvalidArgument = 4, ncclInvalidUsage = 5, ncclRemoteError = 6, ncclInProgress = 7
} ncclResult_t;
typedef enum {
  ncclInt8 = 0, ncclUint8 = 1, ncclInt32 = 2, ncclUint32 = 3, ncclInt64 = 4, ncclUint64 = 5,
  ncclFloat16 = 6, ncclFloat32 = 7, ncclFloat64 = 8, ncclBfloat16 = 9
} ncclDataType_t;
typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;

struct Api {
  void* handle = nullptr;
  std::string path;
  int version = 0;
  ncclResult_t (*GetVersion)(int*) = nullptr;
  ncclResult_t (*GetUniqueId)(ncclUniqueId*) = nullptr;
  ncclResult_t (*CommInitRank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*AllReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*AllGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*Broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*Send)(const void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*Recv)(void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*GroupStart)() = nullptr;
  ncclResult_t (*GroupEnd)() = nullptr;
  ncclResult_t (*CommAbort)(ncclComm_t) = nullptr;
  ncclResult_t (*CommDestroy)(ncclComm_t) = nullptr;
  const char* (*GetErrorString)(ncclResult_t) = nullptr;
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*) = nullptr;
};
Api g_api;
std::mutex g_mu;
Hooks g_h;

[[noreturn]] void ThrowCode(Napi::Env env, const char* code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}
[[noreturn]] void Invalid(Napi::Env env, const std::string& m) { ThrowCode(env, "ERR_GRADZIP_INVALID_ARG", m); }

const Api& api(Napi::Env env) {
  if (!g_api.handle) ThrowCode(env, "ERR_GRADZIP_CUDA", "NCCL is not loaded (call comm.nccl(), which loads libnccl.so.2 first)");
  return g_api;
}

std::string ErrStr(ncclResult_t r) {
  const char* s = g_api.GetErrorString ? g_api.GetErrorString(r) : nullptr;
  return std::string(s ? s : "unknown NCCL error") + " (ncclResult_t " + std::to_string(int(r)) + ")";
}
void Nc(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw gz::Error(gz::ErrCode::CUDA, std::string(what) + ": " + ErrStr(r));
}

template <class T>
bool Sym(void* h, const char* name, T& fn, std::string& missing) {
  void* p = dlsym(h, name);
  if (!p) {
    if (!missing.empty()) missing += ", ";
    missing += name;
    return false;
  }
  fn = reinterpret_cast<T>(p);
  return true;
}

// ncclLoad(paths: string[]) -> { ok, path?, version?, errors: string[] }. Tries each path in order; the
// first that loads and exports every symbol wins (later calls return the loaded one).
Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> g(g_mu);
  Napi::Object o = Napi::Object::New(env);
  Napi::Array errs = Napi::Array::New(env);
  if (!g_api.handle) {
    if (!info[0].IsArray()) Invalid(env, "ncclLoad: paths must be an array of strings");
    Napi::Array paths = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < paths.Length(); ++i) {
      const std::string p = paths.Get(i).ToString().Utf8Value();
      dlerror();
      void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        const char* e = dlerror();
        errs.Set(errs.Length(), Napi::String::New(env, p + ": " + (e ? e : "dlopen failed")));
        continue;
      }
      Api a;
      std::string missing;
      Sym(h, "ncclGetVersion", a.GetVersion, missing);
      Sym(h, "ncclGetUniqueId", a.GetUniqueId, missing);
      Sym(h, "ncclCommInitRank", a.CommInitRank, missing);
      Sym(h, "ncclAllReduce", a.AllReduce, missing);
      Sym(h, "ncclAllGather", a.AllGather, missing);
      Sym(h, "ncclBroadcast", a.Broadcast, missing);
      Sym(h, "ncclSend", a.Send, missing);
      Sym(h, "ncclRecv", a.Recv, missing);
      Sym(h, "ncclGroupStart", a.GroupStart, missing);
      Sym(h, "ncclGroupEnd", a.GroupEnd, missing);
      Sym(h, "ncclCommAbort", a.CommAbort, missing);
      Sym(h, "ncclCommDestroy", a.CommDestroy, missing);
      Sym(h, "ncclGetErrorString", a.GetErrorString, missing);
      Sym(h, "ncclCommGetAsyncError", a.CommGetAsyncError, missing);
      if (!missing.empty()) {
        errs.Set(errs.Length(), Napi::String::New(env, p + ": missing symbols " + missing + " (NCCL >= 2.4 needed)"));
        dlclose(h);
        continue;
      }
      a.handle = h;
      a.path = p;
      int v = 0;
      if (a.GetVersion(&v) == ncclSuccess) a.version = v;
      g_api = a;
      break;
    }
  }
  o.Set("ok", Napi::Boolean::New(env, g_api.handle != nullptr));
  if (g_api.handle) {
    o.Set("path", Napi::String::New(env, g_api.path));
    o.Set("version", Napi::Number::New(env, g_api.version));
  }
  o.Set("errors", errs);
  return o;
}

// ncclUniqueId() -> Uint8Array(128)
Napi::Value UniqueId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Api& a = api(env);
  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  const ncclResult_t r = a.GetUniqueId(&id);
  if (r != ncclSuccess) ThrowCode(env, "ERR_GRADZIP_CUDA", "ncclGetUniqueId: " + ErrStr(r));
  Napi::Uint8Array out = Napi::Uint8Array::New(env, kUniqueIdBytes);
  std::memcpy(out.Data(), id.internal, kUniqueIdBytes);
  return out;
}

// ------------------------------------------------------------------ communicators
struct Comm {
  ncclComm_t comm = nullptr;
  int rank = 0, size = 1;
  bool broken = false, destroyed = false;
  std::atomic<bool> abort_requested{false};  // set by ncclAbortComm (JS thread); acted on by the worker
  std::string why;              // why it is broken
  uint8_t* gather = nullptr;    // P slots of the compressed all-gather (device)
  uint64_t gather_bytes = 0;
  uint64_t* lens = nullptr;     // P packet lengths (pinned host)
  float* scratch = nullptr;     // barrier word (device)

  void release_memory() {
    if (gather) { cudaFree(gather); gather = nullptr; gather_bytes = 0; }
    if (scratch) { cudaFree(scratch); scratch = nullptr; }
    if (lens) { cudaFreeHost(lens); lens = nullptr; }
  }
  ~Comm() {
    // garbage-collected without close(): abort (never blocks on peers), then free
    if (comm && g_api.CommAbort) g_api.CommAbort(comm);
    comm = nullptr;
    release_memory();
  }
  void abort(const std::string& w) {
    if (comm) g_api.CommAbort(comm);
    comm = nullptr;
    broken = true;
    why = w;
  }
  void usable(const char* what) {
    if (abort_requested && !broken && !destroyed) abort("aborted by the user");
    if (destroyed) throw gz::Error(gz::ErrCode::INVALID_ARG, std::string(what) + ": the NCCL communicator is closed");
    if (broken) throw gz::Error(gz::ErrCode::CUDA, std::string(what) + ": the NCCL communicator was aborted earlier (" + why + ")");
  }
};

Comm* AsComm(Napi::Env env, const Napi::Value& v) {
  if (!v.IsExternal()) Invalid(env, "internal: NCCL communicator expected");
  return v.As<Napi::External<Comm>>().Data();
}

int64_t TimeoutMs(const Napi::Value& v) {
  if (!v.IsNumber()) return 0;
  const double d = v.As<Napi::Number>().DoubleValue();
  return d > 0 && d < 9e15 ? int64_t(d) : 0;
}

// Waits (on the stream worker) until the stream has finished the work enqueued so far, watching NCCL's
// asynchronous error state and the deadline; on either, aborts the communicator and throws.
void Wait(Comm* c, cudaStream_t st, std::chrono::steady_clock::time_point deadline, bool timed, const char* what) {
  int spins = 0;
  for (;;) {
    const cudaError_t e = cudaStreamQuery(st);
    if (e == cudaSuccess) break;
    if (e != cudaErrorNotReady) {
      c->abort(std::string(what) + ": CUDA error");
      gzc::check(e, what);
    }
    ncclResult_t ar = ncclSuccess;
    const ncclResult_t r = g_api.CommGetAsyncError(c->comm, &ar);
    if (r != ncclSuccess) ar = r;
    if (ar != ncclSuccess && ar != ncclInProgress) {
      const std::string m = std::string(what) + ": NCCL asynchronous error: " + ErrStr(ar) + "; the communicator was aborted";
      c->abort(m);
      throw gz::Error(gz::ErrCode::CUDA, m);
    }
    if (c->abort_requested) {
      c->abort("aborted by the user");
      throw gz::Error(gz::ErrCode::CUDA, std::string(what) + ": the NCCL communicator was aborted by the user");
    }
    if (timed && std::chrono::steady_clock::now() > deadline) {
      const std::string m = std::string("ERR_GRADZIP_TIMEOUT: ") + what +
                            ": timed out waiting for the other ranks (ncclCommAbort called; the group is unusable)";
      c->abort(m.substr(21));
      throw gz::Error(gz::ErrCode::CUDA, m);
    }
    if (++spins < 100) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(spins < 2000 ? 20 : 200));
  }
}

struct Deadline {
  std::chrono::steady_clock::time_point at;
  bool timed;
  explicit Deadline(int64_t ms) : at(std::chrono::steady_clock::now() + std::chrono::milliseconds(ms)), timed(ms > 0) {}
};

// ncclInitRank(stream, id: Uint8Array(128), size, rank) -> Promise<External<Comm>>
// ncclCommInitRank blocks until every rank has joined: it runs on the stream worker, never the event loop.
Napi::Value InitRank(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  api(env);
  g_h.stream(env, info[0]);
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().ByteLength() != kUniqueIdBytes)
    Invalid(env, "nccl: id must be the 128-byte Uint8Array from comm.ncclUniqueId()");
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  ncclUniqueId id;
  std::memcpy(id.internal, static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), kUniqueIdBytes);
  const int size = info[2].As<Napi::Number>().Int32Value(), rank = info[3].As<Napi::Number>().Int32Value();
  if (size < 1 || rank < 0 || rank >= size) Invalid(env, "nccl: need 0 <= rank < size");
  auto c = std::make_shared<Comm>();
  c->rank = rank;
  c->size = size;
  auto work = [c, id, size, rank] {
    Nc(g_api.CommInitRank(&c->comm, size, id, rank), "ncclCommInitRank");
    gzc::check(cudaMalloc(reinterpret_cast<void**>(&c->scratch), 256), "cudaMalloc");
    gzc::check(cudaMallocHost(reinterpret_cast<void**>(&c->lens), sizeof(uint64_t) * size), "cudaMallocHost");
  };
  auto value = [c](Napi::Env e) -> Napi::Value {
    // the External owns a Comm moved out of the shared holder
    Comm* own = new Comm();
    std::swap(own->comm, c->comm);
    own->rank = c->rank; own->size = c->size;
    std::swap(own->scratch, c->scratch);
    std::swap(own->lens, c->lens);
    return Napi::External<Comm>::New(e, own, [](Napi::Env, Comm* p) { delete p; });
  };
  return g_h.run(env, info[0], true, work, value, {info[0]});
}

// ncclAllreduceF32(comm, stream, buf, n, divisor, timeoutMs) -> Promise: in-place float32 sum
// (ncclAllReduce, ncclSum), then x / divisor (correctly rounded) when divisor > 1.
Napi::Value AllreduceF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  api(env);
  Comm* c = AsComm(env, info[0]);
  const StreamView sv = g_h.stream(env, info[1]);
  const DevView x = g_h.dev(env, info[2], "allreduce: x");
  const double nd = info[3].As<Napi::Number>().DoubleValue();
  if (!(nd >= 0) || uint64_t(nd) * 4 > x.bytes) Invalid(env, "allreduce: n outside the device array");
  const uint64_t n = uint64_t(nd);
  const float divisor = float(info[4].As<Napi::Number>().DoubleValue());
  const int64_t ms = TimeoutMs(info[5]);
  float* xp = reinterpret_cast<float*>(x.ptr);
  auto work = [c, sv, xp, n, divisor, ms] {
    c->usable("allreduce");
    const Deadline d(ms);
    if (n) Nc(g_api.AllReduce(xp, xp, size_t(n), ncclFloat32, ncclSum, c->comm, sv.stream), "ncclAllReduce");
    if (divisor > 1) gzc::check(divide(xp, n, divisor, sv.stream), "divide kernel");
    Wait(c, sv.stream, d.at, d.timed, "allreduce");
  };
  return g_h.run(env, info[1], true, work, nullptr, {info[0], info[1], info[2]});
}

// ncclBcast(comm, stream, buf, bytes, root, timeoutMs) -> Promise: in-place ncclBroadcast of bytes.
Napi::Value Bcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  api(env);
  Comm* c = AsComm(env, info[0]);
  const StreamView sv = g_h.stream(env, info[1]);
  const DevView x = g_h.dev(env, info[2], "broadcast: x");
  const double bd = info[3].As<Napi::Number>().DoubleValue();
  if (!(bd >= 0) || uint64_t(bd) > x.bytes) Invalid(env, "broadcast: byte count outside the device array");
  const uint64_t bytes = uint64_t(bd);
  const int root = info[4].As<Napi::Number>().Int32Value();
  if (root < 0 || root >= c->size) Invalid(env, "broadcast: root must be a rank of the group");
  const int64_t ms = TimeoutMs(info[5]);
  uint8_t* xp = x.ptr;
  auto work = [c, sv, xp, bytes, root, ms] {
    c->usable("broadcast");
    const Deadline d(ms);
    if (bytes) Nc(g_api.Broadcast(xp, xp, size_t(bytes), ncclUint8, root, c->comm, sv.stream), "ncclBroadcast");
    Wait(c, sv.stream, d.at, d.timed, "broadcast");
  };
  return g_h.run(env, info[1], true, work, nullptr, {info[0], info[1], info[2]});
}

// ncclBarrier(comm, stream, timeoutMs) -> Promise: an all-reduce of one float (NCCL has no barrier).
Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  api(env);
  Comm* c = AsComm(env, info[0]);
  const StreamView sv = g_h.stream(env, info[1]);
  const int64_t ms = TimeoutMs(info[2]);
  auto work = [c, sv, ms] {
    c->usable("barrier");
    const Deadline d(ms);
    Nc(g_api.AllReduce(c->scratch, c->scratch, 1, ncclFloat32, ncclSum, c->comm, sv.stream), "ncclAllReduce");
    Wait(c, sv.stream, d.at, d.timed, "barrier");
  };
  return g_h.run(env, info[1], true, work, nullptr, {info[0], info[1]});
}

// ncclAllgatherCompressed(comm, stream, options, seed, x, n, mode, timeoutMs) -> Promise<number[]> (the
// P packet lengths). Slot j of the gather buffer (stride S = roundup(cap + 8, 256), cap = max_bytes) holds
// rank j's device packet at its start and its length (u64) in its last 8 bytes. This rank encodes x into its
// own slot on the device, one in-place ncclAllGather of S bytes per rank moves every slot, the P lengths
// come back to the host (P * 8 bytes, the only device-to-host copy) and are checked against cap, then every
// rank decodes all packets in rank order into x on the device:
//   mode 0: x = dec(p_0); x += dec(p_1); ...      (sum)
//   mode 1: x = 0; x += dec(p_j) * (1/P) for all j  (average, P a power of two: exact scaling)
//   mode 2: sum as mode 0, then x / P (correctly rounded)  (average, other P)
// exactly the order of lib/comm/group.ts, so every rank holds the same bits.
Napi::Value AllgatherCompressed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  api(env);
  Comm* c = AsComm(env, info[0]);
  const StreamView sv = g_h.stream(env, info[1]);
  const gz::Params p = g_h.params(env, info[2], info[3]);
  const DevView x = g_h.dev(env, info[4], "allreduce: x");
  const double nd = info[5].As<Napi::Number>().DoubleValue();
  if (!(nd >= 0) || nd > double(gz::kMaxN) || uint64_t(nd) * 4 > x.bytes) Invalid(env, "allreduce: n outside the device array");
  const uint64_t n = uint64_t(nd);
  const int mode = info[6].As<Napi::Number>().Int32Value();
  const int64_t ms = TimeoutMs(info[7]);
  uint64_t cap = 0;
  try {
    cap = gz::max_bytes(p, n);
  } catch (const gz::Error& e) {
    ThrowCode(env, gz::err_code_name(e.code), e.what());
  }
  const uint64_t slot = (cap + 8 + 255) / 256 * 256;
  float* xp = reinterpret_cast<float*>(x.ptr);
  auto lens = std::make_shared<std::vector<uint64_t>>();
  auto work = [c, sv, p, xp, n, mode, ms, cap, slot, lens] {
    c->usable("allreduce");
    const Deadline d(ms);
    const int P = c->size;
    const uint64_t need = slot * uint64_t(P);
    if (c->gather_bytes < need) {
      if (c->gather) { gzc::check(cudaFree(c->gather), "cudaFree"); c->gather = nullptr; c->gather_bytes = 0; }
      gzc::check(cudaMalloc(reinterpret_cast<void**>(&c->gather), need), "cudaMalloc (NCCL gather slots)");
      c->gather_bytes = need;
    }
    uint8_t* mine = c->gather + slot * uint64_t(c->rank);
    gzc::encode(p, xp, n, mine, cap, sv.stream, sv.res);
    gzc::check(cudaStreamSynchronize(sv.stream), "cudaStreamSynchronize");
    gzc::raise_flags(sv.res->flags, "encode");
    c->lens[c->rank] = sv.res->length;
    gzc::check(cudaMemcpyAsync(mine + slot - 8, &c->lens[c->rank], 8, cudaMemcpyHostToDevice, sv.stream), "cudaMemcpyAsync");
    Nc(g_api.AllGather(mine, c->gather, size_t(slot), ncclUint8, c->comm, sv.stream), "ncclAllGather");
    gzc::check(cudaMemcpy2DAsync(c->lens, 8, c->gather + slot - 8, size_t(slot), 8, size_t(P), cudaMemcpyDeviceToHost, sv.stream),
               "cudaMemcpy2DAsync");
    Wait(c, sv.stream, d.at, d.timed, "allreduce(allgather)");
    lens->assign(c->lens, c->lens + P);
    for (int j = 0; j < P; ++j)
      if ((*lens)[j] < gz::kHeaderBytes || (*lens)[j] > cap)
        throw gz::Error(gz::ErrCode::CORRUPT, "allreduce(allgather): rank " + std::to_string(j) + " sent a packet length of " +
                                                  std::to_string((*lens)[j]) + " bytes, outside [48, " + std::to_string(cap) + "]");
    const float inv = 1.0f / float(P);
    if (mode == 1 && n) gzc::check(cudaMemsetAsync(xp, 0, n * 4, sv.stream), "cudaMemsetAsync");
    for (int j = 0; j < P; ++j) {
      const bool add = mode == 1 || j > 0;
      gzc::decode(c->gather + slot * uint64_t(j), (*lens)[j], xp, n, add, mode == 1 ? inv : 1.0f, sv.stream, sv.res);
      gzc::check(cudaStreamSynchronize(sv.stream), "cudaStreamSynchronize");
      gzc::raise_flags(sv.res->flags, "decode");
    }
    if (mode == 2) gzc::check(divide(xp, n, float(P), sv.stream), "divide kernel");
  };
  auto value = [lens](Napi::Env e) -> Napi::Value {
    Napi::Array a = Napi::Array::New(e, lens->size());
    for (size_t j = 0; j < lens->size(); ++j) a.Set(uint32_t(j), Napi::Number::New(e, double((*lens)[j])));
    return a;
  };
  return g_h.run(env, info[1], true, work, value, {info[0], info[1], info[4]});
}

// ncclClose(comm, stream) -> Promise: ncclCommDestroy (after the stream's queued work), frees the slots.
Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  api(env);
  Comm* c = AsComm(env, info[0]);
  g_h.stream(env, info[1]);
  auto work = [c] {
    if (c->destroyed) return;
    c->destroyed = true;
    ncclComm_t k = c->comm;
    c->comm = nullptr;
    c->release_memory();
    if (k) Nc(g_api.CommDestroy(k), "ncclCommDestroy");
  };
  return g_h.run(env, info[1], true, work, nullptr, {info[0], info[1]});
}

// ncclAbortComm(comm): asks for ncclCommAbort; the stream worker does it in the pending operation's wait,
// or at the start of the next one (so the communicator is never touched by two threads at once).
Napi::Value AbortComm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  api(env);
  AsComm(env, info[0])->abort_requested = true;
  return env.Undefined();
}

}  // namespace

void Register(Napi::Env env, Napi::Object exports, const Hooks& hooks) {
  g_h = hooks;
  exports.Set("ncclLoad", Napi::Function::New(env, Load, "ncclLoad"));
  exports.Set("ncclUniqueId", Napi::Function::New(env, UniqueId, "ncclUniqueId"));
  exports.Set("ncclInitRank", Napi::Function::New(env, InitRank, "ncclInitRank"));
  exports.Set("ncclAllreduceF32", Napi::Function::New(env, AllreduceF32, "ncclAllreduceF32"));
  exports.Set("ncclBcast", Napi::Function::New(env, Bcast, "ncclBcast"));
  exports.Set("ncclBarrier", Napi::Function::New(env, Barrier, "ncclBarrier"));
  exports.Set("ncclAllgatherCompressed", Napi::Function::New(env, AllgatherCompressed, "ncclAllgatherCompressed"));
  exports.Set("ncclClose", Napi::Function::New(env, Close, "ncclClose"));
  exports.Set("ncclAbortComm", Napi::Function::New(env, AbortComm, "ncclAbortComm"));
}

}  // namespace gzc_nccl
