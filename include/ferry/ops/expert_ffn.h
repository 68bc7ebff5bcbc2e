// Gated-SiLU expert FFN and the MoE layer built from it.
//   expert(x) = down · (silu(gate · x) * (up · x)),  gate/up [F, D], down [D, F]
#pragma once
#include <cstdint>
#include <span>

#include "ferry/ops/packed_matrix.h"
#include "ferry/ops/router.h"

namespace ferry::cpu {

struct ExpertWeights {
  const PackedMatrix* gate = nullptr;  // [F, D]
  const PackedMatrix* up = nullptr;    // [F, D]
  const PackedMatrix* down = nullptr;  // [D, F]
};

// One expert over the tokens routed to it: for i in [0, n_rows):
//   y[rows[i], :] += row_weight[i] * expert(x[rows[i], :])
// x [T, D], y [T, D] (adds into y; rows must be distinct). row_weight may be null (all 1).
void expert_ffn(const ExpertWeights& w, const float* x, const int32_t* rows, const float* row_weight, int n_rows,
                float* y);
void expert_ffn_ref(const ExpertWeights& w, const float* x, const int32_t* rows, const float* row_weight,
                    int n_rows, float* y);

// The routed experts of a MoE layer, given the routing: y[t] += sum_j topk_weight[t, j] * expert_{topk_idx[t, j]}(x[t]).
// Tokens are grouped by expert and each expert runs once over all its tokens. experts [E].
// x [T, D], topk_idx / topk_weight [T, K], y [T, D] (adds into y).
void moe_experts(const float* x, int n_tok, const int32_t* topk_idx, const float* topk_weight, int top_k,
                 std::span<const ExpertWeights> experts, float* y);

// The whole MoE layer: router logits = router·x (router [E, D]), router_topk, moe_experts.
// Adds into y [T, D]. topk_idx / topk_weight [T, K] receive the routing (for statistics); may be null.
void moe_layer(const float* x, int n_tok, const PackedMatrix& router, const RouterParams& p,
               std::span<const ExpertWeights> experts, float* y, int32_t* topk_idx = nullptr,
               float* topk_weight = nullptr);
void moe_layer_ref(const float* x, int n_tok, const PackedMatrix& router, const RouterParams& p,
                   std::span<const ExpertWeights> experts, float* y);

}  // namespace ferry::cpu
