// Packs a model's weights for the cpu target, one tensor at a time.
#include "exec/cpu/cpu_weights.h"

#include <string>

#include "ferry/error.h"

namespace ferry::cpu_target {

namespace {

cpu::QuantOptions quant_options(int group_size) {
  cpu::QuantOptions q;
  q.group_size = group_size;
  return q;
}

struct Packer {
  const WeightSource& src;
  const ModelConfig& c;

  std::vector<int64_t> shape(const WeightId& id) const { return canonical_shape(c, id); }

  cpu::PackedMatrix matrix(const WeightId& id, DType dtype, int group_size = cpu::kDefaultGroupSize) const {
    const std::vector<int64_t> s = shape(id);
    const int rows = static_cast<int>(s.at(0)), cols = s.size() > 1 ? static_cast<int>(s[1]) : 1;
    const std::vector<float> w = src.f32(id);
    FERRY_ASSERT(w.size() == static_cast<size_t>(rows) * cols);
    return cpu::pack_matrix(w.data(), rows, cols, dtype, quant_options(group_size));
  }
  std::vector<float> vec(WeightKind kind, int layer = -1) const { return src.f32({kind, layer, -1}); }
  std::vector<float> optional_vec(WeightKind kind, int layer = -1) const {
    const WeightId id{kind, layer, -1};
    return src.has(id) ? src.f32(id) : std::vector<float>{};
  }
  PackedMlp mlp(WeightKind gate, WeightKind up, WeightKind down, int layer, int expert, DType dtype,
                int group_size) const {
    PackedMlp m;
    m.gate = matrix({gate, layer, expert}, dtype, group_size);
    m.up = matrix({up, layer, expert}, dtype, group_size);
    m.down = matrix({down, layer, expert}, dtype, group_size);
    return m;
  }

  // wq, wk, wv stacked into one [H*Dh + 2*Hkv*Dh, D] matrix, so one matmul computes all three.
  void qkv(int layer, CpuLayerWeights& L) const {
    std::vector<float> w;
    int rows = 0;
    for (WeightKind kind : {WeightKind::Wq, WeightKind::Wk, WeightKind::Wv}) {
      const std::vector<float> part = src.f32({kind, layer, -1});
      w.insert(w.end(), part.begin(), part.end());
      rows += static_cast<int>(shape({kind, layer, -1}).at(0));
    }
    L.wqkv = cpu::pack_matrix(w.data(), rows, c.d_model, DType::BF16);
    const WeightKind bias[3] = {WeightKind::Bq, WeightKind::Bk, WeightKind::Bv};
    bool any_bias = false;
    for (WeightKind kind : bias) any_bias = any_bias || src.has({kind, layer, -1});
    if (!any_bias) return;
    for (WeightKind kind : bias) {
      std::vector<float> b = optional_vec(kind, layer);
      if (b.empty()) b.assign(shape({kind, layer, -1}).at(0), 0.0f);
      L.bqkv.insert(L.bqkv.end(), b.begin(), b.end());
    }
  }
};

void check_options(const CpuModelOptions& o) {
  if (o.expert_dtype != DType::BF16 && o.expert_dtype != DType::I8 && o.expert_dtype != DType::I4)
    throw Error("the cpu target's expert precision must be bf16, int8 or int4, got " +
                std::string(dtype_name(o.expert_dtype)));
  if (o.kv_dtype != DType::BF16 && o.kv_dtype != DType::F16 && o.kv_dtype != DType::F32)
    throw Error("the cpu target's KV cache dtype must be bf16, f16 or f32, got " +
                std::string(dtype_name(o.kv_dtype)));
  if ((o.expert_dtype == DType::I8 || o.expert_dtype == DType::I4) &&
      (o.group_size < 32 || o.group_size > 128 || o.group_size % 16 != 0))
    throw Error("the quantisation group size must be 32..128 and a multiple of 16, got " +
                std::to_string(o.group_size));
  if (o.kv_block_size <= 0 || o.kv_block_size % 16 != 0)
    throw Error("the KV block size must be a positive multiple of 16 tokens, got " +
                std::to_string(o.kv_block_size));
}

}  // namespace

CpuWeights pack_globals(const WeightSource& source, const CpuModelOptions& options) {
  check_options(options);
  const ModelConfig& c = source.config();
  if (c.attention != AttentionKind::Gqa)
    throw Error("the cpu target does not support " + std::string(family_name(c.family)) +
                " (multi-head latent attention) yet; `ferry plan` and `ferry inspect` work for it");
  Packer pk{source, c};
  CpuWeights w;
  w.config = c;
  std::vector<float> embed = pk.vec(WeightKind::Embed);
  bool bf16_exact = true;
  for (float v : embed) bf16_exact = bf16_exact && bf16_to_f32(f32_to_bf16(v)) == v;
  if (bf16_exact) {
    w.embed_bf16.resize(embed.size());
    for (size_t i = 0; i < embed.size(); ++i) w.embed_bf16[i] = f32_to_bf16(embed[i]);
  } else {
    w.embed_f32 = std::move(embed);
  }
  w.final_norm = pk.vec(WeightKind::FinalNorm);
  w.final_norm_bias = pk.optional_vec(WeightKind::FinalNormBias);
  w.lm_head = pk.matrix({WeightKind::LmHead, -1, -1}, DType::BF16);
  w.lm_head_bias = pk.optional_vec(WeightKind::LmHeadBias);
  w.layers.resize(c.n_layer);
  return w;
}

PackedMlp pack_expert(const WeightSource& source, int layer, int expert, DType dtype, int group_size) {
  Packer pk{source, source.config()};
  return pk.mlp(WeightKind::ExpertGate, WeightKind::ExpertUp, WeightKind::ExpertDown, layer, expert, dtype,
                group_size);
}

CpuLayerWeights pack_layer(const WeightSource& source, const CpuModelOptions& options, int l, bool with_experts) {
  const ModelConfig& c = source.config();
  Packer pk{source, c};
  CpuLayerWeights L;
  L.attn_norm = pk.vec(WeightKind::AttnNorm, l);
  L.attn_norm_bias = pk.optional_vec(WeightKind::AttnNormBias, l);
  L.ffn_norm = pk.vec(WeightKind::FfnNorm, l);
  L.ffn_norm_bias = pk.optional_vec(WeightKind::FfnNormBias, l);
  pk.qkv(l, L);
  L.wo = pk.matrix({WeightKind::Wo, l, -1}, DType::BF16);
  L.bo = pk.optional_vec(WeightKind::Bo, l);
  if (c.qk_norm != QkNorm::None) {
    L.q_norm = pk.vec(WeightKind::QNorm, l);
    L.k_norm = pk.vec(WeightKind::KNorm, l);
  }
  L.is_moe = c.layer_is_moe.at(l);
  if (L.is_moe) {
    L.router = pk.matrix({WeightKind::Router, l, -1}, DType::F32);
    if (with_experts) {
      L.experts.reserve(c.n_expert);
      for (int e = 0; e < c.n_expert; ++e)
        L.experts.push_back(pack_expert(source, l, e, options.expert_dtype, options.group_size));
    }
    if (c.d_shared > 0) {
      L.shared = pk.mlp(WeightKind::SharedGate, WeightKind::SharedUp, WeightKind::SharedDown, l, -1, DType::BF16,
                        cpu::kDefaultGroupSize);
      if (c.shared_expert_gated) L.shared_gate = pk.matrix({WeightKind::SharedExpertGate, l, -1}, DType::F32);
    }
  } else {
    L.dense = pk.mlp(WeightKind::DenseGate, WeightKind::DenseUp, WeightKind::DenseDown, l, -1, DType::BF16,
                     cpu::kDefaultGroupSize);
  }
  return L;
}

CpuWeights load_cpu_weights(const WeightSource& source, const CpuModelOptions& options) {
  if (const experts::StoreManifest* store = source.packed_store()) {
    check_options(options);
    if (CpuWeights w; load_from_store(*store, options, w)) return w;
  }
  CpuWeights w = pack_globals(source, options);
  for (int l = 0; l < w.config.n_layer; ++l) w.layers[l] = pack_layer(source, options, l, true);
  return w;
}

namespace {
const float* or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }
}  // namespace

MlpWeights view_of(const MlpWeights& m) {
  MlpWeights v;
  if (m.empty()) return v;
  v.gate = cpu::packed_view(m.gate);
  v.up = cpu::packed_view(m.up);
  v.down = cpu::packed_view(m.down);
  return v;
}

LayerWeights view_of(const CpuLayerWeights& L) {
  LayerWeights v;
  v.attn_norm = or_null(L.attn_norm);
  v.attn_norm_bias = or_null(L.attn_norm_bias);
  v.ffn_norm = or_null(L.ffn_norm);
  v.ffn_norm_bias = or_null(L.ffn_norm_bias);
  v.wqkv = cpu::packed_view(L.wqkv);
  v.bqkv = or_null(L.bqkv);
  v.wo = cpu::packed_view(L.wo);
  v.bo = or_null(L.bo);
  v.q_norm = or_null(L.q_norm);
  v.k_norm = or_null(L.k_norm);
  v.is_moe = L.is_moe;
  if (L.router.rows) v.router = cpu::packed_view(L.router);
  v.shared = view_of(L.shared);
  if (L.shared_gate.rows) v.shared_gate = cpu::packed_view(L.shared_gate);
  v.dense = view_of(L.dense);
  return v;
}

ModelWeights view_of(const CpuWeights& w) {
  ModelWeights v;
  if (!w.embed_bf16.empty()) {
    v.embed = w.embed_bf16.data();
    v.embed_dtype = DType::BF16;
  } else {
    v.embed = w.embed_f32.data();
    v.embed_dtype = DType::F32;
  }
  for (const CpuLayerWeights& L : w.layers) v.layers.push_back(view_of(L));
  v.final_norm = or_null(w.final_norm);
  v.final_norm_bias = or_null(w.final_norm_bias);
  v.lm_head = cpu::packed_view(w.lm_head);
  v.lm_head_bias = or_null(w.lm_head_bias);
  return v;
}

size_t CpuWeights::expert_bytes() const {
  size_t n = 0;
  for (const CpuLayerWeights& L : layers)
    for (const PackedMlp& m : L.experts) n += m.bytes();
  return n;
}

size_t CpuWeights::dense_bytes() const {
  size_t n = lm_head.weight_bytes();
  for (const CpuLayerWeights& L : layers) {
    n += L.wqkv.weight_bytes() + L.wo.weight_bytes() + L.router.weight_bytes() + L.shared_gate.weight_bytes();
    n += L.shared.bytes() + L.dense.bytes();
  }
  return n;
}

size_t CpuWeights::bytes() const {
  return embed_bf16.size() * 2 + embed_f32.size() * 4 + dense_bytes() + expert_bytes();
}

}  // namespace ferry::cpu_target

namespace ferry {

namespace {

class CheckpointWeightSource : public WeightSource {
 public:
  explicit CheckpointWeightSource(const Checkpoint& ckpt) : ckpt_(ckpt) {}
  const ModelConfig& config() const override { return ckpt_.config(); }
  bool has(const WeightId& id) const override { return ckpt_.has(id); }
  std::vector<float> f32(const WeightId& id) const override { return ckpt_.f32(id); }
  const experts::StoreManifest* packed_store() const override { return ckpt_.packed_store(); }

 private:
  const Checkpoint& ckpt_;
};

}  // namespace

std::unique_ptr<WeightSource> checkpoint_weight_source(const Checkpoint& checkpoint) {
  return std::make_unique<CheckpointWeightSource>(checkpoint);
}

void apply_expert_quantisation(WeightsF32& weights, DType expert_dtype, int group_size) {
  cpu::QuantOptions q;
  q.group_size = group_size;
  for (LayerF32& L : weights.layers)
    for (MlpF32& m : L.experts)
      for (MatrixF32* w : {&m.gate, &m.up, &m.down}) {
        // The same packing the cpu target does at load, then back to f32.
        const cpu::PackedMatrix packed = cpu::pack_matrix(w->data.data(), w->rows, w->cols, expert_dtype, q);
        cpu::dequantize(packed, w->data.data());
      }
}

}  // namespace ferry
