// The paged KV cache, one for every target (vLLM's layout): all layers' keys and values in one arena of
// blocks of `block_size` tokens, block b being block b of every layer, so one block table per sequence
// serves all layers; a finished sequence's blocks go back on a stack and are the first reused. The arena
// lives in host memory (reserved here, committed as written) or in a buffer the caller gives: a device
// buffer when attention runs on the device. The layout of a block: ferry/ops/attention.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ferry/model_config.h"
#include "ferry/ops/attention.h"

namespace ferry {

class KvCache {
 public:
  // Bytes of an arena for n_tokens tokens (rounded up to whole blocks).
  static size_t bytes_for(const ModelConfig& c, DType dtype, int block_size, int64_t n_tokens);
  // memory null: host memory reserved with mmap (pages committed when first written, starting zeroed);
  // else the caller's buffer of bytes_for(...) bytes, which the cache only addresses.
  KvCache(const ModelConfig& c, DType dtype, int block_size, int64_t n_tokens, void* memory = nullptr);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  const cpu::KvCacheLayer& layer(int l) const { return layers_[l]; }
  int block_size() const { return block_size_; }
  int blocks_total() const { return n_block_; }
  int blocks_free() const { return static_cast<int>(free_.size()); }
  size_t bytes() const { return bytes_; }
  int max_blocks_per_sequence() const { return max_blocks_; }  // the model's context in blocks

  // ---- sequences ----
  int add_sequence();  // reuses a freed id first
  void free_sequence(int seq);  // its blocks go back on the stack
  bool live(int seq) const { return seq >= 0 && seq < static_cast<int>(seqs_.size()) && seqs_[seq].live; }
  int length(int seq) const { return seqs_[seq].length; }  // tokens stored
  const int32_t* block_table(int seq) const { return tables_.data() + static_cast<size_t>(seq) * max_blocks_; }
  int n_blocks(int seq) const { return seqs_[seq].n_blocks; }
  // Blocks seq still needs for n_tok more tokens.
  int blocks_needed(int seq, int n_tok) const;
  // Gives seq the blocks for positions length .. length + n_tok - 1 and writes their slots [n_tok] (the
  // length is unchanged until advance). Throws ferry::Error past the context or when the cache is full.
  void reserve(int seq, int n_tok, int32_t* slots);
  void advance(int seq, int n_tok) { seqs_[seq].length += n_tok; }

 private:
  struct Seq {
    bool live = false;
    int length = 0;
    int n_blocks = 0;
  };
  int block_size_ = 0;
  int n_block_ = 0;
  int max_blocks_ = 0;
  int max_position_ = 0;
  size_t bytes_ = 0;
  void* mapped_ = nullptr;  // the arena when the cache reserved it
  std::vector<cpu::KvCacheLayer> layers_;  // [L]
  std::vector<int32_t> free_;              // stack; the top is handed out next
  std::vector<Seq> seqs_;
  std::vector<int32_t> tables_;  // [sequences][max_blocks_]
};

}  // namespace ferry
