// Mixtral (model_type "mixtral"): GQA, RMSNorm, softmax -> top-k -> renormalise, no shared expert.
// Checkpoints store block_sparse_moe.experts.E.{w1 (gate), w3 (up), w2 (down)}; transformers 5 may
// save the fused mlp.experts.gate_up_proj / down_proj with the router at mlp.gate.
#include "model/config_reader.h"
#include "models/hf_decoder.h"

namespace ferry {
namespace {

void parse(const ConfigReader& r, ModelConfig& cfg) {
  parse_hf_decoder_keys(r, cfg, 1e6);
  cfg.n_expert = r.req_int_any({"num_local_experts", "num_experts"});
  cfg.n_expert_used = r.req_int("num_experts_per_tok");
  cfg.d_expert = r.req_int("intermediate_size");
  cfg.norm_topk_prob = true;  // Mixtral always renormalises the top-k weights
  cfg.router = RouterKind::SoftmaxTopK;
}

std::vector<TensorLocation> locate(const ModelConfig& cfg, const WeightId& id, ExpertLayout layout) {
  if (auto loc = hf_decoder_location(cfg, id); !loc.empty()) return loc;
  return hf_expert_location(cfg, id, layout, {{"block_sparse_moe", "mlp"}, "w1", "w3", "w2"});
}

}  // namespace

const FamilyAdapter& mixtral_adapter() {
  static const FamilyAdapter adapter{Family::Mixtral, "mixtral", parse, locate};
  return adapter;
}

}  // namespace ferry
