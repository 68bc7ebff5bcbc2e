// config.json -> ModelConfig. The family adapter (models/) reads the family's keys; this file picks the
// adapter from model_type, checks what every MoE decoder needs, and computes the derived sizes.
#include "ferry/model_config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/validate.h"
#include "model/config_reader.h"
#include "models/family_adapter.h"

namespace ferry {
namespace {

// Bounds far above any published model that keep every derived size (ModelConfig's int and int64 methods)
// from overflowing, and keep the planner's per-layer loops short: a config that passes describes a model
// that could exist. Checked before any derived size is computed.
constexpr int64_t kMaxExperts = 1 << 16;
constexpr int64_t kMaxVocab = 1 << 24;
constexpr int64_t kMaxWidth = 1 << 18;        // any one hidden, head, rank or MLP width
constexpr int64_t kMaxAttentionWidth = 1 << 20;  // n_head x head width
constexpr double kMaxParams = 1e15;           // some 5000 times the largest MoE published

template <typename Fail>
void check_sizes_are_sane(const ModelConfig& cfg, const Fail& fail) {
  auto bound = [&](int64_t v, int64_t max, const char* what) {
    if (v > max)
      fail(std::string(what) + " is " + std::to_string(v) + ", above the " + std::to_string(max) +
           " ferry accepts; check config.json");
  };
  bound(cfg.n_layer, kMaxModelLayers, "the layer count");
  bound(cfg.n_expert, kMaxExperts, "the routed-expert count");
  bound(cfg.n_vocab, kMaxVocab, "the vocabulary size");
  const struct {
    int v;
    const char* what;
  } widths[] = {{cfg.d_model, "the hidden size"},         {cfg.n_head, "the attention-head count"},
                {cfg.head_dim, "the head width"},          {cfg.d_expert, "the expert width"},
                {cfg.d_ff_dense, "the dense MLP width"},   {cfg.d_shared, "the shared-expert width"},
                {cfg.q_lora_rank, "q_lora_rank"},          {cfg.kv_lora_rank, "kv_lora_rank"},
                {cfg.qk_nope_head_dim, "qk_nope_head_dim"}, {cfg.qk_rope_head_dim, "qk_rope_head_dim"},
                {cfg.v_head_dim, "v_head_dim"}};
  for (const auto& w : widths) bound(w.v, kMaxWidth, w.what);
  const int64_t head_width = cfg.attention == AttentionKind::Mla
                                 ? int64_t{cfg.qk_nope_head_dim} + cfg.qk_rope_head_dim
                                 : int64_t{cfg.head_dim};
  bound(int64_t{cfg.n_head} * head_width, kMaxAttentionWidth, "the attention width (heads x head width)");
  bound(int64_t{cfg.n_head} * std::max(cfg.v_head_dim, 0), kMaxAttentionWidth, "the attention output width");
  // Each factor is bounded above, so these products fit an int64; their sum is checked as a double.
  const double params = static_cast<double>(cfg.n_layer) * static_cast<double>(cfg.params_attention_layer()) +
                        static_cast<double>(cfg.n_layer) * cfg.n_expert * static_cast<double>(cfg.params_per_expert()) +
                        3.0 * cfg.n_layer * cfg.d_model * (double{1} * cfg.d_shared + cfg.d_ff_dense) +
                        2.0 * cfg.n_vocab * cfg.d_model;
  if (params > kMaxParams)
    fail("the sizes describe a model of " + std::to_string(static_cast<long long>(params / 1e12)) +
         " trillion parameters, above the " + std::to_string(static_cast<long long>(kMaxParams / 1e12)) +
         " trillion ferry accepts; check config.json");
}

// What the generic decoder relies on, whatever the family.
void check_moe_fields(const ConfigReader& r, ModelConfig& cfg) {
  auto fail = [&](const std::string& what) {
    throw Error(r.source() + ": " + what + " (model_type " + cfg.model_type + ")");
  };
  if (cfg.n_expert <= 0)
    fail("the number of routed experts must be positive, got " + std::to_string(cfg.n_expert));
  if (cfg.n_expert_used <= 0 || cfg.n_expert_used > cfg.n_expert)
    fail("experts per token must be in [1, " + std::to_string(cfg.n_expert) + "], got " +
         std::to_string(cfg.n_expert_used));
  if (cfg.d_expert <= 0) fail("the expert width must be positive, got " + std::to_string(cfg.d_expert));
  if (cfg.layer_is_moe.empty()) cfg.layer_is_moe.assign(static_cast<size_t>(cfg.n_layer), true);
  FERRY_ASSERT(cfg.layer_is_moe.size() == static_cast<size_t>(cfg.n_layer));
  if (cfg.n_moe_layers() < cfg.n_layer && cfg.d_ff_dense <= 0)
    r.fail("intermediate_size", "is missing or not positive but the model has dense MLP layers");
  if (cfg.d_shared < 0) fail("the shared-expert width must not be negative");
  // 0 divides by zero for an all-zero row and a negative one takes the root of a negative number: both
  // turn every hidden state into NaN, and the model would generate nothing without a word.
  require_positive(cfg.norm_eps, r.source() + ": key 'rms_norm_eps'",
                   "the normalisation epsilon, e.g. 1e-5 or 1e-6; fix config.json", 1.0);
  check_sizes_are_sane(cfg, fail);
}

}  // namespace

std::string_view family_name(Family f) {
  switch (f) {
    case Family::Mixtral:
      return "Mixtral";
    case Family::Qwen2Moe:
      return "Qwen2-MoE";
    case Family::Qwen3Moe:
      return "Qwen3-MoE";
    case Family::Olmoe:
      return "OLMoE";
    case Family::DeepseekV2:
      return "DeepSeek-V2";
    case Family::PhiMoe:
      return "Phi-3.5-MoE";
    case Family::Dbrx:
      return "DBRX";
  }
  return "unknown";
}

ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": expected a JSON object (a Hugging Face config.json)");
  ConfigReader r(j, source);
  const nlohmann::json* type = r.find("model_type");
  if (!type)
    r.fail("model_type",
           "is missing; ferry needs it to pick the model family (" + supported_model_types() + ")");
  if (!type->is_string()) r.fail("model_type", "must be a string, got " + type->dump());
  const std::string model_type = type->get<std::string>();
  const FamilyAdapter* adapter = find_family_adapter(model_type);
  if (!adapter)
    throw Error(source + ": model_type '" + model_type + "' is not a supported family; ferry supports " +
                supported_model_types());
  ModelConfig cfg;
  cfg.family = adapter->family;
  cfg.model_type = model_type;
  cfg.source = source;
  adapter->parse_config(r, cfg);
  check_moe_fields(r, cfg);
  return cfg;
}

ModelConfig load_model_config(const std::filesystem::path& dir_or_file) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir_or_file, ec))
    throw Error("'" + dir_or_file.string() + "' does not exist; pass a model directory holding config.json");
  fs::path file = fs::is_directory(dir_or_file, ec) ? dir_or_file / "config.json" : dir_or_file;
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw Error(file.string() +
                " not found; a model directory needs the Hugging Face config.json of the checkpoint");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw Error(file.string() + ": not valid JSON (" + e.what() + ")");
  }
  return parse_model_config(j, file.string());
}

// ---- derived sizes -------------------------------------------------------------------------------

int ModelConfig::q_dim() const {
  if (attention == AttentionKind::Mla) return n_head * (qk_nope_head_dim + qk_rope_head_dim);
  return n_head * head_dim;
}

int ModelConfig::kv_dim() const {
  return n_head_kv * head_dim;
}

int ModelConfig::n_moe_layers() const {
  int n = 0;
  for (bool moe : layer_is_moe) n += moe ? 1 : 0;
  return n;
}

int64_t ModelConfig::params_per_expert() const {
  return 3 * int64_t{d_model} * d_expert;
}

int64_t ModelConfig::params_experts() const {
  return int64_t{n_moe_layers()} * n_expert * params_per_expert();
}

int64_t ModelConfig::params_attention_layer() const {
  const int64_t D = d_model, H = n_head;
  if (attention == AttentionKind::Mla) {
    const int64_t qk_head = qk_nope_head_dim + qk_rope_head_dim;
    int64_t q = q_lora_rank > 0 ? D * q_lora_rank + q_lora_rank + int64_t{q_lora_rank} * H * qk_head
                                : D * H * qk_head;
    int64_t kv = D * (kv_lora_rank + qk_rope_head_dim) + kv_lora_rank +
                 int64_t{kv_lora_rank} * H * (qk_nope_head_dim + v_head_dim);
    int64_t o = H * v_head_dim * D + (o_bias ? D : 0);
    return q + kv + o;
  }
  const int64_t q = q_dim(), kv = kv_dim();
  int64_t n = D * q + 2 * D * kv + q * D;
  if (qkv_bias) n += q + 2 * kv;
  if (o_bias) n += D;
  if (qk_norm == QkNorm::PerHead) n += 2 * int64_t{head_dim};
  if (qk_norm == QkNorm::Full) n += q + kv;
  return n;
}

int64_t ModelConfig::params_dense() const {
  const int64_t D = d_model, V = n_vocab;
  const int64_t norm_params = norm == NormKind::LayerNorm ? 2 * D : D;  // weight (+ bias)
  int64_t n = V * D + norm_params;                                      // embedding, final norm
  if (!tie_word_embeddings) n += V * D;
  if (lm_head_bias) n += V;
  for (bool moe : layer_is_moe) {
    n += params_attention_layer() + 2 * norm_params;
    if (moe) {
      n += int64_t{n_expert} * D;                             // router
      n += 3 * D * d_shared + (shared_expert_gated ? D : 0);  // shared expert (+ its sigmoid gate)
    } else {
      n += 3 * D * d_ff_dense;
    }
  }
  return n;
}

int64_t ModelConfig::params_active_per_token() const {
  return params_dense() + int64_t{n_moe_layers()} * n_expert_used * params_per_expert();
}

int64_t ModelConfig::kv_elems_per_token_layer() const {
  if (attention == AttentionKind::Mla) return int64_t{kv_lora_rank} + qk_rope_head_dim;
  return 2 * int64_t{n_head_kv} * head_dim;
}

}  // namespace ferry
