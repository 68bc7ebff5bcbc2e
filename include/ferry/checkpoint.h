// A checkpoint directory opened for reading: config.json, the safetensors files (single or sharded)
// and the family adapter that maps ferry's canonical weight ids to the checkpoint's tensor names,
// including the fused expert layout (mlp.experts.gate_up_proj [E, 2F, D] / down_proj [E, D, F]).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ferry/dtype.h"
#include "ferry/model_config.h"

namespace ferry {
namespace experts {
struct StoreManifest;
}

// Canonical weights of the generic MoE decoder. Shapes (legend in model_config.h):
enum class WeightKind {
  Embed,            // [V, D]
  FinalNorm,        // [D]
  FinalNormBias,    // [D]        (LayerNorm families)
  LmHead,           // [V, D]     (tied: the embedding)
  LmHeadBias,       // [V]
  AttnNorm,         // [D]   per layer
  AttnNormBias,     // [D]
  FfnNorm,          // [D]
  FfnNormBias,      // [D]
  Wq,               // [H*Dh, D]
  Wk,               // [Hkv*Dh, D]
  Wv,               // [Hkv*Dh, D]
  Wo,               // [D, H*Dh]
  Bq, Bk, Bv, Bo,   // [H*Dh], [Hkv*Dh], [Hkv*Dh], [D]
  QNorm,            // [Dh] (per-head, Qwen3) or [H*Dh] (full, OLMoE)
  KNorm,            // [Dh] or [Hkv*Dh]
  Router,           // [E, D]
  ExpertGate,       // [F, D]   per (layer, expert)
  ExpertUp,         // [F, D]
  ExpertDown,       // [D, F]
  SharedGate,       // [Fs, D]  shared-expert MLP
  SharedUp,         // [Fs, D]
  SharedDown,       // [D, Fs]
  SharedExpertGate, // [1, D]   sigmoid gate of the shared expert (Qwen2-MoE)
  DenseGate,        // [Fd, D]  dense MLP in non-MoE layers
  DenseUp,          // [Fd, D]
  DenseDown,        // [D, Fd]
  // Multi-head latent attention (DeepSeek-V2); R = qk_rope_head_dim, Dn = qk_nope_head_dim, Dv = v_head_dim
  WqA,              // [q_lora_rank, D]            (when q_lora_rank > 0; else Wq [H*(Dn+R), D])
  QANorm,           // [q_lora_rank]
  WqB,              // [H*(Dn+R), q_lora_rank]
  WkvA,             // [kv_lora_rank + R, D]       kv_a_proj_with_mqa
  KvANorm,          // [kv_lora_rank]
  WkvB,             // [H*(Dn+Dv), kv_lora_rank]
};
std::string_view weight_kind_name(WeightKind k);

struct WeightId {
  WeightKind kind;
  int layer = -1;   // -1 for model-level weights
  int expert = -1;  // routed experts only
  bool operator==(const WeightId&) const = default;
};
// "ExpertGate (layer 3, expert 5)", for messages.
std::string weight_id_string(const WeightId& id);

// The canonical shape of a weight for this config (the legend above).
std::vector<int64_t> canonical_shape(const ModelConfig& cfg, const WeightId& id);
// Every weight the config implies, model-level first, then layer by layer. LmHead is listed even
// when tie_word_embeddings is set (it then resolves to the embedding).
std::vector<WeightId> model_weight_ids(const ModelConfig& cfg);
// Whether a checkpoint tensor name belongs to a routed expert (per-expert, fused or DBRX-stacked),
// as opposed to the dense weights (attention, norms, router, shared experts, embeddings).
bool is_routed_expert_tensor(std::string_view tensor_name);

// How routed experts are stored on disk.
enum class ExpertLayout {
  PerExpert,  // mlp.experts.E.{gate,up,down}_proj / block_sparse_moe.experts.E.{w1,w3,w2}
  Fused,      // mlp.experts.gate_up_proj [E, 2F, D] (gate rows first) + mlp.experts.down_proj [E, D, F]
  Stacked,    // DBRX: ffn.experts.mlp.{w1,v1,w2} [E*F, D], w2 holding down transposed
};
std::string_view expert_layout_name(ExpertLayout layout);

// One tensor as stored in the checkpoint's files.
struct StoredTensorInfo {
  std::string name;
  std::string file;             // file name within the checkpoint directory
  DType dtype = DType::Unknown;
  std::string dtype_name;       // safetensors spelling, e.g. "BF16"
  std::vector<int64_t> shape;
  uint64_t bytes = 0;
};

// A view of one (possibly sliced) tensor in the mapped file. `data` stays valid while the
// Checkpoint lives. Row-major; `shape` is the canonical shape above.
struct TensorView {
  DType dtype = DType::Unknown;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  std::string name;  // the checkpoint's tensor name (for messages)
  int64_t numel() const;
  int64_t bytes() const;
};

class Checkpoint {
 public:
  // Opens DIR: reads config.json, maps model.safetensors or the shards listed in
  // model.safetensors.index.json, validates every header. Throws ferry::Error naming the file.
  // A packed store directory (ferry-store.json) opens too: its weights are the packed ones, dequantised.
  static std::unique_ptr<Checkpoint> open(const std::filesystem::path& dir);
  virtual ~Checkpoint() = default;

  virtual const ModelConfig& config() const = 0;
  virtual const std::filesystem::path& dir() const = 0;
  // Whether the checkpoint carries this weight (optional ones: biases, norms, lm_head when tied).
  virtual bool has(const WeightId& id) const = 0;
  // The raw tensor; throws ferry::Error ("missing tensor NAME in DIR: ...") when absent and
  // checks that the stored shape matches the canonical shape from the config.
  virtual TensorView view(const WeightId& id) const = 0;
  // The tensor converted to fp32 (BF16/F16/F32 sources), canonical shape.
  virtual std::vector<float> f32(const WeightId& id) const;
  // The packed store behind this checkpoint (a directory made by ferry convert), or null.
  virtual const experts::StoreManifest* packed_store() const { return nullptr; }

  virtual ExpertLayout expert_layout() const = 0;
  // Every tensor in the checkpoint's files (rotary_emb.inv_freq buffers excluded), by name.
  virtual std::vector<StoredTensorInfo> stored_tensors() const = 0;
};

}  // namespace ferry
