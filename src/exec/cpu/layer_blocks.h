// The decoder layer on the cpu op set, cut into the blocks both the `cpu` target (cpu_model.cpp) and
// the pipelined executor (exec/pipeline) run, so that the two compute bit-identical numbers from the
// same packed weights (cpu_weights.h):
//   attention_input   norm, stacked QKV, q/k norm, clip, RoPE              (before attention)
//   attention_output  O-proj, residual                                      (after attention)
//   ffn_input         FFN norm, router, top-k, assignments grouped by expert
//   routed_expert_outputs  any subset of the experts (all at once, or pinned ones then pages)
//   shared_outputs    the shared expert or the dense MLP, and its gate
//   ffn_output        routed outputs summed in ascending expert order, shared added, residual
//   final_logits      final norm, lm_head
// Routed experts write unweighted outputs into their own row per (token, slot) and are summed in
// ffn_output in a fixed order, so the order in which experts run never changes the result: offloading
// never changes results. Nothing here allocates.
//
// Shapes: T tokens, D hidden, E experts, K experts per token, H heads, Hkv kv heads, Dh head dim.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ferry/exec/layer_ops.h"
#include "ferry/exec/model_weights.h"
#include "ferry/ops/expert_ffn.h"
#include "ferry/rope_frequencies.h"

namespace ferry::cpu_target {

// Every matmul of a block goes through one: cpu::matmul_f32_activations (bf16 weights, f32 activations:
// the default) or cpu::matmul (bf16 activations).
using MatmulFn = cpu::MatmulFn;

using ferry::FfnBuffers;
using ferry::QkvRows;

// h [T, D] = embedding rows of `tokens`.
void embed_tokens(const ModelConfig& c, const ModelWeights& w, const int32_t* tokens, int n_tok, float* h);

// x [T, D] and qkv_rows [T, H*Dh + 2*Hkv*Dh] are scratch; out receives q, k, v with RoPE applied.
void attention_input(const ModelConfig& c, const LayerWeights& L, const RopeFrequencies& rope, MatmulFn matmul,
                     const float* h, int n_tok, const int32_t* positions, float* x, float* qkv_rows, QkvRows out);
// h += wo·attn + bo; y [T, D] scratch.
void attention_output(const ModelConfig& c, const LayerWeights& L, MatmulFn matmul, const float* attn, int n_tok,
                      float* y, float* h);

// b.x = ffn_norm(h); in a MoE layer also the routing and its assignments grouped by expert.
void ffn_input(const ModelConfig& c, const LayerWeights& L, const float* h, int n_tok, const FfnBuffers& b);
// For the experts e in [first, last): b.expert_out[slot] = expert_e(b.x[token]) over e's assignments.
// expert_of[e] holds expert e's weights (resident, or a device ring slot). Returns the bytes of the
// experts that had tokens.
size_t routed_expert_outputs(const MlpWeights* const* expert_of, int first, int last, MatmulFn matmul, int d_model,
                             const FfnBuffers& b);
// b.shared_out = shared expert (MoE layer, if any) or dense MLP of b.x; b.shared_gate its sigmoid gate.
void shared_outputs(const ModelConfig& c, const LayerWeights& L, MatmulFn matmul, int n_tok, const FfnBuffers& b);
// b.y = Σ_k w[t,k]·expert_out[t,k] (ascending expert) + gate·shared_out; h += b.y.
void ffn_output(const ModelConfig& c, const LayerWeights& L, int n_tok, const FfnBuffers& b, float* h);

// logits [R, V] of the rows h [R, D]; x [R, D] scratch (may be h).
void final_logits(const ModelConfig& c, const ModelWeights& w, MatmulFn matmul, const float* h, int n_rows, float* x,
                  float* logits);

}  // namespace ferry::cpu_target
