// The packed store: a model converted once (`ferry convert`) into the bytes ferry computes with, so a load
// maps files instead of repacking tensors, and routed experts can live on an SSD tier and be read chunk by
// chunk. A store is a directory:
//   ferry-store.json      the manifest (below)
//   config.json, tokenizer.json / tokenizer.model, tokenizer_config.json, generation_config.json
//                         copied from the source, so every command that reads a model directory reads it
//   dense.bin             every weight that is not a routed expert, packed as the cpu target packs it
//                         (PackedMatrix arrays and f32 vectors), each array 64-byte aligned
//   experts-<p>.bin       one per expert precision p (bf16, int8-g64, int4-g64, ...): one chunk per routed
//                         expert, the expert's image (ferry/exec/expert_image.h), padded to 4 KiB so it can be
//                         read with O_DIRECT; optionally zstd-compressed when that saved bytes
// Each expert chunk and the dense file carry an XXH64 checksum. Files are written under temporary names and
// renamed at the end (the manifest last), so an interrupted conversion never leaves a store that opens.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/dtype.h"
#include "ferry/exec/expert_image.h"
#include "ferry/model_config.h"

namespace ferry {
class Checkpoint;
}

namespace ferry::experts {

inline constexpr const char* kStoreManifestName = "ferry-store.json";
inline constexpr int kStoreVersion = 1;

struct StoreArray {
  uint64_t offset = 0;  // in its file
  uint64_t bytes = 0;
};

// A PackedMatrix's shape and where its arrays lie (ferry/ops/packed_matrix.h).
struct StoreMatrix {
  DType dtype = DType::BF16;
  int rows = 0, cols = 0, cols_padded = 0, group_size = 0;
  DType scale_dtype = DType::BF16;
  StoreArray data, scales, zeros;  // offsets in dense.bin; for an expert shape, offsets within the image
};

enum class ChunkCodec { None, Zstd };

struct ExpertChunk {
  int layer = -1, expert = -1;
  uint64_t offset = 0;        // in the experts file, multiple of 4 KiB
  uint64_t stored_bytes = 0;  // on disk, multiple of 4 KiB (the compressed size rounded up, for zstd)
  uint64_t payload_bytes = 0; // the bytes that hash to xxh64: the image (None) or the zstd frame (Zstd)
  ChunkCodec codec = ChunkCodec::None;
  uint64_t xxh64 = 0;
};

// The routed experts at one precision.
struct ExpertTierFile {
  std::string precision;  // "bf16", "int8", "int4"
  int group_size = 0;     // int8/int4; 0 for bf16
  std::string file;       // "experts-bf16.bin"
  StoreMatrix gate, up, down;  // the shape of every expert; array offsets within the image
  ExpertImage image;
  std::vector<ExpertChunk> chunks;  // layer-major, MoE layers only

  const ExpertChunk* find(int layer, int expert) const;
  uint64_t stored_bytes() const;
};

struct StoreManifest {
  std::filesystem::path dir;
  std::string source;           // the directory it was converted from
  ModelConfig config;           // parsed from the store's config.json
  std::string dense_file = "dense.bin";
  uint64_t dense_bytes = 0;
  uint64_t dense_xxh64 = 0;
  DType embed_dtype = DType::BF16;
  StoreArray embed;
  std::map<std::string, StoreMatrix> matrices;  // "lm_head", "layers.3.wqkv", "layers.3.shared.gate", ...
  std::map<std::string, StoreArray> vectors;    // f32: "final_norm", "layers.3.attn_norm", ...
  std::vector<ExpertTierFile> experts;

  // The expert file at this precision (dtype BF16, I8 or I4) and group size (ignored for bf16), or null.
  const ExpertTierFile* expert_file(DType dtype, int group_size) const;
  // The same, or ferry::Error "<context>: the store DIR has no int8 experts of group 64; convert with
  // --precision int8".
  const ExpertTierFile& require_expert_file(DType dtype, int group_size, const std::string& context) const;
};

// A PackedMatrix of m's shape viewing its arrays at `base + offsets` (a file mapping or an expert image);
// with a null base, the shape alone (every array pointer null, sizes kept).
cpu::PackedMatrix matrix_view(const StoreMatrix& m, const uint8_t* base);

// Whether `dir` holds a store manifest.
bool is_packed_store(const std::filesystem::path& dir);
// Reads and checks the manifest (format, version, every offset inside its file's size). Throws ferry::Error
// naming the file and what is wrong.
StoreManifest read_store_manifest(const std::filesystem::path& dir);

struct ConvertOptions {
  std::vector<DType> precisions{DType::BF16};  // of the routed experts: BF16, I8, I4
  int group_size = 64;                         // int8/int4 quantisation group
  bool zstd = false;                           // compress expert chunks where that saves bytes
  int zstd_level = 3;
  // Called after each layer: (layers done, layers, bytes written so far).
  std::function<void(int, int, uint64_t)> progress;
};

struct ConvertResult {
  uint64_t dense_bytes = 0, expert_bytes = 0, source_bytes = 0;
  uint64_t zstd_chunks = 0, chunks = 0;
};

// Converts an open checkpoint into a store at `out` (created; must not exist or be empty). One layer is
// packed at a time, so memory stays about one layer's weights.
ConvertResult convert_to_store(const Checkpoint& checkpoint, const std::filesystem::path& out,
                               const ConvertOptions& options);

// The manifest as JSON (what ferry-store.json holds) and back.
nlohmann::json manifest_to_json(const StoreManifest& m);

}  // namespace ferry::experts
