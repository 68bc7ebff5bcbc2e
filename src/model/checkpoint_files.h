// The safetensors files of a checkpoint directory: model.safetensors, or the shards listed by
// model.safetensors.index.json, indexed by tensor name.
#pragma once
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ferry/safetensors.h"

namespace ferry {

struct TensorRef {
  const SafetensorsFile* file = nullptr;
  const SafetensorsTensor* tensor = nullptr;
};

struct CheckpointFiles {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::unordered_map<std::string, TensorRef> tensors;  // rotary_emb.inv_freq buffers left out
};

// Whether DIR holds weights ferry can read (model.safetensors or model.safetensors.index.json).
bool has_safetensors_weights(const std::filesystem::path& dir);

// Opens and validates every file. Throws ferry::Error naming the directory, the index or the shard; a
// shard whose header lacks an entry the index places in it is refused naming those tensors.
CheckpointFiles open_checkpoint_files(const std::filesystem::path& dir);

// The tensor names in a safetensors file's header, read leniently (offsets, dtypes and shapes are not
// checked), so that a file the strict parse refuses can be searched for the entries it lacks. Empty
// when even that cannot be read.
std::vector<std::string> safetensors_header_names(const std::filesystem::path& file);

// "'a', 'b', 'c' (and 7 more)": the first `shown` names of a list, for messages.
std::string name_list(const std::vector<std::string>& names, size_t shown = 5);

}  // namespace ferry
