// Internal to the cpu target: the model's weights packed for the CPU ops, loaded one tensor at a time.
#pragma once
#include <cstddef>
#include <vector>

#include "ferry/cpu_model.h"
#include "ferry/exec/model_weights.h"
#include "ferry/ops/cpu_ops.h"

namespace ferry::cpu_target {

using PackedMlp = ferry::MlpWeights;

struct CpuLayerWeights {
  std::vector<float> attn_norm, attn_norm_bias;  // [D] (bias: LayerNorm families, else empty)
  std::vector<float> ffn_norm, ffn_norm_bias;    // [D]
  cpu::PackedMatrix wqkv;                        // [H*Dh + 2*Hkv*Dh, D] bf16: wq, wk, wv rows stacked
  std::vector<float> bqkv;                       // [H*Dh + 2*Hkv*Dh] or empty
  cpu::PackedMatrix wo;                          // [D, H*Dh] bf16
  std::vector<float> bo;                         // [D] or empty
  std::vector<float> q_norm, k_norm;             // [Dh] per head or [H*Dh] / [Hkv*Dh] full
  bool is_moe = false;
  cpu::PackedMatrix router;        // [E, D] f32
  std::vector<PackedMlp> experts;  // [E] in the expert precision
  PackedMlp shared;                // shared expert, bf16 (empty when absent)
  cpu::PackedMatrix shared_gate;   // [1, D] f32 (rows 0 when absent)
  PackedMlp dense;                 // dense MLP of a non-MoE layer, bf16
};

struct CpuWeights {
  ModelConfig config;
  std::vector<uint16_t> embed_bf16;                // [V, D] when bf16 holds the table exactly
  std::vector<float> embed_f32;                    // [V, D] otherwise
  std::vector<CpuLayerWeights> layers;             // [L]
  std::vector<float> final_norm, final_norm_bias;  // [D]
  cpu::PackedMatrix lm_head;                       // [V, D] bf16
  std::vector<float> lm_head_bias;                 // [V] or empty

  size_t bytes() const;
  size_t expert_bytes() const;  // routed experts
  size_t dense_bytes() const;   // every packed weight a forward reads whatever the routing
};

CpuWeights load_cpu_weights(const WeightSource& source, const CpuModelOptions& options);

// Views of the packed weights in host memory (ferry/exec/model_weights.h), as the layer code reads them.
LayerWeights view_of(const CpuLayerWeights& L);
ModelWeights view_of(const CpuWeights& w);
MlpWeights view_of(const MlpWeights& m);

}  // namespace ferry::cpu_target
