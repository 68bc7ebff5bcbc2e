// The bundled trained model (tools/data/tiny_moe, written by tools/train_tiny_moe.py): ferry runs what its
// trainer trained.
//  - the reference target's greedy tokens from a held-out prompt equal the trainer's own forward over the
//    same bf16 weights, and its last-position logits agree with the trainer's to fp32 summation error;
//  - the tokenizer encodes the held-out text to the ids the trainer fed (its SentencePiece vocabulary);
//  - the cpu target (bf16 weights, f32 activations) picks the same next token;
//  - its held-out perplexity is what a trained model gives, far below a uniform guess over the vocabulary.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

#include "ferry/checkpoint.h"
#include "ferry/model_factory.h"
#include "ferry/reference_model.h"
#include "ferry/tokenizer.h"
#include "test_util.h"

namespace ferry {
namespace {

const std::filesystem::path kDir = std::filesystem::path(FERRY_SOURCE_DIR) / "tools" / "data" / "tiny_moe";

nlohmann::json trainer_reference() {
  std::ifstream f(kDir / "trainer_reference.json");
  return nlohmann::json::parse(f);
}

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(TinyMoe, ReferenceTargetReproducesTheTrainersForward) {
  auto ckpt = Checkpoint::open(kDir);
  const nlohmann::json ref = trainer_reference();
  const std::vector<int32_t> prompt = ref["prompt_ids"].get<std::vector<int32_t>>();
  const std::vector<int32_t> want = ref["greedy_ids"].get<std::vector<int32_t>>();
  ReferenceModel model(load_weights_f32(*ckpt));
  const int V = model.config().n_vocab;
  const int seq = model.add_sequence();
  std::vector<float> logits = model.forward(std::vector<ForwardItem>{{seq, prompt, false}});
  ASSERT_EQ(static_cast<int>(logits.size()), V);
  for (const auto& top : ref["last_logits_top"]) {
    const int id = top[0];
    const float trainer = top[1];
    EXPECT_NEAR(logits[id], trainer, 2e-3 + 1e-4 * std::fabs(trainer)) << "token " << id;
  }
  std::vector<int32_t> got;
  for (size_t i = 0; i < want.size(); ++i) {
    got.push_back(argmax(logits));
    const int32_t next = got.back();
    logits = model.forward(std::vector<ForwardItem>{{seq, std::span<const int32_t>(&next, 1), false}});
  }
  EXPECT_EQ(got, want);
}

TEST(TinyMoe, TokenizerEncodesTheHeldOutPromptAsTheTrainerDid) {
  auto tok = load_tokenizer(kDir);
  const std::vector<int32_t> prompt = trainer_reference()["prompt_ids"].get<std::vector<int32_t>>();
  // the prompt is the first held-out document (one per line) of at least 23 tokens, cut to 23, after BOS
  std::ifstream held(kDir / "heldout.txt");
  for (std::string line; std::getline(held, line);) {
    const std::vector<TokenId> ids = tok->encode(line, true);
    if (ids.size() < 24) continue;
    EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + 24), prompt) << line;
    return;
  }
  FAIL() << "no held-out document of 23 tokens";
}

TEST(TinyMoe, CpuTargetPicksTheSameNextToken) {
  auto ckpt = Checkpoint::open(kDir);
  const nlohmann::json ref = trainer_reference();
  const std::vector<int32_t> prompt = ref["prompt_ids"].get<std::vector<int32_t>>();
  TargetOptions t;
  t.target = "cpu";
  auto model = create_model(*ckpt, t);
  const int seq = model->add_sequence();
  const std::vector<float> logits = model->forward(std::vector<ForwardItem>{{seq, prompt, false}});
  EXPECT_EQ(argmax(logits), ref["greedy_ids"][0].get<int32_t>());
}

TEST(TinyMoe, HeldOutPerplexityIsATrainedModels) {
  auto ckpt = Checkpoint::open(kDir);
  auto tok = load_tokenizer(kDir);
  ReferenceModel model(load_weights_f32(*ckpt));
  const int V = model.config().n_vocab;
  std::ifstream held(kDir / "heldout.txt");
  double nll = 0;
  int64_t n = 0;
  for (std::string line; std::getline(held, line) && n < 1500;) {
    std::vector<TokenId> ids = tok->encode(line, true);
    if (ids.size() < 2) continue;
    if (ids.size() > 128) ids.resize(128);
    const int seq = model.add_sequence();
    const std::vector<float> logits = model.forward(std::vector<ForwardItem>{{seq, ids, true}});
    model.free_sequence(seq);
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const float* row = logits.data() + i * V;
      const float mx = *std::max_element(row, row + V);
      double sum = 0;
      for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
      nll += std::log(sum) + mx - row[ids[i + 1]];
      ++n;
    }
  }
  const double ppl = std::exp(nll / n);
  std::printf("  held-out perplexity %.2f over %lld tokens (uniform: %d)\n", ppl, static_cast<long long>(n), V);
  EXPECT_LT(ppl, V / 10.0);
}

}  // namespace
}  // namespace ferry
