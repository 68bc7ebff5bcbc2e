// The __host__ __device__ router (ferry/ops/route_math.h) that the CUDA router kernel runs equals
// route_token (src/exec/route_token.cpp), bit for bit on the host, for every router kind; and the
// ascending-expert order of ffn_output (ferry/ops/moe_math.h) equals a sort by expert index.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "ferry/model_config.h"
#include "ferry/ops/moe_math.h"
#include "ferry/ops/route_math.h"
#include "ferry/router_math.h"

namespace ferry {
namespace {

ModelConfig router_config(RouterKind kind, int n_expert, int k, bool norm_topk) {
  ModelConfig c;
  c.router = kind;
  c.n_expert = n_expert;
  c.n_expert_used = k;
  c.norm_topk_prob = norm_topk;
  c.router_jitter_eps = 0.01;
  c.routed_scaling_factor = 1.0;
  return c;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

void expect_same_routing(const ModelConfig& c, uint32_t seed, float spread) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, spread);
  const RouterParams p = route_params_of(c);
  std::vector<float> logits(c.n_expert), probs(c.n_expert), scratch(route_scratch_floats(p));
  for (int trial = 0; trial < 200; ++trial) {
    for (float& l : logits) l = dist(rng);
    if (trial % 7 == 0) logits[trial % c.n_expert] = logits[(trial + 1) % c.n_expert];  // ties
    const RouterChoice want = route_token(c, logits.data(), probs.data());
    int32_t idx[kMaxExpertsUsed];
    float weight[kMaxExpertsUsed];
    const int k = route_token_math(p, logits.data(), scratch.data(), idx, weight);
    ASSERT_EQ(k, want.k);
    for (int j = 0; j < k; ++j) {
      EXPECT_EQ(idx[j], want.expert[j]) << "trial " << trial << " slot " << j;
      EXPECT_TRUE(same_bits(weight[j], want.weight[j]))
          << "trial " << trial << " slot " << j << ": " << weight[j] << " vs " << want.weight[j];
    }
  }
}

TEST(RouteMath, SoftmaxTopKMatchesRouteToken) {
  for (bool renorm : {false, true})
    for (auto [e, k] : {std::pair{8, 2}, {60, 4}, {64, 8}, {128, 8}, {160, 6}}) {
      ModelConfig c = router_config(RouterKind::SoftmaxTopK, e, k, renorm);
      expect_same_routing(c, 3u + e + k, 1.0f);
      c.routed_scaling_factor = 16.0;  // DeepSeek-V2-Lite style scaling
      expect_same_routing(c, 5u + e, 2.0f);
    }
}

TEST(RouteMath, PNormMatchesRouteToken) {
  for (double pn : {1.0, 2.0}) {
    ModelConfig c = router_config(RouterKind::SoftmaxTopKPNorm, 16, 4, false);
    c.router_pnorm = pn;
    expect_same_routing(c, 11u, 1.5f);
  }
}

TEST(RouteMath, SparseMixerMatchesRouteToken) {
  for (float spread : {0.01f, 0.5f, 3.0f}) {
    ModelConfig c = router_config(RouterKind::SparseMixer, 16, 2, false);
    expect_same_routing(c, 13u, spread);
  }
}

TEST(MoeMath, AscendingSlotsSortByExpert) {
  std::mt19937 rng(9);
  for (int k = 1; k <= kMaxExpertsUsed; ++k) {
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<int32_t> experts(128);
      std::iota(experts.begin(), experts.end(), 0);
      std::shuffle(experts.begin(), experts.end(), rng);
      experts.resize(k);
      int order[kMaxExpertsUsed];
      moe_ascending_slots(experts.data(), k, order);
      std::vector<int> want(k);
      std::iota(want.begin(), want.end(), 0);
      std::sort(want.begin(), want.end(), [&](int a, int b) { return experts[a] < experts[b]; });
      for (int j = 0; j < k; ++j) EXPECT_EQ(order[j], want[j]);
    }
  }
}

}  // namespace
}  // namespace ferry
