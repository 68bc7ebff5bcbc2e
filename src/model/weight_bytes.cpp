#include "model/weight_bytes.h"

#include "ferry/checkpoint.h"
#include "ferry/error.h"

namespace ferry {

int64_t weight_bytes(const std::vector<int64_t>& shape, DType precision) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  if (shape.size() < 2 && (precision == DType::I8 || precision == DType::I4))
    return numel * 2;  // vectors stay bf16
  const int64_t cols = shape.empty() ? 1 : shape.back();
  const int64_t rows = cols ? numel / cols : 0;
  switch (precision) {
    case DType::F32:
      return numel * 4;
    case DType::BF16:
    case DType::F16:
      return numel * 2;
    case DType::I8:
      return numel + rows * 2;
    case DType::I4: {
      const int64_t groups_per_row = (cols + kInt4GroupSize - 1) / kInt4GroupSize;
      return rows * ((cols + 1) / 2) + rows * groups_per_row * 4;
    }
    default:
      FERRY_ASSERT_MSG(false, "weight_bytes: unsupported precision");
  }
}

WeightBytesSplit model_weight_bytes(const ModelConfig& cfg, DType precision) {
  WeightBytesSplit split;
  for (const WeightId& id : model_weight_ids(cfg)) {
    if (id.kind == WeightKind::LmHead && cfg.tie_word_embeddings) continue;
    int64_t bytes = weight_bytes(canonical_shape(cfg, id), precision);
    (id.expert >= 0 ? split.experts : split.dense) += bytes;
  }
  return split;
}

}  // namespace ferry
