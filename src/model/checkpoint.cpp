// Checkpoint over safetensors files: the family adapter says where each canonical weight lives
// (whole tensor, or rows of a fused one), this file finds it, checks its shape against the config
// and hands out a view into the mapping.
#include "ferry/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "ferry/error.h"
#include "experts/store_checkpoint.h"
#include "ferry/experts/packed_store.h"
#include "model/checkpoint_files.h"
#include "models/family_adapter.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  s += ']';
  return s;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

template <class Names>
ExpertLayout detect_expert_layout(const ModelConfig& cfg, const Names& names) {
  if (cfg.family == Family::Dbrx) return ExpertLayout::Stacked;
  for (const std::string& name : names)
    if (ends_with(name, ".experts.gate_up_proj") || ends_with(name, ".experts.down_proj"))
      return ExpertLayout::Fused;
  return ExpertLayout::PerExpert;
}

std::vector<std::string> tensor_names(const CheckpointFiles& files) {
  std::vector<std::string> names;
  names.reserve(files.tensors.size());
  for (const auto& [name, ref] : files.tensors) names.push_back(name);
  return names;
}

// The layer a tensor name belongs to ("model.layers.12.", "transformer.blocks.3."), or -1.
int layer_of(std::string_view name) {
  for (std::string_view marker : {".layers.", ".blocks."}) {
    size_t at = name.find(marker);
    if (at == std::string_view::npos) continue;
    size_t i = at + marker.size();
    int layer = 0;
    bool digits = false;
    while (i < name.size() && name[i] >= '0' && name[i] <= '9' && layer < 1'000'000) {
      layer = layer * 10 + (name[i++] - '0');
      digits = true;
    }
    if (digits) return layer;
  }
  return -1;
}

// Names in reading order: model-level first, then layer by layer (layer 10 after layer 9).
void sort_by_layer(std::vector<std::string>& names) {
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    int la = layer_of(a), lb = layer_of(b);
    return la != lb ? la < lb : a < b;
  });
}

// A weight holding NaN or Inf turns every hidden state after it into NaN: the model would generate
// nothing, silently. Refused naming the tensor.
[[noreturn]] void refuse_non_finite(const Checkpoint& ckpt, const TensorView& v, const WeightId& id,
                                    const std::vector<float>& values) {
  size_t count = 0, first = 0;
  for (size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]) && count++ == 0) first = i;
  const float bad = values[first];
  throw Error("tensor '" + v.name + "' (" + weight_id_string(id) + ") in " + ckpt.dir().string() + " holds " +
              std::to_string(count) + " non-finite value" + (count == 1 ? "" : "s") + " (the first, " +
              (std::isnan(bad) ? "NaN" : bad > 0 ? "+Inf" : "-Inf") + ", at element " + std::to_string(first) +
              " of " + shape_string(v.shape) +
              "); the checkpoint is corrupt or was converted badly — re-download or re-convert it");
}

class SafetensorsCheckpoint final : public Checkpoint {
 public:
  SafetensorsCheckpoint(fs::path dir, ModelConfig cfg, CheckpointFiles files)
      : dir_(std::move(dir)),
        cfg_(std::move(cfg)),
        files_(std::move(files)),
        adapter_(family_adapter(cfg_.family)),
        layout_(detect_expert_layout(cfg_, tensor_names(files_))) {}

  const ModelConfig& config() const override { return cfg_; }
  const fs::path& dir() const override { return dir_; }
  ExpertLayout expert_layout() const override { return layout_; }

  bool has(const WeightId& id) const override { return resolve(id).has_value(); }

  TensorView view(const WeightId& id) const override {
    Resolved r = checked(id);
    const SafetensorsTensor& t = *r.ref.tensor;
    TensorView v;
    v.dtype = t.dtype;
    v.shape = canonical_shape(cfg_, id);
    v.name = t.name;
    std::span<const std::byte> bytes = r.ref.file->aligned(t);
    if (r.loc.row_count < 0) {
      v.data = bytes.data();
      return v;
    }
    const int64_t row_elems = r.loc.stored_shape.back();
    const size_t offset = static_cast<size_t>(r.loc.row_begin * row_elems * t.element_size);
    if (!r.loc.transposed) {
      v.data = bytes.data() + offset;
      return v;
    }
    v.data = transposed_copy(r, bytes.data() + offset, row_elems);
    return v;
  }

  std::vector<StoredTensorInfo> stored_tensors() const override {
    std::vector<StoredTensorInfo> out;
    out.reserve(files_.tensors.size());
    for (const auto& [name, ref] : files_.tensors)
      out.push_back({name, ref.file->path().filename().string(), ref.tensor->dtype, ref.tensor->dtype_name,
                     ref.tensor->shape, ref.tensor->nbytes()});
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return out;
  }

  // Every weight the config implies must be present, float, and of the implied shape; and every tensor
  // of the checkpoint must be one the model reads (a config.json with fewer layers than the weights
  // would otherwise run a truncated model without a word).
  void validate() const {
    std::unordered_set<std::string> used;
    for (const WeightId& id : model_weight_ids(cfg_)) used.insert(checked(id).ref.tensor->name);
    // Optional weights the loaders read when present (ferry/reference_model.h, ferry/cpu_model.h).
    auto optional = [&](WeightKind kind, int layer) {
      if (std::optional<Resolved> r = resolve({kind, layer})) used.insert(r->ref.tensor->name);
    };
    optional(WeightKind::FinalNormBias, -1);
    optional(WeightKind::LmHeadBias, -1);
    for (int l = 0; l < cfg_.n_layer; ++l)
      for (WeightKind kind : {WeightKind::AttnNormBias, WeightKind::FfnNormBias, WeightKind::Bq, WeightKind::Bk,
                              WeightKind::Bv, WeightKind::Bo})
        optional(kind, l);
    std::vector<std::string> unused;
    int beyond = 0;  // unused tensors of layers the config does not have
    for (const auto& [name, ref] : files_.tensors)
      if (!used.count(name)) {
        unused.push_back(name);
        beyond += layer_of(name) >= cfg_.n_layer ? 1 : 0;
      }
    if (unused.empty()) return;
    sort_by_layer(unused);
    std::string why =
        beyond > 0 ? "; " + std::to_string(beyond) + " of them belong to layers " + std::to_string(cfg_.n_layer) +
                         " and above, but " + cfg_.source + " describes " + std::to_string(cfg_.n_layer) +
                         (cfg_.n_layer == 1 ? " layer" : " layers") +
                         " (is its layer count, e.g. num_hidden_layers, wrong?)"
                   : "; " + cfg_.source + " describes a model without them";
    throw Error(dir_.string() + ": " + std::to_string(unused.size()) + " tensor" + (unused.size() == 1 ? "" : "s") +
                " in the checkpoint " + (unused.size() == 1 ? "is" : "are") + " not used by the model: " +
                name_list(unused) + why +
                ". The weights and config.json do not match: use the config.json that came with the weights");
  }

 private:
  struct Resolved {
    TensorLocation loc;
    TensorRef ref;
  };

  std::optional<Resolved> resolve(const WeightId& id) const {
    for (TensorLocation& loc : adapter_.locate(cfg_, id, layout_)) {
      auto it = files_.tensors.find(loc.name);
      if (it != files_.tensors.end()) return Resolved{std::move(loc), it->second};
    }
    // Tied embeddings: the checkpoint may omit lm_head.weight.
    if (id.kind == WeightKind::LmHead && cfg_.tie_word_embeddings) return resolve({WeightKind::Embed});
    return std::nullopt;
  }

  Resolved checked(const WeightId& id) const {
    std::optional<Resolved> r = resolve(id);
    if (!r) {
      std::vector<TensorLocation> candidates = adapter_.locate(cfg_, id, layout_);
      if (candidates.empty())
        throw Error("the " + std::string(family_name(cfg_.family)) + " family has no weight " +
                    weight_id_string(id));
      std::string also;
      for (size_t i = 1; i < candidates.size(); ++i)
        also += (i > 1 ? ", '" : " (nor '") + candidates[i].name + "'";
      if (!also.empty()) also += ")";
      throw Error("missing tensor '" + candidates.front().name + "'" + also + " in " + dir_.string() + ": " +
                  weight_id_string(id) + " is required by " + cfg_.source +
                  "; the checkpoint is incomplete or does not match its config.json");
    }
    const SafetensorsTensor& t = *r->ref.tensor;
    if (t.shape != r->loc.stored_shape)
      throw Error(r->ref.file->path().string() + ": tensor '" + t.name + "' has shape " +
                  shape_string(t.shape) + " but " + cfg_.source + " implies " +
                  shape_string(r->loc.stored_shape) +
                  "; the weights and config.json belong to different models");
    if (t.dtype != DType::BF16 && t.dtype != DType::F16 && t.dtype != DType::F32)
      throw Error(r->ref.file->path().string() + ": tensor '" + t.name + "' has dtype " + t.dtype_name +
                  "; ferry reads weights stored as BF16, F16 or F32");
    return *r;
  }

  // DBRX stores each expert's down projection as [F, D]; the canonical layout is [D, F].
  const std::byte* transposed_copy(const Resolved& r, const std::byte* rows, int64_t row_elems) const {
    const std::string key = r.loc.name + "#" + std::to_string(r.loc.row_begin);
    std::lock_guard lock(transposed_mutex_);
    auto& buffer = transposed_[key];
    if (buffer.empty()) {
      const size_t elem = static_cast<size_t>(r.ref.tensor->element_size);
      const int64_t n_rows = r.loc.row_count;
      buffer.resize(static_cast<size_t>(n_rows * row_elems) * elem);
      for (int64_t i = 0; i < n_rows; ++i)
        for (int64_t j = 0; j < row_elems; ++j)
          std::memcpy(buffer.data() + static_cast<size_t>(j * n_rows + i) * elem,
                      rows + static_cast<size_t>(i * row_elems + j) * elem, elem);
    }
    return buffer.data();
  }

  fs::path dir_;
  ModelConfig cfg_;
  CheckpointFiles files_;
  const FamilyAdapter& adapter_;
  ExpertLayout layout_;
  mutable std::mutex transposed_mutex_;
  // std::vector<std::byte> from operator new: aligned for any scalar dtype.
  mutable std::unordered_map<std::string, std::vector<std::byte>> transposed_;
};

// model.safetensors failed its strict check: when the header lacks entries the config needs (an entry
// deleted from the header leaves its bytes as a gap that the strict check reports at a neighbour),
// name them instead. Sharded checkpoints are checked against their index (open_checkpoint_files).
void refuse_missing_header_entries(const fs::path& dir, const ModelConfig& cfg) {
  const fs::path file = dir / "model.safetensors";
  std::error_code ec;
  if (fs::exists(dir / "model.safetensors.index.json", ec) || !fs::exists(file, ec)) return;
  const std::vector<std::string> names = safetensors_header_names(file);
  if (names.empty()) return;
  const std::unordered_set<std::string> present(names.begin(), names.end());
  const FamilyAdapter& adapter = family_adapter(cfg.family);
  const ExpertLayout layout = detect_expert_layout(cfg, names);
  std::vector<std::string> missing;
  std::unordered_set<std::string> listed;
  for (const WeightId& id : model_weight_ids(cfg)) {
    std::vector<TensorLocation> candidates = adapter.locate(cfg, id, layout);
    if (candidates.empty()) continue;
    bool found = false;
    for (const TensorLocation& loc : candidates) found = found || present.count(loc.name) > 0;
    if (id.kind == WeightKind::LmHead && cfg.tie_word_embeddings) found = true;
    if (!found && listed.insert(candidates.front().name).second) missing.push_back(candidates.front().name);
  }
  if (missing.empty()) return;
  throw Error(file.string() + ": the header has no entry for tensor " + name_list(missing) + ", which " +
              cfg.source + " needs; the file is corrupt — re-download it");
}

}  // namespace

std::unique_ptr<Checkpoint> Checkpoint::open(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec))
    throw Error("model directory '" + dir.string() +
                "' does not exist; pass the directory holding config.json and the "
                "*.safetensors files");
  if (!fs::is_directory(dir, ec))
    throw Error("'" + dir.string() +
                "' is not a directory; pass the model directory holding config.json and the "
                "*.safetensors files");
  if (experts::is_packed_store(dir)) return experts::open_store_checkpoint(dir);
  ModelConfig cfg = load_model_config(dir);
  CheckpointFiles files;
  try {
    files = open_checkpoint_files(dir);
  } catch (const Error&) {
    refuse_missing_header_entries(dir, cfg);
    throw;
  }
  auto checkpoint = std::make_unique<SafetensorsCheckpoint>(dir, std::move(cfg), std::move(files));
  checkpoint->validate();
  return checkpoint;
}

std::vector<float> Checkpoint::f32(const WeightId& id) const {
  TensorView v = view(id);
  const size_t n = static_cast<size_t>(v.numel());
  std::vector<float> out(n);
  // NaN and Inf have every exponent bit set; the test rides along with the conversion.
  bool non_finite = false;
  switch (v.dtype) {
    case DType::F32: {
      std::memcpy(out.data(), v.data, n * sizeof(float));
      uint32_t any = 0;
      for (size_t i = 0; i < n; ++i) {
        uint32_t bits;
        std::memcpy(&bits, &out[i], 4);
        any |= (bits & 0x7f800000u) == 0x7f800000u;
      }
      non_finite = any != 0;
      break;
    }
    case DType::BF16:
    case DType::F16: {
      const bool bf16 = v.dtype == DType::BF16;
      const uint16_t exponent = bf16 ? 0x7f80 : 0x7c00;
      uint32_t any = 0;
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, v.data + 2 * i, 2);
        any |= (h & exponent) == exponent;
        out[i] = bf16 ? bf16_to_f32(h) : f16_to_f32(h);
      }
      non_finite = any != 0;
      break;
    }
    default:
      throw Error("tensor '" + v.name + "' has dtype " + std::string(dtype_name(v.dtype)) +
                  ", which cannot be read as fp32");
  }
  if (non_finite) refuse_non_finite(*this, v, id, out);
  return out;
}

}  // namespace ferry
