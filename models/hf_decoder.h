// What the llama-style Hugging Face families share: the config keys of the decoder and the tensor
// names under model.layers.N. Family adapters call these and add their own MoE keys and names.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "models/family_adapter.h"

namespace ferry {

// hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, vocab_size,
// max_position_embeddings, rms_norm_eps, sliding_window, tie_word_embeddings, bos/eos and RoPE.
void parse_hf_decoder_keys(const ConfigReader& r, ModelConfig& cfg, double default_rope_theta);

// The layer schedule of Qwen-style configs: a layer is sparse unless listed in mlp_only_layers, and only
// every decoder_sparse_step-th layer is.
std::vector<bool> qwen_moe_layer_schedule(const ConfigReader& r, int n_layer, int n_expert);

// One whole tensor with the config's canonical shape.
TensorLocation whole_tensor(const ModelConfig& cfg, const WeightId& id, std::string name);
std::string layer_prefix(int layer_idx);  // "model.layers.N."

// Embeddings, norms, attention (GQA and MLA) and the dense MLP of non-MoE layers.
// Empty for router, expert and shared-expert weights.
std::vector<TensorLocation> hf_decoder_location(const ModelConfig& cfg, const WeightId& id);

struct ExpertNames {
  std::vector<std::string_view> modules;  // module holding router and experts, preferred first
  std::string_view gate, up, down;        // per-expert projection names
};
// Router and routed experts, per-expert or fused (gate_up_proj [E, 2F, D] + down_proj [E, D, F]).
std::vector<TensorLocation> hf_expert_location(const ModelConfig& cfg, const WeightId& id,
                                               ExpertLayout layout, const ExpertNames& names);
// The shared-expert MLP {gate,up,down}_proj under `module` ("mlp.shared_expert").
std::vector<TensorLocation> hf_shared_expert_location(const ModelConfig& cfg, const WeightId& id,
                                                      std::string_view module);

}  // namespace ferry
