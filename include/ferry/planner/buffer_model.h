// The buffers a run allocates, as one list that the planner prices and the executor allocates from:
// every entry is one allocation (its name, the memory it lives in, the policy field it counts against,
// its bytes). The planner does not know how an executor lays its memory out; an executor that runs
// policies supplies a BufferModel (ferry/exec/pipeline_buffers.h for the pipelined executor), and the
// cost model's memory plan is then that list summed, so a policy the planner says fits is exactly the
// memory the executor asks for. Without one the cost model falls back to its analytic estimate (the
// MoE-Lightning reproduction and planning for model shapes no executor runs).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ferry/planner/policy.h"

namespace ferry::planner {

enum class BufferLevel { Device, Host, Ssd };

// The policy's cache_bytes field each buffer counts against.
enum class BufferRole {
  DenseWeights,     // gpu_dense_weights
  ResidentExperts,  // gpu_expert_cache / dram_expert_cache (by level)
  StreamBuffer,     // gpu_stream_buffer: the ring the streamed experts land in
  KvCache,          // gpu_kv_cache / dram_kv_cache
  Activations,      // gpu_activations: relays, logits, scratch
  Staging,          // dram_pinned_staging: pinned relays and SSD read staging
  Other,            // dram_other
  ExpertStore,      // ssd_expert_store
};

struct PlannedBuffer {
  std::string name;  // as the device names it in errors and traces
  BufferLevel level = BufferLevel::Device;
  BufferRole role = BufferRole::Activations;
  int64_t bytes = 0;
};

struct BufferList {
  std::vector<PlannedBuffer> buffers;
  // Device allocations are rounded up to this many bytes (the devices' arena alignment).
  int64_t device_align = 1;

  void add(std::string name, BufferLevel level, BufferRole role, int64_t bytes) {
    buffers.push_back({std::move(name), level, role, bytes});
  }
  // Bytes an entry takes from its level (device entries rounded to device_align).
  int64_t charged(const PlannedBuffer& b) const;
  int64_t total(BufferLevel level) const;
  // The same bytes grouped as the policy file records them (cache_bytes).
  CacheSizes cache_sizes() const;
  const PlannedBuffer* find(const std::string& name) const;
};

class BufferModel {
 public:
  virtual ~BufferModel() = default;
  // Whether this executor runs `p` at all; the cost model prices the others with its analytic estimate
  // (a plan for a family the executor does not run yet is still a plan).
  virtual bool runs(const Policy& p) const = 0;
  // Every buffer a run of `p` allocates, its KV cache holding `kv_tokens` positions over all sequences.
  virtual BufferList buffers(const Policy& p, int64_t kv_tokens) const = 0;
};

}  // namespace ferry::planner
