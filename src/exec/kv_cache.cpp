#include "exec/kv_cache.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "ferry/error.h"

namespace ferry {

namespace {

int64_t block_count(int block_size, int64_t n_tokens) { return (n_tokens + block_size - 1) / block_size; }

size_t half_layer_bytes(const ModelConfig& c, DType dtype, int block_size, int64_t n_block) {  // K or V
  return static_cast<size_t>(n_block) * c.n_head_kv * block_size * c.head_dim * dtype_size(dtype);
}

}  // namespace

size_t KvCache::bytes_for(const ModelConfig& c, DType dtype, int block_size, int64_t n_tokens) {
  return 2 * half_layer_bytes(c, dtype, block_size, block_count(block_size, n_tokens)) * c.n_layer;
}

KvCache::KvCache(const ModelConfig& c, DType dtype, int block_size, int64_t n_tokens, void* memory)
    : block_size_(block_size) {
  FERRY_ASSERT(block_size > 0 && block_size % 16 == 0 && n_tokens > 0);
  const int64_t n_block = block_count(block_size, n_tokens);
  if (n_block > INT32_MAX / block_size)
    throw Error("KV cache of " + std::to_string(n_tokens) + " tokens is too large");
  n_block_ = static_cast<int>(n_block);
  max_position_ = c.max_position;
  max_blocks_ = static_cast<int>(block_count(block_size, c.max_position));
  const size_t half = half_layer_bytes(c, dtype, block_size, n_block_);
  bytes_ = 2 * half * c.n_layer;
  void* base = memory;
  if (!base) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      throw Error("cannot reserve " + std::to_string(bytes_ >> 20) + " MiB for the KV cache (" +
                  std::strerror(errno) + "); lower --kv-tokens");
    base = mapped_ = p;
  }
  for (int l = 0; l < c.n_layer; ++l) {
    cpu::KvCacheLayer layer;
    layer.dtype = dtype;
    layer.n_block = n_block_;
    layer.block_size = block_size;
    layer.n_head_kv = c.n_head_kv;
    layer.head_dim = c.head_dim;
    layer.k = static_cast<char*>(base) + 2 * half * l;
    layer.v = static_cast<char*>(layer.k) + half;
    layers_.push_back(layer);
  }
  free_.reserve(n_block_);
  for (int b = n_block_ - 1; b >= 0; --b) free_.push_back(b);  // block 0 on top: low blocks first
}

KvCache::~KvCache() {
  if (mapped_) munmap(mapped_, bytes_);
}

int KvCache::add_sequence() {
  for (size_t i = 0; i < seqs_.size(); ++i)
    if (!seqs_[i].live) {
      seqs_[i] = Seq{true, 0, 0};
      return static_cast<int>(i);
    }
  seqs_.push_back(Seq{true, 0, 0});
  tables_.resize(seqs_.size() * max_blocks_, 0);
  return static_cast<int>(seqs_.size()) - 1;
}

void KvCache::free_sequence(int seq) {
  FERRY_ASSERT(live(seq));
  const int32_t* table = block_table(seq);
  for (int b = seqs_[seq].n_blocks - 1; b >= 0; --b) free_.push_back(table[b]);
  seqs_[seq] = Seq{};
}

int KvCache::blocks_needed(int seq, int n_tok) const {
  const int blocks = static_cast<int>(block_count(block_size_, seqs_[seq].length + n_tok));
  return blocks > seqs_[seq].n_blocks ? blocks - seqs_[seq].n_blocks : 0;
}

void KvCache::reserve(int seq, int n_tok, int32_t* slots) {
  FERRY_ASSERT(live(seq));
  Seq& s = seqs_[seq];
  if (s.length + n_tok > max_position_)
    throw Error("sequence of " + std::to_string(s.length + n_tok) + " tokens exceeds the model's context of " +
                std::to_string(max_position_));
  if (blocks_needed(seq, n_tok) > blocks_free())
    throw Error("the KV cache is full (" + std::to_string(n_block_) + " blocks of " + std::to_string(block_size_) +
                " tokens); raise --kv-tokens or run fewer sequences");
  int32_t* table = tables_.data() + static_cast<size_t>(seq) * max_blocks_;
  for (int i = 0; i < n_tok; ++i) {
    const int pos = s.length + i;
    if (pos / block_size_ >= s.n_blocks) {
      table[s.n_blocks++] = free_.back();
      free_.pop_back();
    }
    if (slots) slots[i] = cpu::kv_slot(table, pos, block_size_);
  }
}

}  // namespace ferry
