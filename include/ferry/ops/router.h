// Router: softmax over all E logits in fp32, then top-k, then (optionally) renormalise the k weights,
// exactly as Hugging Face transformers does (Mixtral renormalises; Qwen2-MoE / OLMoE with
// norm_topk_prob=false do not). Ties keep the lower expert index first; the k experts of a token are
// listed in decreasing weight.
#pragma once
#include <cstdint>

namespace ferry::cpu {

struct RouterParams {
  int n_expert = 0;             // E
  int top_k = 0;                // K
  bool norm_topk_prob = false;  // divide the k weights by their sum
  float routed_scaling = 1.0f;  // multiplies the final weights (DeepSeek routed_scaling_factor)
};

// logits [T, E] -> topk_idx [T, K], topk_weight [T, K].
void router_topk(const float* logits, int n_tok, const RouterParams& p, int32_t* topk_idx, float* topk_weight);
void router_topk_ref(const float* logits, int n_tok, const RouterParams& p, int32_t* topk_idx,
                     float* topk_weight);

}  // namespace ferry::cpu
