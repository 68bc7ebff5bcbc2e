// The MoE layer over a batch: route every token, group the assignments by expert (a counting sort), run
// each expert once over all its tokens.
#include <algorithm>
#include <vector>

#include "cpu/scratch.h"
#include "ferry/error.h"
#include "ferry/ops/expert_ffn.h"
#include "ferry/ops/matmul.h"
#include "ferry/ops/router.h"

namespace ferry::cpu {

void group_by_expert(const int32_t* topk_idx, int n_tok, int top_k, int n_expert, int32_t* offsets,
                     int32_t* assign_token, int32_t* assign_slot, const int32_t* position_of) {
  const int n_assign = n_tok * top_k;
  auto group = [&](int i) { return position_of ? position_of[topk_idx[i]] : topk_idx[i]; };
  std::fill(offsets, offsets + n_expert + 1, 0);
  for (int i = 0; i < n_assign; ++i) {
    FERRY_ASSERT(topk_idx[i] >= 0 && topk_idx[i] < n_expert);
    ++offsets[group(i) + 1];
  }
  for (int e = 0; e < n_expert; ++e) offsets[e + 1] += offsets[e];
  for (int i = 0; i < n_assign; ++i) {  // i ascends, so tokens ascend within an expert
    const int32_t at = offsets[group(i)]++;
    assign_token[at] = i / top_k;
    assign_slot[at] = i;
  }
  for (int e = n_expert; e > 0; --e) offsets[e] = offsets[e - 1];  // undo the fill's advance
  offsets[0] = 0;
}

void group_by_expert_ref(const int32_t* topk_idx, int n_tok, int top_k, int n_expert, int32_t* offsets,
                         int32_t* assign_token, int32_t* assign_slot) {
  int32_t at = 0;
  for (int e = 0; e < n_expert; ++e) {
    offsets[e] = at;
    for (int t = 0; t < n_tok; ++t)
      for (int k = 0; k < top_k; ++k)
        if (topk_idx[t * top_k + k] == e) {
          assign_token[at] = t;
          assign_slot[at] = t * top_k + k;
          ++at;
        }
  }
  offsets[n_expert] = at;
}

void moe_experts(const float* x, int n_tok, const int32_t* topk_idx, const float* topk_weight, int top_k,
                 std::span<const ExpertWeights> experts, float* y, MatmulFn matmul) {
  const int n_expert = static_cast<int>(experts.size());
  const size_t n_assign = static_cast<size_t>(n_tok) * top_k;
  // Grouping scratch: offsets [E + 1] | tokens [T*K] | slots [T*K] | weights [T*K].
  int32_t* offsets = scratch_as<int32_t>(ScratchSlot::MoeGrouping, (n_expert + 1) + 3 * n_assign);
  int32_t* tokens = offsets + n_expert + 1;
  int32_t* slots = tokens + n_assign;
  float* weights = reinterpret_cast<float*>(slots + n_assign);
  group_by_expert(topk_idx, n_tok, top_k, n_expert, offsets, tokens, slots);
  for (size_t a = 0; a < n_assign; ++a) weights[a] = topk_weight[slots[a]];
  for (int e = 0; e < n_expert; ++e) {
    const int count = offsets[e + 1] - offsets[e];
    if (count > 0) expert_ffn(experts[e], x, tokens + offsets[e], weights + offsets[e], count, y, matmul);
  }
}

void moe_experts_ref(const float* x, int n_tok, const int32_t* topk_idx, const float* topk_weight, int top_k,
                     std::span<const ExpertWeights> experts, float* y) {
  for (int32_t t = 0; t < n_tok; ++t)
    for (int j = 0; j < top_k; ++j) {
      const size_t a = static_cast<size_t>(t) * top_k + j;
      FERRY_ASSERT(topk_idx[a] >= 0 && topk_idx[a] < static_cast<int>(experts.size()));
      expert_ffn_ref(experts[topk_idx[a]], x, &t, &topk_weight[a], 1, y);
    }
}

void moe_layer(const float* x, int n_tok, const PackedMatrix& router, const RouterParams& p,
               std::span<const ExpertWeights> experts, float* y, int32_t* topk_idx, float* topk_weight,
               MatmulFn matmul) {
  FERRY_ASSERT(router.rows == p.n_expert && static_cast<int>(experts.size()) == p.n_expert);
  const size_t n_assign = static_cast<size_t>(n_tok) * p.top_k;
  // Routing scratch: logits [T, E] | idx [T, K] | weight [T, K] (the last two unless the caller gave them).
  float* logits = scratch_as<float>(ScratchSlot::MoeRouting, static_cast<size_t>(n_tok) * p.n_expert + 2 * n_assign);
  if (!topk_idx) topk_idx = reinterpret_cast<int32_t*>(logits + static_cast<size_t>(n_tok) * p.n_expert);
  if (!topk_weight) topk_weight = logits + static_cast<size_t>(n_tok) * p.n_expert + n_assign;
  cpu::matmul(router, x, logits, n_tok);  // f32 router weights, as the runtime's
  router_topk(logits, n_tok, p, topk_idx, topk_weight);
  moe_experts(x, n_tok, topk_idx, topk_weight, p.top_k, experts, y, matmul);
}

void moe_layer_ref(const float* x, int n_tok, const PackedMatrix& router, const RouterParams& p,
                   std::span<const ExpertWeights> experts, float* y) {
  std::vector<float> logits(static_cast<size_t>(n_tok) * p.n_expert);
  std::vector<int32_t> idx(static_cast<size_t>(n_tok) * p.top_k);
  std::vector<float> weight(idx.size());
  matmul_ref(router, x, logits.data(), n_tok);
  router_topk_ref(logits.data(), n_tok, p, idx.data(), weight.data());
  moe_experts_ref(x, n_tok, idx.data(), weight.data(), p.top_k, experts, y);
}

}  // namespace ferry::cpu
