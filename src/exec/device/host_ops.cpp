#include "exec/device/host_ops.h"

#include "ferry/ops/matmul.h"
#include "exec/cpu/layer_blocks.h"
#include "ferry/error.h"
#include "ferry/ops/cpu_ops.h"

namespace ferry::exec {

namespace {

cpu::AttentionParams attention_params(const ModelConfig& c) {
  cpu::AttentionParams p;
  p.n_head = c.n_head;
  p.sliding_window = c.sliding_window;
  return p;
}

}  // namespace

void host_attention_decode(const ModelConfig& c, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                           const int32_t* slots, const int32_t* tables, int table_stride, const int32_t* n_ctx,
                           float* out) {
  cpu::kv_cache_store(kv, slots, n_tok, qkv.k, qkv.v);
  cpu::attention_decode(qkv.q, kv, tables, table_stride, n_ctx, n_tok, attention_params(c), out);
}

void host_attention_prefill(const ModelConfig& c, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                            const int32_t* slots, const int32_t* table, int n_past, float* out) {
  cpu::kv_cache_store(kv, slots, n_tok, qkv.k, qkv.v);
  cpu::attention_prefill(qkv.q, kv, table, n_past, n_tok, attention_params(c), out);
}

HostOps::HostOps() : matmul_(&cpu::matmul_f32_activations) {}

void HostOps::bind_model(const ModelConfig& c, const RopeFrequencies& rope, int max_tokens) {
  c_ = &c;
  rope_ = rope;
}

int HostOps::add_expert_table(std::span<const MlpWeights* const> experts) {
  tables_.emplace_back(experts.begin(), experts.end());
  return static_cast<int>(tables_.size()) - 1;
}

void HostOps::embed(const StreamContext&, const ModelWeights& w, const int32_t* tokens, int n_tok, float* h) {
  cpu_target::embed_tokens(*c_, w, tokens, n_tok, h);
}

void HostOps::attention_input(const StreamContext&, const LayerWeights& L, const float* h, int n_tok,
                              const int32_t* positions, const AttentionScratch& s, QkvRows out) {
  cpu_target::attention_input(*c_, L, rope_, matmul_, h, n_tok, positions, s.x, s.qkv_rows, out);
}

void HostOps::attention_output(const StreamContext&, const LayerWeights& L, const float* attn, int n_tok,
                               const AttentionScratch& s, float* h) {
  cpu_target::attention_output(*c_, L, matmul_, attn, n_tok, s.y, h);
}

void HostOps::ffn_input(const StreamContext&, const LayerWeights& L, const float* h, int n_tok, const FfnBuffers& b) {
  cpu_target::ffn_input(*c_, L, h, n_tok, b);
}

void HostOps::routed_experts(const StreamContext&, int table, int first, int last, int n_tok, const FfnBuffers& b) {
  FERRY_ASSERT(table >= 0 && table < static_cast<int>(tables_.size()));
  cpu_target::routed_expert_outputs(tables_[table].data(), first, last, matmul_, c_->d_model, b);
}

void HostOps::shared_outputs(const StreamContext&, const LayerWeights& L, int n_tok, const FfnBuffers& b) {
  cpu_target::shared_outputs(*c_, L, matmul_, n_tok, b);
}

void HostOps::ffn_output(const StreamContext&, const LayerWeights& L, int n_tok, const FfnBuffers& b, float* h) {
  cpu_target::ffn_output(*c_, L, n_tok, b, h);
}

void HostOps::final_logits(const StreamContext&, const ModelWeights& w, const float* h, int n_rows, float* x,
                           float* logits) {
  cpu_target::final_logits(*c_, w, matmul_, h, n_rows, x, logits);
}

void HostOps::attention_decode(const StreamContext&, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                               const int32_t* slots, const int32_t* tables, int table_stride, const int32_t* n_ctx,
                               float* out) {
  host_attention_decode(*c_, kv, qkv, n_tok, slots, tables, table_stride, n_ctx, out);
}

void HostOps::attention_prefill(const StreamContext&, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                                const int32_t* slots, const int32_t* table, int n_past, float* out) {
  host_attention_prefill(*c_, kv, qkv, n_tok, slots, table, n_past, out);
}

}  // namespace ferry::exec
