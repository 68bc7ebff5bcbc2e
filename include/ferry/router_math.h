// Router math for one token, shared by the reference forward, the CPU ops and the CUDA kernels
// (__host__ __device__): softmax over ALL experts in fp32, then top-k, then (optionally)
// renormalise — the transformers order. "top-k, then softmax over k" is wrong for
// norm_topk_prob=false models (Qwen2-MoE, OLMoE).
#pragma once
#include <cmath>

#include "ferry/dtype.h"

namespace ferry {

constexpr int kMaxExpertsUsed = 16;

// probs[e] = softmax(logits)[e]; returns nothing, probs has n_expert entries.
FERRY_HD void router_softmax(const float* logits, int n_expert, float* probs) {
  float mx = logits[0];
  for (int e = 1; e < n_expert; ++e) mx = logits[e] > mx ? logits[e] : mx;
  float sum = 0.f;
  for (int e = 0; e < n_expert; ++e) sum += (probs[e] = expf(logits[e] - mx));
  for (int e = 0; e < n_expert; ++e) probs[e] /= sum;
}

// Top-k of probs (descending; ties go to the lower expert index). Writes k indices and weights;
// renormalises the k weights to sum 1 when `renormalise`.
FERRY_HD void router_topk(const float* probs, int n_expert, int k, bool renormalise, int* idx, float* weight) {
  for (int j = 0; j < k; ++j) {
    int best = -1;
    for (int e = 0; e < n_expert; ++e) {
      bool taken = false;
      for (int i = 0; i < j; ++i) taken = taken || idx[i] == e;
      if (!taken && (best < 0 || probs[e] > probs[best])) best = e;
    }
    idx[j] = best;
    weight[j] = probs[best];
  }
  if (renormalise) {
    float sum = 0.f;
    for (int j = 0; j < k; ++j) sum += weight[j];
    for (int j = 0; j < k; ++j) weight[j] /= sum;
  }
}

}  // namespace ferry

#if !defined(__CUDACC__)
#include "ferry/model_config.h"

namespace ferry {

struct RouterChoice {
  int k = 0;
  int expert[kMaxExpertsUsed];
  float weight[kMaxExpertsUsed];
};

// Routes one token under the model's router kind (softmax/top-k, DBRX p-norm, Phi sparsemixer).
// `probs` is caller scratch of n_expert floats (it may alias `logits`); this form allocates nothing
// for up to 256 experts, so decode loops use it.
RouterChoice route_token(const ModelConfig& c, const float* logits, float* probs);
RouterChoice route_token(const ModelConfig& c, const float* logits);  // allocates its scratch

}  // namespace ferry
#endif
