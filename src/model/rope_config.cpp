// RoPE settings from config.json. transformers 4 writes rope_theta at the top level and a legacy
// rope_scaling object ({"type" or "rope_type": ...}); transformers 5 writes rope_parameters
// ({"rope_type", "rope_theta", ...scaling fields}). All three spellings are accepted.
#include <string>

#include "ferry/validate.h"
#include "model/config_reader.h"

namespace ferry {
namespace {

RopeScalingType scaling_type(const ConfigReader& r, const std::string& key, const std::string& name) {
  if (name == "default" || name == "none" || name.empty()) return RopeScalingType::None;
  if (name == "linear") return RopeScalingType::Linear;
  if (name == "dynamic") return RopeScalingType::Dynamic;
  if (name == "yarn") return RopeScalingType::Yarn;
  if (name == "llama3") return RopeScalingType::Llama3;
  if (name == "longrope" || name == "su") return RopeScalingType::LongRope;
  r.fail(key, "is '" + name + "'; ferry supports default, linear, dynamic, yarn, llama3 and longrope");
}

}  // namespace

void parse_rope_config(const ConfigReader& r, double default_theta, ModelConfig& cfg) {
  RopeConfig& rope = cfg.rope;
  rope.theta = r.opt_double("rope_theta", default_theta);
  rope.rotary_dim = cfg.head_dim;

  // Where the scaling fields live: rope_parameters when it names a non-default type, else rope_scaling.
  std::string scaling;
  if (const auto* p = r.find("rope_parameters")) {
    if (!p->is_object()) r.fail("rope_parameters", "must be a JSON object, got " + p->dump());
    rope.theta = r.opt_double("rope_parameters.rope_theta", rope.theta);
    scaling = "rope_parameters";
  }
  if (const auto* s = r.find("rope_scaling")) {
    if (!s->is_object()) r.fail("rope_scaling", "must be a JSON object, got " + s->dump());
    bool parameters_scaled =
        !scaling.empty() &&
        r.opt_string(scaling + ".rope_type", r.opt_string(scaling + ".type", "default")) != "default";
    if (!parameters_scaled) scaling = "rope_scaling";
  }
  if (rope.theta <= 0) r.fail("rope_theta", "must be positive, got " + std::to_string(rope.theta));

  double partial = r.opt_double("partial_rotary_factor", 1.0);
  if (!scaling.empty()) partial = r.opt_double(scaling + ".partial_rotary_factor", partial);
  if (partial <= 0 || partial > 1) r.fail("partial_rotary_factor", "must be in (0, 1]");
  rope.rotary_dim = static_cast<int>(cfg.head_dim * partial);

  rope.original_max_position = r.opt_int("original_max_position_embeddings", 0);
  if (scaling.empty()) return;

  std::string type_key = r.has(scaling + ".rope_type") ? scaling + ".rope_type" : scaling + ".type";
  rope.scaling = scaling_type(r, type_key, r.opt_string(type_key, "default"));
  if (rope.scaling == RopeScalingType::None) return;

  rope.factor = r.opt_double(scaling + ".factor", 1.0);
  require_positive(rope.factor, r.source() + ": key '" + scaling + ".factor'", "the RoPE scaling factor");
  rope.original_max_position =
      r.opt_int(scaling + ".original_max_position_embeddings", rope.original_max_position);
  switch (rope.scaling) {
    case RopeScalingType::Yarn:
      rope.yarn_beta_fast = r.opt_double(scaling + ".beta_fast", 32.0);
      rope.yarn_beta_slow = r.opt_double(scaling + ".beta_slow", 1.0);
      rope.yarn_mscale = r.opt_double(scaling + ".mscale", 1.0);
      rope.yarn_mscale_all_dim = r.opt_double(scaling + ".mscale_all_dim", 0.0);
      if (rope.original_max_position == 0) rope.original_max_position = cfg.max_position;
      break;
    case RopeScalingType::Llama3:
      rope.llama3_low_freq_factor = r.opt_double(scaling + ".low_freq_factor", 1.0);
      rope.llama3_high_freq_factor = r.opt_double(scaling + ".high_freq_factor", 4.0);
      if (rope.original_max_position == 0)
        r.fail(scaling + ".original_max_position_embeddings", "is missing");
      break;
    case RopeScalingType::LongRope:
      rope.longrope_short_factor = r.opt_double_list(scaling + ".short_factor");
      rope.longrope_long_factor = r.opt_double_list(scaling + ".long_factor");
      rope.longrope_short_mscale = r.opt_double(scaling + ".short_mscale", 0.0);
      rope.longrope_long_mscale = r.opt_double(scaling + ".long_mscale", 0.0);
      // One rescale factor per rotated pair. Absent lists are allowed (planning needs only sizes);
      // a forward pass must refuse longrope without them.
      for (const char* list : {"short_factor", "long_factor"}) {
        const auto& v = list[0] == 's' ? rope.longrope_short_factor : rope.longrope_long_factor;
        if (!v.empty() && v.size() != static_cast<size_t>(rope.rotary_dim / 2))
          r.fail(scaling + "." + list,
                 "has " + std::to_string(v.size()) + " entries but the rotary dimension " +
                     std::to_string(rope.rotary_dim) + " needs " + std::to_string(rope.rotary_dim / 2));
      }
      if (rope.original_max_position == 0)
        r.fail("original_max_position_embeddings", "is missing (needed by longrope)");
      break;
    default:
      break;
  }
}

}  // namespace ferry
