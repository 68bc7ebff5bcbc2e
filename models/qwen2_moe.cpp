// Qwen1.5-MoE / Qwen2-MoE (model_type "qwen2_moe"): q/k/v bias, a sigmoid-gated shared expert,
// no renormalisation of the top-k weights (norm_topk_prob false), and dense MLP layers chosen by
// mlp_only_layers / decoder_sparse_step.
#include "model/config_reader.h"
#include "models/hf_decoder.h"

namespace ferry {
namespace {

void parse(const ConfigReader& r, ModelConfig& cfg) {
  parse_hf_decoder_keys(r, cfg, 10000.0);
  if (!r.opt_bool("use_sliding_window", false)) cfg.sliding_window = 0;
  cfg.n_expert = r.req_int_any({"num_experts", "num_local_experts"});
  cfg.n_expert_used = r.req_int("num_experts_per_tok");
  cfg.d_expert = r.req_int("moe_intermediate_size");
  cfg.d_ff_dense = r.opt_int("intermediate_size", 0);
  cfg.d_shared = r.opt_int("shared_expert_intermediate_size", 0);
  cfg.n_shared_expert = cfg.d_shared > 0 ? 1 : 0;
  cfg.shared_expert_gated = cfg.d_shared > 0;
  cfg.norm_topk_prob = r.opt_bool("norm_topk_prob", false);
  cfg.qkv_bias = r.opt_bool("qkv_bias", true);  // transformers 4 hard-codes the bias; 5 names it
  cfg.layer_is_moe = qwen_moe_layer_schedule(r, cfg.n_layer, cfg.n_expert);
}

std::vector<TensorLocation> locate(const ModelConfig& cfg, const WeightId& id, ExpertLayout layout) {
  if (auto loc = hf_decoder_location(cfg, id); !loc.empty()) return loc;
  if (auto loc = hf_shared_expert_location(cfg, id, "mlp.shared_expert"); !loc.empty()) return loc;
  if (id.kind == WeightKind::SharedExpertGate)
    return {whole_tensor(cfg, id, layer_prefix(id.layer) + "mlp.shared_expert_gate.weight")};
  return hf_expert_location(cfg, id, layout, {{"mlp"}, "gate_proj", "up_proj", "down_proj"});
}

}  // namespace

const FamilyAdapter& qwen2_moe_adapter() {
  static const FamilyAdapter adapter{Family::Qwen2Moe, "qwen2_moe", parse, locate};
  return adapter;
}

}  // namespace ferry
