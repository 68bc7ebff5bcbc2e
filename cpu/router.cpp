// Router: every token through router_route (ferry/router_math.h), the one per-token router of the
// reference, the cpu target, the executor and the CUDA kernels; the reference below recomputes it in
// double precision, each router kind from its definition.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "ferry/error.h"
#include "ferry/ops/router.h"
#include "ferry/router_math.h"

namespace ferry::cpu {

namespace {

void check(const RouterParams& p) {
  FERRY_ASSERT(p.n_expert > 0 && p.top_k > 0 && p.top_k <= p.n_expert);
  FERRY_ASSERT_MSG(p.kind != RouterKind::SparseMixer || p.top_k == 2, "sparsemixer routes exactly 2 experts");
  FERRY_ASSERT(p.kind != RouterKind::SoftmaxTopKPNorm || p.pnorm > 0.0f);
}

// softmax(l) over the entries of l that are not -inf, in double. prob [E].
void softmax_ref(const std::vector<double>& l, std::vector<double>& prob) {
  const double mx = *std::max_element(l.begin(), l.end());
  double sum = 0.0;
  for (size_t e = 0; e < l.size(); ++e) sum += prob[e] = std::exp(l[e] - mx);
  for (double& v : prob) v /= sum;
}

// One token, double precision. idx / weight [K].
void route_ref(const float* logits, const RouterParams& p, int32_t* idx, double* weight) {
  const int n_expert = p.n_expert, k = p.top_k;
  std::vector<double> l(logits, logits + n_expert), prob(n_expert);
  if (p.kind == RouterKind::SparseMixer) {
    const double neg_inf = -std::numeric_limits<double>::infinity();
    std::vector<double> scores = l, masked(n_expert);
    for (int j = 0; j < 2; ++j) {
      const int m = static_cast<int>(std::max_element(scores.begin(), scores.end()) - scores.begin());
      const double top = scores[m];
      for (int e = 0; e < n_expert; ++e) {
        const double factor = std::max(std::abs(l[e]), top);
        masked[e] = (top - l[e]) / factor > 2.0 * static_cast<double>(p.jitter_eps) ? neg_inf : scores[e];
      }
      softmax_ref(masked, prob);
      idx[j] = m;
      weight[j] = prob[m];
      scores[m] = neg_inf;
    }
    return;  // no routed scaling
  }
  softmax_ref(l, prob);
  std::vector<int> order(n_expert);
  std::iota(order.begin(), order.end(), 0);
  // Stable: equal probabilities keep index order.
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return prob[a] > prob[b]; });
  double norm = 1.0;
  if (p.kind == RouterKind::SoftmaxTopK && p.norm_topk_prob) {
    norm = 0.0;
    for (int j = 0; j < k; ++j) norm += prob[order[j]];
  } else if (p.kind == RouterKind::SoftmaxTopKPNorm) {
    norm = 0.0;
    for (int j = 0; j < k; ++j) norm += std::pow(prob[order[j]], static_cast<double>(p.pnorm));
    norm = std::pow(norm, 1.0 / p.pnorm);
  }
  for (int j = 0; j < k; ++j) {
    idx[j] = order[j];
    weight[j] = prob[order[j]] / norm;
  }
  for (int j = 0; j < k; ++j) weight[j] *= p.routed_scaling;
}

}  // namespace

void router_topk(const float* logits, int n_tok, const RouterParams& p, int32_t* topk_idx, float* topk_weight) {
  check(p);
  const size_t E = p.n_expert, K = p.top_k;
  parallel_range(n_tok, static_cast<size_t>(n_tok) * E * 64, [&](int64_t t0, int64_t t1) {
    float* scratch = scratch_as<float>(ScratchSlot::RowTemp, 3 * E);  // router_route: [3E]
    for (int64_t t = t0; t < t1; ++t) router_route(logits + t * E, p, scratch, topk_idx + t * K, topk_weight + t * K);
  });
}

void router_topk_ref(const float* logits, int n_tok, const RouterParams& p, int32_t* topk_idx, float* topk_weight) {
  check(p);
  std::vector<double> weight(p.top_k);
  for (int t = 0; t < n_tok; ++t) {
    const size_t at = static_cast<size_t>(t) * p.top_k;
    route_ref(logits + static_cast<size_t>(t) * p.n_expert, p, topk_idx + at, weight.data());
    for (int j = 0; j < p.top_k; ++j) topk_weight[at + j] = static_cast<float>(weight[j]);
  }
}

}  // namespace ferry::cpu
