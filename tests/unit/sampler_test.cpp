#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "ferry/error.h"
#include "ferry/sampler.h"

namespace ferry {
namespace {

std::vector<float> logits_from_probs(const std::vector<double>& p) {
  std::vector<float> l;
  for (double q : p) l.push_back(static_cast<float>(std::log(q)));
  return l;
}

std::map<int, int> histogram(SamplingParams sp, const std::vector<float>& logits, int draws) {
  Sampler s(sp, static_cast<int>(logits.size()));
  std::map<int, int> h;
  for (int i = 0; i < draws; ++i) h[s.sample(logits, {})]++;
  return h;
}

TEST(Sampler, GreedyTakesTheFirstMaximum) {
  Sampler s({}, 5);
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f};
  EXPECT_EQ(s.sample(l, {}), 1);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<float> l(100);
  for (int i = 0; i < 100; ++i) l[i] = std::sin(i * 0.37f);
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  auto draw = [&](uint64_t seed) {
    p.seed = seed;
    Sampler s(p, 100);
    std::vector<int> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.sample(l, {}));
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(Sampler, TemperatureOneFollowsTheDistribution) {
  const std::vector<double> p = {0.5, 0.3, 0.15, 0.05};
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = 7;
  const int n = 40000;
  auto h = histogram(sp, logits_from_probs(p), n);
  for (int i = 0; i < 4; ++i) {
    const double expected = p[i] * n, sd = std::sqrt(n * p[i] * (1 - p[i]));
    EXPECT_NEAR(h[i], expected, 5 * sd) << "token " << i;
  }
}

TEST(Sampler, TopKKeepsOnlyKCandidates) {
  SamplingParams sp;
  sp.temperature = 5.0f;  // flatten so every token would otherwise appear
  sp.top_k = 2;
  auto h = histogram(sp, logits_from_probs({0.4, 0.3, 0.2, 0.1}), 2000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_GT(h[0], 0);
  EXPECT_GT(h[1], 0);
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.top_p = 0.75f;  // 0.5 + 0.3 >= 0.75: tokens 0 and 1 only
  auto h = histogram(sp, logits_from_probs({0.5, 0.3, 0.15, 0.05}), 4000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_NEAR(h[0] / 4000.0, 0.5 / 0.8, 0.03);
}

TEST(Sampler, MinPDropsTokensBelowAFractionOfTheBest) {
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.min_p = 0.25f;  // keeps p >= 0.125: tokens 0, 1, 2
  auto h = histogram(sp, logits_from_probs({0.5, 0.3, 0.15, 0.05}), 4000);
  EXPECT_EQ(h.size(), 3u);
  EXPECT_EQ(h.count(3), 0u);
}

TEST(Sampler, RepetitionPenaltyFollowsTheTransformersRule) {
  SamplingParams sp;
  sp.repetition_penalty = 2.0f;
  Sampler s(sp, 3);
  // token 0: 2.0 -> 1.0 (divided), token 2: -0.5 stays below; token 1 unpenalised at 1.5 wins.
  std::vector<float> l = {2.0f, 1.5f, -0.5f};
  std::vector<int32_t> history = {0, 2};
  EXPECT_EQ(s.sample(l, history), 1);
  // Negative logits are multiplied: -0.1 -> -0.2 loses to an unpenalised -0.15.
  std::vector<float> l2 = {-0.1f, -0.15f, -3.0f};
  std::vector<int32_t> h2 = {0};
  EXPECT_EQ(s.sample(l2, h2), 1);
}

TEST(Sampler, RejectsBadParameters) {
  SamplingParams p;
  p.top_p = 0.0f;
  EXPECT_THROW(Sampler(p, 4), Error);
  p = {};
  p.temperature = -1.0f;
  EXPECT_THROW(Sampler(p, 4), Error);
  p = {};
  p.repetition_penalty = 0.0f;
  EXPECT_THROW(Sampler(p, 4), Error);
}

}  // namespace
}  // namespace ferry
