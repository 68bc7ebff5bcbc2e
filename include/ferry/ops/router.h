// Router: expert logits [T, E] -> the K experts of every token and their weights, as Hugging Face
// transformers computes them, for every router kind (router_kind.h):
//   SoftmaxTopK       softmax over all E in fp32, top-k, renormalise the k weights iff norm_topk_prob
//                     (Mixtral renormalises; Qwen2-MoE / OLMoE with norm_topk_prob=false do not)
//   SoftmaxTopKPNorm  DBRX: softmax, top-k, divide the k weights by their p-norm
//   SparseMixer       Phi-3.5-MoE (inference path): exactly 2 experts, each the argmax of a softmax over
//                     the logits within 2·eps (relative) of the best remaining one; no renormalisation
// then, for the softmax kinds, every weight times routed_scaling (DeepSeek routed_scaling_factor; 1
// elsewhere). Ties keep the lower expert index first; the k experts of a token are listed in decreasing
// weight. The per-token math is router_route (ferry/router_math.h), shared with the reference and the
// CUDA kernels; the runtime builds these parameters from its ModelConfig with cpu_router_params
// (ferry/route_token.h).
#pragma once
#include <cstdint>

#include "ferry/router_kind.h"

namespace ferry::cpu {

struct RouterParams {
  RouterKind kind = RouterKind::SoftmaxTopK;
  int n_expert = 0;             // E
  int top_k = 0;                // K (SparseMixer: 2)
  bool norm_topk_prob = false;  // SoftmaxTopK: divide the k weights by their sum
  float pnorm = 1.0f;           // SoftmaxTopKPNorm: p (DBRX moe_normalize_expert_weights)
  float jitter_eps = 0.0f;      // SparseMixer: eps (Phi router_jitter_noise)
  float routed_scaling = 1.0f;  // softmax kinds: multiplies the final weights (DeepSeek routed_scaling_factor)
};

// logits [T, E] -> topk_idx [T, K], topk_weight [T, K]. Allocates nothing in steady state (per-thread
// scratch of 3E floats); tokens run in parallel, each token's result independent of T and threads.
void router_topk(const float* logits, int n_tok, const RouterParams& p, int32_t* topk_idx, float* topk_weight);
// Reference: the same in double precision (weights rounded to f32 at the end).
void router_topk_ref(const float* logits, int n_tok, const RouterParams& p, int32_t* topk_idx,
                     float* topk_weight);

}  // namespace ferry::cpu
