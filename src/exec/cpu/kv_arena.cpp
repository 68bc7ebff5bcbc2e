#include "exec/cpu/kv_arena.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "ferry/error.h"

namespace ferry::cpu_target {

KvArena::KvArena(const ModelConfig& c, DType dtype, int block_size, int64_t n_tokens)
    : block_size_(block_size) {
  FERRY_ASSERT(block_size > 0 && block_size % 16 == 0 && n_tokens > 0);
  const int64_t n_block = (n_tokens + block_size - 1) / block_size;
  if (n_block > INT32_MAX / block_size)
    throw Error("KV cache of " + std::to_string(n_tokens) + " tokens is too large");
  n_block_ = static_cast<int>(n_block);
  cpu::KvCacheLayer proto;
  proto.dtype = dtype;
  proto.n_block = n_block_;
  proto.block_size = block_size;
  proto.n_head_kv = c.n_head_kv;
  proto.head_dim = c.head_dim;
  const size_t half_layer =
      static_cast<size_t>(n_block_) * proto.block_elems() * dtype_size(dtype);  // K or V
  bytes_ = 2 * half_layer * c.n_layer;
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    throw Error("cannot reserve " + std::to_string(bytes_ >> 20) + " MiB for the KV cache (" +
                std::strerror(errno) + "); lower --kv-tokens");
  base_ = p;
  for (int l = 0; l < c.n_layer; ++l) {
    cpu::KvCacheLayer layer = proto;
    layer.k = static_cast<char*>(base_) + 2 * half_layer * l;
    layer.v = static_cast<char*>(layer.k) + half_layer;
    layers_.push_back(layer);
  }
  free_.reserve(n_block_);
  for (int b = n_block_ - 1; b >= 0; --b)
    free_.push_back(b);  // block 0 on top: the low blocks are used first
}

KvArena::~KvArena() {
  if (base_) munmap(base_, bytes_);
}

void KvArena::take(int n, std::vector<int32_t>& table) {
  FERRY_ASSERT(n <= blocks_free() && table.size() + n <= table.capacity());
  for (int i = 0; i < n; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
}

void KvArena::give_back(std::vector<int32_t>& table) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) free_.push_back(*it);
  table.clear();
}

}  // namespace ferry::cpu_target
