#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ferry::cuda {
// The FFN output of T tokens, as ffn_output of the cpu layer blocks, device pointers:
//   y[t] = sum over the K slots of t in ascending expert index of topk_weight[t, k] * expert_out[t*K + k]
//          + gate[t] * shared_out[t]          (gate null: 1; shared_out null: no shared term)
//   h[t] += y[t]
// K = 0 (a dense layer) leaves only the shared term. y, h, shared_out [T, D]; expert_out [T*K, D].
// Sums in fp32 without fused multiply-adds, in the host's order.
void moe_combine(const float* expert_out, const int32_t* topk_idx, const float* topk_weight, int k,
                 const float* shared_out, const float* shared_gate, float* y, float* h, int n_tok, int d,
                 cudaStream_t stream);
}  // namespace ferry::cuda
