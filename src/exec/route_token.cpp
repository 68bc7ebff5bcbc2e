#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ferry/error.h"
#include "ferry/router_math.h"

namespace ferry {

namespace {

// Phi-3.5-MoE's sparsemixer (inference path): expert 1 is the argmax with a softmax over the
// logits close to it; expert 2 the argmax of the rest, likewise. No renormalisation.
RouterChoice sparsemixer(const ModelConfig& c, const float* s) {
  const int E = c.n_expert;
  const float eps = static_cast<float>(c.router_jitter_eps);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  // Phi-3.5-MoE has 16 experts; the stack arrays keep decode allocation-free for any E up to 256.
  constexpr int kStack = 256;
  float scores_stack[kStack], masked_stack[kStack], p_stack[kStack];
  std::vector<float> heap;
  float *scores = scores_stack, *masked = masked_stack, *p = p_stack;
  if (E > kStack) {
    heap.resize(3 * static_cast<size_t>(E));
    scores = heap.data(), masked = scores + E, p = masked + E;
  }
  std::copy(s, s + E, scores);
  RouterChoice r;
  r.k = 2;
  for (int j = 0; j < 2; ++j) {
    const int m = static_cast<int>(std::max_element(scores, scores + E) - scores);
    const float top = scores[m];
    for (int e = 0; e < E; ++e) {
      const float factor = std::max(std::abs(s[e]), top);
      masked[e] = (top - s[e]) / factor > 2 * eps ? neg_inf : scores[e];
    }
    router_softmax(masked, E, p);
    r.expert[j] = m;
    r.weight[j] = p[m];
    scores[m] = neg_inf;
  }
  return r;
}

}  // namespace

RouterChoice route_token(const ModelConfig& c, const float* logits) {
  std::vector<float> probs(c.n_expert);
  return route_token(c, logits, probs.data());
}

RouterChoice route_token(const ModelConfig& c, const float* logits, float* probs) {
  if (c.n_expert_used > kMaxExpertsUsed)
    throw Error("models with more than " + std::to_string(kMaxExpertsUsed) + " active experts per token are not supported");
  if (c.router == RouterKind::SparseMixer) return sparsemixer(c, logits);
  router_softmax(logits, c.n_expert, probs);  // elementwise after the max: probs may alias logits
  RouterChoice r;
  r.k = c.n_expert_used;
  const bool renorm = c.router == RouterKind::SoftmaxTopK && c.norm_topk_prob;
  router_topk(probs, c.n_expert, r.k, renorm, r.expert, r.weight);
  if (c.router == RouterKind::SoftmaxTopKPNorm) {  // DBRX: w / ||w||_p
    float norm = 0.f;
    for (int j = 0; j < r.k; ++j) norm += std::pow(r.weight[j], static_cast<float>(c.router_pnorm));
    norm = std::pow(norm, 1.0f / static_cast<float>(c.router_pnorm));
    for (int j = 0; j < r.k; ++j) r.weight[j] /= norm;
  }
  for (int j = 0; j < r.k; ++j) r.weight[j] *= static_cast<float>(c.routed_scaling_factor);
  return r;
}

}  // namespace ferry
