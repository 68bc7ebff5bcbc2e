// Typed access to a Hugging Face config.json with messages that name the file and the key.
// Keys may be dotted to reach nested objects ("attn_config.kv_n_heads"). A JSON null counts as absent,
// as transformers writes null for unset optional fields.
#pragma once
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/model_config.h"

namespace ferry {

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& root, std::string source) : root_(root), source_(std::move(source)) {}

  const std::string& source() const { return source_; }
  // The value at `key`, or nullptr when absent or null.
  const nlohmann::json* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  int req_int(std::string_view key) const;
  // The first of several spellings of one key (transformers renames keys between versions, e.g.
  // num_experts / num_local_experts); the error names them all.
  int req_int_any(std::initializer_list<std::string_view> keys) const;
  int opt_int(std::string_view key, int fallback) const;
  double req_double(std::string_view key) const;
  double opt_double(std::string_view key, double fallback) const;
  bool opt_bool(std::string_view key, bool fallback) const;
  std::string opt_string(std::string_view key, const std::string& fallback) const;
  std::vector<int> opt_int_list(std::string_view key) const;        // [] when absent
  std::vector<double> opt_double_list(std::string_view key) const;  // [] when absent
  // An int or a list of ints (eos_token_id); [] when absent.
  std::vector<int> int_or_int_list(std::string_view key) const;

  [[noreturn]] void fail(std::string_view key, const std::string& problem) const;

 private:
  int to_int(std::string_view key, const nlohmann::json& v) const;
  double to_double(std::string_view key, const nlohmann::json& v) const;
  const nlohmann::json& root_;
  std::string source_;
};

// RoPE: rope_theta (transformers 4), rope_parameters (transformers 5) or the legacy rope_scaling
// (type or rope_type: linear, dynamic, yarn, llama3, longrope). Fills cfg.rope; needs cfg.head_dim.
void parse_rope_config(const ConfigReader& r, double default_theta, ModelConfig& cfg);

}  // namespace ferry
