// The reference forward: fp32, plain loops, one token row at a time. Shapes use the legend of
// model_config.h. It favours being obviously right over being fast.
#include "ferry/reference_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "ferry/error.h"
#include "ferry/route_token.h"

namespace ferry {

namespace {

// y[o] = Σ_i W[o, i]·x[i] + b[o]      W: [out, in], x: [in], y: [out]
void matvec(const MatrixF32& W, const float* x, float* y, const std::vector<float>& bias = {}) {
  for (int o = 0; o < W.rows; ++o) {
    const float* row = W.data.data() + static_cast<size_t>(o) * W.cols;
    float acc = 0.f;
    for (int i = 0; i < W.cols; ++i) acc += row[i] * x[i];
    y[o] = acc + (bias.empty() ? 0.f : bias[o]);
  }
}

// RMSNorm as Llama/Mixtral: y = w · x / sqrt(mean(x²) + eps)
void rms_norm(const float* x, const float* w, float* y, int n, float eps) {
  float sum_sq = 0.f;
  for (int i = 0; i < n; ++i) sum_sq += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(sum_sq / n + eps);
  for (int i = 0; i < n; ++i) y[i] = w[i] * (x[i] * inv);
}

// LayerNorm: y = w · (x - mean) / sqrt(var + eps) + b
void layer_norm(const float* x, const float* w, const float* b, float* y, int n, float eps) {
  float mean = 0.f;
  for (int i = 0; i < n; ++i) mean += x[i];
  mean /= n;
  float var = 0.f;
  for (int i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= n;
  const float inv = 1.0f / std::sqrt(var + eps);
  for (int i = 0; i < n; ++i) y[i] = (x[i] - mean) * inv * w[i] + (b ? b[i] : 0.f);
}

void norm(const ModelConfig& c, const std::vector<float>& w, const std::vector<float>& b, const float* x,
          float* y) {
  if (c.norm == NormKind::RmsNorm)
    rms_norm(x, w.data(), y, c.d_model, static_cast<float>(c.norm_eps));
  else
    layer_norm(x, w.data(), b.empty() ? nullptr : b.data(), y, c.d_model, static_cast<float>(c.norm_eps));
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

// SwiGLU MLP for one token: y = down(silu(gate·x) ⊙ up·x)     x: [D], y: [D]
void mlp(const MlpF32& m, const float* x, float* y) {
  std::vector<float> g(m.gate.rows), u(m.up.rows);  // [F]
  matvec(m.gate, x, g.data());
  matvec(m.up, x, u.data());
  for (size_t i = 0; i < g.size(); ++i) g[i] = silu(g[i]) * u[i];
  matvec(m.down, g.data(), y);
}

// Rotates one head vector v [Dh] in place at position `pos`.
void rope(float* v, const RopeConfig& rc, const RopeFrequencies& f, int pos) {
  const int half = rc.rotary_dim / 2;
  for (int i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * f.inv_freq[i];
    const float c = std::cos(angle) * f.attention_factor, s = std::sin(angle) * f.attention_factor;
    // half-split pairs dim i with i + half; interleaved pairs 2i with 2i+1
    const int a = rc.pairing == RopePairing::HalfSplit ? i : 2 * i;
    const int b = rc.pairing == RopePairing::HalfSplit ? i + half : 2 * i + 1;
    const float x1 = v[a], x2 = v[b];
    v[a] = x1 * c - x2 * s;
    v[b] = x2 * c + x1 * s;
  }
}

}  // namespace

ReferenceModel::ReferenceModel(WeightsF32 weights) : w_(std::move(weights)) {
  const ModelConfig& c = w_.config;
  if (c.attention != AttentionKind::Gqa)
    throw Error("the reference forward does not support " + std::string(family_name(c.family)) +
                " (multi-head latent attention) yet; `ferry plan` and `ferry inspect` work for it");
  rope_ = rope_frequencies(c.rope, c.max_position, c.max_position);
}

ReferenceSequence ReferenceModel::new_sequence() const {
  ReferenceSequence s;
  s.k.resize(w_.config.n_layer);
  s.v.resize(w_.config.n_layer);
  return s;
}

std::vector<float> ReferenceModel::forward(std::span<ReferenceBatchEntry> batch) {
  const ModelConfig& c = w_.config;
  const int D = c.d_model, H = c.n_head, Hkv = c.n_head_kv, Dh = c.head_dim, V = c.n_vocab;
  const int q_dim = H * Dh, kv_dim = Hkv * Dh, group = H / Hkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));

  // Flatten the batch: token t belongs to sequence seq_of[t] at position pos_of[t].
  std::vector<int32_t> tokens;
  std::vector<int> seq_of, pos_of;
  for (size_t b = 0; b < batch.size(); ++b) {
    const ReferenceBatchEntry& e = batch[b];
    FERRY_ASSERT(e.seq != nullptr && static_cast<int>(e.seq->k.size()) == c.n_layer);
    if (e.seq->n_past + static_cast<int>(e.tokens.size()) > c.max_position)
      throw Error("sequence of " + std::to_string(e.seq->n_past + e.tokens.size()) +
                  " tokens exceeds the model's context of " + std::to_string(c.max_position) +
                  " (max_position_embeddings in " + c.source + "); shorten the prompt or lower -n");
    for (size_t i = 0; i < e.tokens.size(); ++i) {
      if (e.tokens[i] < 0 || e.tokens[i] >= V)
        throw Error("token id " + std::to_string(e.tokens[i]) + " is outside the vocabulary of " +
                    std::to_string(V));
      tokens.push_back(e.tokens[i]);
      seq_of.push_back(static_cast<int>(b));
      pos_of.push_back(e.seq->n_past + static_cast<int>(i));
    }
  }
  const int T = static_cast<int>(tokens.size());

  std::vector<float> h(static_cast<size_t>(T) * D);  // [T, D] residual stream
  for (int t = 0; t < T; ++t)
    std::copy_n(w_.embed.data.data() + static_cast<size_t>(tokens[t]) * D, D, h.data() + static_cast<size_t>(t) * D);

  std::vector<float> x(D), q(static_cast<size_t>(T) * q_dim), k(kv_dim), v(kv_dim), attn(q_dim), y(D), tmp(D);
  router_logits_.assign(c.n_layer, {});

  for (int l = 0; l < c.n_layer; ++l) {
    const LayerF32& L = w_.layers[l];
    // ---- attention: QKV for every token, K/V appended to the caches before any token attends ----
    for (int t = 0; t < T; ++t) {
      float* ht = h.data() + static_cast<size_t>(t) * D;
      float* qt = q.data() + static_cast<size_t>(t) * q_dim;
      norm(c, L.attn_norm, L.attn_norm_bias, ht, x.data());
      matvec(L.wq, x.data(), qt, L.bq);  // [H*Dh]
      matvec(L.wk, x.data(), k.data(), L.bk);  // [Hkv*Dh]
      matvec(L.wv, x.data(), v.data(), L.bv);  // [Hkv*Dh]
      const float eps = static_cast<float>(c.norm_eps);
      if (c.qk_norm == QkNorm::PerHead) {  // Qwen3: RMSNorm over Dh within each head
        for (int hh = 0; hh < H; ++hh) rms_norm(qt + hh * Dh, L.q_norm.data(), qt + hh * Dh, Dh, eps);
        for (int hh = 0; hh < Hkv; ++hh) rms_norm(k.data() + hh * Dh, L.k_norm.data(), k.data() + hh * Dh, Dh, eps);
      } else if (c.qk_norm == QkNorm::Full) {  // OLMoE: one RMSNorm over the whole projection
        rms_norm(qt, L.q_norm.data(), qt, q_dim, eps);
        rms_norm(k.data(), L.k_norm.data(), k.data(), kv_dim, eps);
      }
      if (c.clip_qkv > 0) {
        const float clip = static_cast<float>(c.clip_qkv);
        for (int i = 0; i < q_dim; ++i) qt[i] = std::clamp(qt[i], -clip, clip);
        for (int i = 0; i < kv_dim; ++i) {
          k[i] = std::clamp(k[i], -clip, clip);
          v[i] = std::clamp(v[i], -clip, clip);
        }
      }
      for (int hh = 0; hh < H; ++hh) rope(qt + hh * Dh, c.rope, rope_, pos_of[t]);
      for (int hh = 0; hh < Hkv; ++hh) rope(k.data() + hh * Dh, c.rope, rope_, pos_of[t]);
      ReferenceSequence& s = *batch[seq_of[t]].seq;
      s.k[l].insert(s.k[l].end(), k.begin(), k.end());
      s.v[l].insert(s.v[l].end(), v.begin(), v.end());
    }
    for (int t = 0; t < T; ++t) {
      const ReferenceSequence& s = *batch[seq_of[t]].seq;
      const int p = pos_of[t];
      const int first = c.sliding_window > 0 ? std::max(0, p - c.sliding_window + 1) : 0;
      const float* qt = q.data() + static_cast<size_t>(t) * q_dim;
      for (int hh = 0; hh < H; ++hh) {
        const int kvh = hh / group;  // GQA: kv head kvh serves query heads [kvh*group, (kvh+1)*group)
        std::vector<float> scores(p + 1 - first);
        float max_score = -std::numeric_limits<float>::infinity();
        for (int j = first; j <= p; ++j) {
          const float* kj = s.k[l].data() + static_cast<size_t>(j) * kv_dim + kvh * Dh;
          float dot = 0.f;
          for (int d = 0; d < Dh; ++d) dot += qt[hh * Dh + d] * kj[d];
          scores[j - first] = dot * scale;
          max_score = std::max(max_score, scores[j - first]);
        }
        float denom = 0.f;
        for (float& sc : scores) denom += (sc = std::exp(sc - max_score));
        float* out = attn.data() + hh * Dh;
        std::fill(out, out + Dh, 0.f);
        for (int j = first; j <= p; ++j) {
          const float pj = scores[j - first] / denom;
          const float* vj = s.v[l].data() + static_cast<size_t>(j) * kv_dim + kvh * Dh;
          for (int d = 0; d < Dh; ++d) out[d] += pj * vj[d];
        }
      }
      matvec(L.wo, attn.data(), y.data(), L.bo);
      float* ht = h.data() + static_cast<size_t>(t) * D;
      for (int i = 0; i < D; ++i) ht[i] += y[i];
    }
    // ---- feed-forward: routed experts (+ shared expert) or a dense MLP ----
    for (int t = 0; t < T; ++t) {
      float* ht = h.data() + static_cast<size_t>(t) * D;
      norm(c, L.ffn_norm, L.ffn_norm_bias, ht, x.data());
      std::fill(y.begin(), y.end(), 0.f);
      if (L.is_moe) {
        std::vector<float> logits(c.n_expert);  // [E]
        matvec(L.router, x.data(), logits.data());
        router_logits_[l].insert(router_logits_[l].end(), logits.begin(), logits.end());
        const RouterChoice choice = route_token(c, logits.data());
        for (int e = 0; e < c.n_expert; ++e) {  // ascending expert order, as transformers accumulates
          for (int j = 0; j < choice.k; ++j) {
            if (choice.expert[j] != e) continue;
            mlp(L.experts[e], x.data(), tmp.data());
            for (int i = 0; i < D; ++i) y[i] += choice.weight[j] * tmp[i];
          }
        }
        if (!L.shared.gate.empty()) {
          mlp(L.shared, x.data(), tmp.data());
          float g = 1.0f;
          if (!L.shared_gate.empty()) {
            float z = 0.f;
            matvec(L.shared_gate, x.data(), &z);
            g = 1.0f / (1.0f + std::exp(-z));
          }
          for (int i = 0; i < D; ++i) y[i] += g * tmp[i];
        }
      } else {
        mlp(L.dense, x.data(), y.data());
      }
      for (int i = 0; i < D; ++i) ht[i] += y[i];
    }
  }

  // ---- final norm and lm_head for the rows the caller wants ----
  std::vector<float> logits;
  int t0 = 0;
  for (ReferenceBatchEntry& e : batch) {
    const int n = static_cast<int>(e.tokens.size());
    for (int i = e.all_logits ? 0 : n - 1; i < n; ++i) {
      norm(c, w_.final_norm, w_.final_norm_bias, h.data() + static_cast<size_t>(t0 + i) * D, x.data());
      const size_t off = logits.size();
      logits.resize(off + V);
      matvec(w_.lm_head, x.data(), logits.data() + off, w_.lm_head_bias);
    }
    t0 += n;
    e.seq->n_past += n;
  }
  return logits;
}

}  // namespace ferry

namespace ferry {

int ReferenceModel::add_sequence() {
  for (size_t i = 0; i < sequences_.size(); ++i)
    if (!sequences_[i]) {
      sequences_[i] = std::make_unique<ReferenceSequence>(new_sequence());
      return static_cast<int>(i);
    }
  sequences_.push_back(std::make_unique<ReferenceSequence>(new_sequence()));
  return static_cast<int>(sequences_.size() - 1);
}

void ReferenceModel::free_sequence(int seq) {
  FERRY_ASSERT(seq >= 0 && seq < static_cast<int>(sequences_.size()) && sequences_[seq]);
  sequences_[seq].reset();
}

int ReferenceModel::sequence_length(int seq) const {
  FERRY_ASSERT(seq >= 0 && seq < static_cast<int>(sequences_.size()) && sequences_[seq]);
  return sequences_[seq]->n_past;
}

std::vector<float> ReferenceModel::forward(std::span<const ForwardItem> items) {
  std::vector<ReferenceBatchEntry> batch;
  batch.reserve(items.size());
  for (const ForwardItem& it : items) {
    FERRY_ASSERT(it.seq >= 0 && it.seq < static_cast<int>(sequences_.size()) && sequences_[it.seq]);
    batch.push_back({sequences_[it.seq].get(), it.tokens, it.all_logits});
  }
  return forward(std::span<ReferenceBatchEntry>(batch));
}

}  // namespace ferry
