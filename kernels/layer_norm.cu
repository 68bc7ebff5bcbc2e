// LayerNorm on the device: one block per row, two block reductions (sum, then centred sum of squares),
// then y = (x - mean) * inv * w + b with the per-element math of ferry/ops/norm_math.h.
// Launch: rows blocks x 256 threads; shared memory: 8 floats (static).
#include "ferry/ops/norm_math.h"
#include "kernels/cuda_check.h"
#include "kernels/layer_norm.h"

namespace ferry::cuda {

namespace {

constexpr int kThreads = 256;

// The sum of `v` over the block, returned to every thread. `partial` holds kThreads / 32 floats; the
// trailing barrier lets the caller reuse it.
__device__ float block_sum(float v, float* partial) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
  __syncthreads();
  return total;
}

__global__ void __launch_bounds__(kThreads)
    layer_norm_kernel(const float* x, const float* __restrict__ w, const float* __restrict__ b, float* y, int n,
                      float eps) {
  __shared__ float partial[kThreads / 32];
  const float* row = x + static_cast<size_t>(blockIdx.x) * n;
  float* out = y + static_cast<size_t>(blockIdx.x) * n;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += kThreads) sum += row[i];
  const float mean = block_sum(sum, partial) / static_cast<float>(n);
  float sq = 0.0f;
  for (int i = threadIdx.x; i < n; i += kThreads) sq += (row[i] - mean) * (row[i] - mean);
  const float inv = layer_norm_inv(block_sum(sq, partial), n, eps);
  // every read of the row happened before the last barrier: y may alias x
  for (int i = threadIdx.x; i < n; i += kThreads) out[i] = layer_norm_apply(row[i], mean, inv, w[i], b ? b[i] : 0.0f);
}

}  // namespace

void layer_norm(const float* x, const float* w, const float* b, float* y, int rows, int n, float eps,
                cudaStream_t stream) {
  if (rows <= 0) return;
  layer_norm_kernel<<<rows, kThreads, 0, stream>>>(x, w, b, y, n, eps);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ferry::cuda
