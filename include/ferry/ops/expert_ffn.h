// Gated-SiLU expert FFN and the MoE layer built from it.
//   expert(x) = down · (silu(gate · x) * (up · x)),  gate/up [F, D], down [D, F]
// expert_ffn_rows is the unweighted form the runtime runs (routed experts, shared expert, dense MLP);
// every other form here is built on it. Its matmuls go through a MatmulFn, so the runtime chooses
// matmul_f32_activations (f32 activations, its default) or matmul (bf16 activations).
#pragma once
#include <cstdint>
#include <span>

#include "ferry/ops/matmul.h"
#include "ferry/ops/packed_matrix.h"
#include "ferry/ops/router.h"

namespace ferry::cpu {

// y [m, N] = W [N, K] · x [m, K] (+ bias [N] or null): matmul, matmul_f32_activations, or a device's.
using MatmulFn = void (*)(const PackedMatrix& w, const float* x, float* y, int m, const float* bias);

struct ExpertWeights {
  const PackedMatrix* gate = nullptr;  // [F, D]
  const PackedMatrix* up = nullptr;    // [F, D]
  const PackedMatrix* down = nullptr;  // [D, F]
};

// out[i, :] = expert(x[rows[i], :]) for i < n (rows null: x[i, :]), unweighted; x [T, D], out [n, D].
// Caller scratch: x_rows [n, D] (the gathered rows; unused, may be null, when rows is null), gate and up
// [n, F]. The matmuls run over all n rows at once, so the weights stream once per call. Allocates nothing.
void expert_ffn_rows(const ExpertWeights& w, MatmulFn matmul, const float* x, const int32_t* rows, int n,
                     float* out, float* x_rows, float* gate, float* up);
// Reference: matmul_ref row by row.
void expert_ffn_rows_ref(const ExpertWeights& w, const float* x, const int32_t* rows, int n, float* out);

// One expert over the tokens routed to it: for i in [0, n_rows):
//   y[rows[i], :] += row_weight[i] * expert(x[rows[i], :])
// x [T, D], y [T, D] (adds into y; rows must be distinct). row_weight may be null (all 1).
void expert_ffn(const ExpertWeights& w, const float* x, const int32_t* rows, const float* row_weight, int n_rows,
                float* y, MatmulFn matmul = &cpu::matmul);
void expert_ffn_ref(const ExpertWeights& w, const float* x, const int32_t* rows, const float* row_weight,
                    int n_rows, float* y);

// The T*K assignments of a routing grouped by expert (a counting sort): expert e's assignments are
// [offsets[e], offsets[e + 1]), its tokens ascending; assignment a is token assign_token[a] in slot
// assign_slot[a] = t*K + k (its row of topk_idx / topk_weight). topk_idx [T, K] in [0, E);
// offsets [E + 1], assign_token [T*K], assign_slot [T*K].
// With position_of [E] (a permutation of 0..E-1) the groups are in position order: group p holds the
// assignments of the expert at position p (offsets[p] .. offsets[p + 1]). The pipelined executor keeps an
// expert table in cache order this way (resident experts first); the assignments and slots are unchanged.
void group_by_expert(const int32_t* topk_idx, int n_tok, int top_k, int n_expert, int32_t* offsets,
                     int32_t* assign_token, int32_t* assign_slot, const int32_t* position_of = nullptr);
// Reference: expert by expert, a scan of all assignments.
void group_by_expert_ref(const int32_t* topk_idx, int n_tok, int top_k, int n_expert, int32_t* offsets,
                         int32_t* assign_token, int32_t* assign_slot);

// The routed experts of a MoE layer, given the routing: y[t] += sum_j topk_weight[t, j] * expert_{topk_idx[t, j]}(x[t]).
// Tokens are grouped by expert (group_by_expert) and each expert runs once over all its tokens. experts [E].
// x [T, D], topk_idx / topk_weight [T, K], y [T, D] (adds into y).
void moe_experts(const float* x, int n_tok, const int32_t* topk_idx, const float* topk_weight, int top_k,
                 std::span<const ExpertWeights> experts, float* y, MatmulFn matmul = &cpu::matmul);
// Reference: expert_ffn_ref token by token, k by k.
void moe_experts_ref(const float* x, int n_tok, const int32_t* topk_idx, const float* topk_weight, int top_k,
                     std::span<const ExpertWeights> experts, float* y);

// The whole MoE layer: router logits = router·x (router [E, D], f32 activations), router_topk, moe_experts.
// Adds into y [T, D]. topk_idx / topk_weight [T, K] receive the routing (for statistics); may be null.
void moe_layer(const float* x, int n_tok, const PackedMatrix& router, const RouterParams& p,
               std::span<const ExpertWeights> experts, float* y, int32_t* topk_idx = nullptr,
               float* topk_weight = nullptr, MatmulFn matmul = &cpu::matmul);
void moe_layer_ref(const float* x, int n_tok, const PackedMatrix& router, const RouterParams& p,
                   std::span<const ExpertWeights> experts, float* y);

}  // namespace ferry::cpu
