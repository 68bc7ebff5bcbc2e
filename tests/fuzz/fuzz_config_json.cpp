// libFuzzer target: any byte string given as a model's config.json either gives a ModelConfig that keeps
// the invariants the loaders, the planner and the forward pass rely on, or is a ferry::Error -- never a
// crash, a hang, undefined behaviour or another exception. The bytes are parsed as load_model_config
// parses them (a JSON error there becomes a ferry::Error naming the file), then parse_model_config picks
// the family adapter and reads the keys.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/model_config.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return 0;  // load_model_config: "FILE: not valid JSON (...)"
  }
  ferry::ModelConfig c;
  try {
    c = ferry::parse_model_config(j, "fuzz/config.json");
  } catch (const ferry::Error&) {
    return 0;
  }
  // What check_moe_fields and the generic decoder promise.
  check(c.n_layer >= 1 && c.d_model >= 1 && c.n_head >= 1 && c.n_head_kv >= 1 && c.n_vocab >= 1);
  check(c.n_head % c.n_head_kv == 0);
  check(c.head_dim >= 1);
  check(c.n_expert >= 1 && c.n_expert_used >= 1 && c.n_expert_used <= c.n_expert);
  check(c.d_expert >= 1 && c.d_shared >= 0);
  check(c.layer_is_moe.size() == static_cast<size_t>(c.n_layer));
  check(std::isfinite(c.norm_eps) && c.norm_eps > 0);
  check(std::isfinite(c.rope.theta));
  check(!ferry::family_name(c.family).empty() && ferry::family_name(c.family) != "unknown");
  // The derived sizes every consumer computes: UBSan reports an overflow here.
  volatile int64_t sink = 0;
  sink = sink + c.q_dim() + c.kv_dim() + c.n_moe_layers();
  sink = sink + c.params_per_expert() + c.params_experts() + c.params_attention_layer();
  sink = sink + c.params_dense() + c.params_total() + c.params_active_per_token();
  sink = sink + c.kv_elems_per_token_layer();
  (void)sink;
  return 0;
}
