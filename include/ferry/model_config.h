// ModelConfig: everything about a MoE checkpoint that is known from its config.json alone.
// The planner needs only this (no weights); the loaders and the forward pass read it too.
//
// Shape legend used across ferry: T tokens, D hidden (d_model), F expert width (d_expert),
// E experts (n_expert), K active experts (n_expert_used), H heads, Hkv kv heads, Dh head dim,
// L layers, V vocab. Row-major [rows, cols]; y = W·x with W stored [out, in].
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ferry/router_kind.h"

namespace ferry {

enum class Family { Mixtral, Qwen2Moe, Qwen3Moe, Olmoe, DeepseekV2, PhiMoe, Dbrx };

enum class NormKind { RmsNorm, LayerNorm, LayerNormNoBias };
enum class QkNorm { None, PerHead, Full };  // Qwen3: RMSNorm over Dh per head; OLMoE: over the whole projection
enum class RopePairing { HalfSplit, Interleaved };
enum class RopeScalingType { None, Linear, Dynamic, Yarn, Llama3, LongRope };
enum class AttentionKind { Gqa, Mla };

struct RopeConfig {
  double theta = 10000.0;
  RopePairing pairing = RopePairing::HalfSplit;
  RopeScalingType scaling = RopeScalingType::None;
  int rotary_dim = 0;                 // dims rotated per head (Dh * partial_rotary_factor; MLA: qk_rope_head_dim)
  double factor = 1.0;                // linear / dynamic / yarn / llama3
  int original_max_position = 0;      // yarn / llama3 / longrope
  double yarn_beta_fast = 32.0, yarn_beta_slow = 1.0, yarn_mscale = 1.0, yarn_mscale_all_dim = 0.0;
  double llama3_low_freq_factor = 1.0, llama3_high_freq_factor = 4.0;
  std::vector<double> longrope_short_factor, longrope_long_factor;
  double longrope_short_mscale = 0.0, longrope_long_mscale = 0.0;  // 0: derive from the factor
};

// The most layers a config may declare (the deepest published MoE has under 100): larger counts are typos
// or hostile files, and would make per-layer work run for minutes.
inline constexpr int kMaxModelLayers = 4096;

struct ModelConfig {
  Family family = Family::Mixtral;
  std::string model_type;      // config.json "model_type", e.g. "mixtral"
  std::string source;          // file it was read from (for messages)

  int n_layer = 0;             // L
  int d_model = 0;             // D
  int n_head = 0;              // H
  int n_head_kv = 0;           // Hkv
  int head_dim = 0;            // Dh (explicit in Qwen3; else D/H)
  int n_vocab = 0;             // V
  int max_position = 0;

  // MoE
  int n_expert = 0;            // E routed experts
  int n_expert_used = 0;       // K
  int d_expert = 0;            // F: width of one routed expert
  int d_ff_dense = 0;          // width of the dense MLP in non-MoE layers
  int n_shared_expert = 0;     // shared experts (fused into one MLP of width d_shared)
  int d_shared = 0;            // total width of the shared-expert MLP (0: none)
  bool shared_expert_gated = false;  // Qwen2-MoE: sigmoid(w·x) scales the shared expert
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  double router_pnorm = 1.0;   // DBRX moe_normalize_expert_weights
  double router_jitter_eps = 0.0;  // Phi sparsemixer eps
  RouterKind router = RouterKind::SoftmaxTopK;
  std::vector<bool> layer_is_moe;    // [L]: false for dense MLP layers

  // attention
  AttentionKind attention = AttentionKind::Gqa;
  bool qkv_bias = false;
  bool o_bias = false;
  QkNorm qk_norm = QkNorm::None;
  double clip_qkv = 0.0;       // 0: no clamp
  int sliding_window = 0;      // 0: none
  // MLA (DeepSeek-V2)
  int q_lora_rank = 0, kv_lora_rank = 0, qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;

  NormKind norm = NormKind::RmsNorm;
  double norm_eps = 1e-5;
  RopeConfig rope;
  bool tie_word_embeddings = false;
  bool lm_head_bias = false;

  int bos_token_id = -1;
  std::vector<int> eos_token_ids;

  // ---- derived sizes (parameter counts, not bytes) ----
  int q_dim() const;                   // H * Dh (MLA: H * (nope + rope))
  int kv_dim() const;                  // Hkv * Dh
  int n_moe_layers() const;
  int64_t params_per_expert() const;   // 3 * D * F
  int64_t params_experts() const;      // routed experts, all layers
  int64_t params_attention_layer() const;
  int64_t params_dense() const;        // everything that is not a routed expert
  int64_t params_total() const { return params_dense() + params_experts(); }
  int64_t params_active_per_token() const;
  // KV cache elements per token per layer (K and V; MLA: latent + rope key).
  int64_t kv_elems_per_token_layer() const;
};

std::string_view family_name(Family f);

// Parses a Hugging Face config.json. `source` names the file in error messages.
// Throws ferry::Error naming the file and the key for unknown families or missing/invalid keys.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);
// Reads DIR/config.json or a config.json path.
ModelConfig load_model_config(const std::filesystem::path& dir_or_file);

}  // namespace ferry
