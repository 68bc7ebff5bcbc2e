#include "exec/cpu/layer_blocks.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "ferry/error.h"
#include "ferry/ops/cpu_ops.h"
#include "ferry/router_math.h"

namespace ferry::cpu_target {

namespace {

constexpr size_t kAlign = 64;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// The FfnBuffers arrays in carve order, as (element size, count) for T tokens.
template <class F>
void for_each_ffn_array(const ModelConfig& c, int n_tok, F&& f) {
  const size_t T = std::max(n_tok, 1), D = c.d_model, E = std::max(c.n_expert, 1), K = std::max(c.n_expert_used, 1);
  f(sizeof(float), T * D);          // x
  f(sizeof(float), T * D);          // y
  f(sizeof(float), T * E);          // router_logits
  f(sizeof(float), E);              // probs
  f(sizeof(int32_t), T * K);        // topk_idx
  f(sizeof(float), T * K);          // topk_weight
  f(sizeof(int32_t), E + 1);        // offsets
  f(sizeof(int32_t), T * K);        // assign_token
  f(sizeof(int32_t), T * K);        // assign_slot
  f(sizeof(float), T * K * D);      // expert_out
  f(sizeof(float), T * D);          // shared_out
  f(sizeof(float), T);              // shared_gate
}

void norm_rows(const ModelConfig& c, const std::vector<float>& w, const std::vector<float>& b, const float* x,
               float* y, int rows) {
  const float eps = static_cast<float>(c.norm_eps);
  if (c.norm == NormKind::RmsNorm)
    cpu::rms_norm(x, w.data(), y, rows, c.d_model, eps);
  else
    cpu::layer_norm(x, w.data(), b.empty() ? nullptr : b.data(), y, rows, c.d_model, eps);
}

const float* bias_or_null(const std::vector<float>& b) { return b.empty() ? nullptr : b.data(); }

void clamp(float* x, size_t n, float limit) {
  for (size_t i = 0; i < n; ++i) x[i] = std::clamp(x[i], -limit, limit);
}

// The router of one token (route_token: the one router of the reference, the cpu target and the
// executor) into the [T, K] routing arrays. probs [E] is scratch.
void route(const ModelConfig& c, const float* logits, float* probs, int32_t* idx, float* weight) {
  const RouterChoice r = route_token(c, logits, probs);
  for (int j = 0; j < r.k; ++j) {
    idx[j] = r.expert[j];
    weight[j] = r.weight[j];
  }
}

// A counting sort of the T*K assignments by expert; tokens stay ascending within an expert.
void group_by_expert(const ModelConfig& c, int n_tok, const FfnBuffers& b) {
  const int E = c.n_expert, K = c.n_expert_used;
  const int n_assign = n_tok * K;
  int32_t* offsets = b.offsets;
  std::fill(offsets, offsets + E + 1, 0);
  for (int i = 0; i < n_assign; ++i) {
    FERRY_ASSERT(b.topk_idx[i] >= 0 && b.topk_idx[i] < E);
    ++offsets[b.topk_idx[i] + 1];
  }
  for (int e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  for (int i = 0; i < n_assign; ++i) {
    const int32_t at = offsets[b.topk_idx[i]]++;
    b.assign_token[at] = i / K;
    b.assign_slot[at] = i;
  }
  for (int e = E; e > 0; --e) offsets[e] = offsets[e - 1];  // undo the fill's advance
  offsets[0] = 0;
}

}  // namespace

size_t ffn_buffer_bytes(const ModelConfig& c, int n_tok) {
  size_t bytes = kAlign;  // room to align the base
  for_each_ffn_array(c, n_tok, [&](size_t elem, size_t count) { bytes += align_up(elem * count); });
  return bytes;
}

FfnBuffers carve_ffn_buffers(const ModelConfig& c, int n_tok, void* base) {
  auto p = reinterpret_cast<uintptr_t>(base);
  p = (p + kAlign - 1) / kAlign * kAlign;
  std::array<void*, 12> ptrs{};
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
  return b;
}

void embed_tokens(const CpuWeights& w, const int32_t* tokens, int n_tok, float* h) {
  const ModelConfig& c = w.config;
  if (!w.embed_bf16.empty())
    cpu::embedding_gather(w.embed_bf16.data(), DType::BF16, c.n_vocab, c.d_model, tokens, n_tok, h);
  else
    cpu::embedding_gather(w.embed_f32.data(), DType::F32, c.n_vocab, c.d_model, tokens, n_tok, h);
}

void attention_input(const ModelConfig& c, const CpuLayerWeights& L, const RopeFrequencies& rope, MatmulFn matmul,
                     const float* h, int n_tok, const int32_t* positions, float* x, float* qkv_rows, QkvRows out) {
  const int H = c.n_head, Hkv = c.n_head_kv, Dh = c.head_dim;
  const size_t q_dim = c.q_dim(), kv_dim = c.kv_dim(), qkv_dim = q_dim + 2 * kv_dim, T = n_tok;
  const float eps = static_cast<float>(c.norm_eps);
  float *q = out.q, *k = out.k, *v = out.v;
  norm_rows(c, L.attn_norm, L.attn_norm_bias, h, x, n_tok);
  matmul(L.wqkv, x, qkv_rows, n_tok, bias_or_null(L.bqkv));
  for (size_t i = 0; i < T; ++i) {  // [T, q | k | v] -> q [T, H, Dh], k, v [T, Hkv, Dh]
    const float* row = qkv_rows + i * qkv_dim;
    std::memcpy(q + i * q_dim, row, q_dim * sizeof(float));
    std::memcpy(k + i * kv_dim, row + q_dim, kv_dim * sizeof(float));
    std::memcpy(v + i * kv_dim, row + q_dim + kv_dim, kv_dim * sizeof(float));
  }
  if (c.qk_norm == QkNorm::PerHead) {  // Qwen3: RMSNorm over Dh within each head
    cpu::rms_norm(q, L.q_norm.data(), q, n_tok * H, Dh, eps);
    cpu::rms_norm(k, L.k_norm.data(), k, n_tok * Hkv, Dh, eps);
  } else if (c.qk_norm == QkNorm::Full) {  // OLMoE: one RMSNorm over the whole projection
    cpu::rms_norm(q, L.q_norm.data(), q, n_tok, static_cast<int>(q_dim), eps);
    cpu::rms_norm(k, L.k_norm.data(), k, n_tok, static_cast<int>(kv_dim), eps);
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

void attention_output(const ModelConfig& c, const CpuLayerWeights& L, MatmulFn matmul, const float* attn,
                      int n_tok, float* y, float* h) {
  matmul(L.wo, attn, y, n_tok, bias_or_null(L.bo));
  cpu::residual_add(h, y, h, static_cast<int64_t>(n_tok) * c.d_model);
}

void ffn_input(const ModelConfig& c, const CpuLayerWeights& L, const float* h, int n_tok, const FfnBuffers& b) {
  norm_rows(c, L.ffn_norm, L.ffn_norm_bias, h, b.x, n_tok);
  if (!L.is_moe) return;
  const int E = c.n_expert, K = c.n_expert_used;
  cpu::matmul(L.router, b.x, b.router_logits, n_tok);  // f32 weights and activations
  for (int t = 0; t < n_tok; ++t)
    route(c, b.router_logits + static_cast<size_t>(t) * E, b.probs, b.topk_idx + static_cast<size_t>(t) * K,
          b.topk_weight + static_cast<size_t>(t) * K);
  group_by_expert(c, n_tok, b);
}

size_t routed_expert_outputs(const PackedMlp* const* expert_of, int first, int last, MatmulFn matmul, int d_model,
                             const FfnBuffers& b, MlpScratch& s) {
  const size_t D = d_model;
  size_t bytes = 0;
  for (int e = first; e < last; ++e) {
    const int begin = b.offsets[e], n = b.offsets[e + 1] - begin;
    if (n == 0) continue;
    mlp_forward(*expert_of[e], matmul, b.x, b.assign_token + begin, n, s.out.data(), s);
    for (int i = 0; i < n; ++i)
      std::memcpy(b.expert_out + static_cast<size_t>(b.assign_slot[begin + i]) * D, s.out.data() + i * D,
                  D * sizeof(float));
    bytes += expert_of[e]->bytes();
  }
  return bytes;
}

void shared_outputs(const ModelConfig& c, const CpuLayerWeights& L, MatmulFn matmul, int n_tok, const FfnBuffers& b,
                    MlpScratch& s) {
  const PackedMlp& mlp = L.is_moe ? L.shared : L.dense;
  if (mlp.empty()) return;
  mlp_forward(mlp, matmul, b.x, nullptr, n_tok, b.shared_out, s);
  if (L.is_moe && L.shared_gate.rows > 0) {
    cpu::matmul(L.shared_gate, b.x, b.shared_gate, n_tok);  // [T, 1]
    for (int t = 0; t < n_tok; ++t) b.shared_gate[t] = 1.0f / (1.0f + std::exp(-b.shared_gate[t]));
  }
}

void ffn_output(const ModelConfig& c, const CpuLayerWeights& L, int n_tok, const FfnBuffers& b, float* h) {
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
    const PackedMlp& mlp = L.is_moe ? L.shared : L.dense;
    if (!mlp.empty())
      add_scaled(yt, b.shared_out + t * D, L.is_moe && L.shared_gate.rows > 0 ? b.shared_gate[t] : 1.0f, D);
  }
  cpu::residual_add(h, b.y, h, static_cast<int64_t>(n_tok) * D);
}

void final_logits(const CpuWeights& w, MatmulFn matmul, const float* h, int n_rows, float* x, float* logits) {
  norm_rows(w.config, w.final_norm, w.final_norm_bias, h, x, n_rows);
  matmul(w.lm_head, x, logits, n_rows, bias_or_null(w.lm_head_bias));
}

}  // namespace ferry::cpu_target
