// ffn_output on the device: grid (T, ceil(D / 256)) x 256 threads. Thread 0 of each block sorts the
// token's K slots by expert index (moe_ascending_slots, ferry/ops/moe_math.h) into shared memory; after
// a barrier every thread sums its column in that order (moe_combine_value). Shared memory: 16 ints (static).
#include "ferry/error.h"
#include "ferry/ops/moe_math.h"
#include "ferry/router_math.h"
#include "kernels/cuda_check.h"
#include "kernels/moe_combine.h"

namespace ferry::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    combine_kernel(const float* __restrict__ expert_out, const int32_t* __restrict__ topk_idx,
                   const float* __restrict__ topk_weight, int k, const float* __restrict__ shared_out,
                   const float* __restrict__ shared_gate, float* __restrict__ y, float* __restrict__ h, int d) {
  __shared__ int order[kMaxExpertsUsed];
  const int t = blockIdx.x;
  if (threadIdx.x == 0 && k > 0) moe_ascending_slots(topk_idx + static_cast<size_t>(t) * k, k, order);
  __syncthreads();
  const int col = blockIdx.y * kThreads + threadIdx.x;
  if (col >= d) return;
  // the host's summation order and rounding (moe_math.h, checked against ffn_output by MoeMath tests)
  const float acc = moe_combine_value(expert_out, topk_weight, order, k, t, d, col, shared_out,
                                      shared_gate ? shared_gate[t] : 1.0f);
  const size_t at = static_cast<size_t>(t) * d + col;
  y[at] = acc;
  h[at] = moe_add(h[at], acc);
}

}  // namespace

void moe_combine(const float* expert_out, const int32_t* topk_idx, const float* topk_weight, int k,
                 const float* shared_out, const float* shared_gate, float* y, float* h, int n_tok, int d,
                 cudaStream_t stream) {
  FERRY_ASSERT(k >= 0 && k <= kMaxExpertsUsed);
  if (n_tok <= 0 || d <= 0) return;
  const dim3 grid(static_cast<unsigned>(n_tok), static_cast<unsigned>((d + kThreads - 1) / kThreads));
  combine_kernel<<<grid, kThreads, 0, stream>>>(expert_out, topk_idx, topk_weight, k, shared_out, shared_gate, y, h, d);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ferry::cuda
