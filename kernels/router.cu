// The router on the device: one thread per token runs router_route (ferry/router_math.h: the same
// per-token function the cpu router op runs) over its row of logits with its own row of scratch [3E].
// Serial per token (E <= a few hundred, K <= 16): simple rather than fast.
// Launch: ceil(T / 64) blocks x 64 threads, no shared memory.
#include "ferry/router_math.h"
#include "kernels/cuda_check.h"
#include "kernels/router.h"

namespace ferry::cuda {

namespace {

constexpr int kThreads = 64;

__global__ void __launch_bounds__(kThreads)
    route_kernel(cpu::RouterParams p, const float* __restrict__ logits, int n_tok, float* __restrict__ scratch,
                 int32_t* __restrict__ topk_idx, float* __restrict__ topk_weight) {
  const int t = blockIdx.x * kThreads + threadIdx.x;
  if (t >= n_tok) return;
  const size_t E = p.n_expert;
  router_route(logits + t * E, p, scratch + t * 3 * E, topk_idx + static_cast<size_t>(t) * p.top_k,
               topk_weight + static_cast<size_t>(t) * p.top_k);
}

}  // namespace

void route_tokens(const cpu::RouterParams& p, const float* logits, int n_tok, float* scratch, int32_t* topk_idx,
                  float* topk_weight, cudaStream_t stream) {
  const bool sparse = p.kind == RouterKind::SparseMixer;
  if (p.top_k > kMaxExpertsUsed || p.top_k <= 0 || p.n_expert < p.top_k || (sparse && p.top_k != 2))
    throw Error("cuda route_tokens: " + std::to_string(p.top_k) + " experts per token of " +
                std::to_string(p.n_expert) + " is not supported (1.." + std::to_string(kMaxExpertsUsed) +
                "; the sparsemixer picks 2)");
  if (n_tok <= 0) return;
  route_kernel<<<(n_tok + kThreads - 1) / kThreads, kThreads, 0, stream>>>(p, logits, n_tok, scratch, topk_idx,
                                                                           topk_weight);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ferry::cuda
