// Typed access to tokenizer.json / tokenizer_config.json fields with error messages that name the
// file and the field path ("tokenizer.json: pre_tokenizer.pretokenizers[0].pattern: expected ...").
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ferry/error.h"

namespace ferry::json_fields {

using nlohmann::json;

[[noreturn]] inline void fail(const std::string& where, const std::string& what) {
  throw Error(where + ": " + what);
}

inline std::string type_name(const json& j) {
  return j.type_name();
}

inline const json& require_object(const json& j, const std::string& where) {
  if (!j.is_object()) fail(where, "expected an object, found " + type_name(j));
  return j;
}

// The member, or nullptr when it is missing or null.
inline const json* find(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

inline const json& require(const json& obj, const char* key, const std::string& where) {
  const json* j = find(obj, key);
  if (!j) fail(where, std::string("missing field \"") + key + "\"");
  return *j;
}

inline std::string get_string(const json& obj, const char* key, const std::string& where) {
  const json& j = require(obj, key, where);
  if (!j.is_string()) fail(where + "." + key, "expected a string, found " + type_name(j));
  return j.get<std::string>();
}

inline std::string get_string_or(const json& obj, const char* key, const std::string& fallback,
                                 const std::string& where) {
  const json* j = find(obj, key);
  if (!j) return fallback;
  if (!j->is_string()) fail(where + "." + key, "expected a string, found " + type_name(*j));
  return j->get<std::string>();
}

inline bool get_bool_or(const json& obj, const char* key, bool fallback, const std::string& where) {
  const json* j = find(obj, key);
  if (!j) return fallback;
  if (!j->is_boolean()) fail(where + "." + key, "expected true or false, found " + type_name(*j));
  return j->get<bool>();
}

inline std::optional<bool> get_optional_bool(const json& obj, const char* key, const std::string& where) {
  const json* j = find(obj, key);
  if (!j) return std::nullopt;
  if (!j->is_boolean()) fail(where + "." + key, "expected true or false, found " + type_name(*j));
  return j->get<bool>();
}

inline int64_t get_int_or(const json& obj, const char* key, int64_t fallback, const std::string& where) {
  const json* j = find(obj, key);
  if (!j) return fallback;
  if (!j->is_number_integer()) fail(where + "." + key, "expected an integer, found " + type_name(*j));
  return j->get<int64_t>();
}

inline double get_number_or(const json& obj, const char* key, double fallback, const std::string& where) {
  const json* j = find(obj, key);
  if (!j) return fallback;
  if (!j->is_number()) fail(where + "." + key, "expected a number, found " + type_name(*j));
  return j->get<double>();
}

}  // namespace ferry::json_fields
