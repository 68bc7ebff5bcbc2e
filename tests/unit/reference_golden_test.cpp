// The reference forward against Hugging Face transformers: logits for a batch of prompts of
// different lengths, run together without padding, and 32 greedy tokens per prompt, decoded
// together in batched steps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ferry/checkpoint.h"
#include "ferry/reference_model.h"
#include "test_util.h"

namespace ferry {
namespace {

struct Oracle {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<float>> logits;  // per prompt: all positions [len, V] or last [V]
  std::vector<bool> all_positions;
  std::vector<std::vector<int32_t>> greedy;  // per prompt: 32 tokens
};

Oracle read_oracle(const std::filesystem::path& dir) {
  auto f = SafetensorsFile::open(dir / "reference.safetensors");
  Oracle o;
  for (int i = 0;; ++i) {
    const std::string idx = std::to_string(i);
    if (!f->find("prompt." + idx)) break;
    auto ids = test::read_tensor<int64_t>(*f, "prompt." + idx);
    o.prompts.emplace_back(ids.begin(), ids.end());
    const bool all = f->find("logits." + idx) != nullptr;
    o.all_positions.push_back(all);
    o.logits.push_back(test::read_tensor<float>(*f, (all ? "logits." : "last_logits.") + idx));
    auto g = test::read_tensor<int64_t>(*f, "greedy." + idx);
    o.greedy.emplace_back(g.begin(), g.end());
  }
  return o;
}

class ReferenceGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceGolden, LogitsAndGreedyTokensMatchTransformers) {
  const auto dir = test::oracle_dir(GetParam());
  const Oracle o = read_oracle(dir);
  ASSERT_GE(o.prompts.size(), 2u);
  auto ckpt = Checkpoint::open(dir);
  ReferenceModel model(load_weights_f32(*ckpt));
  const int V = model.config().n_vocab;

  // Prefill every prompt in one batch.
  std::vector<int> seqs;
  std::vector<ForwardItem> items;
  for (size_t i = 0; i < o.prompts.size(); ++i) {
    seqs.push_back(model.add_sequence());
    items.push_back({seqs.back(), o.prompts[i], static_cast<bool>(o.all_positions[i])});
  }
  std::vector<float> logits = model.forward(items);

  size_t row = 0;
  for (size_t i = 0; i < o.prompts.size(); ++i) {
    const size_t n = o.logits[i].size();
    ASSERT_EQ(n % V, 0u);
    auto [lo, hi] = std::minmax_element(o.logits[i].begin(), o.logits[i].end());
    const float tol = 1e-4f * (*hi - *lo);
    float max_diff = 0;
    for (size_t j = 0; j < n; ++j) max_diff = std::max(max_diff, std::abs(logits[row * V + j] - o.logits[i][j]));
    EXPECT_LE(max_diff, tol) << GetParam() << " prompt " << i << " (" << o.prompts[i].size() << " tokens)";
    std::printf("  %s prompt %zu (%zu tokens): max |diff| %.3g = %.3g x logit range\n", GetParam().c_str(), i,
                o.prompts[i].size(), max_diff, max_diff / (*hi - *lo));
    row += n / V;
  }
  ASSERT_EQ(row * V, logits.size());

  // Greedy: the first token from the prefill logits, then 31 batched decode steps.
  std::vector<std::vector<int32_t>> generated(o.prompts.size());
  std::vector<int32_t> next(o.prompts.size());
  row = 0;
  for (size_t i = 0; i < o.prompts.size(); ++i) {
    row += o.all_positions[i] ? o.prompts[i].size() : 1;
    const float* last = logits.data() + (row - 1) * V;
    next[i] = static_cast<int32_t>(std::max_element(last, last + V) - last);
  }
  for (int step = 0; step < 32; ++step) {
    for (size_t i = 0; i < next.size(); ++i) generated[i].push_back(next[i]);
    if (step == 31) break;
    items.clear();
    for (size_t i = 0; i < next.size(); ++i) items.push_back({seqs[i], std::span<const int32_t>(&next[i], 1), false});
    logits = model.forward(items);
    for (size_t i = 0; i < next.size(); ++i) {
      const float* l = logits.data() + i * V;
      next[i] = static_cast<int32_t>(std::max_element(l, l + V) - l);
    }
  }
  for (size_t i = 0; i < o.prompts.size(); ++i)
    EXPECT_EQ(generated[i], o.greedy[i]) << GetParam() << " prompt " << i;
}

INSTANTIATE_TEST_SUITE_P(Oracles, ReferenceGolden, ::testing::ValuesIn(test::oracle_fixtures()),
                         [](const auto& info) { return info.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ReferenceGolden);

TEST(ReferenceGoldenData, EveryFamilyHasAFixture) {
  const auto names = test::oracle_fixtures();
  for (const char* family : {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe"})
    EXPECT_TRUE(std::any_of(names.begin(), names.end(), [&](const std::string& n) { return n.rfind(family, 0) == 0; }))
        << "no oracle fixture for " << family << " under tests/data/oracles";
}

}  // namespace
}  // namespace ferry
