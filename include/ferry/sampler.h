// Token sampling: greedy, temperature, top-k, top-p, min-p and repetition penalty, with a seed per
// request so the same seed and prompt give the same output on every run and every target.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace ferry {

struct SamplingParams {
  float temperature = 0.0f;        // 0: greedy
  int top_k = 0;                   // 0: off
  float top_p = 1.0f;              // 1: off
  float min_p = 0.0f;              // 0: off; keeps tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f; // 1: off; HF rule: logit > 0 ? logit / r : logit * r
  uint64_t seed = 0;
};

// Validates ranges; throws ferry::Error naming the bad flag.
void validate(const SamplingParams& p);

// Deterministic 64-bit generator (splitmix64): identical sequences on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform();  // [0, 1)
 private:
  uint64_t state_;
};

class Sampler {
 public:
  // `masked_ids` (sorted, each in [0, n_vocab), fewer than n_vocab of them) are never sampled: their
  // logits count as -inf before the penalty, greedy, top-k, top-p, min-p and temperature (as vLLM masks
  // the rows of an embedding padded past the tokenizer). The span must outlive the sampler.
  Sampler(SamplingParams params, int n_vocab, std::span<const int32_t> masked_ids = {});
  // Picks the next token from logits [V]. `history` is the prompt plus the generated tokens
  // (for the repetition penalty). Does not modify `logits`. Never returns a masked id; a NaN logit
  // counts as -inf. Throws ferry::Error when no logit is left (all NaN, -inf or masked).
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

 private:
  SamplingParams p_;
  Rng rng_;
  std::span<const int32_t> masked_;
  std::vector<float> work_;        // [V] scratch, reused
  std::vector<int32_t> order_;     // [V] scratch, reused: candidate ids, best first
  std::vector<uint64_t> keys_;     // [V] scratch, reused: (logit, id) sort keys
  std::vector<uint64_t> keys_tmp_; // [V] scratch, reused: radix sort buffer
  std::vector<uint8_t> seen_;      // [V] scratch, reused
  std::vector<double> prob_;       // [V] scratch, reused
};

}  // namespace ferry
