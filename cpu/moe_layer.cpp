// The MoE layer over a batch: route every token, group the tokens by expert (a counting sort), run each
// expert once over all its tokens.
#include <vector>

#include "cpu/scratch.h"
#include "ferry/error.h"
#include "ferry/ops/expert_ffn.h"
#include "ferry/ops/matmul.h"
#include "ferry/ops/router.h"

namespace ferry::cpu {

void moe_experts(const float* x, int n_tok, const int32_t* topk_idx, const float* topk_weight, int top_k,
                 std::span<const ExpertWeights> experts, float* y) {
  const int n_expert = static_cast<int>(experts.size());
  const size_t n_assign = static_cast<size_t>(n_tok) * top_k;
  // Layout of the grouping scratch: offsets [E + 1] | rows [T*K] | weights [T*K].
  int32_t* offsets = scratch_as<int32_t>(ScratchSlot::MoeGrouping, (n_expert + 1) + 2 * n_assign);
  int32_t* rows = offsets + n_expert + 1;
  float* weights = reinterpret_cast<float*>(rows + n_assign);
  for (int e = 0; e <= n_expert; ++e) offsets[e] = 0;
  for (size_t i = 0; i < n_assign; ++i) {
    FERRY_ASSERT(topk_idx[i] >= 0 && topk_idx[i] < n_expert);
    offsets[topk_idx[i] + 1]++;
  }
  for (int e = 0; e < n_expert; ++e) offsets[e + 1] += offsets[e];
  for (size_t i = 0; i < n_assign; ++i) {  // token order is kept within an expert
    const int32_t at = offsets[topk_idx[i]]++;
    rows[at] = static_cast<int32_t>(i / top_k);
    weights[at] = topk_weight[i];
  }
  for (int e = n_expert; e > 0; --e) offsets[e] = offsets[e - 1];  // undo the fill's advance
  offsets[0] = 0;
  for (int e = 0; e < n_expert; ++e) {
    const int count = offsets[e + 1] - offsets[e];
    if (count > 0) expert_ffn(experts[e], x, rows + offsets[e], weights + offsets[e], count, y);
  }
}

void moe_layer(const float* x, int n_tok, const PackedMatrix& router, const RouterParams& p,
               std::span<const ExpertWeights> experts, float* y, int32_t* topk_idx, float* topk_weight) {
  FERRY_ASSERT(router.rows == p.n_expert && static_cast<int>(experts.size()) == p.n_expert);
  const size_t n_assign = static_cast<size_t>(n_tok) * p.top_k;
  // Routing scratch: logits [T, E] | idx [T, K] | weight [T, K] (the last two unless the caller gave them).
  float* logits = scratch_as<float>(ScratchSlot::MoeRouting, static_cast<size_t>(n_tok) * p.n_expert + 2 * n_assign);
  if (!topk_idx) topk_idx = reinterpret_cast<int32_t*>(logits + static_cast<size_t>(n_tok) * p.n_expert);
  if (!topk_weight) topk_weight = logits + static_cast<size_t>(n_tok) * p.n_expert + n_assign;
  matmul(router, x, logits, n_tok);
  router_topk(logits, n_tok, p, topk_idx, topk_weight);
  moe_experts(x, n_tok, topk_idx, topk_weight, p.top_k, experts, y);
}

void moe_layer_ref(const float* x, int n_tok, const PackedMatrix& router, const RouterParams& p,
                   std::span<const ExpertWeights> experts, float* y) {
  const int d = router.cols;
  std::vector<float> logits(static_cast<size_t>(n_tok) * p.n_expert);
  std::vector<int32_t> idx(static_cast<size_t>(n_tok) * p.top_k);
  std::vector<float> weight(idx.size());
  matmul_ref(router, x, logits.data(), n_tok);
  router_topk_ref(logits.data(), n_tok, p, idx.data(), weight.data());
  for (int t = 0; t < n_tok; ++t)
    for (int j = 0; j < p.top_k; ++j) {
      const int32_t row = 0;
      expert_ffn_ref(experts[idx[static_cast<size_t>(t) * p.top_k + j]], x + static_cast<size_t>(t) * d, &row,
                     &weight[static_cast<size_t>(t) * p.top_k + j], 1, y + static_cast<size_t>(t) * d);
    }
}

}  // namespace ferry::cpu
