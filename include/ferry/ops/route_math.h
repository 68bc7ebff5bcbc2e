// The router of one token under every router kind, as one __host__ __device__ function: softmax over all
// experts, top-k, optional renormalisation (router_math.h), DBRX's p-norm, Phi-3.5-MoE's sparsemixer and
// the routed scaling factor, in exactly the steps of route_token (src/exec/route_token.cpp). The CUDA
// router kernel runs it per token; tests/unit/route_math_test.cpp checks it against route_token, bit for
// bit on the host, for every kind.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "ferry/dtype.h"
#include "ferry/router_math.h"

namespace ferry {

enum class RouteKind : int32_t { SoftmaxTopK, SparseMixer, SoftmaxTopKPNorm };

// The router as plain values (ModelConfig holds strings and vectors a kernel cannot take).
struct RouterParams {
  RouteKind kind = RouteKind::SoftmaxTopK;
  int n_expert = 0;              // E
  int k = 0;                     // K <= kMaxExpertsUsed (sparsemixer: 2)
  bool renormalise = false;      // SoftmaxTopK with norm_topk_prob
  float pnorm = 1.0f;            // SoftmaxTopKPNorm
  float jitter_eps = 0.0f;       // SparseMixer
  float scaling = 1.0f;          // routed_scaling_factor (not applied by the sparsemixer, as in route_token)
};

// Scratch floats route_token_math needs per token: E, or 3E for the sparsemixer.
FERRY_HD int route_scratch_floats(const RouterParams& p) {
  return p.kind == RouteKind::SparseMixer ? 3 * p.n_expert : p.n_expert;
}

FERRY_HD float route_negative_infinity() {
  const uint32_t bits = 0xff800000u;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Routes one token: logits [E] -> idx [k], weight [k]; returns k. `scratch` holds route_scratch_floats(p)
// floats (it may alias `logits` except for the sparsemixer).
FERRY_HD int route_token_math(const RouterParams& p, const float* logits, float* scratch, int32_t* idx,
                              float* weight) {
  const int E = p.n_expert;
  if (p.kind == RouteKind::SparseMixer) {
    // Expert 1 is the argmax with a softmax over the logits close to it; expert 2 the argmax of the rest,
    // likewise. No renormalisation, no scaling.
    float* scores = scratch;
    float* masked = scratch + E;
    float* probs = scratch + 2 * E;
    const float neg_inf = route_negative_infinity();
    for (int e = 0; e < E; ++e) scores[e] = logits[e];
    for (int j = 0; j < 2; ++j) {
      int m = 0;  // the first largest, as std::max_element
      for (int e = 1; e < E; ++e)
        if (scores[m] < scores[e]) m = e;
      const float top = scores[m];
      for (int e = 0; e < E; ++e) {
        const float a = fabsf(logits[e]);
        const float factor = a < top ? top : a;  // std::max(|s|, top)
        masked[e] = (top - logits[e]) / factor > 2 * p.jitter_eps ? neg_inf : scores[e];
      }
      router_softmax(masked, E, probs);
      idx[j] = m;
      weight[j] = probs[m];
      scores[m] = neg_inf;
    }
    return 2;
  }
  router_softmax(logits, E, scratch);
  int chosen[kMaxExpertsUsed];
  router_topk(scratch, E, p.k, p.kind == RouteKind::SoftmaxTopK && p.renormalise, chosen, weight);
  for (int j = 0; j < p.k; ++j) idx[j] = chosen[j];
  if (p.kind == RouteKind::SoftmaxTopKPNorm) {  // DBRX: w / ||w||_p
    float norm = 0.f;
    for (int j = 0; j < p.k; ++j) norm += powf(weight[j], p.pnorm);
    norm = powf(norm, 1.0f / p.pnorm);
    for (int j = 0; j < p.k; ++j) weight[j] /= norm;
  }
  for (int j = 0; j < p.k; ++j) weight[j] *= p.scaling;
  return p.k;
}

}  // namespace ferry

#if !defined(__CUDACC__)
#include "ferry/model_config.h"

namespace ferry {

// The model's router as RouterParams (the caller checks n_expert_used <= kMaxExpertsUsed).
inline RouterParams route_params_of(const ModelConfig& c) {
  RouterParams p;
  p.kind = c.router == RouterKind::SparseMixer        ? RouteKind::SparseMixer
           : c.router == RouterKind::SoftmaxTopKPNorm ? RouteKind::SoftmaxTopKPNorm
                                                      : RouteKind::SoftmaxTopK;
  p.n_expert = c.n_expert;
  p.k = p.kind == RouteKind::SparseMixer ? 2 : c.n_expert_used;
  p.renormalise = c.norm_topk_prob;
  p.pnorm = static_cast<float>(c.router_pnorm);
  p.jitter_eps = static_cast<float>(c.router_jitter_eps);
  p.scaling = static_cast<float>(c.routed_scaling_factor);
  return p;
}

}  // namespace ferry
#endif
