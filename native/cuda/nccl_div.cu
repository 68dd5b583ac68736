// NCCL transport helper (native/cuda/nccl.cc): x[i] = x[i] / d, one correctly rounded float32 division per
// element (__fdiv_rn), as the CPU transports' `average` does for a group size that is not a power of two.
#include <cuda_runtime.h>
#include <cstdint>

namespace gzc_nccl {

__global__ void divide_kernel(float* x, uint64_t n, float d) {
  const uint64_t step = uint64_t(gridDim.x) * blockDim.x;
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) x[i] = __fdiv_rn(x[i], d);
}

cudaError_t divide(float* x, uint64_t n, float d, cudaStream_t st) {
  if (n == 0) return cudaSuccess;
  uint64_t blocks = (n + 255) / 256;
  if (blocks > 65536) blocks = 65536;
  divide_kernel<<<unsigned(blocks), 256, 0, st>>>(x, n, d);
  return cudaGetLastError();
}

}  // namespace gzc_nccl
