// The weights the pipelined executor computes with, packed once for the host op set: attention
// projections, shared experts, dense MLPs and lm_head in bf16; routed experts in the policy's expert
// precision; router and shared-expert gate in f32 (routing sees logits as close to the reference as
// possible); norms f32. The same precisions as the `cpu` target.
#pragma once
#include <vector>

#include "ferry/checkpoint.h"
#include "ferry/dtype.h"
#include "ferry/model_config.h"
#include "ferry/ops/cpu_ops.h"
#include "ferry/reference_model.h"

namespace ferry::exec {

struct PackedMlp {
  cpu::PackedMatrix gate, up, down;  // [F, D], [F, D], [D, F]
  bool empty() const { return gate.rows == 0; }
  cpu::ExpertWeights view() const { return {&gate, &up, &down}; }
  size_t bytes() const { return gate.weight_bytes() + up.weight_bytes() + down.weight_bytes(); }
};

struct PackedLayer {
  std::vector<float> attn_norm, attn_norm_bias, ffn_norm, ffn_norm_bias;  // [D]
  cpu::PackedMatrix wq, wk, wv, wo;       // [H*Dh, D], [Hkv*Dh, D] x2, [D, H*Dh]
  std::vector<float> bq, bk, bv, bo;      // empty when absent
  std::vector<float> q_norm, k_norm;      // [Dh] per head or [H*Dh] / [Hkv*Dh] full
  bool is_moe = false;
  cpu::PackedMatrix router;               // [E, D] f32
  std::vector<PackedMlp> experts;         // [E]
  PackedMlp shared;                       // empty when absent
  cpu::PackedMatrix shared_gate;          // [1, D] f32, rows 0 when absent
  PackedMlp dense;                        // non-MoE layer
  size_t dense_bytes() const;             // everything but the routed experts
};

struct PackedWeights {
  ModelConfig config;
  std::vector<float> embed;               // [V, D]
  std::vector<PackedLayer> layers;        // [L]
  std::vector<float> final_norm, final_norm_bias;  // [D]
  cpu::PackedMatrix lm_head;              // [V, D] bf16
  std::vector<float> lm_head_bias;        // [V]
  size_t dense_bytes() const;
};

PackedWeights pack_weights(const WeightsF32& w, DType expert_dtype);

}  // namespace ferry::exec
