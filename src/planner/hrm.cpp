#include "ferry/planner/hrm.h"

#include <algorithm>
#include <cmath>

#include "ferry/model_config.h"

namespace ferry::planner {

ModelShape ModelShape::from_config(const ModelConfig& c, const std::string& name) {
  ModelShape m;
  m.name = name;
  m.n_layer = c.n_layer;
  m.n_expert = c.n_expert;
  m.top_k = c.n_expert_used;
  m.d_model = c.d_model;
  m.d_expert = c.d_expert;
  m.n_head = c.n_head;
  m.n_vocab = c.n_vocab;
  m.expert_params = static_cast<double>(c.params_per_expert());
  m.embedding_params = static_cast<double>(c.n_vocab) * c.d_model;
  m.lm_head_params = static_cast<double>(c.n_vocab) * c.d_model;
  m.kv_elems_per_token_layer = static_cast<double>(c.kv_elems_per_token_layer());

  const double d = c.d_model;
  const double attention = static_cast<double>(c.params_attention_layer());
  const double norms = 2 * d;
  m.layer_is_moe.resize(c.n_layer);
  m.dense_params_per_layer.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    bool moe = l < static_cast<int>(c.layer_is_moe.size()) ? c.layer_is_moe[l] : c.n_expert > 0;
    m.layer_is_moe[l] = moe;
    double mlp = moe ? static_cast<double>(c.n_expert) * d                         // router
                           + 3 * d * c.d_shared + (c.shared_expert_gated ? d : 0)  // shared expert
                     : 3 * d * c.d_ff_dense;
    m.dense_params_per_layer[l] = attention + norms + mlp;
    m.n_moe_layer += moe ? 1 : 0;
  }

  if (c.attention == AttentionKind::Mla) {
    // Decode attention in the absorbed form: scores over the latent + rope key, values over the latent.
    double latent = c.kv_lora_rank;
    double rope = c.qk_rope_head_dim;
    m.attn_flops_per_position = 2.0 * c.n_head * (latent + rope) + 2.0 * c.n_head * latent;
    m.attn_out_width = static_cast<double>(c.n_head) * c.v_head_dim;
  } else {
    m.attn_flops_per_position = 4.0 * c.n_head * c.head_dim;  // QKᵀ and PV, 2 FLOPs per multiply-add
    m.attn_out_width = static_cast<double>(c.n_head) * c.head_dim;
  }
  m.qkv_width = static_cast<double>(c.q_dim()) + m.kv_elems_per_token_layer;
  return m;
}

double ModelShape::dense_params_total() const {
  double total = lm_head_params;
  for (double p : dense_params_per_layer) total += p;
  return total;
}

double expected_distinct_experts(int n_expert, int top_k, double tokens) {
  if (n_expert <= 0 || tokens <= 0) return 0;
  double e = n_expert;
  double k = std::min(top_k, n_expert);
  return e * (1.0 - std::pow(1.0 - k / e, tokens));
}

Traffic decode_attention(const ModelShape& m, double ctx, Precision kv) {
  return {m.attn_flops_per_position * ctx, m.kv_bytes_per_token_layer(kv) * ctx};
}

double decode_attention_intensity(const ModelShape& m, Precision kv) {
  return m.attn_flops_per_position / m.kv_bytes_per_token_layer(kv);
}

Traffic moe_ffn(const ModelShape& m, double tokens, Precision precision, int group_size) {
  Traffic t;
  t.flops = tokens * m.top_k * 2.0 * m.expert_params;
  double activations = tokens * m.d_model * 2.0 * 2;  // bf16 in and out
  t.bytes =
      expected_distinct_experts(m.n_expert, m.top_k, tokens) * m.expert_bytes(precision, group_size) + activations;
  return t;
}

double moe_ffn_link_intensity(const ModelShape& m, double tokens, Precision precision, int group_size) {
  double streamed = expected_distinct_experts(m.n_expert, m.top_k, tokens) * m.expert_bytes(precision, group_size);
  return streamed > 0 ? tokens * m.top_k * 2.0 * m.expert_params / streamed : 0;
}

double Roof::attainable(double intensity) const {
  return std::min(peak_flops, bandwidth * intensity);
}

HrmRoofs HrmRoofs::from(const HardwareProfile& hw) {
  HrmRoofs r;
  r.has_gpu = hw.has_gpu();
  if (r.has_gpu) r.gpu = {hw.gpu->peak.bf16_tflops * 1e12, hw.gpu->bandwidth_gbps * 1e9};
  r.cpu = {hw.cpu.peak.bf16_tflops * 1e12, hw.cpu.bandwidth_gbps * 1e9};
  r.h2d = hw.links.h2d_gbps * 1e9;
  r.ssd = hw.has_ssd() ? hw.links.ssd_read_gbps * 1e9 : 0;
  return r;
}

double turning_point_p1(const HrmRoofs& r) {
  if (r.h2d <= 0) return INFINITY;
  if (r.h2d >= r.cpu.bandwidth) return 0;  // the link roof is never below the CPU roof
  // B_cg·I < B_c·I everywhere, so the link can only win where the CPU is compute-bound: B_cg·I > P_c.
  return r.cpu.peak_flops / r.h2d;
}

double turning_point_p2(const HrmRoofs& r, double gpu_intensity) {
  if (r.h2d <= 0) return INFINITY;
  return r.gpu.attainable(gpu_intensity) / r.h2d;
}

double balance_batch(const ModelShape& m, const HrmRoofs& r, double micro_batch, Precision precision) {
  double gpu_rate = r.gpu.bandwidth * moe_ffn(m, micro_batch, precision).intensity();
  auto link_rate = [&](double n) { return r.h2d * moe_ffn_link_intensity(m, n, precision); };
  double lo = 1, hi = 1;
  while (link_rate(hi) < gpu_rate) {
    hi *= 2;
    if (hi > 1e12) return INFINITY;
  }
  if (hi == 1) return 1;
  lo = hi / 2;
  for (int i = 0; i < 60; ++i) {
    double mid = 0.5 * (lo + hi);
    (link_rate(mid) < gpu_rate ? lo : hi) = mid;
  }
  return hi;
}

}  // namespace ferry::planner
