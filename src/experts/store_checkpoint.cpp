#include "experts/store_checkpoint.h"

#include <zstd.h>

#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "experts/mapped_file.h"
#include "ferry/error.h"
#include "ferry/experts/chunk_reader.h"
#include "ferry/experts/packed_store.h"
#include "ferry/ops/packed_matrix.h"

namespace ferry::experts {

namespace {

std::vector<float> dequantized(const StoreMatrix& m, const uint8_t* base) {
  std::vector<float> out(static_cast<size_t>(m.rows) * m.cols);
  cpu::dequantize(matrix_view(m, base), out.data());
  return out;
}

class StoreCheckpoint : public Checkpoint {
 public:
  explicit StoreCheckpoint(StoreManifest m) : m_(std::move(m)), dense_(m_.dir / m_.dense_file) {
    // the most precise expert file answers f32() for experts
    for (const ExpertTierFile& f : m_.experts)
      if (!best_ || rank(f.gate.dtype) > rank(best_->gate.dtype)) best_ = &f;
    experts_ = std::make_unique<MappedFile>(m_.dir / best_->file);
  }

  const ModelConfig& config() const override { return m_.config; }
  const std::filesystem::path& dir() const override { return m_.dir; }
  ExpertLayout expert_layout() const override { return ExpertLayout::PerExpert; }
  const StoreManifest* packed_store() const override { return &m_; }

  bool has(const WeightId& id) const override {
    const ModelConfig& c = m_.config;
    const std::string p = "layers." + std::to_string(id.layer) + ".";
    switch (id.kind) {
      case WeightKind::Embed:
      case WeightKind::LmHead: return true;
      case WeightKind::FinalNorm: return m_.vectors.count("final_norm") > 0;
      case WeightKind::FinalNormBias: return m_.vectors.count("final_norm_bias") > 0;
      case WeightKind::LmHeadBias: return m_.vectors.count("lm_head_bias") > 0;
      case WeightKind::AttnNorm: return m_.vectors.count(p + "attn_norm") > 0;
      case WeightKind::AttnNormBias: return m_.vectors.count(p + "attn_norm_bias") > 0;
      case WeightKind::FfnNorm: return m_.vectors.count(p + "ffn_norm") > 0;
      case WeightKind::FfnNormBias: return m_.vectors.count(p + "ffn_norm_bias") > 0;
      case WeightKind::Wq:
      case WeightKind::Wk:
      case WeightKind::Wv: return m_.matrices.count(p + "wqkv") > 0;
      case WeightKind::Bq:
      case WeightKind::Bk:
      case WeightKind::Bv: return m_.vectors.count(p + "bqkv") > 0;
      case WeightKind::Wo: return m_.matrices.count(p + "wo") > 0;
      case WeightKind::Bo: return m_.vectors.count(p + "bo") > 0;
      case WeightKind::QNorm: return m_.vectors.count(p + "q_norm") > 0;
      case WeightKind::KNorm: return m_.vectors.count(p + "k_norm") > 0;
      case WeightKind::Router: return m_.matrices.count(p + "router") > 0;
      case WeightKind::ExpertGate:
      case WeightKind::ExpertUp:
      case WeightKind::ExpertDown:
        return id.layer >= 0 && id.layer < c.n_layer && c.layer_is_moe[id.layer] && id.expert >= 0 &&
               id.expert < c.n_expert;
      case WeightKind::SharedGate: return m_.matrices.count(p + "shared.gate") > 0;
      case WeightKind::SharedUp: return m_.matrices.count(p + "shared.up") > 0;
      case WeightKind::SharedDown: return m_.matrices.count(p + "shared.down") > 0;
      case WeightKind::SharedExpertGate: return m_.matrices.count(p + "shared_gate") > 0;
      case WeightKind::DenseGate: return m_.matrices.count(p + "dense.gate") > 0;
      case WeightKind::DenseUp: return m_.matrices.count(p + "dense.up") > 0;
      case WeightKind::DenseDown: return m_.matrices.count(p + "dense.down") > 0;
      default: return false;
    }
  }

  std::vector<float> f32(const WeightId& id) const override {
    if (!has(id))
      throw Error("missing tensor " + weight_id_string(id) + " in the store " + m_.dir.string() +
                  "; convert the model again");
    const ModelConfig& c = m_.config;
    const uint8_t* d = dense_.data();
    const std::string p = "layers." + std::to_string(id.layer) + ".";
    const size_t q = c.q_dim(), kv = c.kv_dim();
    auto vec = [&](const std::string& name) {
      const StoreArray& a = m_.vectors.at(name);
      std::vector<float> v(a.bytes / sizeof(float));
      std::memcpy(v.data(), d + a.offset, a.bytes);
      return v;
    };
    auto rows = [&](std::vector<float> all, size_t first, size_t n, size_t width) {
      return std::vector<float>(all.begin() + first * width, all.begin() + (first + n) * width);
    };
    switch (id.kind) {
      case WeightKind::Embed: {
        std::vector<float> v;
        if (m_.embed_dtype == DType::F32) {
          v.resize(m_.embed.bytes / 4);
          std::memcpy(v.data(), d + m_.embed.offset, m_.embed.bytes);
        } else {
          v.resize(m_.embed.bytes / 2);
          for (size_t i = 0; i < v.size(); ++i) {
            uint16_t h;
            std::memcpy(&h, d + m_.embed.offset + 2 * i, 2);
            v[i] = bf16_to_f32(h);
          }
        }
        return v;
      }
      case WeightKind::LmHead: return dequantized(m_.matrices.at("lm_head"), d);
      case WeightKind::FinalNorm: return vec("final_norm");
      case WeightKind::FinalNormBias: return vec("final_norm_bias");
      case WeightKind::LmHeadBias: return vec("lm_head_bias");
      case WeightKind::AttnNorm: return vec(p + "attn_norm");
      case WeightKind::AttnNormBias: return vec(p + "attn_norm_bias");
      case WeightKind::FfnNorm: return vec(p + "ffn_norm");
      case WeightKind::FfnNormBias: return vec(p + "ffn_norm_bias");
      case WeightKind::Wq: return rows(dequantized(m_.matrices.at(p + "wqkv"), d), 0, q, c.d_model);
      case WeightKind::Wk: return rows(dequantized(m_.matrices.at(p + "wqkv"), d), q, kv, c.d_model);
      case WeightKind::Wv: return rows(dequantized(m_.matrices.at(p + "wqkv"), d), q + kv, kv, c.d_model);
      case WeightKind::Bq: return rows(vec(p + "bqkv"), 0, q, 1);
      case WeightKind::Bk: return rows(vec(p + "bqkv"), q, kv, 1);
      case WeightKind::Bv: return rows(vec(p + "bqkv"), q + kv, kv, 1);
      case WeightKind::Wo: return dequantized(m_.matrices.at(p + "wo"), d);
      case WeightKind::Bo: return vec(p + "bo");
      case WeightKind::QNorm: return vec(p + "q_norm");
      case WeightKind::KNorm: return vec(p + "k_norm");
      case WeightKind::Router: return dequantized(m_.matrices.at(p + "router"), d);
      case WeightKind::SharedGate: return dequantized(m_.matrices.at(p + "shared.gate"), d);
      case WeightKind::SharedUp: return dequantized(m_.matrices.at(p + "shared.up"), d);
      case WeightKind::SharedDown: return dequantized(m_.matrices.at(p + "shared.down"), d);
      case WeightKind::SharedExpertGate: return dequantized(m_.matrices.at(p + "shared_gate"), d);
      case WeightKind::DenseGate: return dequantized(m_.matrices.at(p + "dense.gate"), d);
      case WeightKind::DenseUp: return dequantized(m_.matrices.at(p + "dense.up"), d);
      case WeightKind::DenseDown: return dequantized(m_.matrices.at(p + "dense.down"), d);
      case WeightKind::ExpertGate:
      case WeightKind::ExpertUp:
      case WeightKind::ExpertDown: return expert_matrix(id);
      default: break;
    }
    throw Error("the store " + m_.dir.string() + " has no " + weight_id_string(id));
  }

  TensorView view(const WeightId& id) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, fresh] = views_.try_emplace(key(id));
    if (fresh) it->second = f32(id);
    TensorView v;
    v.dtype = DType::F32;
    v.shape = canonical_shape(m_.config, id);
    v.data = reinterpret_cast<const std::byte*>(it->second.data());
    v.name = weight_id_string(id);
    return v;
  }

  std::vector<StoredTensorInfo> stored_tensors() const override {
    std::vector<StoredTensorInfo> out;
    for (const auto& [name, mat] : m_.matrices)
      out.push_back({name, m_.dense_file, mat.dtype, std::string(dtype_name(mat.dtype)), {mat.rows, mat.cols},
                     mat.data.bytes + mat.scales.bytes + mat.zeros.bytes});
    for (const auto& [name, a] : m_.vectors)
      out.push_back({name, m_.dense_file, DType::F32, "f32", {static_cast<int64_t>(a.bytes / 4)}, a.bytes});
    out.push_back({"embed", m_.dense_file, m_.embed_dtype, std::string(dtype_name(m_.embed_dtype)),
                   {m_.config.n_vocab, m_.config.d_model}, m_.embed.bytes});
    for (const ExpertTierFile& f : m_.experts)
      for (const ExpertChunk& k : f.chunks)
        out.push_back({"experts." + std::to_string(k.layer) + "." + std::to_string(k.expert) + "." + f.precision,
                       f.file, f.gate.dtype, f.precision, {3, f.gate.rows, f.gate.cols}, k.stored_bytes});
    return out;
  }

 private:
  static int rank(DType d) { return d == DType::BF16 ? 3 : d == DType::I8 ? 2 : 1; }
  static std::string key(const WeightId& id) {
    return std::to_string(static_cast<int>(id.kind)) + "/" + std::to_string(id.layer) + "/" + std::to_string(id.expert);
  }

  std::vector<float> expert_matrix(const WeightId& id) const {
    const ExpertChunk* k = best_->find(id.layer, id.expert);
    if (!k) throw Error(best_->file + " has no chunk for layer " + std::to_string(id.layer) + ", expert " +
                        std::to_string(id.expert) + "; convert the model again");
    const uint8_t* image = experts_->data() + k->offset;
    std::vector<uint8_t> unpacked;
    if (xxhash64(image, k->payload_bytes) != k->xxh64)
      throw Error((m_.dir / best_->file).string() + ": expert chunk (layer " + std::to_string(id.layer) +
                  ", expert " + std::to_string(id.expert) + ") at offset " + std::to_string(k->offset) +
                  " fails its checksum; the file is damaged: convert the model again");
    if (k->codec == ChunkCodec::Zstd) {
      unpacked.resize(best_->image.bytes);
      const size_t n = ZSTD_decompress(unpacked.data(), unpacked.size(), image, k->payload_bytes);
      if (ZSTD_isError(n) || n != unpacked.size())
        throw Error((m_.dir / best_->file).string() + ": an expert chunk does not decompress");
      image = unpacked.data();
    }
    const StoreMatrix& m = id.kind == WeightKind::ExpertGate ? best_->gate
                           : id.kind == WeightKind::ExpertUp ? best_->up
                                                             : best_->down;
    return dequantized(m, image);
  }

  StoreManifest m_;
  MappedFile dense_;
  const ExpertTierFile* best_ = nullptr;
  std::unique_ptr<MappedFile> experts_;
  mutable std::mutex mu_;
  mutable std::map<std::string, std::vector<float>> views_;
};

}  // namespace

std::unique_ptr<Checkpoint> open_store_checkpoint(const std::filesystem::path& dir) {
  return std::make_unique<StoreCheckpoint>(read_store_manifest(dir));
}

}  // namespace ferry::experts
