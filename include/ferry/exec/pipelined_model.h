// The pipelined executor (MoE-Lightning's CGOPipe) behind the Model interface: a Policy run on a
// Device. Decode is one explicit loop over (layer i, micro-batch j):
//   wait (on the host) for the CPU attention of (i, j), then load its output to the device; page j of
//   layer i+1's streamed experts -> device ring; post-attention + router + experts (i, j) on the device,
//   experts in cache-state order (pinned, then pages in the order they were issued); pre-attention
//   (norm, QKV, RoPE) for micro-batch j+2; QKV -> host; attention (i, j+2) on the host over the paged
//   DRAM KV cache.
// The H2D link is one FIFO, so nothing is put on it that waits for the host: a hidden load is enqueued
// once its attention has finished, and the expert pages behind it never wait for CPU attention
// (head-of-line blocking). Every step is an asynchronous task guarded by events; with policy.overlap
// false each step waits for the previous one (the same loop). Prefill runs per sequence chunk on the
// device, KV written to the host cache, the next layer's experts prefetched during the current one.
//
// Numerics: the layer math is the `cpu` target's (cpu_model.h) on the same packed weights, so at the
// same expert precision (bf16 KV cache) the two give bit-identical logits, whatever the policy and
// device; its error bounds against the fp32 reference are the cpu target's.
//
// Batching: the generation engine's continuous batching (ferry/generator.h) admits and refills
// sequences through the Model interface; each forward sorts its decode sequences by context length into
// micro-batches of μ (no padding) and runs them in chunks of N.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ferry/device.h"
#include "ferry/dtype.h"
#include "ferry/model.h"
#include "ferry/planner/policy.h"

namespace ferry {

class Checkpoint;
class WeightSource;

// What a run needs beyond its policy: only how it reads. Everything that shapes memory (batch, prefill
// chunk, KV capacity through cache_bytes) is the policy's, so the planner prices what the executor runs.
struct PipelineOptions {
  std::string ssd_reader = "auto";  // how the SSD tier's chunks are read: auto, io_uring or pread
};

struct PipelineStats {
  int64_t expert_hits = 0;    // routed (token, expert) pairs served by resident experts
  int64_t expert_misses = 0;  // served by streamed experts
  int64_t expert_swaps = 0;   // frequency residency: a DRAM-tier expert and a resident one traded places
  uint64_t expert_swap_bytes = 0;  // bytes those trades moved (both ways over the link)
  int64_t decode_tokens = 0;
  int64_t prefill_tokens = 0;
  uint64_t streamed_bytes = 0;
  uint64_t ssd_read_bytes = 0;  // read from the packed store for the SSD tier
  // demand fetch (policy expert_fetch demand), per layer load of streamed experts:
  int64_t experts_prefetched = 0;    // copied ahead of time (routed there in the last forward)
  int64_t experts_prefetched_unused = 0;  // of those, routed by no token (the prediction's false positives)
  int64_t experts_fetched_late = 0;  // routed but not prefetched: fetched after the router
  int64_t experts_not_moved = 0;     // neither: no token routed to them
  uint64_t bytes_not_moved = 0;      // their bytes: what demand fetch saved over copying every streamed one
  double routing_wait_seconds = 0;   // the host waiting for a layer's routing before it can fetch
};

class PipelinedModel : public Model {
 public:
  // Allocates the buffers of pipeline_buffers(policy) (ferry/exec/pipeline_buffers.h) up front; throws
  // ferry::Error naming the buffer when the policy does not fit, the field for a policy the executor cannot
  // run or whose cache_bytes are smaller than its buffers.
  PipelinedModel(const WeightSource& weights, Device& device, const planner::Policy& policy,
                 const PipelineOptions& options = {});
  PipelinedModel(const Checkpoint& checkpoint, Device& device, const planner::Policy& policy,
                 const PipelineOptions& options = {});
  ~PipelinedModel() override;

  const ModelConfig& config() const override;
  int add_sequence() override;
  void free_sequence(int seq) override;
  int sequence_length(int seq) const override;
  int64_t kv_blocks() const override;
  int kv_block_tokens() const override;
  std::vector<float> forward(std::span<const ForwardItem> items) override;
  // The same, returning a view of the executor's logits buffer (valid until the next forward).
  // Decode-only forwards allocate nothing once warm.
  std::span<const float> forward_view(std::span<const ForwardItem> items) override;

  const PipelineStats& stats() const;
  const planner::Policy& policy() const;
  Device& device();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry
