// The router as the runtime sees it: the router op's parameters from a ModelConfig, and one token routed
// under the model's router kind. Both go through the one cpu router (ops/router.h, router_math.h).
#pragma once
#include "ferry/model_config.h"
#include "ferry/ops/router.h"
#include "ferry/router_math.h"

namespace ferry {

// The router op's parameters of the model: kind, E, K, renormalisation, DBRX p, Phi eps, routed scaling.
// Throws ferry::Error for more than kMaxExpertsUsed experts per token.
cpu::RouterParams cpu_router_params(const ModelConfig& c);

struct RouterChoice {
  int k = 0;
  int expert[kMaxExpertsUsed];
  float weight[kMaxExpertsUsed];
};

// Routes one token (logits [E]) under the model's router kind: cpu::router_topk on one row. Allocates
// nothing in steady state. `probs` (n_expert floats; it may alias `logits`) is no longer used: the router
// keeps its own per-thread scratch.
RouterChoice route_token(const ModelConfig& c, const float* logits, float* probs);
RouterChoice route_token(const ModelConfig& c, const float* logits);

}  // namespace ferry
