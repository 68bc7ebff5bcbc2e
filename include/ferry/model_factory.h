// Builds the forward implementation a target names: `reference` (fp32, plain loops; the
// definition every other target must match).
#pragma once
#include <memory>
#include <string>

#include "ferry/checkpoint.h"
#include "ferry/model.h"

namespace ferry {

struct TargetOptions {
  std::string target = "reference";
};

// Throws ferry::Error for an unknown target, listing the known ones.
std::unique_ptr<Model> create_model(const Checkpoint& checkpoint, const TargetOptions& options);

}  // namespace ferry
