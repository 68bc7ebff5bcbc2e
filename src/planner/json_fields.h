// Typed reads from a JSON object whose errors name the file and the full key path
// ("policy.json: key 'experts.gpu_per_layer[3]': expected an integer >= 0, got -1").
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ferry::planner {

class JsonFields {
 public:
  // `obj` must outlive this reader. `prefix` is the key path of `obj` inside the file ("" at the root).
  JsonFields(const nlohmann::json& obj, std::string source, std::string prefix = "");

  const std::string& source() const { return source_; }
  std::string path(std::string_view key) const;
  // "policy.json: key 'experts.gpu_per_layer'": how messages (and ferry/validate.h) name a field.
  std::string field_name(std::string_view key) const { return source_ + ": key '" + path(key) + "'"; }
  // The value at `key`, or nullptr when absent or null.
  const nlohmann::json* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  double req_number(std::string_view key, double min_value) const;
  double opt_number(std::string_view key, double fallback, double min_value) const;
  int64_t req_int(std::string_view key, int64_t min_value) const;
  int64_t opt_int(std::string_view key, int64_t fallback, int64_t min_value) const;
  bool opt_bool(std::string_view key, bool fallback) const;
  std::string req_string(std::string_view key) const;
  std::string opt_string(std::string_view key, const std::string& fallback) const;
  // One of `allowed`; the message lists them.
  std::string req_choice(std::string_view key, const std::vector<std::string>& allowed) const;
  // The same, `fallback` when the key is absent.
  std::string opt_choice(std::string_view key, const std::vector<std::string>& allowed, const std::string& fallback) const;
  std::vector<int64_t> req_int_array(std::string_view key, int64_t min_value) const;
  JsonFields req_object(std::string_view key) const;
  std::optional<JsonFields> opt_object(std::string_view key) const;
  const nlohmann::json& req_array(std::string_view key) const;

  [[noreturn]] void fail(std::string_view key, const std::string& problem) const;

 private:
  int64_t to_int(std::string_view key, const nlohmann::json& v, int64_t min_value) const;
  double to_number(std::string_view key, const nlohmann::json& v, double min_value) const;

  const nlohmann::json& obj_;
  std::string source_;
  std::string prefix_;
};

}  // namespace ferry::planner
