#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "ferry/ops/route_math.h"

namespace ferry::cuda {
// Routes T tokens: logits [T, E] -> topk_idx, topk_weight [T, p.k] with route_token_math
// (ferry/ops/route_math.h), device pointers; scratch [T, route_scratch_floats(p)] floats.
void route_tokens(const RouterParams& p, const float* logits, int n_tok, float* scratch, int32_t* topk_idx,
                  float* topk_weight, cudaStream_t stream);
}  // namespace ferry::cuda
