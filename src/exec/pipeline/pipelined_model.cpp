// The Model interface of the pipelined executor: sequences, and forward split into prefills (per
// sequence) and decode chunks of N sequences sorted by context length.
#include "ferry/exec/pipelined_model.h"

#include <algorithm>
#include <string>

#include "exec/pipeline/pipeline_impl.h"
#include "ferry/cpu_model.h"
#include "ferry/error.h"

namespace ferry {

// ---- Model interface ----

PipelinedModel::PipelinedModel(const WeightSource& weights, Device& device, const planner::Policy& policy,
                               const PipelineOptions& options)
    : impl_(std::make_unique<Impl>(weights, device, policy, options)) {}
PipelinedModel::PipelinedModel(const Checkpoint& checkpoint, Device& device, const planner::Policy& policy,
                               const PipelineOptions& options)
    : PipelinedModel(*checkpoint_weight_source(checkpoint), device, policy, options) {}
PipelinedModel::~PipelinedModel() {
  // the next step's layer 0 may still be loading from weights this object owns
  try {
    impl_->dev.synchronize();
  } catch (const std::exception&) {
  }
}

const ModelConfig& PipelinedModel::config() const { return impl_->c; }
const PipelineStats& PipelinedModel::stats() const { return impl_->stats; }
const planner::Policy& PipelinedModel::policy() const { return impl_->policy; }
Device& PipelinedModel::device() { return impl_->dev; }

int64_t PipelinedModel::kv_blocks() const { return impl_->kv->blocks_total(); }
int PipelinedModel::kv_block_tokens() const { return impl_->kv->block_size(); }
int PipelinedModel::add_sequence() {
  Impl& s = *impl_;
  return s.kv->add_sequence();  // the KV cache's capacity (cache_bytes) bounds the sequences
}

void PipelinedModel::free_sequence(int seq) {
  FERRY_ASSERT(impl_->kv->live(seq));
  impl_->kv->free_sequence(seq);
}

int PipelinedModel::sequence_length(int seq) const {
  FERRY_ASSERT(impl_->kv->live(seq));
  return impl_->kv->length(seq);
}

std::span<const float> PipelinedModel::forward_view(std::span<const ForwardItem> items) {
  Impl& s = *impl_;
  const int V = s.c.n_vocab;
  s.rerank_experts();  // frequency residency: between forwards, from the routing so far
  s.out_row.clear();
  size_t rows = 0;
  for (const ForwardItem& it : items) {
    FERRY_ASSERT(s.kv->live(it.seq));
    for (int32_t t : it.tokens)
      if (t < 0 || t >= V) throw Error("token id " + std::to_string(t) + " is outside the vocabulary of " + std::to_string(V));
    s.out_row.push_back(rows);
    rows += it.all_logits ? it.tokens.size() : 1;
  }
  if (s.out.size() < rows * V) s.out.resize(rows * V);
  s.order.clear();
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].tokens.size() == 1)
      s.order.push_back(static_cast<int32_t>(i));
    else if (!items[i].tokens.empty())
      s.prefill(items[i], s.out_row[i]);
  }
  // decode: longest contexts first, so each micro-batch holds sequences of similar attention cost
  std::sort(s.order.begin(), s.order.end(), [&](int32_t a, int32_t b) {
    return s.kv->length(items[a].seq) > s.kv->length(items[b].seq);
  });
  for (size_t first = 0; first < s.order.size(); first += s.n_batch) {
    const size_t n = std::min<size_t>(s.n_batch, s.order.size() - first);
    s.decode(items, std::span<const int32_t>(s.order.data() + first, n));
  }
  return std::span<const float>(s.out.data(), rows * V);
}

std::vector<float> PipelinedModel::forward(std::span<const ForwardItem> items) {
  std::span<const float> v = forward_view(items);
  return std::vector<float>(v.begin(), v.end());
}

}  // namespace ferry
