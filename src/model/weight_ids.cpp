// The canonical weights of the generic MoE decoder: which ones a config implies and their shapes.
#include <string>

#include "ferry/checkpoint.h"
#include "ferry/error.h"

namespace ferry {

std::string_view weight_kind_name(WeightKind k) {
  switch (k) {
    case WeightKind::Embed:
      return "Embed";
    case WeightKind::FinalNorm:
      return "FinalNorm";
    case WeightKind::FinalNormBias:
      return "FinalNormBias";
    case WeightKind::LmHead:
      return "LmHead";
    case WeightKind::LmHeadBias:
      return "LmHeadBias";
    case WeightKind::AttnNorm:
      return "AttnNorm";
    case WeightKind::AttnNormBias:
      return "AttnNormBias";
    case WeightKind::FfnNorm:
      return "FfnNorm";
    case WeightKind::FfnNormBias:
      return "FfnNormBias";
    case WeightKind::Wq:
      return "Wq";
    case WeightKind::Wk:
      return "Wk";
    case WeightKind::Wv:
      return "Wv";
    case WeightKind::Wo:
      return "Wo";
    case WeightKind::Bq:
      return "Bq";
    case WeightKind::Bk:
      return "Bk";
    case WeightKind::Bv:
      return "Bv";
    case WeightKind::Bo:
      return "Bo";
    case WeightKind::QNorm:
      return "QNorm";
    case WeightKind::KNorm:
      return "KNorm";
    case WeightKind::Router:
      return "Router";
    case WeightKind::ExpertGate:
      return "ExpertGate";
    case WeightKind::ExpertUp:
      return "ExpertUp";
    case WeightKind::ExpertDown:
      return "ExpertDown";
    case WeightKind::SharedGate:
      return "SharedGate";
    case WeightKind::SharedUp:
      return "SharedUp";
    case WeightKind::SharedDown:
      return "SharedDown";
    case WeightKind::SharedExpertGate:
      return "SharedExpertGate";
    case WeightKind::DenseGate:
      return "DenseGate";
    case WeightKind::DenseUp:
      return "DenseUp";
    case WeightKind::DenseDown:
      return "DenseDown";
    case WeightKind::WqA:
      return "WqA";
    case WeightKind::QANorm:
      return "QANorm";
    case WeightKind::WqB:
      return "WqB";
    case WeightKind::WkvA:
      return "WkvA";
    case WeightKind::KvANorm:
      return "KvANorm";
    case WeightKind::WkvB:
      return "WkvB";
  }
  return "unknown";
}

std::string weight_id_string(const WeightId& id) {
  std::string s(weight_kind_name(id.kind));
  if (id.layer >= 0) {
    s += " (layer " + std::to_string(id.layer);
    if (id.expert >= 0) s += ", expert " + std::to_string(id.expert);
    s += ")";
  }
  return s;
}

std::string_view expert_layout_name(ExpertLayout layout) {
  switch (layout) {
    case ExpertLayout::PerExpert:
      return "per-expert";
    case ExpertLayout::Fused:
      return "fused gate_up_proj/down_proj";
    case ExpertLayout::Stacked:
      return "stacked w1/v1/w2";
  }
  return "unknown";
}

bool is_routed_expert_tensor(std::string_view tensor_name) {
  // ".experts." matches mlp.experts.*, block_sparse_moe.experts.* and DBRX's ffn.experts.mlp.*, but not
  // DeepSeek's mlp.shared_experts.* nor Qwen's mlp.shared_expert.*.
  return tensor_name.find(".experts.") != std::string_view::npos;
}

std::vector<int64_t> canonical_shape(const ModelConfig& c, const WeightId& id) {
  const int64_t D = c.d_model, V = c.n_vocab, q = c.q_dim(), kv = c.kv_dim();
  const int64_t F = c.d_expert, Fs = c.d_shared, Fd = c.d_ff_dense;
  const int64_t H = c.n_head, R = c.qk_rope_head_dim, Dn = c.qk_nope_head_dim, Dv = c.v_head_dim;
  switch (id.kind) {
    case WeightKind::Embed:
    case WeightKind::LmHead:
      return {V, D};
    case WeightKind::LmHeadBias:
      return {V};
    case WeightKind::FinalNorm:
    case WeightKind::FinalNormBias:
    case WeightKind::AttnNorm:
    case WeightKind::AttnNormBias:
    case WeightKind::FfnNorm:
    case WeightKind::FfnNormBias:
    case WeightKind::Bo:
      return {D};
    case WeightKind::Wq:
      return {q, D};
    case WeightKind::Wk:
    case WeightKind::Wv:
      return {kv, D};
    case WeightKind::Wo:
      return {D, c.attention == AttentionKind::Mla ? H * Dv : q};
    case WeightKind::Bq:
      return {q};
    case WeightKind::Bk:
    case WeightKind::Bv:
      return {kv};
    case WeightKind::QNorm:
      return {c.qk_norm == QkNorm::Full ? q : c.head_dim};
    case WeightKind::KNorm:
      return {c.qk_norm == QkNorm::Full ? kv : c.head_dim};
    case WeightKind::Router:
      return {c.n_expert, D};
    case WeightKind::ExpertGate:
    case WeightKind::ExpertUp:
      return {F, D};
    case WeightKind::ExpertDown:
      return {D, F};
    case WeightKind::SharedGate:
    case WeightKind::SharedUp:
      return {Fs, D};
    case WeightKind::SharedDown:
      return {D, Fs};
    case WeightKind::SharedExpertGate:
      return {1, D};
    case WeightKind::DenseGate:
    case WeightKind::DenseUp:
      return {Fd, D};
    case WeightKind::DenseDown:
      return {D, Fd};
    case WeightKind::WqA:
      return {c.q_lora_rank, D};
    case WeightKind::QANorm:
      return {c.q_lora_rank};
    case WeightKind::WqB:
      return {H * (Dn + R), c.q_lora_rank};
    case WeightKind::WkvA:
      return {c.kv_lora_rank + R, D};
    case WeightKind::KvANorm:
      return {c.kv_lora_rank};
    case WeightKind::WkvB:
      return {H * (Dn + Dv), c.kv_lora_rank};
  }
  FERRY_ASSERT_MSG(false, "unhandled WeightKind");
}

std::vector<WeightId> model_weight_ids(const ModelConfig& c) {
  using K = WeightKind;
  const bool layer_norm_bias = c.norm == NormKind::LayerNorm;
  std::vector<WeightId> ids = {{K::Embed}, {K::FinalNorm}};
  if (layer_norm_bias) ids.push_back({K::FinalNormBias});
  ids.push_back({K::LmHead});
  if (c.lm_head_bias) ids.push_back({K::LmHeadBias});
  for (int l = 0; l < c.n_layer; ++l) {
    auto add = [&](K kind) { ids.push_back({kind, l}); };
    add(K::AttnNorm);
    if (layer_norm_bias) add(K::AttnNormBias);
    if (c.attention == AttentionKind::Mla) {
      if (c.q_lora_rank > 0) {
        add(K::WqA);
        add(K::QANorm);
        add(K::WqB);
      } else {
        add(K::Wq);
      }
      add(K::WkvA);
      add(K::KvANorm);
      add(K::WkvB);
      add(K::Wo);
    } else {
      add(K::Wq);
      add(K::Wk);
      add(K::Wv);
      add(K::Wo);
      if (c.qkv_bias) {
        add(K::Bq);
        add(K::Bk);
        add(K::Bv);
      }
      if (c.qk_norm != QkNorm::None) {
        add(K::QNorm);
        add(K::KNorm);
      }
    }
    if (c.o_bias) add(K::Bo);
    add(K::FfnNorm);
    if (layer_norm_bias) add(K::FfnNormBias);
    if (c.layer_is_moe[static_cast<size_t>(l)]) {
      add(K::Router);
      for (int e = 0; e < c.n_expert; ++e)
        for (K kind : {K::ExpertGate, K::ExpertUp, K::ExpertDown}) ids.push_back({kind, l, e});
      if (c.d_shared > 0) {
        add(K::SharedGate);
        add(K::SharedUp);
        add(K::SharedDown);
        if (c.shared_expert_gated) add(K::SharedExpertGate);
      }
    } else {
      add(K::DenseGate);
      add(K::DenseUp);
      add(K::DenseDown);
    }
  }
  return ids;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t TensorView::bytes() const {
  return numel() * dtype_size(dtype);
}

}  // namespace ferry
