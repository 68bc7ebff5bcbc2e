// ferry inspect --model DIR [--json]: what a checkpoint is, from its config.json (and its weights when
// present): shapes, layer schedule, parameter counts, and the bytes its experts and dense weights take
// as stored and at bf16 / int8 / int4. With only config.json it still reports everything derived
// from the config.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "command.h"
#include "ferry/checkpoint.h"
#include "experts/mapped_file.h"
#include "ferry/error.h"
#include "ferry/experts/chunk_reader.h"
#include "ferry/experts/packed_store.h"
#include "model/checkpoint_files.h"
#include "model/weight_bytes.h"

namespace ferry::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

struct InspectArgs {
  std::string model;
  bool json = false;
  bool verify = false;
};

struct Precision {
  const char* name;
  const char* note;
  DType dtype;
};
constexpr Precision kPrecisions[] = {
    {"bf16", "", DType::BF16},
    {"int8", "bf16 scale per row", DType::I8},
    {"int4", "g64, bf16 scale+zero", DType::I4},
};

std::string_view norm_name(NormKind n) {
  switch (n) {
    case NormKind::RmsNorm:
      return "rmsnorm";
    case NormKind::LayerNorm:
      return "layernorm";
    case NormKind::LayerNormNoBias:
      return "layernorm (no bias)";
  }
  return "?";
}

std::string_view router_name(const ModelConfig& c) {
  switch (c.router) {
    case RouterKind::SoftmaxTopK:
      return c.norm_topk_prob ? "softmax, top-k, renormalised" : "softmax, top-k";
    case RouterKind::SparseMixer:
      return "sparsemixer";
    case RouterKind::SoftmaxTopKPNorm:
      return "softmax, top-k, divided by the p-norm";
  }
  return "?";
}

std::string_view rope_scaling_name(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::None:
      return "none";
    case RopeScalingType::Linear:
      return "linear";
    case RopeScalingType::Dynamic:
      return "dynamic";
    case RopeScalingType::Yarn:
      return "yarn";
    case RopeScalingType::Llama3:
      return "llama3";
    case RopeScalingType::LongRope:
      return "longrope";
  }
  return "?";
}

// "0-3, 5, 7-9"
std::string layer_ranges(const std::vector<bool>& is_moe, bool want_moe) {
  std::string s;
  const int n = static_cast<int>(is_moe.size());
  for (int l = 0; l < n;) {
    if (is_moe[static_cast<size_t>(l)] != want_moe) {
      ++l;
      continue;
    }
    int end = l;
    while (end + 1 < n && is_moe[static_cast<size_t>(end + 1)] == want_moe) ++end;
    if (!s.empty()) s += ", ";
    s += end == l ? std::to_string(l) : std::to_string(l) + "-" + std::to_string(end);
    l = end + 1;
  }
  return s;
}

std::vector<int> layer_list(const std::vector<bool>& is_moe, bool want_moe) {
  std::vector<int> out;
  for (size_t l = 0; l < is_moe.size(); ++l)
    if (is_moe[l] == want_moe) out.push_back(static_cast<int>(l));
  return out;
}

std::string human_count(int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.2f B", n / 1e9);
  else if (n >= 1'000'000)
    std::snprintf(buf, sizeof buf, "%.2f M", n / 1e6);
  else if (n >= 1'000)
    std::snprintf(buf, sizeof buf, "%.2f K", n / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

std::string human_bytes(int64_t n) {
  char buf[32];
  const double d = static_cast<double>(n);
  if (d >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", d / (1024.0 * 1024 * 1024));
  else if (d >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f MiB", d / (1024.0 * 1024));
  else if (d >= 1024.0)
    std::snprintf(buf, sizeof buf, "%.2f KiB", d / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(n));
  return buf;
}

// config.json "torch_dtype" (transformers 4) or "dtype" (5): the dtype the weights were saved in.
std::string declared_dtype(const fs::path& config_path) {
  std::ifstream in(config_path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  for (const char* key : {"torch_dtype", "dtype"})
    if (j.is_object() && j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return "";
}

struct StoredSummary {
  std::string expert_layout;
  size_t n_files = 0;
  std::map<std::string, int64_t> expert_bytes, dense_bytes;  // by safetensors dtype
  int64_t params = 0;
};

StoredSummary summarize_stored(const Checkpoint& ckpt) {
  StoredSummary s;
  s.expert_layout = expert_layout_name(ckpt.expert_layout());
  std::map<std::string, int> files;
  for (const StoredTensorInfo& t : ckpt.stored_tensors()) {
    files[t.file]++;
    (is_routed_expert_tensor(t.name) ? s.expert_bytes : s.dense_bytes)[t.dtype_name] +=
        static_cast<int64_t>(t.bytes);
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    s.params += numel;
  }
  s.n_files = files.size();
  return s;
}

ordered_json to_json(const ModelConfig& c, const fs::path& model, const std::string& dtype,
                     const StoredSummary* stored) {
  ordered_json j;
  j["model"] = model.string();
  j["family"] = family_name(c.family);
  j["model_type"] = c.model_type;
  j["n_layer"] = c.n_layer;
  j["d_model"] = c.d_model;
  j["n_head"] = c.n_head;
  j["n_head_kv"] = c.n_head_kv;
  j["head_dim"] = c.head_dim;
  j["attention"] = c.attention == AttentionKind::Mla ? "mla" : "gqa";
  if (c.attention == AttentionKind::Mla)
    j["mla"] = {{"q_lora_rank", c.q_lora_rank},
                {"kv_lora_rank", c.kv_lora_rank},
                {"qk_nope_head_dim", c.qk_nope_head_dim},
                {"qk_rope_head_dim", c.qk_rope_head_dim},
                {"v_head_dim", c.v_head_dim}};
  j["n_vocab"] = c.n_vocab;
  j["max_position"] = c.max_position;
  j["n_expert"] = c.n_expert;
  j["n_expert_used"] = c.n_expert_used;
  j["d_expert"] = c.d_expert;
  j["n_shared_expert"] = c.n_shared_expert;
  j["d_shared"] = c.d_shared;
  j["shared_expert_gated"] = c.shared_expert_gated;
  j["d_ff_dense"] = c.d_ff_dense;
  j["moe_layers"] = layer_list(c.layer_is_moe, true);
  j["dense_layers"] = layer_list(c.layer_is_moe, false);
  j["router"] = router_name(c);
  j["norm"] = norm_name(c.norm);
  j["rope"] = {{"theta", c.rope.theta},
               {"scaling", rope_scaling_name(c.rope.scaling)},
               {"rotary_dim", c.rope.rotary_dim},
               {"factor", c.rope.factor}};
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["declared_dtype"] = dtype;
  j["params"] = {{"total", c.params_total()},
                 {"experts", c.params_experts()},
                 {"dense", c.params_dense()},
                 {"active_per_token", c.params_active_per_token()},
                 {"per_expert", c.params_per_expert()}};
  j["kv_elems_per_token_layer"] = c.kv_elems_per_token_layer();
  ordered_json bytes;
  for (const Precision& p : kPrecisions) {
    WeightBytesSplit b = model_weight_bytes(c, p.dtype);
    bytes[p.name] = {{"experts", b.experts}, {"dense", b.dense}, {"total", b.total()}};
  }
  j["bytes"] = bytes;
  ordered_json w;
  w["present"] = stored != nullptr;
  if (stored) {
    w["expert_layout"] = stored->expert_layout;
    w["files"] = stored->n_files;
    w["params"] = stored->params;
    w["expert_bytes"] = stored->expert_bytes;
    w["dense_bytes"] = stored->dense_bytes;
  }
  j["weights"] = w;
  return j;
}

void print_text(const ModelConfig& c, const fs::path& model, const std::string& dtype,
                const StoredSummary* stored) {
  auto line = [](const char* key, const std::string& value) {
    std::printf("%-13s %s\n", key, value.c_str());
  };
  line("model", model.string());
  line("family", std::string(family_name(c.family)) + " (model_type " + c.model_type + ")");
  std::string schedule = std::to_string(c.n_layer) + " (";
  if (c.n_moe_layers() == c.n_layer) {
    schedule += "all MoE)";
  } else {
    schedule += "MoE: " + layer_ranges(c.layer_is_moe, true) + "; dense MLP of width " +
                std::to_string(c.d_ff_dense) + ": " + layer_ranges(c.layer_is_moe, false) + ")";
  }
  line("layers", schedule);
  line("d_model", std::to_string(c.d_model));
  std::string attn = std::to_string(c.n_head) + " heads, " + std::to_string(c.n_head_kv) +
                     " kv heads, head dim " + std::to_string(c.head_dim);
  if (c.attention == AttentionKind::Mla)
    attn = "MLA: " + std::to_string(c.n_head) + " heads, q/k head " + std::to_string(c.qk_nope_head_dim) +
           "+" + std::to_string(c.qk_rope_head_dim) + " (rope), v head " + std::to_string(c.v_head_dim) +
           ", kv latent " + std::to_string(c.kv_lora_rank) + ", q latent " +
           (c.q_lora_rank ? std::to_string(c.q_lora_rank) : "none");
  if (c.qkv_bias) attn += ", qkv bias";
  if (c.qk_norm == QkNorm::PerHead) attn += ", per-head q/k norm";
  if (c.qk_norm == QkNorm::Full) attn += ", full-width q/k norm";
  if (c.clip_qkv > 0) {
    char clip[32];
    std::snprintf(clip, sizeof clip, ", clip_qkv %g", c.clip_qkv);
    attn += clip;
  }
  line("attention", attn);
  line("experts", std::to_string(c.n_expert) + " routed, top-" + std::to_string(c.n_expert_used) +
                      ", width " + std::to_string(c.d_expert) + "; router " + std::string(router_name(c)));
  line("shared", c.d_shared > 0
                     ? std::to_string(c.n_shared_expert) + " shared expert(s), width " +
                           std::to_string(c.d_shared) + (c.shared_expert_gated ? ", sigmoid-gated" : "")
                     : std::string("none"));
  line("vocab", std::to_string(c.n_vocab) + (c.tie_word_embeddings ? " (tied embeddings)" : ""));
  char rope[128];
  std::snprintf(rope, sizeof rope, "theta %g, scaling %s, max position %d", c.rope.theta,
                std::string(rope_scaling_name(c.rope.scaling)).c_str(), c.max_position);
  line("rope", rope);
  line("norm", std::string(norm_name(c.norm)));
  line("parameters", "total " + human_count(c.params_total()) + ", experts " +
                         human_count(c.params_experts()) + ", dense " + human_count(c.params_dense()) +
                         ", active per token " + human_count(c.params_active_per_token()) + " (" +
                         human_count(c.params_per_expert()) + " per expert)");
  line("kv cache", std::to_string(c.kv_elems_per_token_layer()) + " elements per token per layer = " +
                       human_bytes(c.kv_elems_per_token_layer() * c.n_layer * 2) + " per token at bf16");

  std::printf("\n%-32s %12s %12s %12s\n", "weight bytes", "experts", "dense", "total");
  if (stored) {
    std::set<std::string> dtypes;
    for (const auto& entry : stored->expert_bytes) dtypes.insert(entry.first);
    for (const auto& entry : stored->dense_bytes) dtypes.insert(entry.first);
    for (const std::string& d : dtypes) {
      auto get = [&](const std::map<std::string, int64_t>& m) {
        auto it = m.find(d);
        return it == m.end() ? int64_t{0} : it->second;
      };
      const int64_t e = get(stored->expert_bytes), n = get(stored->dense_bytes);
      std::printf("  %-30s %12s %12s %12s\n", ("stored " + d).c_str(), human_bytes(e).c_str(),
                  human_bytes(n).c_str(), human_bytes(e + n).c_str());
    }
  }
  for (const Precision& p : kPrecisions) {
    WeightBytesSplit b = model_weight_bytes(c, p.dtype);
    std::string label = std::string(p.name) + (*p.note ? std::string(" (") + p.note + ")" : "");
    std::printf("  %-30s %12s %12s %12s\n", label.c_str(), human_bytes(b.experts).c_str(),
                human_bytes(b.dense).c_str(), human_bytes(b.total()).c_str());
  }
  std::printf("\n");
  if (stored) {
    line("weights", std::to_string(stored->n_files) + " safetensors file(s), experts " +
                        stored->expert_layout + ", " + human_count(stored->params) + " parameters stored" +
                        (stored->params == c.params_total()
                             ? " (matches config.json)"
                             : " (config.json implies " + human_count(c.params_total()) + ")"));
  } else {
    line("weights",
         "absent (config.json only" + (dtype.empty() ? std::string() : "; declared dtype " + dtype) + ")");
  }
}

// A packed store's files: dense weights, one line per expert precision; --verify checks every checksum.
ordered_json store_json(const experts::StoreManifest& m, bool verify) {
  ordered_json j;
  j["dense"] = {{"file", m.dense_file}, {"bytes", m.dense_bytes}};
  j["experts"] = ordered_json::array();
  uint64_t bad = 0, checked = 0;
  if (verify) {
    const experts::MappedFile dense(m.dir / m.dense_file);
    ++checked;
    if (experts::xxhash64(dense.data(), dense.size()) != m.dense_xxh64) {
      ++bad;
      std::fprintf(stderr, "ferry inspect: %s fails its checksum\n", (m.dir / m.dense_file).string().c_str());
    }
  }
  for (const experts::ExpertTierFile& f : m.experts) {
    uint64_t zstd = 0;
    for (const experts::ExpertChunk& k : f.chunks) zstd += k.codec == experts::ChunkCodec::Zstd;
    if (verify) {
      const experts::MappedFile file(m.dir / f.file);
      for (const experts::ExpertChunk& k : f.chunks) {
        ++checked;
        if (experts::xxhash64(file.data() + k.offset, k.payload_bytes) != k.xxh64) {
          ++bad;
          std::fprintf(stderr, "ferry inspect: %s: expert chunk (layer %d, expert %d) at offset %llu fails its checksum\n",
                       (m.dir / f.file).string().c_str(), k.layer, k.expert,
                       static_cast<unsigned long long>(k.offset));
        }
      }
    }
    j["experts"].push_back({{"precision", f.precision}, {"group_size", f.group_size}, {"file", f.file},
                            {"chunks", f.chunks.size()}, {"chunk_bytes", f.image.bytes},
                            {"stored_bytes", f.stored_bytes()}, {"zstd_chunks", zstd}});
  }
  if (verify) j["verified"] = {{"checked", checked}, {"failed", bad}};
  return j;
}

void print_store(const ordered_json& j) {
  std::printf("\nstore (ferry convert)\n");
  std::printf("  %-22s %s, %s\n", "dense", j["dense"]["file"].get<std::string>().c_str(),
              human_bytes(j["dense"]["bytes"].get<int64_t>()).c_str());
  for (const auto& e : j["experts"]) {
    std::string p = e["precision"].get<std::string>();
    if (e["group_size"].get<int>() > 0) p += " (group " + std::to_string(e["group_size"].get<int>()) + ")";
    std::printf("  %-22s %s: %zu chunks of %s, %s on disk%s\n", ("experts " + p).c_str(),
                e["file"].get<std::string>().c_str(), e["chunks"].get<size_t>(),
                human_bytes(e["chunk_bytes"].get<int64_t>()).c_str(), human_bytes(e["stored_bytes"].get<int64_t>()).c_str(),
                e["zstd_chunks"].get<int>() ? (", " + std::to_string(e["zstd_chunks"].get<int>()) + " zstd").c_str() : "");
  }
  if (j.contains("verified"))
    std::printf("  %-22s %d checksums, %d failed\n", "verified", j["verified"]["checked"].get<int>(),
                j["verified"]["failed"].get<int>());
}

int run_inspect(const InspectArgs& a) {
  const fs::path model(a.model);
  ModelConfig cfg = load_model_config(model);
  std::error_code ec;
  const bool is_dir = fs::is_directory(model, ec);
  const std::string dtype = declared_dtype(is_dir ? model / "config.json" : model);
  std::unique_ptr<Checkpoint> ckpt;
  StoredSummary stored;
  if (is_dir && has_safetensors_weights(model)) {
    ckpt = Checkpoint::open(model);
    stored = summarize_stored(*ckpt);
  }
  const bool store = is_dir && experts::is_packed_store(model);
  if (store) {
    ckpt = Checkpoint::open(model);
    stored = summarize_stored(*ckpt);
  }
  ordered_json sj;
  if (store) sj = store_json(*ckpt->packed_store(), a.verify);
  if (a.json) {
    ordered_json j = to_json(cfg, model, dtype, ckpt ? &stored : nullptr);
    if (store) j["store"] = sj;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    print_text(cfg, model, dtype, ckpt && !store ? &stored : nullptr);
    if (store) print_store(sj);
  }
  if (store && a.verify && sj["verified"]["failed"].get<int>() > 0)
    throw Error("the store " + model.string() + " is damaged (checksums above); convert the model again");
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  app.add_option("--model", args->model, "model directory (config.json and *.safetensors), or a config.json")
      ->required();
  app.add_flag("--json", args->json, "print the facts as JSON");
  app.add_flag("--verify", args->verify, "packed stores: check every chunk's checksum");
  return [args] { return run_inspect(*args); };
}

RegisterCommand reg{
    {"inspect", "describe a checkpoint or a packed store: shapes, layer schedule, parameters, weight bytes, store files",
     setup, 30}};

}  // namespace
}  // namespace ferry::cli
