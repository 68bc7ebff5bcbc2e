// Phi-3.5-MoE (model_type "phimoe"): LayerNorm with bias everywhere, q/k/v/o and lm_head biases,
// sparsemixer routing (eps = router_jitter_noise), LongRoPE. Experts as in Mixtral:
// block_sparse_moe.experts.E.{w1, w3, w2}.
#include "model/config_reader.h"
#include "models/hf_decoder.h"

namespace ferry {
namespace {

void parse(const ConfigReader& r, ModelConfig& cfg) {
  parse_hf_decoder_keys(r, cfg, 1e6);
  cfg.n_expert = r.req_int_any({"num_local_experts", "num_experts"});
  cfg.n_expert_used = r.req_int("num_experts_per_tok");
  cfg.d_expert = r.req_int("intermediate_size");
  cfg.norm = NormKind::LayerNorm;  // eps still comes from rms_norm_eps
  cfg.qkv_bias = cfg.o_bias = r.opt_bool("attention_bias", false);
  cfg.lm_head_bias = r.opt_bool("lm_head_bias", false);
  cfg.router = RouterKind::SparseMixer;
  cfg.router_jitter_eps = r.opt_double("router_jitter_noise", 0.01);
  if (cfg.n_expert_used != 2)
    r.fail("num_experts_per_tok", "must be 2: sparsemixer routing picks exactly two experts");
}

std::vector<TensorLocation> locate(const ModelConfig& cfg, const WeightId& id, ExpertLayout layout) {
  if (auto loc = hf_decoder_location(cfg, id); !loc.empty()) return loc;
  return hf_expert_location(cfg, id, layout, {{"block_sparse_moe", "mlp"}, "w1", "w3", "w2"});
}

}  // namespace

const FamilyAdapter& phimoe_adapter() {
  static const FamilyAdapter adapter{Family::PhiMoe, "phimoe", parse, locate};
  return adapter;
}

}  // namespace ferry
