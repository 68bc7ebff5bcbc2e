// Small pieces of the MoE layer's bookkeeping shared by the host ops and the CUDA kernels
// (__host__ __device__), checked on the CPU by tests/unit/route_math_test.cpp (MoeMath.*).
#pragma once
#include <cstddef>
#include <cstdint>

#include "ferry/dtype.h"

namespace ferry {

// order[0..k) = the slots 0..k-1 of one token sorted by ascending expert index idx[slot] (an insertion
// sort: stable, so equal indices, which a router never produces, keep their slot order). ffn_output sums
// the routed outputs in this order, as the reference forward does.
FERRY_HD void moe_ascending_slots(const int32_t* idx, int k, int* order) {
  for (int j = 0; j < k; ++j) {
    int i = j;
    while (i > 0 && idx[order[i - 1]] > idx[j]) {
      order[i] = order[i - 1];
      --i;
    }
    order[i] = j;
  }
}

// ---- group_by_expert as the CUDA kernel runs it (kernels/group_by_expert.cu) ----
// The kernel counts the assignments of each expert, turns the counts into offsets, then places the
// assignments a chunk of parallel threads at a time: assignment i of expert e goes to cursor[e] (offsets[e]
// plus the assignments of e in earlier chunks) + its rank among the earlier lanes of its chunk with the
// same expert; then the cursors advance by the chunk's counts. The result is the host's (cpu/moe_layer.cpp
// group_by_expert): assignments ascending within each expert.

// counts [E] -> offsets [E + 1] (exclusive scan); counts becomes the write cursors (= offsets[0, E)).
FERRY_HD void moe_offsets_from_counts(int32_t* counts, int n_expert, int32_t* offsets) {
  int32_t run = 0;
  for (int e = 0; e < n_expert; ++e) {
    const int32_t count = counts[e];
    offsets[e] = run;
    counts[e] = run;
    run += count;
  }
  offsets[n_expert] = run;
}

// The number of lanes before `lane` of a chunk whose expert is e (chunk_expert: the chunk's experts, -1 for
// none).
FERRY_HD int moe_chunk_rank(const int32_t* chunk_expert, int lane, int32_t e) {
  int rank = 0;
  for (int j = 0; j < lane; ++j) rank += chunk_expert[j] == e;
  return rank;
}

// ---- ffn_output as the CUDA kernel runs it (kernels/moe_combine.cu) ----

// An fp32 product and sum each rounded on its own, as the host's loops do: nvcc would contract
// acc + w * o into one fma on the device, so there the intrinsics that forbid it.
FERRY_HD float moe_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FERRY_HD float moe_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// Element (t, col) of ffn_output's y (src/exec/cpu/layer_blocks.cpp): from 0, the k routed outputs of token t
// in ascending expert order (order: moe_ascending_slots of its k slots) times their weights, then
// gate * shared_out[t, col] when shared_out is not null. expert_out [T*k, d] (row t*k + slot), topk_weight
// [T*k], shared_out [T, d]. k = 0: the shared term only (a dense layer).
FERRY_HD float moe_combine_value(const float* expert_out, const float* topk_weight, const int* order, int k, int t,
                                 int d, int col, const float* shared_out, float gate) {
  float acc = 0.0f;
  for (int j = 0; j < k; ++j) {
    const size_t slot = static_cast<size_t>(t) * k + order[j];
    acc = moe_add(acc, moe_mul(topk_weight[slot], expert_out[slot * d + col]));
  }
  if (shared_out) acc = moe_add(acc, moe_mul(gate, shared_out[static_cast<size_t>(t) * d + col]));
  return acc;
}

}  // namespace ferry
