// The hierarchical roofline model (MoE-Lightning §3): per-level roofs, the cross-level (link) roof,
// operational intensities of decode attention and of the MoE FFN, and the turning points that decide
// where work runs. Everything here is a closed-form function of the model shape and the profile, so the
// tests check it against hand-computed values.
//
// Intensity I = FLOPs / bytes read. Attainable FLOP/s at a level: min(P_peak, B·I) (Eq. 7-8).
#pragma once
#include <string>
#include <vector>

#include "ferry/planner/hardware_profile.h"
#include "ferry/planner/policy.h"

namespace ferry {
struct ModelConfig;
}

namespace ferry::planner {

// What the planner needs of a model: sizes in parameters (not bytes) and per-token widths.
struct ModelShape {
  std::string name;
  int n_layer = 0;
  int n_moe_layer = 0;
  int n_expert = 0;                            // E
  int top_k = 0;                               // K
  int d_model = 0;                             // D
  int d_expert = 0;                            // F
  int n_head = 0;                              // H
  int n_vocab = 0;                             // V
  std::vector<bool> layer_is_moe;              // [L]
  std::vector<double> dense_params_per_layer;  // [L]: attention + norms + router + shared expert or dense MLP
  double expert_params = 0;                    // one routed expert: 3·D·F
  double embedding_params = 0;                 // V·D (looked up on the host)
  double lm_head_params = 0;                   // V·D
  double kv_elems_per_token_layer = 0;         // K and V (MLA: latent + rope key)
  double attn_flops_per_position = 0;          // one query token against one cached position, one layer
  double qkv_width = 0;                        // elements per token sent to CPU attention (q + new K/V)
  double attn_out_width = 0;                   // elements per token returned from CPU attention

  static ModelShape from_config(const ModelConfig& cfg, const std::string& name);

  double expert_bytes(Precision p, int group_size = kQuantGroup) const {
    return expert_params * bytes_per_element(p, group_size);
  }
  double kv_bytes_per_token_layer(Precision p) const {
    return kv_elems_per_token_layer * bytes_per_element(p);
  }
  double dense_params_total() const;
  double expert_params_total() const { return expert_params * n_expert * n_moe_layer; }
};

// FLOPs and bytes of one piece of work.
struct Traffic {
  double flops = 0;
  double bytes = 0;
  double intensity() const { return bytes > 0 ? flops / bytes : 0; }
};

// Expected number of distinct experts that `tokens` tokens route to, each picking top_k of n_expert
// uniformly: E·(1 - (1 - K/E)^tokens). Small batches touch few experts; large ones touch all.
double expected_distinct_experts(int n_expert, int top_k, double tokens);

// Decode attention of one query token over `ctx` cached positions in one layer: FLOPs of QKᵀ and PV,
// bytes of the K and V read at the cache precision. Its intensity does not depend on ctx or the batch.
Traffic decode_attention(const ModelShape& m, double ctx, Precision kv);
double decode_attention_intensity(const ModelShape& m, Precision kv);

// The routed-expert FFN of one layer over `tokens` tokens (gate, up, down of top-k experts each): FLOPs,
// and bytes = the distinct experts' weights at `precision` + bf16 activations in and out.
Traffic moe_ffn(const ModelShape& m, double tokens, Precision precision, int group_size = kQuantGroup);
// Intensity against the weights that cross the link when the batch's experts are streamed: FLOPs of
// `tokens` tokens over the bytes of the distinct experts they touch (I^j of the paper).
double moe_ffn_link_intensity(const ModelShape& m, double tokens, Precision precision,
                              int group_size = kQuantGroup);

// A roofline: attainable = min(peak, bandwidth · I).
struct Roof {
  double peak_flops = 0;
  double bandwidth = 0;  // bytes/s
  double attainable(double intensity) const;
  double ridge() const { return bandwidth > 0 ? peak_flops / bandwidth : 0; }
};

struct HrmRoofs {
  bool has_gpu = false;
  Roof gpu;        // level i
  Roof cpu;        // level j
  double h2d = 0;  // cross-level roof CPU->GPU, bytes/s
  double ssd = 0;  // SSD->DRAM, bytes/s
  static HrmRoofs from(const HardwareProfile& hw);
};

// P1 (Eq. 9): below this CPU-level intensity, moving the data to the GPU never beats computing it where
// it lies. Solves I = min(P_c, B_c·I) / B_cg; 0 when the link is as fast as CPU memory.
double turning_point_p1(const HrmRoofs& r);
// P2 (Eq. 10): the CPU-level intensity above which the work is bound by the GPU kernel (attainable at
// `gpu_intensity`) rather than by the link.
double turning_point_p2(const HrmRoofs& r, double gpu_intensity);
// Balance point (Eq. 11): the batch N at which the link delivers the streamed experts exactly as fast as
// the GPU kernel at micro-batch μ consumes them (B_g·I^i(μ) = B_cg·I^j(N)); searched over N.
double balance_batch(const ModelShape& m, const HrmRoofs& r, double micro_batch, Precision precision);

}  // namespace ferry::planner
