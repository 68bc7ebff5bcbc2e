// The scratch buffers of the layer ops (ferry/exec/layer_ops.h), carved from one block of device memory
// planned once: the hot path allocates nothing.
#include <algorithm>
#include <array>
#include <cstdint>

#include "ferry/exec/layer_ops.h"

namespace ferry {

namespace {

constexpr size_t kAlign = 256;  // enough for any vector load, and for CUDA's coalescing

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// The FfnBuffers arrays in carve order, as (element size, count) for T tokens.
template <class F>
void for_each_ffn_array(const ModelConfig& c, int n_tok, F&& f) {
  const size_t T = std::max(n_tok, 1), D = c.d_model, E = std::max(c.n_expert, 1), K = std::max(c.n_expert_used, 1);
  const size_t F_max = std::max({c.d_expert, c.d_shared, c.d_ff_dense, 1});
  f(sizeof(float), T * D);      // x
  f(sizeof(float), T * D);      // y
  f(sizeof(float), T * E);      // router_logits
  f(sizeof(float), T * E);      // probs
  f(sizeof(int32_t), T * K);    // topk_idx
  f(sizeof(float), T * K);      // topk_weight
  f(sizeof(int32_t), E + 1);    // offsets
  f(sizeof(int32_t), T * K);    // assign_token
  f(sizeof(int32_t), T * K);    // assign_slot
  f(sizeof(float), T * K * D);  // expert_out
  f(sizeof(float), T * D);      // shared_out
  f(sizeof(float), T);          // shared_gate
  // an expert sees each token at most once, so its MLP runs over at most T rows
  f(sizeof(float), T * D);      // mlp_x
  f(sizeof(float), T * F_max);  // mlp_gate
  f(sizeof(float), T * F_max);  // mlp_up
  f(sizeof(float), T * D);      // mlp_out
}

uintptr_t aligned(void* base) { return (reinterpret_cast<uintptr_t>(base) + kAlign - 1) / kAlign * kAlign; }

}  // namespace

size_t ffn_buffer_bytes(const ModelConfig& c, int n_tok) {
  size_t bytes = kAlign;  // room to align the base
  for_each_ffn_array(c, n_tok, [&](size_t elem, size_t count) { bytes += align_up(elem * count); });
  return bytes;
}

FfnBuffers carve_ffn_buffers(const ModelConfig& c, int n_tok, void* base) {
  uintptr_t p = aligned(base);
  std::array<void*, 16> ptrs{};
  int i = 0;
  for_each_ffn_array(c, n_tok, [&](size_t elem, size_t count) {
    ptrs[i++] = reinterpret_cast<void*>(p);
    p += align_up(elem * count);
  });
  FfnBuffers b;
  b.x = static_cast<float*>(ptrs[0]);
  b.y = static_cast<float*>(ptrs[1]);
  b.router_logits = static_cast<float*>(ptrs[2]);
  b.probs = static_cast<float*>(ptrs[3]);
  b.topk_idx = static_cast<int32_t*>(ptrs[4]);
  b.topk_weight = static_cast<float*>(ptrs[5]);
  b.offsets = static_cast<int32_t*>(ptrs[6]);
  b.assign_token = static_cast<int32_t*>(ptrs[7]);
  b.assign_slot = static_cast<int32_t*>(ptrs[8]);
  b.expert_out = static_cast<float*>(ptrs[9]);
  b.shared_out = static_cast<float*>(ptrs[10]);
  b.shared_gate = static_cast<float*>(ptrs[11]);
  b.mlp_x = static_cast<float*>(ptrs[12]);
  b.mlp_gate = static_cast<float*>(ptrs[13]);
  b.mlp_up = static_cast<float*>(ptrs[14]);
  b.mlp_out = static_cast<float*>(ptrs[15]);
  return b;
}

size_t attention_scratch_bytes(const ModelConfig& c, int n_tok) {
  const size_t T = std::max(n_tok, 1);
  return kAlign + align_up(sizeof(float) * T * c.d_model) * 2 +
         align_up(sizeof(float) * T * (c.q_dim() + 2 * c.kv_dim()));
}

AttentionScratch carve_attention_scratch(const ModelConfig& c, int n_tok, void* base) {
  const size_t T = std::max(n_tok, 1);
  uintptr_t p = aligned(base);
  AttentionScratch s;
  s.x = reinterpret_cast<float*>(p);
  p += align_up(sizeof(float) * T * c.d_model);
  s.qkv_rows = reinterpret_cast<float*>(p);
  p += align_up(sizeof(float) * T * (c.q_dim() + 2 * c.kv_dim()));
  s.y = reinterpret_cast<float*>(p);
  return s;
}

}  // namespace ferry
