// Frequency residency (policy.expert_residency): the pipelined executor keeps the experts the router has
// been choosing resident, trading a resident expert for a hotter DRAM-tier one between forwards.
//  - the logits are bit-identical to index residency (experts 0 .. g-1 for the whole run), for top-2 and
//    top-3 routing, with experts prefetched and fetched on demand, attention on the host and the device:
//    positions only order the groups of the assignments, the combine stays in expert order;
//  - the trades happen, and every routed assignment is counted once, as a hit or a miss;
//  - group_by_expert in position order keeps each expert's assignments and only moves its group.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "ferry/checkpoint.h"
#include "ferry/device.h"
#include "ferry/exec/pipelined_model.h"
#include "ferry/ops/expert_ffn.h"
#include "test_util.h"

namespace ferry {
namespace {

struct Generation {
  std::vector<float> logits;  // every row of every forward
  PipelineStats stats;
};

// n_seq sequences of a fixed synthetic prompt each (different per sequence), then greedy decode steps.
Generation generate(const Checkpoint& ckpt, const planner::Policy& p, int n_seq, int steps) {
  auto dev = create_device("sim:l4");
  PipelinedModel m(ckpt, *dev, p);
  const int V = m.config().n_vocab;
  std::vector<std::vector<int32_t>> prompts(n_seq);
  for (int s = 0; s < n_seq; ++s)
    for (int t = 0; t < 12; ++t) prompts[s].push_back((37 * s + 11 * t + 5) % V);
  std::vector<ForwardItem> items;
  for (int s = 0; s < n_seq; ++s) items.push_back({m.add_sequence(), prompts[s], false});
  std::vector<int32_t> next(n_seq);
  Generation r;
  for (int step = 0; step < steps; ++step) {
    const std::vector<float> logits = m.forward(items);
    r.logits.insert(r.logits.end(), logits.begin(), logits.end());
    for (int s = 0; s < n_seq; ++s) {
      const float* row = logits.data() + static_cast<size_t>(s) * V;
      next[s] = static_cast<int32_t>(std::max_element(row, row + V) - row);
      items[s] = {items[s].seq, std::span<const int32_t>(&next[s], 1), false};
    }
  }
  r.stats = m.stats();
  return r;
}

struct Case {
  const char* model;
  planner::ExpertFetch fetch;
  bool host_attention;
};

class ExpertResidency : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    saved_ = omp_get_max_threads();
    omp_set_num_threads(1);
  }
  void TearDown() override { omp_set_num_threads(saved_); }
  int saved_ = 1;
};

TEST_P(ExpertResidency, TradesExpertsByFrequencyWithBitIdenticalLogits) {
  const Case& k = GetParam();
  auto ckpt = Checkpoint::open(test::oracle_dir(k.model));
  const ModelConfig& c = ckpt->config();
  constexpr int kSeq = 4, kSteps = 40, kResident = 2;
  Generation run[2];
  for (int f = 0; f < 2; ++f) {
    planner::Policy p = test::pipeline_policy(c, 2, 2, kResident, 0, k.host_attention, planner::Precision::Bf16);
    p.expert_fetch = k.fetch;
    p.expert_residency = f ? planner::ExpertResidency::Frequency : planner::ExpertResidency::Index;
    run[f] = generate(*ckpt, p, kSeq, kSteps);
  }
  const PipelineStats& index = run[0].stats;
  const PipelineStats& freq = run[1].stats;
  EXPECT_TRUE(run[1].logits == run[0].logits) << "frequency residency changed the logits";
  EXPECT_EQ(index.expert_swaps, 0);
  EXPECT_GT(freq.expert_swaps, 0) << "no trade in " << kSeq * kSteps << " decode tokens";
  EXPECT_EQ(freq.expert_swap_bytes % (2 * freq.expert_swaps), 0u);
  // every routed (token, expert) pair is a hit or a miss, in both runs alike
  int64_t moe_layers = 0;
  for (int l = 0; l < c.n_layer; ++l) moe_layers += c.layer_is_moe[l];
  const int64_t routed = (freq.prefill_tokens + freq.decode_tokens) * moe_layers * c.n_expert_used;
  EXPECT_EQ(freq.expert_hits + freq.expert_misses, routed);
  EXPECT_EQ(index.expert_hits + index.expert_misses, routed);
  std::printf("  %s %s, %s attention: hit rate %.1f%% by index, %.1f%% by frequency (%lld trades)\n", k.model,
              std::string(planner::expert_fetch_name(k.fetch)).c_str(), k.host_attention ? "host" : "device",
              100.0 * index.expert_hits / routed, 100.0 * freq.expert_hits / routed,
              static_cast<long long>(freq.expert_swaps));
}

INSTANTIATE_TEST_SUITE_P(Models, ExpertResidency,
                         ::testing::Values(Case{"olmoe_bpe", planner::ExpertFetch::Prefetch, true},
                                           Case{"olmoe_bpe", planner::ExpertFetch::Demand, true},
                                           Case{"mixtral_fused", planner::ExpertFetch::Prefetch, false},
                                           Case{"qwen2_moe_tied_f32", planner::ExpertFetch::Demand, false}),
                         [](const auto& info) {
                           return std::string(info.param.model) + "_" +
                                  std::string(planner::expert_fetch_name(info.param.fetch)) +
                                  (info.param.host_attention ? "_host" : "_device");
                         });

// Routing concentrated on a few experts ends up resident. Every sequence repeats one token, so every
// position of every layer has the same hidden state and routes to the same K experts: once the re-rank has
// seen them, each layer's g resident experts are g of those K and every later token hits g of its K
// experts exactly. Index residency hits only where those experts happen to be 0 .. g-1.
TEST(ExpertResidency, ConcentratedRoutingEndsUpResident) {
  omp_set_num_threads(1);
  auto ckpt = Checkpoint::open(test::oracle_dir("olmoe_bpe"));
  const ModelConfig& c = ckpt->config();
  constexpr int kSeq = 4, kWarm = 24, kMeasured = 16, kResident = 2;
  ASSERT_LE(kResident, c.n_expert_used);
  PipelineStats window[2];
  for (int f = 0; f < 2; ++f) {
    planner::Policy p = test::pipeline_policy(c, 2, 2, kResident, 0, true, planner::Precision::Bf16);
    p.expert_residency = f ? planner::ExpertResidency::Frequency : planner::ExpertResidency::Index;
    auto dev = create_device("sim:l4");
    PipelinedModel m(*ckpt, *dev, p);
    const std::vector<int32_t> prompt(8, 17);
    std::vector<ForwardItem> items;
    for (int s = 0; s < kSeq; ++s) items.push_back({m.add_sequence(), prompt, false});
    const int32_t token = 17;
    PipelineStats before;
    for (int step = 0; step < kWarm + kMeasured; ++step) {
      if (step == kWarm) before = m.stats();
      m.forward(items);
      for (auto& it : items) it.tokens = std::span<const int32_t>(&token, 1);
    }
    window[f].expert_hits = m.stats().expert_hits - before.expert_hits;
    window[f].expert_misses = m.stats().expert_misses - before.expert_misses;
  }
  const int64_t routed = int64_t{kSeq} * kMeasured * c.n_layer * c.n_expert_used;
  ASSERT_EQ(window[1].expert_hits + window[1].expert_misses, routed);
  EXPECT_EQ(window[1].expert_hits, routed * kResident / c.n_expert_used) << "the hot experts are not all resident";
  EXPECT_GE(window[1].expert_hits, window[0].expert_hits);
  std::printf("  one repeated token: %lld of %lld routed hits by frequency, %lld by index\n",
              static_cast<long long>(window[1].expert_hits), static_cast<long long>(routed),
              static_cast<long long>(window[0].expert_hits));
}

// Grouping in position order: the groups come in the order of the positions, each holding exactly the
// assignments (token ascending, slot) its expert holds in expert order.
TEST(GroupByExpert, PositionOrderMovesGroupsAndKeepsTheirAssignments) {
  constexpr int T = 9, K = 3, E = 7;
  std::vector<int32_t> idx(T * K);
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < K; ++k) idx[t * K + k] = (t * 3 + k * 2) % E;  // distinct within a token
  for (int t = 0; t < T; ++t) {
    std::vector<int32_t> row(idx.begin() + t * K, idx.begin() + (t + 1) * K);
    std::sort(row.begin(), row.end());
    ASSERT_TRUE(std::adjacent_find(row.begin(), row.end()) == row.end());
  }
  const std::vector<int32_t> position = {3, 6, 0, 5, 1, 4, 2};  // expert -> position
  std::vector<int32_t> off(E + 1), tok(T * K), slot(T * K), poff(E + 1), ptok(T * K), pslot(T * K);
  cpu::group_by_expert(idx.data(), T, K, E, off.data(), tok.data(), slot.data());
  cpu::group_by_expert(idx.data(), T, K, E, poff.data(), ptok.data(), pslot.data(), position.data());
  EXPECT_EQ(poff[E], T * K);
  for (int e = 0; e < E; ++e) {
    const int p = position[e];
    ASSERT_EQ(poff[p + 1] - poff[p], off[e + 1] - off[e]) << "expert " << e;
    for (int i = 0; i < off[e + 1] - off[e]; ++i) {
      EXPECT_EQ(ptok[poff[p] + i], tok[off[e] + i]);
      EXPECT_EQ(pslot[poff[p] + i], slot[off[e] + i]);
      EXPECT_EQ(idx[pslot[poff[p] + i]], e);
    }
  }
}

}  // namespace
}  // namespace ferry
