// NCCL transport of gradzip_cuda.node (native/cuda/nccl.cc): the few things it needs from the addon's
// binding (native/cuda/binding.cc), passed as plain function pointers so that the binding's types stay
// private to it. See docs/COLLECTIVES.md, section "NCCL".
#pragma once
#include <napi.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "core/gradzip.h"
#include "cuda/gzcuda.h"

namespace gzc_nccl {

struct DevView { uint8_t* ptr; uint64_t bytes; };
struct StreamView { cudaStream_t stream; gzc::OpResult* res; };

struct Hooks {
  // A DevBuf's device pointer and size (throws ERR_GRADZIP_INVALID_ARG for anything else or a freed one).
  DevView (*dev)(Napi::Env, const Napi::Value&, const char* what);
  // A Stream's CUDA stream and pinned result slot.
  StreamView (*stream)(Napi::Env, const Napi::Value&);
  // gz::Params from the compressor's native options and a seed (as the addon's encode reads them).
  gz::Params (*params)(Napi::Env, const Napi::Value& options, const Napi::Value& seed);
  // Runs `work` on the stream's host worker (async: a Promise; sync: on the caller) as the addon's own
  // operations do; gz::Error thrown by work rejects with its code.
  Napi::Value (*run)(Napi::Env, const Napi::Value& stream, bool async, std::function<void()> work,
                     std::function<Napi::Value(Napi::Env)> value, std::vector<Napi::Value> keep);
};

// Adds the ncclXxx functions to the addon's exports.
void Register(Napi::Env env, Napi::Object exports, const Hooks& hooks);

}  // namespace gzc_nccl
