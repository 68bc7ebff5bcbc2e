// The __host__ __device__ pieces of the MoE layer the CUDA kernels run, checked on the CPU:
//   router_route (ferry/router_math.h) called as the CUDA router kernel calls it (scratch [3E] per token,
//   int32 outputs) equals the cpu router op (cpu::router_topk, what route_token and the cpu target run),
//   bit for bit, for every router kind;
//   moe_ascending_slots (ferry/ops/moe_math.h), the order in which ffn_output sums a token's routed
//   outputs, equals a sort of its slots by expert index.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "ferry/ops/moe_math.h"
#include "ferry/ops/router.h"
#include "ferry/route_token.h"
#include "ferry/router_math.h"

namespace ferry {
namespace {

cpu::RouterParams params(RouterKind kind, int n_expert, int k, bool norm_topk) {
  cpu::RouterParams p;
  p.kind = kind;
  p.n_expert = n_expert;
  p.top_k = kind == RouterKind::SparseMixer ? 2 : k;
  p.norm_topk_prob = norm_topk;
  p.jitter_eps = 0.01f;
  return p;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

// As the kernel: token t reads logits + t*E, uses scratch + t*3E, writes idx/weight + t*K.
void expect_kernel_routing_matches_cpu(const cpu::RouterParams& p, uint32_t seed, float spread) {
  const int T = 64, E = p.n_expert, K = p.top_k;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, spread);
  std::vector<float> logits(static_cast<size_t>(T) * E);
  for (float& l : logits) l = dist(rng);
  for (int t = 0; t < T; t += 7) logits[t * E + t % E] = logits[t * E + (t + 1) % E];  // ties
  std::vector<int32_t> want_idx(T * K), got_idx(T * K);
  std::vector<float> want_w(T * K), got_w(T * K), scratch(static_cast<size_t>(T) * 3 * E);
  cpu::router_topk(logits.data(), T, p, want_idx.data(), want_w.data());
  for (int t = 0; t < T; ++t)
    router_route(logits.data() + t * E, p, scratch.data() + t * 3 * E, got_idx.data() + t * K,
                 got_w.data() + t * K);
  for (int i = 0; i < T * K; ++i) {
    EXPECT_EQ(got_idx[i], want_idx[i]) << "token " << i / K << " slot " << i % K;
    EXPECT_TRUE(same_bits(got_w[i], want_w[i])) << "token " << i / K << " slot " << i % K << ": " << got_w[i]
                                                << " vs " << want_w[i];
  }
}

TEST(RouteMath, SoftmaxTopKAsTheKernelRunsIt) {
  for (bool renorm : {false, true})
    for (auto [e, k] : {std::pair{8, 2}, {60, 4}, {64, 8}, {128, 8}, {160, 6}}) {
      cpu::RouterParams p = params(RouterKind::SoftmaxTopK, e, k, renorm);
      expect_kernel_routing_matches_cpu(p, 3u + e + k, 1.0f);
      p.routed_scaling = 16.0f;  // DeepSeek-V2-Lite style scaling
      expect_kernel_routing_matches_cpu(p, 5u + e, 2.0f);
    }
}

TEST(RouteMath, PNormAsTheKernelRunsIt) {
  for (float pn : {1.0f, 2.0f}) {
    cpu::RouterParams p = params(RouterKind::SoftmaxTopKPNorm, 16, 4, false);
    p.pnorm = pn;
    expect_kernel_routing_matches_cpu(p, 11u, 1.5f);
  }
}

TEST(RouteMath, SparseMixerAsTheKernelRunsIt) {
  for (float spread : {0.01f, 0.5f, 3.0f}) expect_kernel_routing_matches_cpu(params(RouterKind::SparseMixer, 16, 2, false), 13u, spread);
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
