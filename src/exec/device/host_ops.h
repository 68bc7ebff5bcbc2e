// LayerOps on the host devices (`cpu`, `sim:`): the cpu target's layer blocks (exec/cpu/layer_blocks.h)
// over buffers in host memory, so the executor on these devices computes what the cpu target computes,
// bit for bit. Each op runs when its task runs (the stream's worker thread), never at enqueue.
#pragma once
#include <vector>

#include "exec/cpu/layer_blocks.h"
#include "ferry/exec/layer_ops.h"
#include "ferry/rope_frequencies.h"

namespace ferry::exec {

class HostOps final : public LayerOps {
 public:
  HostOps();
  void bind_model(const ModelConfig& c, const RopeFrequencies& rope, int max_tokens) override;
  int add_expert_table(std::span<const MlpWeights* const> experts) override;

  void embed(const StreamContext& ctx, const ModelWeights& w, const int32_t* tokens, int n_tok, float* h) override;
  void attention_input(const StreamContext& ctx, const LayerWeights& L, const float* h, int n_tok,
                       const int32_t* positions, const AttentionScratch& s, QkvRows out) override;
  void attention_output(const StreamContext& ctx, const LayerWeights& L, const float* attn, int n_tok,
                        const AttentionScratch& s, float* h) override;
  void ffn_input(const StreamContext& ctx, const LayerWeights& L, const float* h, int n_tok,
                 const FfnBuffers& b) override;
  void routed_experts(const StreamContext& ctx, int table, int first, int last, int n_tok,
                      const FfnBuffers& b) override;
  void shared_outputs(const StreamContext& ctx, const LayerWeights& L, int n_tok, const FfnBuffers& b) override;
  void ffn_output(const StreamContext& ctx, const LayerWeights& L, int n_tok, const FfnBuffers& b,
                  float* h) override;
  void final_logits(const StreamContext& ctx, const ModelWeights& w, const float* h, int n_rows, float* x,
                    float* logits) override;

  bool has_device_attention() const override { return true; }
  void attention_decode(const StreamContext& ctx, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                        const int32_t* slots, const int32_t* tables, int table_stride, const int32_t* n_ctx,
                        float* out) override;
  void attention_prefill(const StreamContext& ctx, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                         const int32_t* slots, const int32_t* table, int n_past, float* out) override;

 private:
  const ModelConfig* c_ = nullptr;
  RopeFrequencies rope_;
  cpu_target::MatmulFn matmul_ = nullptr;  // bf16 weights take f32 activations, as on the cpu target
  std::vector<std::vector<const MlpWeights*>> tables_;
};

// The attention of the host: decode and prefill over the paged KV cache in host memory. The executor's
// Host-stream tasks and HostOps' device attention both call these.
void host_attention_decode(const ModelConfig& c, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                           const int32_t* slots, const int32_t* tables, int table_stride, const int32_t* n_ctx,
                           float* out);
void host_attention_prefill(const ModelConfig& c, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                            const int32_t* slots, const int32_t* table, int n_past, float* out);

}  // namespace ferry::exec
