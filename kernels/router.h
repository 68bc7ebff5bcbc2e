#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "ferry/ops/router.h"

namespace ferry::cuda {
// Routes T tokens: logits [T, E] -> topk_idx, topk_weight [T, K] (K = p.top_k, 2 for the sparsemixer)
// with router_route (ferry/router_math.h), the per-token core of the cpu router op; device pointers;
// scratch [T, 3E] floats.
void route_tokens(const cpu::RouterParams& p, const float* logits, int n_tok, float* scratch, int32_t* topk_idx,
                  float* topk_weight, cudaStream_t stream);
}  // namespace ferry::cuda
