// Internal to the cpu target: the model's weights packed for the CPU ops, loaded one tensor at a time.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "ferry/cpu_model.h"
#include "ferry/exec/model_weights.h"
#include "ferry/experts/packed_store.h"
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

  // Substitution on a miss (CpuModelOptions::substitute_below): every routed expert again at
  // substitute_dtype, mapped from the store's file of that precision and kept resident. [L][E]; empty
  // without substitution.
  std::vector<std::vector<MlpWeights>> substitutes;

  // The mapped store files the arrays above may view (null when every array is owned).
  std::shared_ptr<const void> mapping;

  size_t bytes() const;
  size_t expert_bytes() const;  // routed experts
  size_t dense_bytes() const;   // every packed weight a forward reads whatever the routing
};

// Every weight packed for the cpu target: from a packed store by mapping it (no repacking) when the source
// is one that holds the wanted expert precision, else one tensor at a time.
CpuWeights load_cpu_weights(const WeightSource& source, const CpuModelOptions& options);

// The pieces load_cpu_weights and the store converter share: the model-level weights (layers sized but
// empty), one layer (with or without its routed experts), one routed expert.
CpuWeights pack_globals(const WeightSource& source, const CpuModelOptions& options);
CpuLayerWeights pack_layer(const WeightSource& source, const CpuModelOptions& options, int layer,
                           bool with_experts);
PackedMlp pack_expert(const WeightSource& source, int layer, int expert, DType dtype, int group_size);

// Views of a store's files as CpuWeights (src/experts/store_weights.cpp). False when the store lacks the
// expert precision and group size `options` asks for (the caller then packs from the dequantised weights).
bool load_from_store(const experts::StoreManifest& store, const CpuModelOptions& options, CpuWeights& out);

// Views of the packed weights in host memory (ferry/exec/model_weights.h), as the layer code reads them.
LayerWeights view_of(const CpuLayerWeights& L);
ModelWeights view_of(const CpuWeights& w);
MlpWeights view_of(const MlpWeights& m);

}  // namespace ferry::cpu_target
