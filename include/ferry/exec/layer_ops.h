// LayerOps: the steps of a decoder layer the pipelined executor runs, as one interface each device
// implements over its own memory. The host devices (`cpu`, `sim:`) implement it with the cpu/ ops
// (src/exec/device/host_ops.cpp); CUDA with cuBLAS GEMMs and small kernels (kernels/cuda_ops.cpp over the kernels in kernels/*.cu).
//
// Every op *enqueues* its work on the stream of `ctx` (on CUDA it returns at once; on the host devices
// the stream's worker runs it), so the executor calls ops from inside Compute-stream tasks. Every
// pointer an op takes is device memory: weights (ferry/exec/model_weights.h), activations, routing.
// The host never reads device memory; what it needs (logits, routing for statistics) is copied back.
//
// Numerics: the host ops are the cpu target's (src/exec/cpu/layer_blocks.h), so the executor on a host
// device is bit-identical to the cpu target. Routed experts write unweighted outputs into their own
// row per (token, slot) and ffn_output sums them in ascending expert order: the order in which experts
// (or pages of experts) run never changes the result.
//
// Shapes: T tokens, D hidden, E experts, K experts per token, H heads, Hkv kv heads, Dh head dim.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

#include "ferry/exec/model_weights.h"
#include "ferry/model_config.h"
#include "ferry/ops/attention.h"

namespace ferry {

struct StreamContext;
struct RopeFrequencies;

struct QkvRows {  // [T, H*Dh], [T, Hkv*Dh], [T, Hkv*Dh]
  float* q = nullptr;
  float* k = nullptr;
  float* v = nullptr;
};

// The buffers of one layer's FFN over up to T tokens (device memory), carved by carve_ffn_buffers.
struct FfnBuffers {
  float* x = nullptr;               // [T, D] normalised input
  float* y = nullptr;               // [T, D] FFN output before the residual
  float* router_logits = nullptr;   // [T, E]
  float* probs = nullptr;           // [T, E] router scratch, for device routers that keep none of their own
  int32_t* topk_idx = nullptr;      // [T, K]
  float* topk_weight = nullptr;     // [T, K]
  // [E] the position of each expert in the layer's expert table (null: expert e at e). Set per layer by the
  // executor, whose tables are in cache order; ffn_input groups the assignments by position, and the ranges
  // of routed_experts are positions. The routing (topk_idx) and the combine stay in expert ids.
  const int32_t* expert_position = nullptr;
  int32_t* offsets = nullptr;       // [E + 1]: position p's assignments are [offsets[p], offsets[p + 1])
  int32_t* assign_token = nullptr;  // [T*K] token of each assignment, grouped by expert, tokens ascending
  int32_t* assign_slot = nullptr;   // [T*K] its row t*K + k in expert_out
  float* expert_out = nullptr;      // [T*K, D] unweighted routed expert outputs
  float* shared_out = nullptr;      // [T, D] unweighted shared expert / dense MLP output
  float* shared_gate = nullptr;     // [T] sigmoid gate of the shared expert
  // MLP scratch of one expert (at most T rows: a token meets an expert once) or of the shared/dense MLP,
  // F the widest MLP: gathered rows [T, D], gate and up [T, F], outputs [T, D]. A backend that runs many
  // experts in one launch keeps its own larger scratch (CudaOps).
  float* mlp_x = nullptr;
  float* mlp_gate = nullptr;
  float* mlp_up = nullptr;
  float* mlp_out = nullptr;
};
// Bytes of FfnBuffers for T tokens, and the buffers carved from `base` (at least that many bytes).
size_t ffn_buffer_bytes(const ModelConfig& c, int n_tok);
FfnBuffers carve_ffn_buffers(const ModelConfig& c, int n_tok, void* base);

// Attention scratch for T tokens: normalised input [T, D], stacked QKV rows [T, q+2kv], O-proj output [T, D].
struct AttentionScratch {
  float* x = nullptr;
  float* qkv_rows = nullptr;
  float* y = nullptr;
};
size_t attention_scratch_bytes(const ModelConfig& c, int n_tok);
AttentionScratch carve_attention_scratch(const ModelConfig& c, int n_tok, void* base);

class LayerOps {
 public:
  virtual ~LayerOps() = default;

  // ---- setup (before the first op; may allocate device memory, never afterwards). One model per
  // device: bind_model is called once. ----
  // The model the ops run: its config and RoPE table, and the most tokens one op call takes.
  virtual void bind_model(const ModelConfig& c, const RopeFrequencies& rope, int max_tokens) = 0;
  // Registers an expert table: experts[p] holds the weights of the expert at position p (b.expert_position) (views into device memory; the
  // pointed-to MlpWeights must outlive the ops and keep their shape and addresses: a backend may copy the
  // descriptors to the device) for e in [0, E). Returns its id for routed_experts.
  virtual int add_expert_table(std::span<const MlpWeights* const> experts) = 0;

  // ---- ops, enqueued on ctx's stream ----
  // h [T, D] = embedding rows of tokens [T].
  virtual void embed(const StreamContext& ctx, const ModelWeights& w, const int32_t* tokens, int n_tok,
                     float* h) = 0;
  // Norm, stacked QKV, q/k norm, clip, RoPE at positions [T]: out receives q, k, v.
  virtual void attention_input(const StreamContext& ctx, const LayerWeights& L, const float* h, int n_tok,
                               const int32_t* positions, const AttentionScratch& s, QkvRows out) = 0;
  // h += wo·attn + bo.
  virtual void attention_output(const StreamContext& ctx, const LayerWeights& L, const float* attn, int n_tok,
                                const AttentionScratch& s, float* h) = 0;
  // b.x = ffn_norm(h); in a MoE layer also the router, top-k and the assignments grouped by expert.
  virtual void ffn_input(const StreamContext& ctx, const LayerWeights& L, const float* h, int n_tok,
                         const FfnBuffers& b) = 0;
  // For the experts at positions [first, last) of the table: b.expert_out[slot] = expert(b.x[token]) over
  // its assignments. Experts no token routes to cost nothing.
  virtual void routed_experts(const StreamContext& ctx, int table, int first, int last, int n_tok,
                              const FfnBuffers& b) = 0;
  // b.shared_out = shared expert (MoE layer) or dense MLP of b.x; b.shared_gate its sigmoid gate.
  virtual void shared_outputs(const StreamContext& ctx, const LayerWeights& L, int n_tok, const FfnBuffers& b) = 0;
  // b.y = Σ_k w[t,k]·expert_out[t,k] (ascending expert) + gate·shared_out; h += b.y.
  virtual void ffn_output(const StreamContext& ctx, const LayerWeights& L, int n_tok, const FfnBuffers& b,
                          float* h) = 0;
  // logits [R, V] of rows h [R, D]; x [R, D] scratch.
  virtual void final_logits(const StreamContext& ctx, const ModelWeights& w, const float* h, int n_rows, float* x,
                            float* logits) = 0;

  // ---- attention on the device, over a KV cache in device memory ----
  // Whether this backend attends on the device (false: the policy must put attention on the host).
  virtual bool has_device_attention() const = 0;
  // Stores k, v of T tokens at slots [T], then attends: decode (one token per sequence, n_ctx [T],
  // block tables [T, stride]) or prefill (T tokens of one sequence after n_past, its block table).
  virtual void attention_decode(const StreamContext& ctx, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                                const int32_t* slots, const int32_t* tables, int table_stride, const int32_t* n_ctx,
                                float* out) = 0;
  virtual void attention_prefill(const StreamContext& ctx, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                                 const int32_t* slots, const int32_t* table, int n_past, float* out) = 0;
};

}  // namespace ferry
