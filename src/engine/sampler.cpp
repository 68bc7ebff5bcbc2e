#include "ferry/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
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

Sampler::Sampler(SamplingParams params, int n_vocab, std::span<const int32_t> masked_ids)
    : p_(params), rng_(params.seed), masked_(masked_ids) {
  validate(p_);
  FERRY_ASSERT(std::is_sorted(masked_.begin(), masked_.end()));
  FERRY_ASSERT(masked_.empty() || (masked_.front() >= 0 && masked_.back() < n_vocab));
  FERRY_ASSERT_MSG(static_cast<int64_t>(masked_.size()) < n_vocab, "every token id is masked");
  work_.resize(n_vocab);
  order_.resize(n_vocab);
  keys_.reserve(n_vocab);
  keys_tmp_.reserve(n_vocab);
  seen_.resize(n_vocab);
  prob_.reserve(n_vocab);
}

namespace {

// A key whose ascending order is the candidates' order: logit descending, then id ascending (so the
// order is a total one and deterministic). `logit` is not NaN; -0 counts as +0 (they compare equal).
uint64_t order_key(float logit, int32_t id) {
  if (logit == 0.0f) logit = 0.0f;
  uint32_t u;
  std::memcpy(&u, &logit, sizeof u);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // ascending with the float
  return (static_cast<uint64_t>(~u) << 32) | static_cast<uint32_t>(id);
}

// Sorts keys made by order_key, given in id order, by their high 32 bits with a stable LSD radix sort:
// ties keep id order, so the result is std::sort's, in a few linear passes.
void radix_sort_by_logit(std::vector<uint64_t>& keys, std::vector<uint64_t>& tmp) {
  if (keys.empty()) return;
  tmp.resize(keys.size());
  for (int shift = 32; shift < 64; shift += 8) {
    size_t count[257] = {};
    for (uint64_t k : keys) ++count[((k >> shift) & 0xff) + 1];
    if (count[((keys[0] >> shift) & 0xff) + 1] == keys.size()) continue;  // one digit value: no move
    for (int i = 0; i < 256; ++i) count[i + 1] += count[i];
    for (uint64_t k : keys) tmp[count[(k >> shift) & 0xff]++] = k;
    keys.swap(tmp);
  }
}

}  // namespace

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const int V = static_cast<int>(work_.size());
  FERRY_ASSERT(static_cast<int>(logits.size()) == V);
  constexpr float kMinusInf = -std::numeric_limits<float>::infinity();
  // A NaN logit is never a candidate (and would break the ordering below).
  for (int i = 0; i < V; ++i) work_[i] = std::isnan(logits[i]) ? kMinusInf : logits[i];
  for (int32_t t : masked_) work_[t] = kMinusInf;

  if (p_.repetition_penalty != 1.0f) {
    std::fill(seen_.begin(), seen_.end(), 0);
    for (int32_t t : history)
      if (t >= 0 && t < V && !seen_[t]) {
        seen_[t] = 1;
        work_[t] = work_[t] > 0 ? work_[t] / p_.repetition_penalty : work_[t] * p_.repetition_penalty;
      }
  }
  // Greedy: the first index of the maximum, as torch.argmax.
  const auto best = std::max_element(work_.begin(), work_.end());
  if (*best == kMinusInf)
    throw Error("the model's logits are all NaN or -inf: its output is not a number (check the weights)");
  if (p_.temperature == 0.0f) return static_cast<int32_t>(best - work_.begin());

  // Candidates sorted by logit, descending (ties: lower id first, so the order is deterministic).
  keys_.resize(V);
  for (int i = 0; i < V; ++i) keys_[i] = order_key(work_[i], i);
  int n = V;
  if (p_.top_k > 0 && p_.top_k < V) {
    std::nth_element(keys_.begin(), keys_.begin() + p_.top_k, keys_.end());
    std::sort(keys_.begin(), keys_.begin() + p_.top_k);
    n = p_.top_k;
  } else {
    radix_sort_by_logit(keys_, keys_tmp_);
  }
  for (int i = 0; i < n; ++i) order_[i] = static_cast<int32_t>(keys_[i] & 0xffffffffu);
  // Masked ids sort last; they are never candidates (not even with probability 0, which rounding in
  // the draw below could otherwise land on).
  while (n > 1 && work_[order_[n - 1]] == kMinusInf) --n;
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
