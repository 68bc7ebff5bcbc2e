// Qwen3-MoE (model_type "qwen3_moe"): per-head RMSNorm on q and k (weights [Dh]), an explicit
// head_dim that need not equal hidden_size / heads, no shared expert.
#include "model/config_reader.h"
#include "models/hf_decoder.h"

namespace ferry {
namespace {

void parse(const ConfigReader& r, ModelConfig& cfg) {
  parse_hf_decoder_keys(r, cfg, 10000.0);
  if (!r.opt_bool("use_sliding_window", false)) cfg.sliding_window = 0;
  // transformers 5 writes num_local_experts; earlier versions and the hub configs num_experts.
  cfg.n_expert = r.req_int_any({"num_experts", "num_local_experts"});
  cfg.n_expert_used = r.req_int("num_experts_per_tok");
  cfg.d_expert = r.req_int("moe_intermediate_size");
  cfg.d_ff_dense = r.opt_int("intermediate_size", 0);
  cfg.norm_topk_prob = r.opt_bool("norm_topk_prob", false);
  cfg.qkv_bias = cfg.o_bias = r.opt_bool("attention_bias", false);
  cfg.qk_norm = QkNorm::PerHead;
  cfg.layer_is_moe = qwen_moe_layer_schedule(r, cfg.n_layer, cfg.n_expert);
}

std::vector<TensorLocation> locate(const ModelConfig& cfg, const WeightId& id, ExpertLayout layout) {
  if (auto loc = hf_decoder_location(cfg, id); !loc.empty()) return loc;
  return hf_expert_location(cfg, id, layout, {{"mlp"}, "gate_proj", "up_proj", "down_proj"});
}

}  // namespace

const FamilyAdapter& qwen3_moe_adapter() {
  static const FamilyAdapter adapter{Family::Qwen3Moe, "qwen3_moe", parse, locate};
  return adapter;
}

}  // namespace ferry
