// Internal to the cpu target: SwiGLU MLPs over rows of a batch (dense MLP, shared expert) and the routed
// experts of a MoE layer, with tokens grouped by expert so each expert's weights stream once per forward.
// The same structure as cpu::expert_ffn / cpu::moe_experts, but every matmul goes through a MatmulFn, so
// bf16 weights can take f32 activations (exact_matmul.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "exec/cpu/cpu_weights.h"

namespace ferry::cpu_target {

using MatmulFn = void (*)(const cpu::PackedMatrix& w, const float* x, float* y, int m, const float* bias);

// Buffers of the MLPs, reserved for T tokens, hidden width F (the widest MLP), E experts, K per token.
struct MlpScratch {
  std::vector<float> x_rows;     // [T, D] gathered input rows
  std::vector<float> gate, up;   // [T, F]
  std::vector<float> out;        // [T, D]
  std::vector<int32_t> offsets;  // [E + 1] first assignment of each expert
  std::vector<int32_t> rows;     // [T*K] token of each assignment, grouped by expert
  std::vector<float> weights;    // [T*K] its routing weight
  void reserve(int n_tok, int d, int f, int n_expert, int top_k);
};

// y[r] += row_weight[i] * mlp(x[r]) for r = rows[i], i < n; rows null means r = i (no gather);
// row_weight null means 1. x, y [T, D].
void mlp_rows(const PackedMlp& mlp, MatmulFn matmul, const float* x, const int32_t* rows,
              const float* row_weight, int n, float* y, MlpScratch& s);

// y[t] += sum_j topk_weight[t, j] * expert_{topk_idx[t, j]}(x[t]); experts in ascending index, as the
// reference accumulates them. Returns the bytes of expert weights read (the experts that had tokens).
size_t routed_experts(const std::vector<PackedMlp>& experts, MatmulFn matmul, const float* x, int n_tok,
                      const int32_t* topk_idx, const float* topk_weight, int top_k, float* y, MlpScratch& s);

}  // namespace ferry::cpu_target
