#include "model/checkpoint_files.h"

#include <fstream>
#include <map>
#include <sstream>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "ferry/error.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

bool is_ignored(const std::string& name) {
  // Old checkpoints carry the RoPE inverse frequencies as a buffer; ferry computes them.
  static const std::string suffix = "rotary_emb.inv_freq";
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// weight_map: tensor name -> shard file name.
std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  const std::string source = index_path.string();
  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw Error(source + ": cannot read");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": not valid JSON (" + e.what() + "); re-download it");
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error(source + ": has no \"weight_map\" object; re-download it");
  std::map<std::string, std::string> map;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it->is_string()) throw Error(source + ": weight_map entry '" + it.key() + "' is not a file name");
    std::string shard = it->get<std::string>();
    fs::path shard_path(shard);
    if (shard.empty() || shard_path.is_absolute() || shard_path.has_parent_path())
      throw Error(source + ": weight_map maps '" + it.key() + "' to '" + shard +
                  "', which is not a file name in the model directory");
    map.emplace(it.key(), std::move(shard));
  }
  return map;
}

void add_file_tensors(CheckpointFiles& out, const SafetensorsFile& file) {
  for (const auto& t : file.tensors())
    if (!is_ignored(t.name)) out.tensors.emplace(t.name, TensorRef{&file, &t});
}

std::string other_safetensors_hint(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().extension() == ".safetensors")
      return "; found " + entry.path().filename().string() +
             ", but ferry reads the Hugging Face layout (model.safetensors or "
             "model-0000i-of-0000n.safetensors)";
  return "";
}

}  // namespace

std::vector<std::string> safetensors_header_names(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  unsigned char prefix[8];
  if (!in.read(reinterpret_cast<char*>(prefix), 8)) return {};
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
  std::error_code ec;
  const uint64_t size = fs::file_size(file, ec);
  if (ec || n > kSafetensorsMaxHeaderBytes || n > size - 8) return {};
  std::string header(static_cast<size_t>(n), '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(n))) return {};
  nlohmann::json j = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> names;
  if (!j.is_object()) return names;
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "__metadata__") names.push_back(it.key());
  return names;
}

std::string name_list(const std::vector<std::string>& names, size_t shown) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < shown; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > shown) s += " (and " + std::to_string(names.size() - shown) + " more)";
  return s;
}

bool has_safetensors_weights(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / kSingleFile, ec) || fs::exists(dir / kIndexFile, ec);
}

CheckpointFiles open_checkpoint_files(const fs::path& dir) {
  CheckpointFiles out;
  std::error_code ec;
  const fs::path index_path = dir / kIndexFile;
  if (fs::exists(index_path, ec)) {
    std::map<std::string, std::string> weight_map = read_weight_map(index_path);
    std::map<std::string, const SafetensorsFile*> shards;
    for (const auto& [name, shard] : weight_map) {
      if (shards.count(shard)) continue;
      const fs::path shard_path = dir / shard;
      if (!fs::exists(shard_path, ec))
        throw Error(index_path.string() + " lists shard '" + shard + "' (holding tensor '" + name +
                    "'), which is missing from " + dir.string() + "; download every shard of the checkpoint");
      try {
        out.files.push_back(SafetensorsFile::open(shard_path));
      } catch (const Error&) {
        // A deleted header entry shows as a gap in the data buffer; say which entries the index expects.
        const std::vector<std::string> names = safetensors_header_names(shard_path);
        const std::unordered_set<std::string> present(names.begin(), names.end());
        std::vector<std::string> missing;
        if (!present.empty())
          for (const auto& [other, other_shard] : weight_map)
            if (other_shard == shard && !present.count(other)) missing.push_back(other);
        if (missing.empty()) throw;
        throw Error(shard_path.string() + ": the header has no entry for tensor " + name_list(missing) + ", which " +
                    index_path.filename().string() +
                    " places in this file; the file is corrupt — re-download it");
      }
      shards[shard] = out.files.back().get();
    }
    for (const auto& [name, shard] : weight_map) {
      if (is_ignored(name)) continue;
      const SafetensorsFile* file = shards.at(shard);
      const SafetensorsTensor* t = file->find(name);
      if (!t)
        throw Error(
            index_path.string() + " maps tensor '" + name + "' to " + shard +
            ", but that shard has no such tensor; the shards and the index do not match — re-download them");
      out.tensors.emplace(name, TensorRef{file, t});
    }
    // Tensors a shard holds beyond the index are still usable (the index names win on conflicts).
    for (const auto& file : out.files) add_file_tensors(out, *file);
    return out;
  }
  const fs::path single = dir / kSingleFile;
  if (!fs::exists(single, ec))
    throw Error(dir.string() + ": no " + kSingleFile + " or " + kIndexFile + other_safetensors_hint(dir));
  out.files.push_back(SafetensorsFile::open(single));
  add_file_tensors(out, *out.files.back());
  return out;
}

}  // namespace ferry
