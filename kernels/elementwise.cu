// Element-wise kernels: a grid-stride loop of 256-thread blocks (at most kMaxBlocks blocks), no shared
// memory. The per-element math is the host's (activation_math.h, dtype.h), in fp32.
#include <algorithm>

#include "ferry/dtype.h"
#include "ferry/ops/activation_math.h"
#include "kernels/cuda_check.h"
#include "kernels/elementwise.h"

namespace ferry::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

int blocks_for(int64_t n) { return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks)); }

#define FERRY_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * kThreads)

__global__ void __launch_bounds__(kThreads) bias_add_kernel(float* y, const float* __restrict__ bias, int64_t total, int n) {
  FERRY_GRID_STRIDE(i, total) y[i] += bias[i % n];
}

__global__ void __launch_bounds__(kThreads) clamp_kernel(float* x, int64_t n, float limit) {
  FERRY_GRID_STRIDE(i, n) {  // std::clamp, NaN passing through as on the host
    const float v = x[i];
    x[i] = v < -limit ? -limit : (limit < v ? limit : v);
  }
}

__global__ void __launch_bounds__(kThreads) residual_add_kernel(float* h, const float* __restrict__ y, int64_t n) {
  FERRY_GRID_STRIDE(i, n) h[i] = __fadd_rn(h[i], y[i]);
}

__global__ void __launch_bounds__(kThreads) silu_mul_kernel(const float* gate, const float* __restrict__ up, float* out,
                                                             int64_t n) {
  FERRY_GRID_STRIDE(i, n) out[i] = ::ferry::silu_mul(gate[i], up[i]);
}

__global__ void __launch_bounds__(kThreads) sigmoid_kernel(float* x, int64_t n) {
  FERRY_GRID_STRIDE(i, n) x[i] = 1.0f / (1.0f + expf(-x[i]));
}

__global__ void __launch_bounds__(kThreads) to_bf16_kernel(const float* __restrict__ x, uint16_t* __restrict__ out,
                                                            int64_t n) {
  FERRY_GRID_STRIDE(i, n) out[i] = f32_to_bf16(x[i]);
}

#undef FERRY_GRID_STRIDE

}  // namespace

void bias_add(float* y, const float* bias, int rows, int n, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(rows) * n;
  if (total <= 0 || !bias) return;
  bias_add_kernel<<<blocks_for(total), kThreads, 0, stream>>>(y, bias, total, n);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

void clamp(float* x, int64_t n, float limit, cudaStream_t stream) {
  if (n <= 0) return;
  clamp_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, n, limit);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

void residual_add(float* h, const float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  residual_add_kernel<<<blocks_for(n), kThreads, 0, stream>>>(h, y, n);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  silu_mul_kernel<<<blocks_for(n), kThreads, 0, stream>>>(gate, up, out, n);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

void sigmoid(float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  sigmoid_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, n);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

void to_bf16(const float* x, uint16_t* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  to_bf16_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, out, n);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ferry::cuda
