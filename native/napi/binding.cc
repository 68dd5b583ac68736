// gradzip N-API binding: registration and workers only. All numeric work is in native/core and
// native/codecs (gz:: API, native/core/gradzip.h). The TypeScript layer (lib/) validates every argument and
// builds one options object per compressor; makeParams copies it into a gz::Params held by an External, so a
// compress call costs one External lookup, one typed-array lookup and the encode itself.
//
// Errors: gz::Error becomes a JS Error with `code` = the stable string (ERR_GRADZIP_*); lib/ rethrows it as a
// GradzipError with the JS stack. Async workers catch gz::Error in Execute (no JS there) and reject in OnError.
#include <napi.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "core/gradzip.h"

namespace {

constexpr const char* kInvalid = "ERR_GRADZIP_INVALID_ARG";
constexpr const char* kInternal = "ERR_GRADZIP_INTERNAL";

Napi::Error MakeError(Napi::Env env, const char* code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

[[noreturn]] void ThrowInvalid(Napi::Env env, const std::string& msg) { throw MakeError(env, kInvalid, msg); }

// Runs f, turning core exceptions into JS errors with a code.
template <class F>
auto Guard(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const gz::Error& e) {
    throw MakeError(env, gz::err_code_name(e.code), e.what());
  } catch (const std::bad_alloc&) {
    throw MakeError(env, kInternal, "gradzip: out of memory");
  } catch (const std::exception& e) {
    throw MakeError(env, kInternal, std::string("gradzip: internal error: ") + e.what());
  }
}

// ---- argument helpers (lib/ has already validated; these only keep a direct caller from crashing) ----

struct View {
  void* data = nullptr;
  size_t length = 0;  // elements
  size_t bytes = 0;
};

View GetTyped(Napi::Env env, const Napi::Value& v, napi_typedarray_type want, const char* what) {
  View out;
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) ThrowInvalid(env, std::string(what) + " must be a typed array");
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, &out.length, &out.data, &ab, &off) != napi_ok)
    ThrowInvalid(env, std::string(what) + ": cannot read the typed array");
  if (type != want) {
    const bool bytes_ok = want == napi_uint8_array && (type == napi_uint8_clamped_array || type == napi_int8_array);
    if (!bytes_ok) ThrowInvalid(env, std::string(what) + " has the wrong element type");
  }
  out.bytes = out.length * (want == napi_float32_array ? 4 : 1);
  if (out.data == nullptr && out.length != 0) ThrowInvalid(env, std::string(what) + " is detached");
  return out;
}

gz::Params& GetParams(Napi::Env env, const Napi::Value& v) {
  if (!v.IsExternal()) ThrowInvalid(env, "internal: params handle expected");
  return *v.As<Napi::External<gz::Params>>().Data();
}

// seed: undefined (draw one), a non-negative safe integer, or a bigint < 2^64.
void ApplySeed(Napi::Env env, const Napi::Value& v, gz::Params& p) {
  if (v.IsUndefined() || v.IsNull()) {
    p.seed_given = false;
    p.seed = 0;
    return;
  }
  if (v.IsNumber()) {
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d)))
      ThrowInvalid(env, "seed must be a non-negative safe integer or a bigint below 2^64");
    p.seed = static_cast<uint64_t>(d);
  } else if (v.IsBigInt()) {
    bool lossless = false;
    const uint64_t s = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowInvalid(env, "seed must be a bigint in [0, 2^64)");
    p.seed = s;
  } else {
    ThrowInvalid(env, "seed must be a number or a bigint");
  }
  p.seed_given = true;
}

uint32_t U32(const Napi::Object& o, const char* key, uint32_t def) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) return def;
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 4294967295.0) return def;
  return static_cast<uint32_t>(d);
}

double Num(const Napi::Object& o, const char* key, double def) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : def;
}

bool Bool(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

// makeParams({codec, levels, bucket, norm, coding, hasK, k, ratio, vt, shape, nonfiniteZero, threads, forceScalar})
Napi::Value MakeParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowInvalid(env, "internal: options object expected");
  Napi::Object o = info[0].As<Napi::Object>();
  auto p = std::make_unique<gz::Params>();
  p->codec = static_cast<gz::Codec>(U32(o, "codec", gz::QSGD));
  p->levels = U32(o, "levels", p->levels);
  p->bucket = U32(o, "bucket", p->bucket);
  p->norm = static_cast<gz::Norm>(U32(o, "norm", gz::NORM_L2));
  p->coding = static_cast<gz::Coding>(U32(o, "coding", gz::CODING_FIXED));
  p->has_k = Bool(o, "hasK");
  const double k = Num(o, "k", 0);
  p->k = k >= 0 && k <= 9007199254740991.0 ? static_cast<uint64_t>(k) : 0;
  p->ratio = Num(o, "ratio", p->ratio);
  p->vt = static_cast<gz::ValueType>(U32(o, "vt", gz::VT_F32));
  p->shape = static_cast<float>(Num(o, "shape", 0));
  p->nonfinite_zero = Bool(o, "nonfiniteZero");
  p->threads = static_cast<int>(U32(o, "threads", 0));
  p->force_scalar = Bool(o, "forceScalar");
  Guard(env, [&] { gz::check_params(*p); return 0; });
  return Napi::External<gz::Params>::New(env, p.release(), [](Napi::Env, gz::Params* q) { delete q; });
}

// maxBytes(params, n) -> number
Napi::Value MaxBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const gz::Params& p = GetParams(env, info[0]);
  const double n = info[1].ToNumber().DoubleValue();
  if (!(n >= 0) || n > static_cast<double>(gz::kMaxN)) ThrowInvalid(env, "n must be an integer in [0, 2^34]");
  return Napi::Number::New(env, static_cast<double>(Guard(env, [&] { return gz::max_bytes(p, static_cast<uint64_t>(n)); })));
}

// Output buffer policy for calls without `out`: the returned Uint8Array owns exactly the packet's bytes
// (byteOffset 0, buffer.byteLength == length). Small packets are encoded into a per-thread scratch and
// copied; large ones into a fresh ArrayBuffer of the bound (calloc: untouched pages cost nothing), returned
// as is when the packet fills it (fixed layouts) and copied to an exact-size buffer otherwise.
constexpr uint64_t kScratchMax = 256 * 1024;

std::vector<uint8_t>& Scratch() {
  thread_local std::vector<uint8_t> s;
  return s;
}

Napi::Value ExactCopy(Napi::Env env, const uint8_t* src, uint64_t len) {
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, static_cast<size_t>(len));
  if (len) std::memcpy(ab.Data(), src, static_cast<size_t>(len));
  return Napi::Uint8Array::New(env, static_cast<size_t>(len), ab, 0);
}

// Shared by encode and efStep: runs `run(dst, cap)` into `out` (returns the length as a number) or into a
// fresh exact-size Uint8Array.
template <class Run>
Napi::Value EncodeInto(Napi::Env env, const Napi::Value& outv, uint64_t cap, Run&& run) {
  if (!outv.IsUndefined() && !outv.IsNull()) {
    View out = GetTyped(env, outv, napi_uint8_array, "out");
    if (out.bytes < cap)
      ThrowInvalid(env, "out is too small: " + std::to_string(out.bytes) + " bytes, maxCompressedBytes(n) = " +
                            std::to_string(cap));
    const uint64_t len = Guard(env, [&] { return run(static_cast<uint8_t*>(out.data), static_cast<uint64_t>(out.bytes)); });
    return Napi::Number::New(env, static_cast<double>(len));
  }
  if (cap <= kScratchMax) {
    std::vector<uint8_t>& s = Scratch();
    if (s.size() < cap) s.resize(static_cast<size_t>(cap));
    const uint64_t len = Guard(env, [&] { return run(s.data(), cap); });
    return ExactCopy(env, s.data(), len);
  }
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, static_cast<size_t>(cap));
  uint8_t* dst = static_cast<uint8_t*>(ab.Data());
  const uint64_t len = Guard(env, [&] { return run(dst, cap); });
  if (len == cap) return Napi::Uint8Array::New(env, static_cast<size_t>(len), ab, 0);
  return ExactCopy(env, dst, len);
}

// encode(params, x: Float32Array, seed, out?: Uint8Array) -> Uint8Array | number (length written into out)
Napi::Value Encode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  gz::Params p = GetParams(env, info[0]);
  View x = GetTyped(env, info[1], napi_float32_array, "x");
  ApplySeed(env, info[2], p);
  const uint64_t n = x.length;
  const uint64_t cap = Guard(env, [&] { return gz::max_bytes(p, n); });
  const float* xd = static_cast<const float*>(x.data);
  return EncodeInto(env, info[3], cap, [&](uint8_t* dst, uint64_t c) { return gz::encode(p, xd, n, dst, c); });
}

// ---- async workers ----

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  // Keeps a JS value (typed array, params handle) alive until the worker is destroyed on the JS thread.
  void Keep(const Napi::Value& v) {
    if (!v.IsUndefined() && !v.IsNull()) refs_.emplace_back(Napi::Persistent(v));
  }
  template <class F>
  void Run(F&& f) {
    try {
      f();
    } catch (const gz::Error& e) {
      code_ = gz::err_code_name(e.code);
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = kInternal;
      SetError("gradzip: out of memory");
    } catch (const std::exception& e) {
      code_ = kInternal;
      SetError(std::string("gradzip: internal error: ") + e.what());
    }
  }
  void OnError(const Napi::Error& e) override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Error err = MakeError(env, code_.c_str(), e.Message());
    deferred_.Reject(err.Value());
  }
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
  std::string code_ = kInternal;
};

// Where an async encode writes: the caller's `out`, or an ArrayBuffer of the bound created on the JS thread.
struct AsyncDst {
  uint8_t* data = nullptr;
  uint64_t cap = 0;
  bool user_out = false;
};

AsyncDst PrepareDst(Napi::Env env, const Napi::Value& outv, uint64_t cap, Napi::Value* keep) {
  AsyncDst d;
  d.cap = cap;
  if (!outv.IsUndefined() && !outv.IsNull()) {
    View out = GetTyped(env, outv, napi_uint8_array, "out");
    if (out.bytes < cap)
      ThrowInvalid(env, "out is too small: " + std::to_string(out.bytes) + " bytes, maxCompressedBytes(n) = " +
                            std::to_string(cap));
    d.data = static_cast<uint8_t*>(out.data);
    d.cap = out.bytes;
    d.user_out = true;
    *keep = outv;
  } else {
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, static_cast<size_t>(cap));
    d.data = static_cast<uint8_t*>(ab.Data());
    *keep = ab;
  }
  return d;
}

Napi::Value ResolveDst(Napi::Env env, const AsyncDst& d, const Napi::Reference<Napi::Value>& buf, uint64_t len) {
  if (d.user_out) return Napi::Number::New(env, static_cast<double>(len));
  Napi::ArrayBuffer ab = buf.Value().As<Napi::ArrayBuffer>();
  if (len == d.cap) return Napi::Uint8Array::New(env, static_cast<size_t>(len), ab, 0);
  return ExactCopy(env, d.data, len);
}

class EncodeWorker : public PromiseWorker {
 public:
  EncodeWorker(Napi::Env env, const gz::Params& p, const Napi::Value& xv, const View& x, const Napi::Value& outv,
               uint64_t cap)
      : PromiseWorker(env, "gradzip:encode"), p_(p), x_(static_cast<const float*>(x.data)), n_(x.length) {
    Keep(xv);
    Napi::Value keep;
    dst_ = PrepareDst(env, outv, cap, &keep);
    buf_ = Napi::Persistent(keep);
  }
  void Execute() override { Run([&] { len_ = gz::encode(p_, x_, n_, dst_.data, dst_.cap); }); }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    deferred_.Resolve(ResolveDst(Env(), dst_, buf_, len_));
  }

 private:
  gz::Params p_;
  const float* x_;
  uint64_t n_;
  AsyncDst dst_;
  Napi::Reference<Napi::Value> buf_;
  uint64_t len_ = 0;
};

// encodeAsync(params, x, seed, out?) -> Promise<Uint8Array | number>
Napi::Value EncodeAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  gz::Params p = GetParams(env, info[0]);
  View x = GetTyped(env, info[1], napi_float32_array, "x");
  ApplySeed(env, info[2], p);
  const uint64_t cap = Guard(env, [&] { return gz::max_bytes(p, x.length); });
  auto* w = new EncodeWorker(env, p, info[1], x, info[3], cap);
  Napi::Promise pr = w->Promise();
  w->Queue();
  return pr;
}

// ---- decode ----

struct DecodeArgs {
  View pkt;
  float alpha = 1.f;
  int threads = 0;
  bool scalar = false;
};

DecodeArgs GetDecodeArgs(const Napi::CallbackInfo& info, size_t alpha_at) {
  Napi::Env env = info.Env();
  DecodeArgs a;
  a.pkt = GetTyped(env, info[0], napi_uint8_array, "packet");
  if (alpha_at && info[alpha_at].IsNumber()) a.alpha = info[alpha_at].As<Napi::Number>().FloatValue();
  const size_t t = alpha_at ? alpha_at + 1 : 2;
  if (info[t].IsNumber()) a.threads = info[t].As<Napi::Number>().Int32Value();
  if (info[t + 1].IsBoolean()) a.scalar = info[t + 1].As<Napi::Boolean>().Value();
  return a;
}

// Allocates the output Float32Array after the packet is fully validated (never more than the validated n).
// A valid topk/randomk packet of a few bytes may claim n up to 2^34: V8 aborts the process when an ArrayBuffer
// allocation fails, so large outputs are allocated here with calloc (a failure is a catchable error) and handed
// to V8 as an external buffer.
constexpr uint64_t kMaxTypedLength = uint64_t(1) << 32;  // node 20: the longest Float32Array
constexpr uint64_t kBigOutputBytes = uint64_t(64) << 20;

Napi::TypedArrayOf<float> AllocFor(Napi::Env env, const View& pkt, int threads) {
  const gz::Header h = Guard(env, [&] { return gz::parse(static_cast<const uint8_t*>(pkt.data), pkt.bytes, threads); });
  if (h.n > kMaxTypedLength)
    ThrowInvalid(env, "the packet holds n = " + std::to_string(h.n) + " elements, more than a Float32Array can hold");
  const size_t n = static_cast<size_t>(h.n);
  if (uint64_t(n) * 4 < kBigOutputBytes) return Napi::Float32Array::New(env, n);
  void* mem = std::calloc(n, 4);
  if (mem == nullptr)
    ThrowInvalid(env, "cannot allocate the output for the packet's n = " + std::to_string(h.n) +
                          " elements (out of memory); decode into your own `out` array");
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, mem, n * 4, [](Napi::Env, void* d) { std::free(d); });
  return Napi::Float32Array::New(env, n, ab, 0);
}

// decode(packet, out?, threads?, scalar?) -> Float32Array
Napi::Value Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DecodeArgs a = GetDecodeArgs(info, 0);
  Napi::Value outv = info[1];
  // Without `out`, AllocFor has just parsed the packet, CRC included; the decode that follows (same thread, no JS
  // in between) does not check the CRC a second time.
  const bool allocated = outv.IsUndefined() || outv.IsNull();
  if (allocated) outv = AllocFor(env, a.pkt, a.threads);
  View out = GetTyped(env, outv, napi_float32_array, "out");
  Guard(env, [&] {
    gz::decode(static_cast<const uint8_t*>(a.pkt.data), a.pkt.bytes, static_cast<float*>(out.data), out.length, false,
               1.f, a.threads, a.scalar, allocated);
    return 0;
  });
  return outv;
}

// decodeAdd(packet, acc, alpha, threads?, scalar?) -> acc
Napi::Value DecodeAdd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DecodeArgs a = GetDecodeArgs(info, 2);
  View acc = GetTyped(env, info[1], napi_float32_array, "acc");
  Guard(env, [&] {
    gz::decode(static_cast<const uint8_t*>(a.pkt.data), a.pkt.bytes, static_cast<float*>(acc.data), acc.length, true,
               a.alpha, a.threads, a.scalar);
    return 0;
  });
  return info[1];
}

class DecodeWorker : public PromiseWorker {
 public:
  DecodeWorker(Napi::Env env, const Napi::Value& pktv, const DecodeArgs& a, const Napi::Value& outv, bool add)
      : PromiseWorker(env, add ? "gradzip:decodeAdd" : "gradzip:decode"), a_(a), add_(add) {
    Keep(pktv);
    View out = GetTyped(env, outv, napi_float32_array, add ? "acc" : "out");
    out_ = static_cast<float*>(out.data);
    n_ = out.length;
    result_ = Napi::Persistent(outv);
  }
  void Execute() override {
    Run([&] {
      gz::decode(static_cast<const uint8_t*>(a_.pkt.data), a_.pkt.bytes, out_, n_, add_, a_.alpha, a_.threads, a_.scalar);
    });
  }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    deferred_.Resolve(result_.Value());
  }

 private:
  DecodeArgs a_;
  bool add_;
  float* out_ = nullptr;
  uint64_t n_ = 0;
  Napi::Reference<Napi::Value> result_;
};

// decodeAsync(packet, out?, threads?, scalar?) -> Promise<Float32Array>. Without `out` the header is validated on the
// JS thread (header + CRC) to size the output; the decode itself runs on the libuv pool.
Napi::Value DecodeAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DecodeArgs a = GetDecodeArgs(info, 0);
  Napi::Value outv = info[1];
  if (outv.IsUndefined() || outv.IsNull()) outv = AllocFor(env, a.pkt, a.threads);
  auto* w = new DecodeWorker(env, info[0], a, outv, false);
  Napi::Promise pr = w->Promise();
  w->Queue();
  return pr;
}

// decodeAddAsync(packet, acc, alpha, threads?, scalar?) -> Promise<acc>
Napi::Value DecodeAddAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DecodeArgs a = GetDecodeArgs(info, 2);
  auto* w = new DecodeWorker(env, info[0], a, info[1], true);
  Napi::Promise pr = w->Promise();
  w->Queue();
  return pr;
}

// ---- parse (inspect) ----

Napi::Value Parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View pkt = GetTyped(env, info[0], napi_uint8_array, "packet");
  const gz::Header h = Guard(env, [&] { return gz::parse(static_cast<const uint8_t*>(pkt.data), pkt.bytes); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", h.version);
  o.Set("codec", h.codec);
  o.Set("flags", h.flags);
  o.Set("n", static_cast<double>(h.n));
  o.Set("seed", Napi::BigInt::New(env, h.seed));
  o.Set("bucket", h.bucket);
  o.Set("paramBytes", h.param_bytes);
  o.Set("chunkCount", h.chunk_count);
  o.Set("chunkElems", h.chunk_elems);
  o.Set("payloadBytes", static_cast<double>(h.payload_bytes));
  o.Set("totalBytes", static_cast<double>(h.total_bytes));
  o.Set("levels", h.p.levels);
  o.Set("norm", static_cast<uint32_t>(h.p.norm));
  o.Set("coding", static_cast<uint32_t>(h.p.coding));
  o.Set("k", static_cast<double>(h.p.k));
  o.Set("vt", static_cast<uint32_t>(h.p.vt));
  if (h.codec == gz::NONUNIFORM) {
    o.Set("shape", h.nu_shape);
    o.Set("scale", h.nu_scale);
    const uint32_t L = h.p.levels <= gz::kMaxNonuniformLevels ? h.p.levels : gz::kMaxNonuniformLevels;
    Napi::Float32Array q = Napi::Float32Array::New(env, L + 1);
    for (uint32_t i = 0; i <= L; ++i) q[i] = h.nu_levels[i];
    o.Set("levelTable", q);
  }
  return o;
}

// ---- error feedback ----

struct EfArgs {
  gz::Params p;
  View g, h, scratch;
  float alpha = 1.f, beta = 1.f;
};

// efStep(params, g, h, scratch, alpha, beta, seed, out?) -> Uint8Array | number
EfArgs GetEfArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EfArgs a;
  a.p = GetParams(env, info[0]);
  a.g = GetTyped(env, info[1], napi_float32_array, "g");
  a.h = GetTyped(env, info[2], napi_float32_array, "h");
  a.scratch = GetTyped(env, info[3], napi_float32_array, "scratch");
  if (a.h.length != a.g.length || a.scratch.length < a.g.length)
    ThrowInvalid(env, "errorFeedback: the residual has " + std::to_string(a.h.length) + " elements, the gradient " +
                          std::to_string(a.g.length));
  a.alpha = info[4].ToNumber().FloatValue();
  a.beta = info[5].ToNumber().FloatValue();
  ApplySeed(env, info[6], a.p);
  return a;
}

Napi::Value EfStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EfArgs a = GetEfArgs(info);
  const uint64_t n = a.g.length;
  const uint64_t cap = Guard(env, [&] { return gz::max_bytes(a.p, n); });
  return EncodeInto(env, info[7], cap, [&](uint8_t* dst, uint64_t c) {
    return gz::ef_step(a.p, static_cast<const float*>(a.g.data), static_cast<float*>(a.h.data), n, a.alpha, a.beta, dst,
                       c, static_cast<float*>(a.scratch.data));
  });
}

class EfWorker : public PromiseWorker {
 public:
  EfWorker(Napi::Env env, const Napi::CallbackInfo& info, const EfArgs& a, uint64_t cap)
      : PromiseWorker(env, "gradzip:efStep"), a_(a) {
    Keep(info[1]);
    Keep(info[2]);
    Keep(info[3]);
    Napi::Value keep;
    dst_ = PrepareDst(env, info[7], cap, &keep);
    buf_ = Napi::Persistent(keep);
  }
  void Execute() override {
    Run([&] {
      len_ = gz::ef_step(a_.p, static_cast<const float*>(a_.g.data), static_cast<float*>(a_.h.data), a_.g.length,
                         a_.alpha, a_.beta, dst_.data, dst_.cap, static_cast<float*>(a_.scratch.data));
    });
  }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    deferred_.Resolve(ResolveDst(Env(), dst_, buf_, len_));
  }

 private:
  EfArgs a_;
  AsyncDst dst_;
  Napi::Reference<Napi::Value> buf_;
  uint64_t len_ = 0;
};

Napi::Value EfStepAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EfArgs a = GetEfArgs(info);
  const uint64_t cap = Guard(env, [&] { return gz::max_bytes(a.p, a.g.length); });
  auto* w = new EfWorker(env, info, a, cap);
  Napi::Promise pr = w->Promise();
  w->Queue();
  return pr;
}

// ---- runtime info ----

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const gz::CpuInfo c = Guard(env, [] { return gz::cpu_info(); });
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("avx2", c.avx2);
  cpu.Set("bmi2", c.bmi2);
  cpu.Set("fma", c.fma);
  cpu.Set("f16c", c.f16c);
  cpu.Set("sse42", c.sse42);
  cpu.Set("pclmul", c.pclmul);
  cpu.Set("hardwareThreads", c.threads);
  Napi::Object o = Napi::Object::New(env);
  o.Set("cpu", cpu);
  o.Set("threads", Guard(env, [] { return gz::default_threads(); }));
  o.Set("formatVersion", 1);
  o.Set("maxN", static_cast<double>(gz::kMaxN));
  o.Set("napiVersion", NAPI_VERSION);
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int t = info[0].ToNumber().Int32Value();
  if (t < 0) ThrowInvalid(env, "threads must be >= 0");
  Guard(env, [&] { gz::set_default_threads(t); return 0; });
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("makeParams", Napi::Function::New(env, MakeParams, "makeParams"));
  exports.Set("maxBytes", Napi::Function::New(env, MaxBytes, "maxBytes"));
  exports.Set("encode", Napi::Function::New(env, Encode, "encode"));
  exports.Set("encodeAsync", Napi::Function::New(env, EncodeAsync, "encodeAsync"));
  exports.Set("decode", Napi::Function::New(env, Decode, "decode"));
  exports.Set("decodeAsync", Napi::Function::New(env, DecodeAsync, "decodeAsync"));
  exports.Set("decodeAdd", Napi::Function::New(env, DecodeAdd, "decodeAdd"));
  exports.Set("decodeAddAsync", Napi::Function::New(env, DecodeAddAsync, "decodeAddAsync"));
  exports.Set("parse", Napi::Function::New(env, Parse, "parse"));
  exports.Set("efStep", Napi::Function::New(env, EfStep, "efStep"));
  exports.Set("efStepAsync", Napi::Function::New(env, EfStepAsync, "efStepAsync"));
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  return exports;
}

}  // namespace

NODE_API_MODULE(gradzip, Init)
