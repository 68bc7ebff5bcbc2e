#include "exec/pipeline/layer_math.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ferry::exec {

namespace {

void norm_rows(const ModelConfig& c, const std::vector<float>& w, const std::vector<float>& b, const float* x,
               float* y, int rows) {
  const float eps = static_cast<float>(c.norm_eps);
  if (c.norm == NormKind::RmsNorm)
    cpu::rms_norm(x, w.data(), y, rows, c.d_model, eps);
  else
    cpu::layer_norm(x, w.data(), b.empty() ? nullptr : b.data(), y, rows, c.d_model, eps);
}

const float* bias(const std::vector<float>& b) { return b.empty() ? nullptr : b.data(); }

// The router over the logits row in place (route_token's scratch aliases the logits), so decode
// allocates nothing.
RouterChoice route_in_place(const ModelConfig& c, float* logits) { return route_token(c, logits, logits); }

}  // namespace

void pre_attention(const ModelConfig& c, const PackedLayer& l, const RopeFrequencies& rope, const float* h,
                   int n_tok, const int32_t* positions, QkvView qkv, LayerScratch& s) {
  const int H = c.n_head, Hkv = c.n_head_kv, Dh = c.head_dim;
  const float eps = static_cast<float>(c.norm_eps);
  norm_rows(c, l.attn_norm, l.attn_norm_bias, h, s.x, n_tok);
  cpu::matmul(l.wq, s.x, qkv.q, n_tok, bias(l.bq));  // [T, H*Dh]
  cpu::matmul(l.wk, s.x, qkv.k, n_tok, bias(l.bk));  // [T, Hkv*Dh]
  cpu::matmul(l.wv, s.x, qkv.v, n_tok, bias(l.bv));
  if (c.qk_norm == QkNorm::PerHead) {
    cpu::rms_norm(qkv.q, l.q_norm.data(), qkv.q, n_tok * H, Dh, eps);
    cpu::rms_norm(qkv.k, l.k_norm.data(), qkv.k, n_tok * Hkv, Dh, eps);
  } else if (c.qk_norm == QkNorm::Full) {
    cpu::rms_norm(qkv.q, l.q_norm.data(), qkv.q, n_tok, H * Dh, eps);
    cpu::rms_norm(qkv.k, l.k_norm.data(), qkv.k, n_tok, Hkv * Dh, eps);
  }
  if (c.clip_qkv > 0) {
    const float clip = static_cast<float>(c.clip_qkv);
    for (float* p : {qkv.q, qkv.k, qkv.v}) {
      const size_t n = static_cast<size_t>(n_tok) * (p == qkv.q ? H : Hkv) * Dh;
      for (size_t i = 0; i < n; ++i) p[i] = std::clamp(p[i], -clip, clip);
    }
  }
  cpu::RopeParams rp;
  rp.head_dim = Dh;
  rp.rotary_dim = c.rope.rotary_dim;
  rp.pairing = c.rope.pairing;
  rp.inv_freq = rope.inv_freq.data();
  rp.attention_factor = rope.attention_factor;
  rp.n_head = H;
  cpu::rope(qkv.q, n_tok, positions, rp);
  rp.n_head = Hkv;
  cpu::rope(qkv.k, n_tok, positions, rp);
}

void attention_decode_step(const ModelConfig& c, const cpu::KvCacheLayer& kv, QkvView qkv, int n_tok,
                           const int32_t* slots, const int32_t* block_tables, int block_table_stride,
                           const int32_t* n_ctx, float* out) {
  cpu::kv_cache_store(kv, slots, n_tok, qkv.k, qkv.v);
  cpu::AttentionParams p;
  p.n_head = c.n_head;
  p.sliding_window = c.sliding_window;
  cpu::attention_decode(qkv.q, kv, block_tables, block_table_stride, n_ctx, n_tok, p, out);
}

void post_attention(const ModelConfig& c, const PackedLayer& l, const float* attn, float* h, int n_tok,
                    LayerScratch& s) {
  const int D = c.d_model;
  const size_t td = static_cast<size_t>(n_tok) * D;
  cpu::matmul(l.wo, attn, s.y, n_tok, bias(l.bo));
  cpu::residual_add(h, s.y, h, static_cast<int64_t>(td));
  norm_rows(c, l.ffn_norm, l.ffn_norm_bias, h, s.x, n_tok);
  std::fill(s.y, s.y + td, 0.f);
  if (!l.is_moe) {
    for (int t = 0; t < n_tok; ++t) s.rows[t] = t;
    cpu::expert_ffn(l.dense.view(), s.x, s.rows, nullptr, n_tok, s.y);
    return;
  }
  const int E = c.n_expert, K = c.n_expert_used;
  cpu::matmul(l.router, s.x, s.router_logits, n_tok);  // [T, E]
  for (int t = 0; t < n_tok; ++t) s.routing[t] = route_in_place(c, s.router_logits + static_cast<size_t>(t) * E);
  for (int t = 0; t < n_tok; ++t)
    for (int k = 0; k < K; ++k)
      std::memcpy(s.x_rep + (static_cast<size_t>(t) * K + k) * D, s.x + static_cast<size_t>(t) * D, D * sizeof(float));
  std::fill(s.y_rep, s.y_rep + td * K, 0.f);
  if (!l.shared.empty()) {
    for (int t = 0; t < n_tok; ++t) s.rows[t] = t;
    const float* gate = nullptr;
    if (l.shared_gate.rows > 0) {
      cpu::matmul(l.shared_gate, s.x, s.gate, n_tok);  // [T, 1]
      for (int t = 0; t < n_tok; ++t) s.gate[t] = 1.0f / (1.0f + std::exp(-s.gate[t]));
      gate = s.gate;
    }
    cpu::expert_ffn(l.shared.view(), s.x, s.rows, gate, n_tok, s.y);
  }
}

void run_experts(const ModelConfig& c, std::span<const cpu::ExpertWeights> expert_of, int first, int last,
                 int n_tok, LayerScratch& s) {
  const int K = c.n_expert_used;
  for (int e = first; e < last; ++e) {
    if (!expert_of[e].gate) continue;
    int n = 0;
    for (int t = 0; t < n_tok; ++t)
      for (int k = 0; k < s.routing[t].k; ++k)
        if (s.routing[t].expert[k] == e) {
          s.rows[n] = t * K + k;
          s.row_weight[n] = s.routing[t].weight[k];
          ++n;
        }
    if (n) cpu::expert_ffn(expert_of[e], s.x_rep, s.rows, s.row_weight, n, s.y_rep);
  }
}

void combine(const ModelConfig& c, const PackedLayer& l, float* h, int n_tok, LayerScratch& s) {
  const int D = c.d_model, K = c.n_expert_used;
  for (int t = 0; t < n_tok; ++t) {
    float* ht = h + static_cast<size_t>(t) * D;
    float* yt = s.y + static_cast<size_t>(t) * D;
    if (l.is_moe) {
      // routed outputs in ascending expert order, then the shared expert (the reference's order)
      const RouterChoice& r = s.routing[t];
      int order[kMaxExpertsUsed];
      for (int k = 0; k < r.k; ++k) order[k] = k;
      std::sort(order, order + r.k, [&](int a, int b) { return r.expert[a] < r.expert[b]; });
      for (int i = 0; i < D; ++i) {
        float acc = 0.f;
        for (int j = 0; j < r.k; ++j) acc += s.y_rep[(static_cast<size_t>(t) * K + order[j]) * D + i];
        ht[i] += acc + yt[i];
      }
    } else {
      for (int i = 0; i < D; ++i) ht[i] += yt[i];
    }
  }
}

void lm_head(const PackedWeights& w, const float* h, int n_tok, float* x_scratch, float* logits) {
  norm_rows(w.config, w.final_norm, w.final_norm_bias, h, x_scratch, n_tok);
  cpu::matmul(w.lm_head, x_scratch, logits, n_tok, bias(w.lm_head_bias));
}

}  // namespace ferry::exec
