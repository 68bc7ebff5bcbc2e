// RMSNorm on the device: one block per row, a block reduction of x^2, then y = x * rms_inv * w.
// The per-element math is ferry/ops/norm_math.h, shared with the CPU op and its tests.
// Launch: rows blocks x 256 threads; shared memory: 8 floats (static). y may alias x (q/k norm in place):
// every read of the row precedes the barrier before the first write.
#include <cuda_runtime.h>

#include "ferry/ops/norm_math.h"
#include "kernels/cuda_check.h"
#include "kernels/rms_norm.h"

namespace ferry::cuda {

template <int kThreads>
__global__ void __launch_bounds__(kThreads) rms_norm_kernel(const float* x, const float* __restrict__ w, float* y,
                                                           int n, float eps) {
  const float* row = x + static_cast<size_t>(blockIdx.x) * n;
  float* out = y + static_cast<size_t>(blockIdx.x) * n;
  float sum = 0.f;
  for (int i = threadIdx.x; i < n; i += kThreads) sum += row[i] * row[i];
  __shared__ float partial[kThreads / 32];
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    sum = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : 0.f;
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (threadIdx.x == 0) partial[0] = sum;
  }
  __syncthreads();
  const float inv = rms_inv(partial[0], n, eps);
  for (int i = threadIdx.x; i < n; i += kThreads) out[i] = rms_apply(row[i], inv, w[i]);
}

void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  rms_norm_kernel<256><<<rows, 256, 0, stream>>>(x, w, y, n, eps);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ferry::cuda
