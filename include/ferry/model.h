// The interface every forward implementation offers the generation engine: the reference, the
// `cpu` target and the pipelined executor. Sequences are opaque ids owned by the model, so each
// implementation keeps its KV cache however it likes (vectors, paged blocks, device memory).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "ferry/model_config.h"

namespace ferry {

struct ForwardItem {
  int seq = -1;                      // from Model::add_sequence()
  std::span<const int32_t> tokens;   // new tokens: a prompt (prefill) or one token (decode)
  bool all_logits = false;           // logits for every new position, or only the last
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;
  virtual int add_sequence() = 0;
  virtual void free_sequence(int seq) = 0;
  virtual int sequence_length(int seq) const = 0;
  // The KV cache's capacity: blocks of kv_block_tokens() positions, a sequence of n positions holding
  // ceil(n / kv_block_tokens()) of them. A model without a bounded cache says 0 blocks (unbounded).
  virtual int64_t kv_blocks() const { return 0; }
  virtual int kv_block_tokens() const { return 1; }
  // Appends the items' tokens to their sequences and returns logits [rows, V], rows in item order.
  virtual std::vector<float> forward(std::span<const ForwardItem> items) = 0;
  // The same logits as a view, valid until the next forward: what the generator's loop calls, so a
  // decode step allocates no logits (the cpu target and the pipelined executor return their own buffer;
  // this default keeps forward()'s result).
  virtual std::span<const float> forward_view(std::span<const ForwardItem> items) {
    view_ = forward(items);
    return view_;
  }

 private:
  std::vector<float> view_;
};

}  // namespace ferry
