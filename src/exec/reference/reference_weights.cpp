// Loads every weight of a checkpoint as fp32 for the reference forward.
#include "ferry/reference_model.h"

namespace ferry {

namespace {

struct Loader {
  const Checkpoint& ckpt;

  MatrixF32 matrix(WeightKind kind, int layer = -1, int expert = -1) const {
    WeightId id{kind, layer, expert};
    TensorView view = ckpt.view(id);
    MatrixF32 m;
    m.rows = static_cast<int>(view.shape.at(0));
    m.cols = view.shape.size() > 1 ? static_cast<int>(view.shape[1]) : 1;
    m.data = ckpt.f32(id);
    return m;
  }
  std::vector<float> vec(WeightKind kind, int layer = -1) const { return ckpt.f32({kind, layer, -1}); }
  std::vector<float> optional_vec(WeightKind kind, int layer = -1) const {
    WeightId id{kind, layer, -1};
    return ckpt.has(id) ? ckpt.f32(id) : std::vector<float>{};
  }
  MlpF32 mlp(WeightKind gate, WeightKind up, WeightKind down, int layer, int expert = -1) const {
    return {matrix(gate, layer, expert), matrix(up, layer, expert), matrix(down, layer, expert)};
  }
};

}  // namespace

WeightsF32 load_weights_f32(const Checkpoint& ckpt) {
  const ModelConfig& c = ckpt.config();
  Loader ld{ckpt};
  WeightsF32 w;
  w.config = c;
  w.embed = ld.matrix(WeightKind::Embed);
  w.final_norm = ld.vec(WeightKind::FinalNorm);
  w.final_norm_bias = ld.optional_vec(WeightKind::FinalNormBias);
  w.lm_head = ld.matrix(WeightKind::LmHead);
  w.lm_head_bias = ld.optional_vec(WeightKind::LmHeadBias);
  w.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    LayerF32& L = w.layers[l];
    L.attn_norm = ld.vec(WeightKind::AttnNorm, l);
    L.attn_norm_bias = ld.optional_vec(WeightKind::AttnNormBias, l);
    L.ffn_norm = ld.vec(WeightKind::FfnNorm, l);
    L.ffn_norm_bias = ld.optional_vec(WeightKind::FfnNormBias, l);
    L.wq = ld.matrix(WeightKind::Wq, l);
    L.wk = ld.matrix(WeightKind::Wk, l);
    L.wv = ld.matrix(WeightKind::Wv, l);
    L.wo = ld.matrix(WeightKind::Wo, l);
    L.bq = ld.optional_vec(WeightKind::Bq, l);
    L.bk = ld.optional_vec(WeightKind::Bk, l);
    L.bv = ld.optional_vec(WeightKind::Bv, l);
    L.bo = ld.optional_vec(WeightKind::Bo, l);
    if (c.qk_norm != QkNorm::None) {
      L.q_norm = ld.vec(WeightKind::QNorm, l);
      L.k_norm = ld.vec(WeightKind::KNorm, l);
    }
    L.is_moe = c.layer_is_moe.at(l);
    if (L.is_moe) {
      L.router = ld.matrix(WeightKind::Router, l);
      L.experts.reserve(c.n_expert);
      for (int e = 0; e < c.n_expert; ++e)
        L.experts.push_back(ld.mlp(WeightKind::ExpertGate, WeightKind::ExpertUp, WeightKind::ExpertDown, l, e));
      if (c.d_shared > 0) {
        L.shared = ld.mlp(WeightKind::SharedGate, WeightKind::SharedUp, WeightKind::SharedDown, l);
        if (c.shared_expert_gated) L.shared_gate = ld.matrix(WeightKind::SharedExpertGate, l);
      }
    } else {
      L.dense = ld.mlp(WeightKind::DenseGate, WeightKind::DenseUp, WeightKind::DenseDown, l);
    }
  }
  return w;
}

}  // namespace ferry
