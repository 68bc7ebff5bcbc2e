// Tiny checkpoints written by the tests themselves: config.json + safetensors with tensor names
// spelled out here (not taken from ferry's family adapters), filled with values that are exact in bf16.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/dtype.h"

namespace ferry::test {

// A fresh directory under /tmp, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct FixtureTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;  // numel values, written as `dtype`
  DType dtype = DType::BF16;
};

// Deterministic values k/64, |k| <= 48 (exact in bf16), different for different seeds.
std::vector<float> pattern(uint32_t seed, int64_t numel);
uint32_t seed_of(const std::string& what);
FixtureTensor make_tensor(std::string name, std::vector<int64_t> shape, DType dtype = DType::BF16);

void write_text(const std::filesystem::path& path, const std::string& text);
void write_config(const std::filesystem::path& dir, const nlohmann::json& config);
// config.json + model.safetensors.
void write_model_dir(const std::filesystem::path& dir, const nlohmann::json& config,
                     const std::vector<FixtureTensor>& tensors);
// config.json + model-0000i-of-0000n.safetensors + model.safetensors.index.json (tensors dealt round-robin).
void write_sharded_model_dir(const std::filesystem::path& dir, const nlohmann::json& config,
                             const std::vector<FixtureTensor>& tensors, int n_shards);
// A safetensors file from a literal header and `data_bytes` bytes of data (i % 251), for broken files.
void write_raw_safetensors(const std::filesystem::path& path, const std::string& header, size_t data_bytes);

// Tiny Mixtral: L=2, D=16, H=4, Hkv=2, Dh=4, F=24, E=4, K=2, V=32.
nlohmann::json tiny_mixtral_config();
// Per-expert (block_sparse_moe.experts.E.w1/w3/w2) or fused (mlp.experts.gate_up_proj/down_proj)
// names holding the same values: expert (l, e) gate/up/down come from seed_of("gate l e") etc.
std::vector<FixtureTensor> tiny_mixtral_tensors(bool fused);
// The values of expert (layer, expert)'s canonical gate [F, D], up [F, D] or down [D, F].
std::vector<float> tiny_expert_values(const std::string& proj, int layer, int expert, int64_t numel);

// Tiny Qwen2-MoE: L=3 with layer 1 dense (mlp_only_layers [1]), D=16, H=4, Hkv=2, F=8, dense width 20,
// shared expert width 12 (gated), E=4, K=2, V=32, q/k/v bias.
nlohmann::json tiny_qwen2_moe_config();
std::vector<FixtureTensor> tiny_qwen2_moe_tensors();

// Tiny DBRX: L=1, D=16, H=4, Hkv=2, F=8, E=3, K=2, V=32; fused Wqkv and stacked experts.
nlohmann::json tiny_dbrx_config();
std::vector<FixtureTensor> tiny_dbrx_tensors();

const FixtureTensor& find_fixture(const std::vector<FixtureTensor>& tensors, const std::string& name);

}  // namespace ferry::test
