// The reference forward pass: fp32, plain loops, obviously correct. It defines what every faster
// path, policy and target must reproduce. Batched prefill and decode over several sequences of
// different lengths in one call, no padding.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ferry/checkpoint.h"
#include "ferry/model.h"
#include "ferry/model_config.h"
#include "ferry/rope_frequencies.h"

namespace ferry {

// Row-major [rows, cols] fp32 matrix, y = W·x with W stored [out, in].
struct MatrixF32 {
  std::vector<float> data;
  int rows = 0, cols = 0;
  bool empty() const { return data.empty(); }
};

struct MlpF32 {          // SwiGLU: down(silu(gate·x) ⊙ up·x)
  MatrixF32 gate;        // [F, D]
  MatrixF32 up;          // [F, D]
  MatrixF32 down;        // [D, F]
};

struct LayerF32 {
  std::vector<float> attn_norm, attn_norm_bias;  // [D]
  std::vector<float> ffn_norm, ffn_norm_bias;    // [D]
  MatrixF32 wq, wk, wv, wo;                      // [H*Dh, D], [Hkv*Dh, D] x2, [D, H*Dh]
  std::vector<float> bq, bk, bv, bo;             // biases (empty when absent)
  std::vector<float> q_norm, k_norm;             // [Dh] per head or [H*Dh]/[Hkv*Dh] full
  bool is_moe = false;
  MatrixF32 router;                              // [E, D]
  std::vector<MlpF32> experts;                   // [E]
  MlpF32 shared;                                 // shared expert (empty when absent)
  MatrixF32 shared_gate;                         // [1, D] sigmoid gate of the shared expert
  MlpF32 dense;                                  // dense MLP of a non-MoE layer
};

struct WeightsF32 {
  ModelConfig config;
  MatrixF32 embed;                               // [V, D]
  std::vector<LayerF32> layers;                  // [L]
  std::vector<float> final_norm, final_norm_bias;  // [D]
  MatrixF32 lm_head;                             // [V, D]
  std::vector<float> lm_head_bias;               // [V]
};

WeightsF32 load_weights_f32(const Checkpoint& ckpt);

// One sequence's KV cache in the reference: per layer, keys and values for every past position.
struct ReferenceSequence {
  std::vector<std::vector<float>> k, v;  // [L][n_past * Hkv*Dh]
  int n_past = 0;
};

// One entry of a batch: the new tokens of one sequence (a whole prompt for prefill, one token for
// decode). Logits come back for every new position or only the last.
struct ReferenceBatchEntry {
  ReferenceSequence* seq = nullptr;
  std::span<const int32_t> tokens;
  bool all_logits = false;
};

class ReferenceModel : public Model {
 public:
  explicit ReferenceModel(WeightsF32 weights);
  const ModelConfig& config() const override { return w_.config; }
  ReferenceSequence new_sequence() const;

  // Model interface: sequences held by id.
  int add_sequence() override;
  void free_sequence(int seq) override;
  int sequence_length(int seq) const override;
  std::vector<float> forward(std::span<const ForwardItem> items) override;

  // Runs the new tokens of every entry through the model, appending to each sequence's cache.
  // Returns logits rows in entry order: [rows, V], where each entry contributes
  // tokens.size() rows if all_logits else 1. Throws ferry::Error if a sequence would exceed the
  // model's context or a token id is out of range.
  std::vector<float> forward(std::span<ReferenceBatchEntry> batch);

  // Router logits of the last forward, per MoE layer [T, E] (for tests and prefetch studies).
  const std::vector<std::vector<float>>& last_router_logits() const { return router_logits_; }

 private:
  WeightsF32 w_;
  RopeFrequencies rope_;
  std::vector<std::vector<float>> router_logits_;
  std::vector<std::unique_ptr<ReferenceSequence>> sequences_;  // by id; null when freed
};

}  // namespace ferry
