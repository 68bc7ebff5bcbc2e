#include "models/hf_decoder.h"

#include <algorithm>

#include "ferry/error.h"
#include "model/config_reader.h"

namespace ferry {

void parse_hf_decoder_keys(const ConfigReader& r, ModelConfig& cfg, double default_rope_theta) {
  cfg.n_layer = r.req_int("num_hidden_layers");
  cfg.d_model = r.req_int("hidden_size");
  cfg.n_head = r.req_int("num_attention_heads");
  cfg.n_head_kv = r.opt_int("num_key_value_heads", cfg.n_head);
  cfg.n_vocab = r.req_int("vocab_size");
  if (cfg.n_layer <= 0 || cfg.n_layer > kMaxModelLayers)
    r.fail("num_hidden_layers", "must be in [1, " + std::to_string(kMaxModelLayers) + "], got " + std::to_string(cfg.n_layer));
  if (cfg.d_model <= 0) r.fail("hidden_size", "must be positive");
  if (cfg.n_head <= 0) r.fail("num_attention_heads", "must be positive");
  if (cfg.n_head_kv <= 0 || cfg.n_head % cfg.n_head_kv != 0)
    r.fail("num_key_value_heads",
           "must be positive and divide num_attention_heads (" + std::to_string(cfg.n_head) + ")");
  if (cfg.n_vocab <= 0) r.fail("vocab_size", "must be positive");
  if (r.has("head_dim")) {
    cfg.head_dim = r.req_int("head_dim");
    if (cfg.head_dim <= 0) r.fail("head_dim", "must be positive");
  } else {
    if (cfg.d_model % cfg.n_head != 0)
      r.fail("head_dim", "is missing and hidden_size is not a multiple of num_attention_heads");
    cfg.head_dim = cfg.d_model / cfg.n_head;
  }
  cfg.max_position = r.opt_int("max_position_embeddings", 0);
  cfg.norm_eps = r.opt_double("rms_norm_eps", 1e-5);
  cfg.sliding_window = r.opt_int("sliding_window", 0);
  cfg.tie_word_embeddings = r.opt_bool("tie_word_embeddings", false);
  cfg.bos_token_id = r.opt_int("bos_token_id", -1);
  cfg.eos_token_ids = r.int_or_int_list("eos_token_id");
  parse_rope_config(r, default_rope_theta, cfg);
}

std::vector<bool> qwen_moe_layer_schedule(const ConfigReader& r, int n_layer, int n_expert) {
  int step = r.opt_int("decoder_sparse_step", 1);
  if (step <= 0) r.fail("decoder_sparse_step", "must be positive");
  std::vector<int> mlp_only = r.opt_int_list("mlp_only_layers");
  for (int l : mlp_only)
    if (l < 0 || l >= n_layer)
      r.fail("mlp_only_layers", "lists layer " + std::to_string(l) + " of " + std::to_string(n_layer));
  std::vector<bool> is_moe(static_cast<size_t>(n_layer));
  for (int l = 0; l < n_layer; ++l)
    is_moe[static_cast<size_t>(l)] = std::find(mlp_only.begin(), mlp_only.end(), l) == mlp_only.end() &&
                                     n_expert > 0 && (l + 1) % step == 0;
  return is_moe;
}

std::string layer_prefix(int layer_idx) {
  return "model.layers." + std::to_string(layer_idx) + ".";
}

TensorLocation whole_tensor(const ModelConfig& cfg, const WeightId& id, std::string name) {
  TensorLocation loc;
  loc.name = std::move(name);
  loc.stored_shape = canonical_shape(cfg, id);
  return loc;
}

std::vector<TensorLocation> hf_decoder_location(const ModelConfig& cfg, const WeightId& id) {
  auto one = [&](std::string name) {
    return std::vector<TensorLocation>{whole_tensor(cfg, id, std::move(name))};
  };
  const std::string p = id.layer >= 0 ? layer_prefix(id.layer) : std::string();
  switch (id.kind) {
    case WeightKind::Embed:
      return one("model.embed_tokens.weight");
    case WeightKind::FinalNorm:
      return one("model.norm.weight");
    case WeightKind::FinalNormBias:
      return one("model.norm.bias");
    case WeightKind::LmHead:
      return one("lm_head.weight");
    case WeightKind::LmHeadBias:
      return one("lm_head.bias");
    case WeightKind::AttnNorm:
      return one(p + "input_layernorm.weight");
    case WeightKind::AttnNormBias:
      return one(p + "input_layernorm.bias");
    case WeightKind::FfnNorm:
      return one(p + "post_attention_layernorm.weight");
    case WeightKind::FfnNormBias:
      return one(p + "post_attention_layernorm.bias");
    case WeightKind::Wq:
      return one(p + "self_attn.q_proj.weight");
    case WeightKind::Wk:
      return one(p + "self_attn.k_proj.weight");
    case WeightKind::Wv:
      return one(p + "self_attn.v_proj.weight");
    case WeightKind::Wo:
      return one(p + "self_attn.o_proj.weight");
    case WeightKind::Bq:
      return one(p + "self_attn.q_proj.bias");
    case WeightKind::Bk:
      return one(p + "self_attn.k_proj.bias");
    case WeightKind::Bv:
      return one(p + "self_attn.v_proj.bias");
    case WeightKind::Bo:
      return one(p + "self_attn.o_proj.bias");
    case WeightKind::QNorm:
      return one(p + "self_attn.q_norm.weight");
    case WeightKind::KNorm:
      return one(p + "self_attn.k_norm.weight");
    case WeightKind::WqA:
      return one(p + "self_attn.q_a_proj.weight");
    case WeightKind::QANorm:
      return one(p + "self_attn.q_a_layernorm.weight");
    case WeightKind::WqB:
      return one(p + "self_attn.q_b_proj.weight");
    case WeightKind::WkvA:
      return one(p + "self_attn.kv_a_proj_with_mqa.weight");
    case WeightKind::KvANorm:
      return one(p + "self_attn.kv_a_layernorm.weight");
    case WeightKind::WkvB:
      return one(p + "self_attn.kv_b_proj.weight");
    case WeightKind::DenseGate:
      return one(p + "mlp.gate_proj.weight");
    case WeightKind::DenseUp:
      return one(p + "mlp.up_proj.weight");
    case WeightKind::DenseDown:
      return one(p + "mlp.down_proj.weight");
    default:
      return {};
  }
}

std::vector<TensorLocation> hf_expert_location(const ModelConfig& cfg, const WeightId& id,
                                               ExpertLayout layout, const ExpertNames& names) {
  const std::string p = layer_prefix(id.layer);
  std::vector<TensorLocation> out;
  if (id.kind == WeightKind::Router) {
    for (std::string_view m : names.modules)
      out.push_back(whole_tensor(cfg, id, p + std::string(m) + ".gate.weight"));
    return out;
  }
  if (id.kind != WeightKind::ExpertGate && id.kind != WeightKind::ExpertUp &&
      id.kind != WeightKind::ExpertDown)
    return out;

  if (layout == ExpertLayout::PerExpert) {
    std::string_view proj = id.kind == WeightKind::ExpertGate ? names.gate
                            : id.kind == WeightKind::ExpertUp ? names.up
                                                              : names.down;
    out.push_back(whole_tensor(cfg, id,
                               p + std::string(names.modules.front()) + ".experts." +
                                   std::to_string(id.expert) + "." + std::string(proj) + ".weight"));
    return out;
  }
  // Fused: gate_up_proj [E, 2F, D] holds, per expert, F gate rows then F up rows; down_proj [E, D, F].
  const int64_t E = cfg.n_expert, F = cfg.d_expert, D = cfg.d_model;
  for (std::string_view m : names.modules) {
    TensorLocation loc;
    if (id.kind == WeightKind::ExpertDown) {
      loc.name = p + std::string(m) + ".experts.down_proj";
      loc.stored_shape = {E, D, F};
      loc.row_begin = id.expert * D;
      loc.row_count = D;
    } else {
      loc.name = p + std::string(m) + ".experts.gate_up_proj";
      loc.stored_shape = {E, 2 * F, D};
      loc.row_begin = id.expert * 2 * F + (id.kind == WeightKind::ExpertUp ? F : 0);
      loc.row_count = F;
    }
    out.push_back(std::move(loc));
  }
  return out;
}

std::vector<TensorLocation> hf_shared_expert_location(const ModelConfig& cfg, const WeightId& id,
                                                      std::string_view module) {
  const std::string p = layer_prefix(id.layer) + std::string(module);
  switch (id.kind) {
    case WeightKind::SharedGate:
      return {whole_tensor(cfg, id, p + ".gate_proj.weight")};
    case WeightKind::SharedUp:
      return {whole_tensor(cfg, id, p + ".up_proj.weight")};
    case WeightKind::SharedDown:
      return {whole_tensor(cfg, id, p + ".down_proj.weight")};
    default:
      return {};
  }
}

}  // namespace ferry
