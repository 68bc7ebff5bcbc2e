#include "exec/pipeline/pipeline_weights.h"

namespace ferry::exec {

namespace {

cpu::PackedMatrix pack(const MatrixF32& m, DType dtype) {
  if (m.empty()) return {};
  return cpu::pack_matrix(m.data.data(), m.rows, m.cols, dtype);
}

PackedMlp pack_mlp(const MlpF32& m, DType dtype) {
  if (m.gate.empty()) return {};
  return PackedMlp{pack(m.gate, dtype), pack(m.up, dtype), pack(m.down, dtype)};
}

}  // namespace

size_t PackedLayer::dense_bytes() const {
  size_t n = wq.weight_bytes() + wk.weight_bytes() + wv.weight_bytes() + wo.weight_bytes() + router.weight_bytes() +
             shared_gate.weight_bytes();
  if (!shared.empty()) n += shared.bytes();
  if (!dense.empty()) n += dense.bytes();
  return n;
}

size_t PackedWeights::dense_bytes() const {
  size_t n = embed.size() * sizeof(float) + lm_head.weight_bytes();
  for (const PackedLayer& l : layers) n += l.dense_bytes();
  return n;
}

PackedWeights pack_weights(const WeightsF32& w, DType expert_dtype) {
  PackedWeights p;
  p.config = w.config;
  p.embed = w.embed.data;
  p.final_norm = w.final_norm;
  p.final_norm_bias = w.final_norm_bias;
  p.lm_head = pack(w.lm_head, DType::BF16);
  p.lm_head_bias = w.lm_head_bias;
  for (const LayerF32& l : w.layers) {
    PackedLayer o;
    o.attn_norm = l.attn_norm;
    o.attn_norm_bias = l.attn_norm_bias;
    o.ffn_norm = l.ffn_norm;
    o.ffn_norm_bias = l.ffn_norm_bias;
    o.wq = pack(l.wq, DType::BF16);
    o.wk = pack(l.wk, DType::BF16);
    o.wv = pack(l.wv, DType::BF16);
    o.wo = pack(l.wo, DType::BF16);
    o.bq = l.bq;
    o.bk = l.bk;
    o.bv = l.bv;
    o.bo = l.bo;
    o.q_norm = l.q_norm;
    o.k_norm = l.k_norm;
    o.is_moe = l.is_moe;
    o.router = pack(l.router, DType::F32);
    for (const MlpF32& e : l.experts) o.experts.push_back(pack_mlp(e, expert_dtype));
    o.shared = pack_mlp(l.shared, DType::BF16);
    o.shared_gate = pack(l.shared_gate, DType::F32);
    o.dense = pack_mlp(l.dense, DType::BF16);
    p.layers.push_back(std::move(o));
  }
  return p;
}

}  // namespace ferry::exec
