#include "ferry/model_factory.h"

#include "ferry/error.h"
#include "ferry/reference_model.h"

namespace ferry {

std::unique_ptr<Model> create_model(const Checkpoint& checkpoint, const TargetOptions& options) {
  if (options.target == "reference" || options.target == "ref")
    return std::make_unique<ReferenceModel>(load_weights_f32(checkpoint));
  throw Error("unknown target '" + options.target + "'; known targets: reference");
}

}  // namespace ferry
