// The cpu target's weights from a packed store: the store's files are mapped and every packed matrix is a
// view of the mapping, so a load is a few mmap calls and a checksum pass over the dense weights, not a repack.
#include <zstd.h>

#include <cstring>
#include <memory>
#include <string>

#include "exec/cpu/cpu_weights.h"
#include "experts/mapped_file.h"
#include "ferry/error.h"
#include "ferry/experts/chunk_reader.h"

namespace ferry::cpu_target {

namespace {

using experts::MappedFile;
using experts::StoreArray;
using experts::StoreMatrix;

struct StoreMapping {
  std::unique_ptr<MappedFile> dense, experts, substitutes;
  std::vector<cpu::AlignedBytes> decompressed;  // zstd chunks, one image each
};

// Views of every routed expert of `tier`, whose file is mapped at `file` ([L][E]; empty for dense layers).
// zstd chunks are decompressed into `decompressed`.
std::vector<std::vector<MlpWeights>> expert_views(const experts::StoreManifest& s, const experts::ExpertTierFile& tier,
                                                  const MappedFile& file,
                                                  std::vector<cpu::AlignedBytes>& decompressed) {
  const ModelConfig& c = s.config;
  MlpWeights proto;
  proto.gate = experts::matrix_view(tier.gate, nullptr);
  proto.up = experts::matrix_view(tier.up, nullptr);
  proto.down = experts::matrix_view(tier.down, nullptr);
  std::vector<std::vector<MlpWeights>> out(c.n_layer);
  ZSTD_DCtx* zctx = nullptr;
  for (int l = 0; l < c.n_layer; ++l) {
    if (!c.layer_is_moe.at(l)) continue;
    for (int e = 0; e < c.n_expert; ++e) {
      const experts::ExpertChunk* k = tier.find(l, e);
      FERRY_ASSERT(k);  // read_store_manifest checked the chunk count
      const uint8_t* image = file.data() + k->offset;
      if (k->codec == experts::ChunkCodec::Zstd) {
        if (!zctx) zctx = ZSTD_createDCtx();
        cpu::AlignedBytes unpacked(tier.image.bytes);
        const size_t n = ZSTD_decompressDCtx(zctx, unpacked.data(), unpacked.size(), image, k->payload_bytes);
        if (ZSTD_isError(n) || n != tier.image.bytes) {
          ZSTD_freeDCtx(zctx);
          throw Error((s.dir / tier.file).string() + ": expert chunk (layer " + std::to_string(l) + ", expert " +
                      std::to_string(e) + ") at offset " + std::to_string(k->offset) +
                      " does not decompress; convert the model again");
        }
        image = unpacked.data();
        decompressed.push_back(std::move(unpacked));
      }
      out[l].push_back(image_view(proto, tier.image, reinterpret_cast<std::byte*>(const_cast<uint8_t*>(image))));
    }
  }
  if (zctx) ZSTD_freeDCtx(zctx);
  return out;
}

}  // namespace

bool load_from_store(const experts::StoreManifest& s, const CpuModelOptions& options, CpuWeights& w) {
  const experts::ExpertTierFile* tier = s.expert_file(options.expert_dtype, options.group_size);
  if (!tier) return false;
  const ModelConfig& c = s.config;
  if (c.attention != AttentionKind::Gqa)
    throw Error("the cpu target does not support " + std::string(family_name(c.family)) +
                " (multi-head latent attention) yet; `ferry plan` and `ferry inspect` work for it");
  auto map = std::make_shared<StoreMapping>();
  map->dense = std::make_unique<MappedFile>(s.dir / s.dense_file, options.populate);
  const uint8_t* d = map->dense->data();
  if (experts::xxhash64(d, map->dense->size()) != s.dense_xxh64)
    throw Error((s.dir / s.dense_file).string() + ": checksum mismatch (the file is damaged); convert the model again");
  // Under a DRAM budget smaller than the experts, the cpu target reads them through its tiers instead.
  const bool map_experts = options.dram_expert_budget == 0 || options.dram_expert_budget >= tier->stored_bytes();
  if (map_experts) map->experts = std::make_unique<MappedFile>(s.dir / tier->file, options.populate);

  w.config = c;
  auto vec = [&](const std::string& name) {
    std::vector<float> v;
    if (auto it = s.vectors.find(name); it != s.vectors.end()) {
      v.resize(it->second.bytes / sizeof(float));
      std::memcpy(v.data(), d + it->second.offset, v.size() * sizeof(float));
    }
    return v;
  };
  auto mat = [&](const std::string& name) {
    auto it = s.matrices.find(name);
    return it == s.matrices.end() ? cpu::PackedMatrix{} : experts::matrix_view(it->second, d);
  };
  if (s.embed_dtype == DType::BF16) {
    w.embed_bf16.resize(s.embed.bytes / 2);
    std::memcpy(w.embed_bf16.data(), d + s.embed.offset, s.embed.bytes);
  } else {
    w.embed_f32.resize(s.embed.bytes / 4);
    std::memcpy(w.embed_f32.data(), d + s.embed.offset, s.embed.bytes);
  }
  w.final_norm = vec("final_norm");
  w.final_norm_bias = vec("final_norm_bias");
  w.lm_head = mat("lm_head");
  w.lm_head_bias = vec("lm_head_bias");
  w.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    CpuLayerWeights& L = w.layers[l];
    const std::string p = "layers." + std::to_string(l) + ".";
    L.attn_norm = vec(p + "attn_norm");
    L.attn_norm_bias = vec(p + "attn_norm_bias");
    L.ffn_norm = vec(p + "ffn_norm");
    L.ffn_norm_bias = vec(p + "ffn_norm_bias");
    L.wqkv = mat(p + "wqkv");
    L.bqkv = vec(p + "bqkv");
    L.wo = mat(p + "wo");
    L.bo = vec(p + "bo");
    L.q_norm = vec(p + "q_norm");
    L.k_norm = vec(p + "k_norm");
    L.is_moe = c.layer_is_moe.at(l);
    L.router = mat(p + "router");
    L.shared = {mat(p + "shared.gate"), mat(p + "shared.up"), mat(p + "shared.down")};
    L.shared_gate = mat(p + "shared_gate");
    L.dense = {mat(p + "dense.gate"), mat(p + "dense.up"), mat(p + "dense.down")};
  }
  if (map_experts) {
    std::vector<std::vector<MlpWeights>> experts = expert_views(s, *tier, *map->experts, map->decompressed);
    for (int l = 0; l < c.n_layer; ++l) w.layers[l].experts = std::move(experts[l]);
  }
  if (options.substitute_below > 0 && !map_experts) {  // misses only happen through the tiers
    const experts::ExpertTierFile* sub = s.expert_file(options.substitute_dtype, options.group_size);
    if (!sub)
      throw Error(s.dir.string() + " holds no " + std::string(dtype_name(options.substitute_dtype)) +
                  " experts (group " + std::to_string(options.group_size) +
                  ") to substitute on a miss; convert with --precision " + tier->precision + "," +
                  std::string(dtype_name(options.substitute_dtype)));
    map->substitutes = std::make_unique<MappedFile>(s.dir / sub->file, /*populate=*/true);
    w.substitutes = expert_views(s, *sub, *map->substitutes, map->decompressed);
  }
  w.mapping = map;
  return true;
}

}  // namespace ferry::cpu_target
