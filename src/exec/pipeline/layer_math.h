// The decoder layer cut where the pipeline cuts it: pre-attention (norm, QKV, q/k norm, clip, RoPE),
// attention over the paged KV cache, post-attention (O-proj, residual, FFN norm, routing, shared
// expert or dense MLP), the routed experts of one group (a page, or the pinned ones) and the final
// combine. Every function works on caller-provided buffers and allocates nothing.
//
// Routed experts accumulate per (token, k) into their own rows and are summed at the end in ascending
// expert order, as the reference does, so the order in which pages arrive never changes the result.
#pragma once
#include <cstdint>
#include <span>

#include "exec/pipeline/pipeline_weights.h"
#include "ferry/ops/attention.h"
#include "ferry/rope_frequencies.h"
#include "ferry/router_math.h"

namespace ferry::exec {

struct LayerScratch {  // f32 unless noted; T = tokens, K = experts per token
  float* x = nullptr;         // [T, D] normed hidden
  float* y = nullptr;         // [T, D]
  float* x_rep = nullptr;     // [T*K, D] x replicated per routed slot
  float* y_rep = nullptr;     // [T*K, D] per-(token, k) expert outputs
  float* router_logits = nullptr;  // [T, E]
  float* gate = nullptr;      // [T] shared-expert gate
  int32_t* rows = nullptr;    // [T*K] row lists for one expert
  float* row_weight = nullptr;  // [T*K]
  RouterChoice* routing = nullptr;  // [T]
};

struct QkvView {  // [T, H*Dh], [T, Hkv*Dh], [T, Hkv*Dh]
  float* q;
  float* k;
  float* v;
};
// The QKV relay of T tokens as one buffer [q | k | v].
inline QkvView qkv_view(float* base, const ModelConfig& c, int n_tok) {
  float* q = base;
  float* k = q + static_cast<size_t>(n_tok) * c.q_dim();
  float* v = k + static_cast<size_t>(n_tok) * c.kv_dim();
  return {q, k, v};
}

void pre_attention(const ModelConfig& c, const PackedLayer& l, const RopeFrequencies& rope, const float* h,
                   int n_tok, const int32_t* positions, QkvView qkv, LayerScratch& s);

// Decode attention of n_tok sequences (one new token each): stores K/V at slots, attends. out [T, H*Dh].
void attention_decode_step(const ModelConfig& c, const cpu::KvCacheLayer& kv, QkvView qkv, int n_tok,
                           const int32_t* slots, const int32_t* block_tables, int block_table_stride,
                           const int32_t* n_ctx, float* out);

// O-proj and residual into h, FFN norm, routing into s.routing (MoE) and the shared expert / dense MLP
// into s.y; clears s.y_rep.
void post_attention(const ModelConfig& c, const PackedLayer& l, const float* attn, float* h, int n_tok,
                    LayerScratch& s);
// Runs, for the tokens routed to them, the experts e with expert_of[e] != null among [first, last).
void run_experts(const ModelConfig& c, std::span<const cpu::ExpertWeights> expert_of, int first, int last,
                 int n_tok, LayerScratch& s);
// h += sum of routed outputs (ascending expert order) + s.y.
void combine(const ModelConfig& c, const PackedLayer& l, float* h, int n_tok, LayerScratch& s);

// Final norm and lm_head: logits [T, V].
void lm_head(const PackedWeights& w, const float* h, int n_tok, float* x_scratch, float* logits);

}  // namespace ferry::exec
