// DeepSeek-V2 / V2-Lite (model_type "deepseek_v2"): multi-head latent attention (MLA) with
// interleaved RoPE on qk_rope_head_dim dims, un-gated shared experts of width
// n_shared_experts * moe_intermediate_size, the first first_k_dense_replace layers dense, routed
// weights scaled by routed_scaling_factor, YaRN.
#include "model/config_reader.h"
#include "models/hf_decoder.h"

namespace ferry {
namespace {

void parse(const ConfigReader& r, ModelConfig& cfg) {
  parse_hf_decoder_keys(r, cfg, 10000.0);
  cfg.attention = AttentionKind::Mla;
  cfg.q_lora_rank = r.opt_int("q_lora_rank", 0);  // null: a plain q_proj
  cfg.kv_lora_rank = r.req_int("kv_lora_rank");
  cfg.qk_nope_head_dim = r.req_int("qk_nope_head_dim");
  cfg.qk_rope_head_dim = r.req_int("qk_rope_head_dim");
  cfg.v_head_dim = r.req_int("v_head_dim");
  if (cfg.kv_lora_rank <= 0) r.fail("kv_lora_rank", "must be positive");
  if (cfg.qk_rope_head_dim <= 0 || cfg.qk_rope_head_dim % 2)
    r.fail("qk_rope_head_dim", "must be positive and even");
  cfg.head_dim = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim;  // the q/k head width
  cfg.rope.rotary_dim = cfg.qk_rope_head_dim;
  cfg.rope.pairing = RopePairing::Interleaved;
  cfg.qkv_bias = cfg.o_bias = r.opt_bool("attention_bias", false);

  cfg.n_expert = r.req_int("n_routed_experts");
  cfg.n_expert_used = r.req_int("num_experts_per_tok");
  cfg.d_expert = r.req_int("moe_intermediate_size");
  cfg.d_ff_dense = r.opt_int("intermediate_size", 0);
  cfg.n_shared_expert = r.opt_int("n_shared_experts", 0);
  cfg.d_shared = cfg.n_shared_expert * cfg.d_expert;
  cfg.norm_topk_prob = r.opt_bool("norm_topk_prob", false);
  cfg.routed_scaling_factor = r.opt_double("routed_scaling_factor", 1.0);
  std::string scoring = r.opt_string("scoring_func", "softmax");
  if (scoring != "softmax") r.fail("scoring_func", "is '" + scoring + "'; deepseek_v2 routing is softmax");

  int first_dense = r.opt_int("first_k_dense_replace", 0);
  int freq = r.opt_int("moe_layer_freq", 1);
  if (freq <= 0) r.fail("moe_layer_freq", "must be positive");
  cfg.layer_is_moe.assign(static_cast<size_t>(cfg.n_layer), false);
  for (int l = 0; l < cfg.n_layer; ++l)
    cfg.layer_is_moe[static_cast<size_t>(l)] = l >= first_dense && l % freq == 0;
}

std::vector<TensorLocation> locate(const ModelConfig& cfg, const WeightId& id, ExpertLayout layout) {
  if (auto loc = hf_decoder_location(cfg, id); !loc.empty()) return loc;
  if (auto loc = hf_shared_expert_location(cfg, id, "mlp.shared_experts"); !loc.empty()) return loc;
  return hf_expert_location(cfg, id, layout, {{"mlp"}, "gate_proj", "up_proj", "down_proj"});
}

}  // namespace

const FamilyAdapter& deepseek_v2_adapter() {
  static const FamilyAdapter adapter{Family::DeepseekV2, "deepseek_v2", parse, locate};
  return adapter;
}

}  // namespace ferry
