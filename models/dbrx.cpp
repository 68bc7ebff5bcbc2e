// DBRX (model_type "dbrx"): its own key names (nested attn_config / ffn_config), LayerNorm without
// bias, a fused Wqkv clamped to clip_qkv, softmax -> top-k -> divide by the p-norm, and experts
// stacked per layer: ffn.experts.mlp.{w1 (gate), v1 (up), w2 (down, transposed)} each [E*F, D].
#include "model/config_reader.h"
#include "models/hf_decoder.h"

namespace ferry {
namespace {

void parse(const ConfigReader& r, ModelConfig& cfg) {
  cfg.n_layer = r.req_int("n_layers");
  cfg.d_model = r.req_int("d_model");
  cfg.n_head = r.req_int("n_heads");
  cfg.n_vocab = r.req_int("vocab_size");
  cfg.n_head_kv = r.opt_int("attn_config.kv_n_heads", 1);  // DbrxAttentionConfig's default
  if (cfg.n_layer <= 0 || cfg.n_layer > kMaxModelLayers)
    r.fail("n_layers", "must be in [1, " + std::to_string(kMaxModelLayers) + "], got " + std::to_string(cfg.n_layer));
  if (cfg.n_head <= 0 || cfg.d_model <= 0 || cfg.d_model % cfg.n_head)
    r.fail("n_heads", "must be positive and divide d_model");
  if (cfg.n_vocab <= 0) r.fail("vocab_size", "must be positive");
  if (cfg.n_head_kv <= 0 || cfg.n_head % cfg.n_head_kv)
    r.fail("attn_config.kv_n_heads", "must be positive and divide n_heads");
  cfg.head_dim = cfg.d_model / cfg.n_head;
  cfg.max_position = r.opt_int("max_seq_len", 0);
  cfg.clip_qkv = r.opt_double("attn_config.clip_qkv", 0.0);
  cfg.rope.theta = r.opt_double("attn_config.rope_theta", 10000.0);
  cfg.rope.rotary_dim = cfg.head_dim;

  cfg.d_expert = r.req_int("ffn_config.ffn_hidden_size");
  cfg.n_expert = r.req_int("ffn_config.moe_num_experts");
  cfg.n_expert_used = r.req_int("ffn_config.moe_top_k");
  cfg.router = RouterKind::SoftmaxTopKPNorm;
  // Absent: DbrxFFNConfig's default 1.0 (divide by the sum); an explicit null: no normalisation.
  const nlohmann::json* ffn = r.find("ffn_config");
  const bool explicit_null = ffn && ffn->is_object() && ffn->contains("moe_normalize_expert_weights") &&
                             (*ffn)["moe_normalize_expert_weights"].is_null();
  cfg.norm_topk_prob = !explicit_null;
  cfg.router_pnorm = r.opt_double("ffn_config.moe_normalize_expert_weights", 1.0);
  cfg.router_jitter_eps = r.opt_double("ffn_config.moe_jitter_eps", 0.0);

  cfg.norm = NormKind::LayerNormNoBias;
  cfg.norm_eps = 1e-5;
  cfg.tie_word_embeddings = r.opt_bool("tie_word_embeddings", false);
  cfg.bos_token_id = r.opt_int("bos_token_id", -1);
  cfg.eos_token_ids = r.int_or_int_list("eos_token_id");
}

std::vector<TensorLocation> locate(const ModelConfig& cfg, const WeightId& id, ExpertLayout /*layout*/) {
  const std::string block = "transformer.blocks." + std::to_string(id.layer) + ".";
  const std::string attn = block + "norm_attn_norm.attn.";
  const int64_t D = cfg.d_model, E = cfg.n_expert, F = cfg.d_expert;
  const int64_t q_rows = cfg.q_dim(), kv_rows = cfg.kv_dim();
  auto one = [&](std::string name) {
    return std::vector<TensorLocation>{whole_tensor(cfg, id, std::move(name))};
  };
  auto rows = [&](std::string name, std::vector<int64_t> stored, int64_t begin, int64_t count,
                  bool transposed) {
    return std::vector<TensorLocation>{{std::move(name), std::move(stored), begin, count, transposed}};
  };
  const std::vector<int64_t> qkv_shape{q_rows + 2 * kv_rows, D}, experts_shape{E * F, D};
  switch (id.kind) {
    case WeightKind::Embed:
      return one("transformer.wte.weight");
    case WeightKind::FinalNorm:
      return one("transformer.norm_f.weight");
    case WeightKind::LmHead:
      return one("lm_head.weight");
    case WeightKind::AttnNorm:
      return one(block + "norm_attn_norm.norm_1.weight");
    case WeightKind::FfnNorm:
      return one(block + "norm_attn_norm.norm_2.weight");
    case WeightKind::Wq:
      return rows(attn + "Wqkv.weight", qkv_shape, 0, q_rows, false);
    case WeightKind::Wk:
      return rows(attn + "Wqkv.weight", qkv_shape, q_rows, kv_rows, false);
    case WeightKind::Wv:
      return rows(attn + "Wqkv.weight", qkv_shape, q_rows + kv_rows, kv_rows, false);
    case WeightKind::Wo:
      return one(attn + "out_proj.weight");
    case WeightKind::Router:
      return one(block + "ffn.router.layer.weight");
    case WeightKind::ExpertGate:
      return rows(block + "ffn.experts.mlp.w1", experts_shape, id.expert * F, F, false);
    case WeightKind::ExpertUp:
      return rows(block + "ffn.experts.mlp.v1", experts_shape, id.expert * F, F, false);
    case WeightKind::ExpertDown:
      return rows(block + "ffn.experts.mlp.w2", experts_shape, id.expert * F, F, true);
    default:
      return {};
  }
}

}  // namespace

const FamilyAdapter& dbrx_adapter() {
  static const FamilyAdapter adapter{Family::Dbrx, "dbrx", parse, locate};
  return adapter;
}

}  // namespace ferry
