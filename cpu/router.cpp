// Router softmax + top-k, as transformers computes it: softmax over all E in fp32, top-k of the
// probabilities, optional renormalisation of the k weights.
#include <cmath>
#include <algorithm>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "ferry/error.h"
#include "ferry/ops/router.h"

namespace ferry::cpu {

namespace {

// One token. prob [E] is scratch.
void route_token(const float* logits, const RouterParams& p, float* prob, int32_t* idx, float* weight) {
  const int n_expert = p.n_expert, k = p.top_k;
  float max_logit = logits[0];
  for (int e = 1; e < n_expert; ++e) max_logit = std::fmax(max_logit, logits[e]);
  float sum = 0.0f;
  for (int e = 0; e < n_expert; ++e) {
    prob[e] = std::exp(logits[e] - max_logit);
    sum += prob[e];
  }
  for (int e = 0; e < n_expert; ++e) prob[e] /= sum;
  // Selection of the k largest; a tie keeps the lower index first.
  for (int j = 0; j < k; ++j) {
    int best = -1;
    for (int e = 0; e < n_expert; ++e) {
      bool taken = false;
      for (int i = 0; i < j; ++i) taken |= idx[i] == e;
      if (!taken && (best < 0 || prob[e] > prob[best])) best = e;
    }
    idx[j] = best;
    weight[j] = prob[best];
  }
  float wsum = 0.0f;
  for (int j = 0; j < k; ++j) wsum += weight[j];
  for (int j = 0; j < k; ++j) {
    if (p.norm_topk_prob) weight[j] /= wsum;
    weight[j] *= p.routed_scaling;
  }
}

void check(const RouterParams& p) {
  FERRY_ASSERT(p.n_expert > 0 && p.top_k > 0 && p.top_k <= p.n_expert);
}

}  // namespace

void router_topk(const float* logits, int n_tok, const RouterParams& p, int32_t* topk_idx, float* topk_weight) {
  check(p);
  parallel_range(n_tok, static_cast<size_t>(n_tok) * p.n_expert * 64, [&](int64_t t0, int64_t t1) {
    float* prob = scratch_as<float>(ScratchSlot::RowTemp, p.n_expert);
    for (int64_t t = t0; t < t1; ++t)
      route_token(logits + t * p.n_expert, p, prob, topk_idx + t * p.top_k, topk_weight + t * p.top_k);
  });
}

void router_topk_ref(const float* logits, int n_tok, const RouterParams& p, int32_t* topk_idx, float* topk_weight) {
  check(p);
  std::vector<double> prob(p.n_expert);
  for (int t = 0; t < n_tok; ++t) {
    const float* l = logits + static_cast<size_t>(t) * p.n_expert;
    double mx = l[0], sum = 0.0;
    for (int e = 1; e < p.n_expert; ++e) mx = std::fmax(mx, l[e]);
    for (int e = 0; e < p.n_expert; ++e) sum += prob[e] = std::exp(static_cast<double>(l[e]) - mx);
    for (int e = 0; e < p.n_expert; ++e) prob[e] /= sum;
    std::vector<int> order(p.n_expert);
    for (int e = 0; e < p.n_expert; ++e) order[e] = e;
    // Stable: equal probabilities keep index order.
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return prob[a] > prob[b]; });
    double wsum = 0.0;
    for (int j = 0; j < p.top_k; ++j) wsum += prob[order[j]];
    for (int j = 0; j < p.top_k; ++j) {
      topk_idx[static_cast<size_t>(t) * p.top_k + j] = order[j];
      const double w = p.norm_topk_prob ? prob[order[j]] / wsum : prob[order[j]];
      topk_weight[static_cast<size_t>(t) * p.top_k + j] = static_cast<float>(w * p.routed_scaling);
    }
  }
}

}  // namespace ferry::cpu
