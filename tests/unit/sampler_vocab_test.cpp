// Padded vocabularies: the rows of an embedding / lm_head past the tokenizer's vocabulary are never
// sampled (greedy, top-k, top-p, min-p, temperature), and a request that fails while it runs becomes
// that request's error while the others go on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <set>

#include "ferry/error.h"
#include "ferry/generator.h"
#include "ferry/model_config.h"
#include "ferry/sampler.h"
#include "ferry/tokenizer.h"
#include "test_util.h"

namespace ferry {
namespace {

// Logits where the masked ids [n_real, V) are the most likely by far.
std::vector<float> padded_logits(int n_real, int V) {
  std::vector<float> l(V);
  for (int i = 0; i < V; ++i) l[i] = i < n_real ? std::sin(0.7f * static_cast<float>(i)) : 50.0f + static_cast<float>(i);
  return l;
}

std::vector<int32_t> range_ids(int from, int to) {
  std::vector<int32_t> ids;
  for (int i = from; i < to; ++i) ids.push_back(i);
  return ids;
}

TEST(SamplerVocab, MaskedIdsAreNeverSampledUnderAnySetting) {
  const int V = 64, n_real = 40;
  const std::vector<float> logits = padded_logits(n_real, V);
  const std::vector<int32_t> masked = range_ids(n_real, V);
  std::vector<SamplingParams> settings;
  settings.push_back({});  // greedy
  for (float t : {0.3f, 0.8f, 1.0f, 5.0f, 100.0f}) {
    SamplingParams p;
    p.temperature = t;
    settings.push_back(p);
    p.top_k = 50;  // more than the unmasked ids
    settings.push_back(p);
    p.top_k = 3;
    settings.push_back(p);
    p.top_k = 0;
    p.top_p = 0.5f;
    settings.push_back(p);
    p.top_p = 1.0f;
    p.min_p = 0.05f;
    settings.push_back(p);
    p.min_p = 0.0f;
    p.repetition_penalty = 1.3f;
    settings.push_back(p);
  }
  const std::vector<int32_t> history = {1, 2, 45, 63};  // masked ids in the history too
  for (size_t k = 0; k < settings.size(); ++k) {
    SamplingParams p = settings[k];
    p.seed = 11 + k;
    Sampler s(p, V, masked);
    for (int i = 0; i < 2000; ++i) {
      const int32_t t = s.sample(logits, history);
      ASSERT_GE(t, 0);
      ASSERT_LT(t, n_real) << "setting " << k << " (temperature " << p.temperature << ", top-k " << p.top_k
                           << ", top-p " << p.top_p << ", min-p " << p.min_p << ")";
    }
  }
}

TEST(SamplerVocab, GreedyTakesTheBestUnmaskedId) {
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 9.0f, 2.9f, 7.0f};
  const std::vector<int32_t> masked = {3, 5};
  Sampler s({}, 6, masked);
  EXPECT_EQ(s.sample(l, {}), 1);
}

TEST(SamplerVocab, MaskingLeavesTheOtherIdsDistributionAlone) {
  // The unmasked ids keep their relative probabilities: the same draws as a sampler over them alone.
  const int n_real = 5, V = 8;
  std::vector<float> real = {0.2f, 1.0f, -0.5f, 0.7f, 0.0f};
  std::vector<float> padded = real;
  padded.resize(V, 30.0f);
  const std::vector<int32_t> masked = range_ids(n_real, V);
  SamplingParams p;
  p.temperature = 0.9f;
  p.seed = 3;
  Sampler plain(p, n_real), with_mask(p, V, masked);
  for (int i = 0; i < 500; ++i) ASSERT_EQ(plain.sample(real, {}), with_mask.sample(padded, {}));
}

TEST(SamplerVocab, NoMaskChangesNothing) {
  std::vector<float> l(100);
  for (int i = 0; i < 100; ++i) l[i] = std::cos(0.31f * static_cast<float>(i));
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  p.seed = 9;
  Sampler a(p, 100), b(p, 100, {});
  for (int i = 0; i < 200; ++i) ASSERT_EQ(a.sample(l, {}), b.sample(l, {}));
}

// The sampler's algorithm written plainly (a comparator sort over all ids): the fast path must draw the
// same ids from the same seed, ties, signed zeros and -inf included.
int32_t plain_sample(const std::vector<float>& logits, float temperature, float top_p, Rng& rng) {
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  int n = static_cast<int>(order.size());
  while (n > 1 && logits[order[n - 1]] == -std::numeric_limits<float>::infinity()) --n;
  std::vector<double> prob(n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += (prob[i] = std::exp((logits[order[i]] - logits[order[0]]) / temperature));
  for (double& q : prob) q /= sum;
  if (top_p < 1.0f) {
    double cum = 0;
    for (int i = 0; i < n; ++i)
      if ((cum += prob[i]) >= top_p) {
        n = i + 1;
        break;
      }
  }
  double mass = 0;
  for (int i = 0; i < n; ++i) mass += prob[i];
  double r = rng.uniform() * mass;
  for (int i = 0; i < n; ++i)
    if ((r -= prob[i]) < 0) return order[i];
  return order[n - 1];
}

TEST(SamplerVocab, DrawsAreThoseOfThePlainAlgorithm) {
  const int V = 3000;
  std::vector<float> l(V);
  for (int i = 0; i < V; ++i) l[i] = std::round(4.0f * std::sin(0.37f * static_cast<float>(i))) / 4.0f;  // many ties
  l[5] = -0.0f;
  l[6] = 0.0f;
  l[7] = -std::numeric_limits<float>::infinity();
  l[8] = std::numeric_limits<float>::lowest();
  for (float top_p : {1.0f, 0.6f}) {
    SamplingParams p;
    p.temperature = 0.7f;
    p.top_p = top_p;
    p.seed = 21;
    Sampler s(p, V);
    Rng rng(p.seed);
    for (int i = 0; i < 300; ++i) ASSERT_EQ(s.sample(l, {}), plain_sample(l, p.temperature, top_p, rng)) << i;
  }
}

TEST(SamplerVocab, NanLogitsAreNeverSampledAndAllNanIsAnError) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> l = {nan, 1.0f, nan, 0.5f, nan};
  for (float t : {0.0f, 1.0f}) {
    SamplingParams p;
    p.temperature = t;
    Sampler s(p, 5);
    for (int i = 0; i < 200; ++i) {
      const int32_t id = s.sample(l, {});
      ASSERT_TRUE(id == 1 || id == 3) << id;
    }
    std::vector<float> all_nan(5, nan);
    EXPECT_THROW(s.sample(all_nan, {}), Error);
  }
}

TEST(SamplerVocab, UndecodableIdsAreThePaddedRowsOfTheOracleModels) {
  for (const char* name : {"qwen2_moe_bpe", "qwen3_moe_bpe", "olmoe_bpe", "mixtral_spm"}) {
    auto tok = load_tokenizer(test::oracle_dir(name));
    const int n_real = static_cast<int>(tok->vocab_size());
    const int V = n_real + 33;
    const std::vector<TokenId> ids = undecodable_ids(*tok, V);
    // Every id past the tokenizer; inside it, only ids the tokenizer cannot decode (none here).
    EXPECT_EQ(ids, range_ids(n_real, V)) << name;
    for (TokenId id : range_ids(0, n_real)) ASSERT_NO_THROW((void)tok->decode(std::span<const TokenId>(&id, 1))) << name;
    // An id to keep (an end-of-sequence id of the config beyond the tokenizer) is not masked.
    const std::vector<TokenId> keep = {V - 1};
    EXPECT_EQ(undecodable_ids(*tok, V, keep), range_ids(n_real, V - 1)) << name;
    // A model vocabulary smaller than the tokenizer's: nothing to mask.
    EXPECT_TRUE(undecodable_ids(*tok, n_real - 10).empty()) << name;
  }
}

// A model whose logits are given by a function of (sequence, position): enough to drive the generator.
class ScriptedModel final : public Model {
 public:
  using Pick = std::function<std::vector<float>(int seq, int position)>;
  ScriptedModel(int n_vocab, Pick pick) : pick_(std::move(pick)) {
    cfg_.n_vocab = n_vocab;
    cfg_.max_position = 256;
  }
  const ModelConfig& config() const override { return cfg_; }
  int add_sequence() override {
    lengths_.push_back(0);
    return static_cast<int>(lengths_.size()) - 1;
  }
  void free_sequence(int) override {}
  int sequence_length(int seq) const override { return lengths_[seq]; }
  std::vector<float> forward(std::span<const ForwardItem> items) override {
    std::vector<float> out;
    for (const ForwardItem& it : items) {
      lengths_[it.seq] += static_cast<int>(it.tokens.size());
      std::vector<float> row = pick_(it.seq, lengths_[it.seq]);
      out.insert(out.end(), row.begin(), row.end());
    }
    return out;
  }

 private:
  ModelConfig cfg_;
  Pick pick_;
  std::vector<int> lengths_;
};

TEST(GeneratorVocab, APaddedModelFavouringPaddedRowsStillProducesText) {
  auto tok = load_tokenizer(test::oracle_dir("qwen2_moe_bpe"));
  const int n_real = static_cast<int>(tok->vocab_size()), V = n_real + 33;
  ScriptedModel model(V, [&](int seq, int pos) {
    std::vector<float> l(V, 0.0f);
    for (int i = n_real; i < V; ++i) l[i] = 100.0f;  // the padded rows win by far
    l[300 + (seq * 7 + pos) % 200] = 10.0f;          // then a real token
    return l;
  });
  std::vector<GenerationRequest> reqs(3);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].id = std::to_string(i);
    reqs[i].prompt = tok->encode("hello world " + std::to_string(i));
    reqs[i].max_tokens = 12;
    reqs[i].ignore_eos = true;
    if (i == 1) reqs[i].sampling.temperature = 0.8f;
    reqs[i].sampling.seed = 1 + i;
  }
  Generator gen(model, *tok, {.max_sequences = 2});
  std::vector<GenerationOutput> outs(reqs.size());
  gen.run(reqs, nullptr, [&](GenerationOutput&& o) { outs[o.index] = std::move(o); });
  for (const GenerationOutput& o : outs) {
    EXPECT_EQ(o.finish, FinishReason::Length) << o.error;
    ASSERT_EQ(o.tokens.size(), 12u);
    for (TokenId t : o.tokens) EXPECT_LT(t, n_real);
    EXPECT_EQ(o.text, tok->decode(o.tokens, /*skip_special=*/true));
  }
}

// A tokenizer whose id 7 cannot be decoded after another token (a failure undecodable_ids cannot see).
class FlakyTokenizer final : public Tokenizer {
 public:
  std::vector<TokenId> encode(std::string_view text, bool) const override {
    std::vector<TokenId> ids;
    for (char c : text) ids.push_back(static_cast<unsigned char>(c) % 20);
    return ids;
  }
  std::string token_bytes(TokenId id, DecodeState& state, bool) const override {
    const bool first = state.at_text_start;
    state.at_text_start = false;
    if (id == 7 && !first) throw Error("token 7 cannot follow another token");
    return std::string(1, static_cast<char>('a' + id));
  }
  Utf8Repair utf8_repair() const override { return Utf8Repair::kPerByte; }
  std::string id_to_piece(TokenId id) const override { return std::string(1, static_cast<char>('a' + id)); }
  std::optional<TokenId> piece_to_id(std::string_view) const override { return std::nullopt; }
  size_t vocab_size() const override { return 20; }
  std::string_view kind() const override { return "test"; }
};

TEST(GeneratorVocab, AFailingDecodeFailsThatRequestOnly) {
  FlakyTokenizer tok;
  const int V = 24;  // 4 padded rows
  ScriptedModel model(V, [&](int seq, int pos) {
    std::vector<float> l(V, 0.0f);
    l[22] = 80.0f;                                           // padded: never sampled
    l[seq == 0 ? (pos % 2 == 0 ? 7 : 3) : 5] = 40.0f;        // request 0 meets token 7 after another token
    return l;
  });
  std::vector<GenerationRequest> reqs(3);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].id = std::to_string(i);
    reqs[i].prompt = tok.encode("abc", false);
    reqs[i].max_tokens = 6;
    reqs[i].ignore_eos = true;
  }
  Generator gen(model, tok, {.max_sequences = 3});
  std::vector<GenerationOutput> outs(reqs.size());
  int done = 0;
  gen.run(reqs, nullptr, [&](GenerationOutput&& o) {
    ++done;
    outs[o.index] = std::move(o);
  });
  EXPECT_EQ(done, 3);
  EXPECT_EQ(outs[0].finish, FinishReason::Error);
  EXPECT_NE(outs[0].error.find("cannot decode token id 7"), std::string::npos) << outs[0].error;
  for (int i : {1, 2}) {
    EXPECT_EQ(outs[i].finish, FinishReason::Length) << outs[i].error;
    EXPECT_EQ(outs[i].text, "ffffff");
  }
}

TEST(GeneratorVocab, AnExceptionFromTheCallbackStopsTheRun) {
  FlakyTokenizer tok;
  ScriptedModel model(20, [&](int, int) {
    std::vector<float> l(20, 0.0f);
    l[4] = 5.0f;
    return l;
  });
  std::vector<GenerationRequest> reqs(4);
  for (auto& r : reqs) {
    r.prompt = {1, 2};
    r.max_tokens = 3;
    r.ignore_eos = true;
  }
  Generator gen(model, tok, {.max_sequences = 1});
  int calls = 0;
  EXPECT_THROW(gen.run(reqs, nullptr,
                       [&](GenerationOutput&&) {
                         if (++calls == 2) throw Error("disk full");
                       }),
               Error);
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace ferry
