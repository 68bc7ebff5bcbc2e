#include "exec/cpu/layer_blocks.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "ferry/error.h"
#include "ferry/ops/cpu_ops.h"
#include "ferry/route_token.h"

namespace ferry::cpu_target {

namespace {

void norm_rows(const ModelConfig& c, const float* w, const float* b, const float* x, float* y, int rows) {
  const float eps = static_cast<float>(c.norm_eps);
  if (c.norm == NormKind::RmsNorm)
    cpu::rms_norm(x, w, y, rows, c.d_model, eps);
  else
    cpu::layer_norm(x, w, b, y, rows, c.d_model, eps);
}

void clamp(float* x, size_t n, float limit) {
  for (size_t i = 0; i < n; ++i) x[i] = std::clamp(x[i], -limit, limit);
}

// y[j] += w * o[j], j < d: every weighted sum of expert outputs goes through this one loop.
void add_scaled(float* y, const float* o, float w, size_t d) {
  for (size_t j = 0; j < d; ++j) y[j] += w * o[j];
}

}  // namespace

void embed_tokens(const ModelConfig& c, const ModelWeights& w, const int32_t* tokens, int n_tok, float* h) {
  cpu::embedding_gather(w.embed, w.embed_dtype, c.n_vocab, c.d_model, tokens, n_tok, h);
}

void attention_input(const ModelConfig& c, const LayerWeights& L, const RopeFrequencies& rope, MatmulFn matmul,
                     const float* h, int n_tok, const int32_t* positions, float* x, float* qkv_rows, QkvRows out) {
  const int H = c.n_head, Hkv = c.n_head_kv, Dh = c.head_dim;
  const size_t q_dim = c.q_dim(), kv_dim = c.kv_dim(), qkv_dim = q_dim + 2 * kv_dim, T = n_tok;
  const float eps = static_cast<float>(c.norm_eps);
  float *q = out.q, *k = out.k, *v = out.v;
  norm_rows(c, L.attn_norm, L.attn_norm_bias, h, x, n_tok);
  matmul(L.wqkv, x, qkv_rows, n_tok, L.bqkv);
  for (size_t i = 0; i < T; ++i) {  // [T, q | k | v] -> q [T, H, Dh], k, v [T, Hkv, Dh]
    const float* row = qkv_rows + i * qkv_dim;
    std::memcpy(q + i * q_dim, row, q_dim * sizeof(float));
    std::memcpy(k + i * kv_dim, row + q_dim, kv_dim * sizeof(float));
    std::memcpy(v + i * kv_dim, row + q_dim + kv_dim, kv_dim * sizeof(float));
  }
  if (c.qk_norm == QkNorm::PerHead) {  // Qwen3: RMSNorm over Dh within each head
    cpu::rms_norm(q, L.q_norm, q, n_tok * H, Dh, eps);
    cpu::rms_norm(k, L.k_norm, k, n_tok * Hkv, Dh, eps);
  } else if (c.qk_norm == QkNorm::Full) {  // OLMoE: one RMSNorm over the whole projection
    cpu::rms_norm(q, L.q_norm, q, n_tok, static_cast<int>(q_dim), eps);
    cpu::rms_norm(k, L.k_norm, k, n_tok, static_cast<int>(kv_dim), eps);
  }
  if (c.clip_qkv > 0) {
    const float clip = static_cast<float>(c.clip_qkv);
    clamp(q, T * q_dim, clip);
    clamp(k, T * kv_dim, clip);
    clamp(v, T * kv_dim, clip);
  }
  cpu::RopeParams rp;
  rp.head_dim = Dh;
  rp.rotary_dim = c.rope.rotary_dim;
  rp.pairing = c.rope.pairing;
  rp.inv_freq = rope.inv_freq.data();
  rp.attention_factor = rope.attention_factor;
  rp.n_head = H;
  cpu::rope(q, n_tok, positions, rp);
  rp.n_head = Hkv;
  cpu::rope(k, n_tok, positions, rp);
}

void attention_output(const ModelConfig& c, const LayerWeights& L, MatmulFn matmul, const float* attn,
                      int n_tok, float* y, float* h) {
  matmul(L.wo, attn, y, n_tok, L.bo);
  cpu::residual_add(h, y, h, static_cast<int64_t>(n_tok) * c.d_model);
}

void ffn_input(const ModelConfig& c, const LayerWeights& L, const float* h, int n_tok, const FfnBuffers& b) {
  norm_rows(c, L.ffn_norm, L.ffn_norm_bias, h, b.x, n_tok);
  if (!L.is_moe) return;
  cpu::matmul(L.router, b.x, b.router_logits, n_tok);  // f32 weights and activations
  cpu::router_topk(b.router_logits, n_tok, cpu_router_params(c), b.topk_idx, b.topk_weight);
  cpu::group_by_expert(b.topk_idx, n_tok, c.n_expert_used, c.n_expert, b.offsets, b.assign_token, b.assign_slot,
                       b.expert_position);
}

size_t routed_expert_outputs(const MlpWeights* const* expert_of, int first, int last, MatmulFn matmul, int d_model,
                             const FfnBuffers& b) {
  const size_t D = d_model;
  size_t bytes = 0;
  for (int e = first; e < last; ++e) {
    const int begin = b.offsets[e], n = b.offsets[e + 1] - begin;
    if (n == 0) continue;
    const MlpWeights& m = *expert_of[e];
    cpu::expert_ffn_rows({&m.gate, &m.up, &m.down}, matmul, b.x, b.assign_token + begin, n, b.mlp_out, b.mlp_x,
                         b.mlp_gate, b.mlp_up);
    for (int i = 0; i < n; ++i)
      std::memcpy(b.expert_out + static_cast<size_t>(b.assign_slot[begin + i]) * D, b.mlp_out + i * D,
                  D * sizeof(float));
    bytes += expert_of[e]->bytes();
  }
  return bytes;
}

void shared_outputs(const ModelConfig& c, const LayerWeights& L, MatmulFn matmul, int n_tok, const FfnBuffers& b) {
  const MlpWeights& mlp = L.is_moe ? L.shared : L.dense;
  if (mlp.empty()) return;
  cpu::expert_ffn_rows({&mlp.gate, &mlp.up, &mlp.down}, matmul, b.x, nullptr, n_tok, b.shared_out, nullptr, b.mlp_gate,
                       b.mlp_up);
  if (L.is_moe && L.shared_gate.rows > 0) {
    cpu::matmul(L.shared_gate, b.x, b.shared_gate, n_tok);  // [T, 1]
    for (int t = 0; t < n_tok; ++t) b.shared_gate[t] = 1.0f / (1.0f + std::exp(-b.shared_gate[t]));
  }
}

void ffn_output(const ModelConfig& c, const LayerWeights& L, int n_tok, const FfnBuffers& b, float* h) {
  const size_t D = c.d_model;
  const int K = c.n_expert_used;
  std::fill(b.y, b.y + n_tok * D, 0.0f);
  for (int t = 0; t < n_tok; ++t) {
    float* yt = b.y + t * D;
    if (L.is_moe) {  // routed outputs in ascending expert order, as the reference sums them
      const int32_t* idx = b.topk_idx + static_cast<size_t>(t) * K;
      int order[kMaxExpertsUsed];
      for (int k = 0; k < K; ++k) order[k] = k;
      std::sort(order, order + K, [&](int x, int y) { return idx[x] < idx[y]; });
      for (int j = 0; j < K; ++j) {
        const size_t slot = static_cast<size_t>(t) * K + order[j];
        add_scaled(yt, b.expert_out + slot * D, b.topk_weight[slot], D);
      }
    }
    const MlpWeights& mlp = L.is_moe ? L.shared : L.dense;
    if (!mlp.empty())
      add_scaled(yt, b.shared_out + t * D, L.is_moe && L.shared_gate.rows > 0 ? b.shared_gate[t] : 1.0f, D);
  }
  cpu::residual_add(h, b.y, h, static_cast<int64_t>(n_tok) * D);
}

void final_logits(const ModelConfig& c, const ModelWeights& w, MatmulFn matmul, const float* h, int n_rows, float* x,
                  float* logits) {
  norm_rows(c, w.final_norm, w.final_norm_bias, h, x, n_rows);
  matmul(w.lm_head, x, logits, n_rows, w.lm_head_bias);
}

}  // namespace ferry::cpu_target
