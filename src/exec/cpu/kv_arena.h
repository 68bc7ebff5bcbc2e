// Internal to the cpu target: the paged KV cache of all layers in one arena, planned once. Block b is
// block b of every layer, so one block table per sequence serves all layers. Free blocks live on a
// stack; a freed sequence's blocks are pushed back and are the first to be reused.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ferry/model_config.h"
#include "ferry/ops/attention.h"

namespace ferry::cpu_target {

class KvArena {
 public:
  // Room for n_tokens tokens (rounded up to whole blocks). The memory is reserved with mmap: pages are
  // committed when first written and start zeroed.
  KvArena(const ModelConfig& c, DType dtype, int block_size, int64_t n_tokens);
  ~KvArena();
  KvArena(const KvArena&) = delete;
  KvArena& operator=(const KvArena&) = delete;

  const cpu::KvCacheLayer& layer(int l) const { return layers_[l]; }
  int block_size() const { return block_size_; }
  int blocks_total() const { return n_block_; }
  int blocks_free() const { return static_cast<int>(free_.size()); }
  size_t bytes() const { return bytes_; }

  // Appends n blocks to `table` (whose capacity the caller reserved). The caller checks blocks_free() first.
  void take(int n, std::vector<int32_t>& table);
  // Returns every block of `table` and clears it (capacity kept).
  void give_back(std::vector<int32_t>& table);

 private:
  int block_size_ = 0;
  int n_block_ = 0;
  size_t bytes_ = 0;
  void* base_ = nullptr;
  std::vector<cpu::KvCacheLayer> layers_;  // [L]
  std::vector<int32_t> free_;              // stack; the top is handed out next
};

}  // namespace ferry::cpu_target
