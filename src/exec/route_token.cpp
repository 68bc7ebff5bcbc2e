// The runtime's side of the router: ModelConfig -> cpu::RouterParams, and route_token over the one cpu
// router (cpu/router.cpp), which the cpu target and the executor run on [T, E] logits directly.
#include "ferry/route_token.h"

#include <string>

#include "ferry/error.h"

namespace ferry {

cpu::RouterParams cpu_router_params(const ModelConfig& c) {
  if (c.n_expert_used > kMaxExpertsUsed)
    throw Error("models with more than " + std::to_string(kMaxExpertsUsed) + " active experts per token are not supported");
  cpu::RouterParams p;
  p.kind = c.router;
  p.n_expert = c.n_expert;
  p.top_k = c.n_expert_used;
  p.norm_topk_prob = c.norm_topk_prob;
  p.pnorm = static_cast<float>(c.router_pnorm);
  p.jitter_eps = static_cast<float>(c.router_jitter_eps);
  p.routed_scaling = static_cast<float>(c.routed_scaling_factor);
  return p;
}

RouterChoice route_token(const ModelConfig& c, const float* logits) { return route_token(c, logits, nullptr); }

RouterChoice route_token(const ModelConfig& c, const float* logits, float* /*probs*/) {
  const cpu::RouterParams p = cpu_router_params(c);
  RouterChoice r;
  r.k = p.top_k;
  cpu::router_topk(logits, 1, p, r.expert, r.weight);
  return r;
}

}  // namespace ferry
