// How many bytes a model's weights take at a storage precision, split into routed experts and the
// rest. Quantised formats apply to matrices; vectors (norms, biases) stay bf16:
//   bf16: 2 bytes per parameter
//   int8: 1 byte per parameter + one bf16 scale per row
//   int4: 4 bits per parameter, groups of 64 along a row, one bf16 scale + one bf16 zero per group
#pragma once
#include <cstdint>
#include <vector>

#include "ferry/dtype.h"
#include "ferry/model_config.h"

namespace ferry {

inline constexpr int64_t kInt4GroupSize = 64;

// Bytes of one tensor of this shape stored at `precision` (BF16, F16, F32, I8 or I4).
int64_t weight_bytes(const std::vector<int64_t>& shape, DType precision);

struct WeightBytesSplit {
  int64_t experts = 0;  // routed experts
  int64_t dense = 0;    // everything else (attention, norms, router, shared experts, embeddings)
  int64_t total() const { return experts + dense; }
};
// From the config alone (canonical shapes of model_weight_ids; a tied lm_head counted once).
WeightBytesSplit model_weight_bytes(const ModelConfig& cfg, DType precision);

}  // namespace ferry
