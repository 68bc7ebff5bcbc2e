// A model family as data plus a small adapter: which config.json keys fill ModelConfig, and where
// each canonical weight (WeightId) lives in the family's checkpoints. The generic decoder and the
// loaders know nothing else about families.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "ferry/checkpoint.h"
#include "ferry/model_config.h"

namespace ferry {

class ConfigReader;

// Where a canonical weight is stored: a whole tensor, or a block of rows of one (fused experts,
// fused QKV). The stored tensor is viewed as [rows, last dim]; `stored_shape` is the shape the config
// implies for the whole stored tensor and is checked against the file.
struct TensorLocation {
  std::string name;
  std::vector<int64_t> stored_shape;
  int64_t row_begin = 0;
  int64_t row_count = -1;   // -1: the whole tensor
  bool transposed = false;  // the rows hold the canonical [out, in] matrix transposed (DBRX w2)
};

struct FamilyAdapter {
  Family family;
  std::string_view model_type;  // config.json "model_type"
  // Reads the family's keys into cfg; cfg.family, model_type and source are already set.
  void (*parse_config)(const ConfigReader& r, ModelConfig& cfg);
  // Candidate locations of a weight, preferred first; empty when the family has no such weight.
  std::vector<TensorLocation> (*locate)(const ModelConfig& cfg, const WeightId& id, ExpertLayout layout);
};

const FamilyAdapter& mixtral_adapter();
const FamilyAdapter& qwen2_moe_adapter();
const FamilyAdapter& qwen3_moe_adapter();
const FamilyAdapter& olmoe_adapter();
const FamilyAdapter& deepseek_v2_adapter();
const FamilyAdapter& phimoe_adapter();
const FamilyAdapter& dbrx_adapter();

const std::vector<const FamilyAdapter*>& family_adapters();
const FamilyAdapter* find_family_adapter(std::string_view model_type);
const FamilyAdapter& family_adapter(Family family);
// "mixtral, qwen2_moe, ..." for messages.
std::string supported_model_types();

}  // namespace ferry
