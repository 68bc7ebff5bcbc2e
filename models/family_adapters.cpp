// The list of supported families. Explicit rather than self-registering: adapters live in a static
// library, where an object file nothing refers to would be dropped by the linker.
#include "models/family_adapter.h"

#include "ferry/error.h"

namespace ferry {

const std::vector<const FamilyAdapter*>& family_adapters() {
  static const std::vector<const FamilyAdapter*> adapters = {
      &mixtral_adapter(),     &qwen2_moe_adapter(), &qwen3_moe_adapter(), &olmoe_adapter(),
      &deepseek_v2_adapter(), &phimoe_adapter(),    &dbrx_adapter(),
  };
  return adapters;
}

const FamilyAdapter* find_family_adapter(std::string_view model_type) {
  for (const FamilyAdapter* a : family_adapters())
    if (a->model_type == model_type) return a;
  return nullptr;
}

const FamilyAdapter& family_adapter(Family family) {
  for (const FamilyAdapter* a : family_adapters())
    if (a->family == family) return *a;
  FERRY_ASSERT_MSG(false, "family without an adapter");
}

std::string supported_model_types() {
  std::string s;
  for (const FamilyAdapter* a : family_adapters()) {
    if (!s.empty()) s += ", ";
    s += a->model_type;
  }
  return s;
}

}  // namespace ferry
