#include "ferry/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "ferry/error.h"

namespace ferry {

void validate(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f)) throw Error("--temperature must be >= 0 (0 means greedy)");
  if (p.top_k < 0) throw Error("--top-k must be >= 0 (0 disables it)");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) throw Error("--top-p must be in (0, 1]");
  if (!(p.min_p >= 0.0f && p.min_p < 1.0f)) throw Error("--min-p must be in [0, 1)");
  if (!(p.repetition_penalty > 0.0f)) throw Error("--repeat-penalty must be > 0 (1 disables it)");
}

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

Sampler::Sampler(SamplingParams params, int n_vocab) : p_(params), rng_(params.seed) {
  validate(p_);
  work_.resize(n_vocab);
  order_.resize(n_vocab);
  seen_.resize(n_vocab);
  prob_.reserve(n_vocab);
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const int V = static_cast<int>(work_.size());
  FERRY_ASSERT(static_cast<int>(logits.size()) == V);
  std::copy(logits.begin(), logits.end(), work_.begin());

  if (p_.repetition_penalty != 1.0f) {
    std::fill(seen_.begin(), seen_.end(), 0);
    for (int32_t t : history)
      if (t >= 0 && t < V && !seen_[t]) {
        seen_[t] = 1;
        work_[t] = work_[t] > 0 ? work_[t] / p_.repetition_penalty : work_[t] * p_.repetition_penalty;
      }
  }
  // Greedy: the first index of the maximum, as torch.argmax.
  if (p_.temperature == 0.0f) return static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());

  // Candidates sorted by logit, descending (ties: lower id first, so the order is deterministic).
  std::iota(order_.begin(), order_.end(), 0);
  int n = V;
  auto by_logit = [&](int32_t a, int32_t b) { return work_[a] > work_[b] || (work_[a] == work_[b] && a < b); };
  if (p_.top_k > 0 && p_.top_k < V) {
    std::partial_sort(order_.begin(), order_.begin() + p_.top_k, order_.end(), by_logit);
    n = p_.top_k;
  } else {
    std::sort(order_.begin(), order_.end(), by_logit);
  }
  // Softmax over the candidates at the temperature (in double for a stable cumulative sum).
  const double max_logit = work_[order_[0]];
  std::vector<double>& prob = prob_;
  prob.resize(n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += (prob[i] = std::exp((work_[order_[i]] - max_logit) / p_.temperature));
  for (double& q : prob) q /= sum;
  if (p_.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p
    double cum = 0;
    int keep = n;
    for (int i = 0; i < n; ++i) {
      cum += prob[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
  }
  if (p_.min_p > 0.0f) {
    const double floor_p = p_.min_p * prob[0];
    int keep = 1;
    while (keep < n && prob[keep] >= floor_p) ++keep;
    n = keep;
  }
  double mass = 0;
  for (int i = 0; i < n; ++i) mass += prob[i];
  double r = rng_.uniform() * mass;
  for (int i = 0; i < n; ++i) {
    r -= prob[i];
    if (r < 0) return order_[i];
  }
  return order_[n - 1];
}

}  // namespace ferry
