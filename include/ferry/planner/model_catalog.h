// The model specs shipped in models/configs (real config.json files of public checkpoints), selectable
// by short name, so a plan needs no weights.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "ferry/model_config.h"

namespace ferry::planner {

// models/configs of the source tree, or $FERRY_MODELS_DIR when set.
std::filesystem::path model_configs_dir();
// Short names ("mixtral-8x7b", ...), sorted.
std::vector<std::string> model_names();

struct ResolvedModel {
  std::string name;  // short name, or the checkpoint directory's name
  ModelConfig config;
};
// A short name, a config.json path or a checkpoint directory. Throws ferry::Error listing the names.
ResolvedModel resolve_model(const std::string& name_or_path);

}  // namespace ferry::planner
