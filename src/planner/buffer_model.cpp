#include "ferry/planner/buffer_model.h"

namespace ferry::planner {

namespace {

int64_t* cache_slot(CacheSizes& c, BufferLevel level, BufferRole role) {
  const bool gpu = level == BufferLevel::Device;
  switch (role) {
    case BufferRole::DenseWeights: return gpu ? &c.gpu_dense_weights : &c.dram_other;
    case BufferRole::ResidentExperts: return gpu ? &c.gpu_expert_cache : &c.dram_expert_cache;
    case BufferRole::StreamBuffer: return gpu ? &c.gpu_stream_buffer : &c.dram_pinned_staging;
    case BufferRole::KvCache: return gpu ? &c.gpu_kv_cache : &c.dram_kv_cache;
    case BufferRole::Activations: return gpu ? &c.gpu_activations : &c.dram_other;
    case BufferRole::Staging: return gpu ? &c.gpu_activations : &c.dram_pinned_staging;
    case BufferRole::Other: return gpu ? &c.gpu_activations : &c.dram_other;
    case BufferRole::ExpertStore: return &c.ssd_expert_store;
  }
  return nullptr;
}

}  // namespace

int64_t BufferList::charged(const PlannedBuffer& b) const {
  if (b.level != BufferLevel::Device || device_align <= 1) return b.bytes;
  const int64_t n = b.bytes > 0 ? b.bytes : 1;  // a device allocates at least one unit for an empty buffer
  return (n + device_align - 1) / device_align * device_align;
}

int64_t BufferList::total(BufferLevel level) const {
  int64_t sum = 0;
  for (const PlannedBuffer& b : buffers)
    if (b.level == level) sum += charged(b);
  return sum;
}

CacheSizes BufferList::cache_sizes() const {
  CacheSizes c;
  for (const PlannedBuffer& b : buffers) *cache_slot(c, b.level, b.role) += charged(b);
  return c;
}

const PlannedBuffer* BufferList::find(const std::string& name) const {
  for (const PlannedBuffer& b : buffers)
    if (b.name == name) return &b;
  return nullptr;
}

}  // namespace ferry::planner
