// Router math for one token, the single core of the cpu router op (ops/router.h), which the reference
// forward, the cpu target and the executor all run, and of the CUDA kernels (__host__ __device__):
// softmax over ALL experts in fp32, then top-k, then (optionally) renormalise — the transformers order.
// "top-k, then softmax over k" is wrong for norm_topk_prob=false models (Qwen2-MoE, OLMoE).
#pragma once
#include <cmath>

#include "ferry/dtype.h"
#include "ferry/ops/router.h"

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

// DBRX: the k weights divided by their p-norm (sum_j w_j^p)^(1/p).
FERRY_HD void router_pnorm(float* weight, int k, float p) {
  float norm = 0.f;
  for (int j = 0; j < k; ++j) norm += powf(weight[j], p);
  norm = powf(norm, 1.0f / p);
  for (int j = 0; j < k; ++j) weight[j] /= norm;
}

// Phi-3.5-MoE's sparsemixer (inference path): expert 1 is the argmax of the logits, weighted by a softmax
// over the logits close to it ((max - s) / max(|s|, max) <= 2 eps); expert 2 the argmax of the rest,
// likewise (over all logits but expert 1). Two indices and weights; scratch [3E].
FERRY_HD void router_sparsemixer(const float* s, int n_expert, float eps, float* scratch, int* idx, float* weight) {
  const float neg_inf = -INFINITY;
  float* scores = scratch;           // [E] logits, the chosen ones set to -inf
  float* masked = scratch + n_expert;  // [E]
  float* p = masked + n_expert;        // [E]
  for (int e = 0; e < n_expert; ++e) scores[e] = s[e];
  for (int j = 0; j < 2; ++j) {
    int m = 0;  // the first maximum, as std::max_element
    for (int e = 1; e < n_expert; ++e)
      if (scores[m] < scores[e]) m = e;
    const float top = scores[m];
    for (int e = 0; e < n_expert; ++e) {
      const float a = fabsf(s[e]);
      const float factor = a < top ? top : a;  // std::max(|s|, top)
      masked[e] = (top - s[e]) / factor > 2 * eps ? neg_inf : scores[e];
    }
    router_softmax(masked, n_expert, p);
    idx[j] = m;
    weight[j] = p[m];
    scores[m] = neg_inf;
  }
}

// One token under any router kind (ops/router.h): logits [E] -> idx [K], weight [K]; scratch [3E], not
// aliasing logits. The softmax kinds end with the routed scaling; the sparsemixer has none.
FERRY_HD void router_route(const float* logits, const cpu::RouterParams& p, float* scratch, int* idx, float* weight) {
  if (p.kind == RouterKind::SparseMixer) {
    router_sparsemixer(logits, p.n_expert, p.jitter_eps, scratch, idx, weight);
    return;
  }
  router_softmax(logits, p.n_expert, scratch);
  router_topk(scratch, p.n_expert, p.top_k, p.kind == RouterKind::SoftmaxTopK && p.norm_topk_prob, idx, weight);
  if (p.kind == RouterKind::SoftmaxTopKPNorm) router_pnorm(weight, p.top_k, p.pnorm);
  for (int j = 0; j < p.top_k; ++j) weight[j] *= p.routed_scaling;
}

}  // namespace ferry
