// The router on the device: one thread per token runs route_token_math (the router of route_token,
// ferry/ops/route_math.h) over its row of logits, with its own row of scratch. Serial per token
// (E <= a few hundred, K <= 16): simple rather than fast. Launch: ceil(T / 64) blocks x 64 threads, no
// shared memory.
#include "kernels/cuda_check.h"
#include "kernels/router.h"

namespace ferry::cuda {

namespace {

constexpr int kThreads = 64;

__global__ void __launch_bounds__(kThreads)
    route_kernel(RouterParams p, const float* __restrict__ logits, int n_tok, float* __restrict__ scratch,
                 int32_t* __restrict__ topk_idx, float* __restrict__ topk_weight) {
  const int t = blockIdx.x * kThreads + threadIdx.x;
  if (t >= n_tok) return;
  route_token_math(p, logits + static_cast<size_t>(t) * p.n_expert,
                   scratch + static_cast<size_t>(t) * route_scratch_floats(p), topk_idx + static_cast<size_t>(t) * p.k,
                   topk_weight + static_cast<size_t>(t) * p.k);
}

}  // namespace

void route_tokens(const RouterParams& p, const float* logits, int n_tok, float* scratch, int32_t* topk_idx,
                  float* topk_weight, cudaStream_t stream) {
  if (p.k > kMaxExpertsUsed || p.k <= 0 || p.n_expert < p.k)
    throw Error("cuda route_tokens: " + std::to_string(p.k) + " experts per token of " + std::to_string(p.n_expert) +
                " is not supported (1.." + std::to_string(kMaxExpertsUsed) + ")");
  if (n_tok <= 0) return;
  route_kernel<<<(n_tok + kThreads - 1) / kThreads, kThreads, 0, stream>>>(p, logits, n_tok, scratch, topk_idx,
                                                                           topk_weight);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ferry::cuda
