// The weights a forward reads, as views: every pointer and every PackedMatrix's bytes lie in the memory
// of the device that runs the ops (host memory for the cpu target and the host devices, device memory
// on CUDA). The cpu target views its own packed weights (cpu_weights.h); the pipelined executor uploads
// the same packed bytes into device buffers and views those, so both read identical bytes and an expert
// page is the same bytes on every device.
//
// Shapes: D hidden, F expert width, E experts, H heads, Hkv kv heads, Dh head dim, V vocabulary.
#pragma once
#include <cstddef>
#include <vector>

#include "ferry/dtype.h"
#include "ferry/ops/packed_matrix.h"

namespace ferry {

struct MlpWeights {        // SwiGLU: down(silu(gate·x) ⊙ up·x)
  cpu::PackedMatrix gate;  // [F, D]
  cpu::PackedMatrix up;    // [F, D]
  cpu::PackedMatrix down;  // [D, F]
  bool empty() const { return gate.rows == 0; }
  size_t bytes() const { return empty() ? 0 : gate.weight_bytes() + up.weight_bytes() + down.weight_bytes(); }
};

struct LayerWeights {
  const float* attn_norm = nullptr;       // [D]
  const float* attn_norm_bias = nullptr;  // [D] LayerNorm families, else null
  const float* ffn_norm = nullptr;        // [D]
  const float* ffn_norm_bias = nullptr;   // [D] or null
  cpu::PackedMatrix wqkv;                 // [H*Dh + 2*Hkv*Dh, D] bf16: wq, wk, wv rows stacked
  const float* bqkv = nullptr;            // [H*Dh + 2*Hkv*Dh] or null
  cpu::PackedMatrix wo;                   // [D, H*Dh] bf16
  const float* bo = nullptr;              // [D] or null
  const float* q_norm = nullptr;          // [Dh] per head or [H*Dh] full, or null
  const float* k_norm = nullptr;          // [Dh] per head or [Hkv*Dh] full, or null
  bool is_moe = false;
  cpu::PackedMatrix router;       // [E, D] f32
  MlpWeights shared;              // shared expert, bf16 (empty when absent)
  cpu::PackedMatrix shared_gate;  // [1, D] f32 (rows 0 when absent)
  MlpWeights dense;               // dense MLP of a non-MoE layer, bf16
  // The routed experts are not here: they move between tiers, and the ops take them by expert table.
};

struct ModelWeights {
  const void* embed = nullptr;  // [V, D]
  DType embed_dtype = DType::BF16;
  std::vector<LayerWeights> layers;       // [L]
  const float* final_norm = nullptr;      // [D]
  const float* final_norm_bias = nullptr; // [D] or null
  cpu::PackedMatrix lm_head;              // [V, D] bf16
  const float* lm_head_bias = nullptr;    // [V] or null
};

}  // namespace ferry
