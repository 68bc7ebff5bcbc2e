// OLMoE (model_type "olmoe"): RMSNorm over the whole q and k projections (weights [H*Dh] and
// [Hkv*Dh]), optional clamp of q/k/v (clip_qkv), no renormalisation of the top-k weights.
#include "model/config_reader.h"
#include "models/hf_decoder.h"

namespace ferry {
namespace {

void parse(const ConfigReader& r, ModelConfig& cfg) {
  parse_hf_decoder_keys(r, cfg, 10000.0);
  cfg.n_expert = r.req_int_any({"num_experts", "num_local_experts"});
  cfg.n_expert_used = r.req_int("num_experts_per_tok");
  cfg.d_expert = r.req_int("intermediate_size");  // per expert in OLMoE
  cfg.norm_topk_prob = r.opt_bool("norm_topk_prob", false);
  cfg.qkv_bias = cfg.o_bias = r.opt_bool("attention_bias", false);
  cfg.qk_norm = QkNorm::Full;
  cfg.clip_qkv = r.opt_double("clip_qkv", 0.0);
  if (cfg.clip_qkv < 0) r.fail("clip_qkv", "must be positive or null");
}

std::vector<TensorLocation> locate(const ModelConfig& cfg, const WeightId& id, ExpertLayout layout) {
  if (auto loc = hf_decoder_location(cfg, id); !loc.empty()) return loc;
  return hf_expert_location(cfg, id, layout, {{"mlp"}, "gate_proj", "up_proj", "down_proj"});
}

}  // namespace

const FamilyAdapter& olmoe_adapter() {
  static const FamilyAdapter adapter{Family::Olmoe, "olmoe", parse, locate};
  return adapter;
}

}  // namespace ferry
