// Checkpoint over safetensors files: the family adapter says where each canonical weight lives
// (whole tensor, or rows of a fused one), this file finds it, checks its shape against the config
// and hands out a view into the mapping.
#include "ferry/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "ferry/error.h"
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

ExpertLayout detect_expert_layout(const ModelConfig& cfg, const CheckpointFiles& files) {
  if (cfg.family == Family::Dbrx) return ExpertLayout::Stacked;
  for (const auto& [name, ref] : files.tensors)
    if (ends_with(name, ".experts.gate_up_proj") || ends_with(name, ".experts.down_proj"))
      return ExpertLayout::Fused;
  return ExpertLayout::PerExpert;
}

class SafetensorsCheckpoint final : public Checkpoint {
 public:
  SafetensorsCheckpoint(fs::path dir, ModelConfig cfg, CheckpointFiles files)
      : dir_(std::move(dir)),
        cfg_(std::move(cfg)),
        files_(std::move(files)),
        adapter_(family_adapter(cfg_.family)),
        layout_(detect_expert_layout(cfg_, files_)) {}

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

  // Every weight the config implies must be present, float, and of the implied shape.
  void validate() const {
    for (const WeightId& id : model_weight_ids(cfg_)) checked(id);
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
  ModelConfig cfg = load_model_config(dir);
  CheckpointFiles files = open_checkpoint_files(dir);
  auto checkpoint = std::make_unique<SafetensorsCheckpoint>(dir, std::move(cfg), std::move(files));
  checkpoint->validate();
  return checkpoint;
}

std::vector<float> Checkpoint::f32(const WeightId& id) const {
  TensorView v = view(id);
  const size_t n = static_cast<size_t>(v.numel());
  std::vector<float> out(n);
  switch (v.dtype) {
    case DType::F32:
      std::memcpy(out.data(), v.data, n * sizeof(float));
      break;
    case DType::BF16:
    case DType::F16: {
      const bool bf16 = v.dtype == DType::BF16;
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, v.data + 2 * i, 2);
        out[i] = bf16 ? bf16_to_f32(h) : f16_to_f32(h);
      }
      break;
    }
    default:
      throw Error("tensor '" + v.name + "' has dtype " + std::string(dtype_name(v.dtype)) +
                  ", which cannot be read as fp32");
  }
  return out;
}

}  // namespace ferry
