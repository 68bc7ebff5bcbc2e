#include "planner/json_fields.h"

#include <cmath>
#include <cstdint>

#include "ferry/error.h"

namespace ferry::planner {
namespace {

std::string shown(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

std::string number_text(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  return std::to_string(v);
}

}  // namespace

JsonFields::JsonFields(const nlohmann::json& obj, std::string source, std::string prefix)
    : obj_(obj), source_(std::move(source)), prefix_(std::move(prefix)) {
  if (!obj_.is_object()) {
    std::string where = prefix_.empty() ? "the top level" : "key '" + prefix_ + "'";
    throw Error(source_ + ": " + where + ": expected a JSON object, got " + shown(obj_));
  }
}

std::string JsonFields::path(std::string_view key) const {
  if (prefix_.empty()) return std::string(key);
  if (!key.empty() && key.front() == '[') return prefix_ + std::string(key);
  return prefix_ + "." + std::string(key);
}

void JsonFields::fail(std::string_view key, const std::string& problem) const {
  throw Error(source_ + ": key '" + path(key) + "': " + problem);
}

const nlohmann::json* JsonFields::find(std::string_view key) const {
  auto it = obj_.find(std::string(key));
  if (it == obj_.end() || it->is_null()) return nullptr;
  return &*it;
}

double JsonFields::to_number(std::string_view key, const nlohmann::json& v, double min_value) const {
  if (!v.is_number()) fail(key, "expected a number, got " + shown(v));
  double x = v.get<double>();
  if (!std::isfinite(x)) fail(key, "expected a finite number, got " + shown(v));
  if (x < min_value) fail(key, "expected a number >= " + number_text(min_value) + ", got " + shown(v));
  return x;
}

int64_t JsonFields::to_int(std::string_view key, const nlohmann::json& v, int64_t min_value) const {
  bool integral =
      v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  if (!integral) fail(key, "expected an integer, got " + shown(v));
  // A float is converted only once it is known to fit (no undefined float -> int conversion).
  constexpr double kTwo63 = 9223372036854775808.0;
  if (v.is_number_float() && !(v.get<double>() >= -kTwo63 && v.get<double>() < kTwo63))
    fail(key, "expected an integer >= " + std::to_string(min_value) + ", got " + shown(v));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    fail(key, "expected an integer >= " + std::to_string(min_value) + ", got " + shown(v));
  int64_t x = v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>());
  if (x < min_value) fail(key, "expected an integer >= " + std::to_string(min_value) + ", got " + shown(v));
  return x;
}

double JsonFields::req_number(std::string_view key, double min_value) const {
  const nlohmann::json* v = find(key);
  if (!v) fail(key, "is missing (expected a number)");
  return to_number(key, *v, min_value);
}

double JsonFields::opt_number(std::string_view key, double fallback, double min_value) const {
  const nlohmann::json* v = find(key);
  return v ? to_number(key, *v, min_value) : fallback;
}

int64_t JsonFields::req_int(std::string_view key, int64_t min_value) const {
  const nlohmann::json* v = find(key);
  if (!v) fail(key, "is missing (expected an integer)");
  return to_int(key, *v, min_value);
}

int64_t JsonFields::opt_int(std::string_view key, int64_t fallback, int64_t min_value) const {
  const nlohmann::json* v = find(key);
  return v ? to_int(key, *v, min_value) : fallback;
}

bool JsonFields::opt_bool(std::string_view key, bool fallback) const {
  const nlohmann::json* v = find(key);
  if (!v) return fallback;
  if (!v->is_boolean()) fail(key, "expected true or false, got " + shown(*v));
  return v->get<bool>();
}

std::string JsonFields::req_string(std::string_view key) const {
  const nlohmann::json* v = find(key);
  if (!v) fail(key, "is missing (expected a string)");
  if (!v->is_string()) fail(key, "expected a string, got " + shown(*v));
  return v->get<std::string>();
}

std::string JsonFields::opt_string(std::string_view key, const std::string& fallback) const {
  const nlohmann::json* v = find(key);
  if (!v) return fallback;
  if (!v->is_string()) fail(key, "expected a string, got " + shown(*v));
  return v->get<std::string>();
}

std::string JsonFields::opt_choice(std::string_view key, const std::vector<std::string>& allowed,
                                   const std::string& fallback) const {
  return find(key) ? req_choice(key, allowed) : fallback;
}

std::string JsonFields::req_choice(std::string_view key, const std::vector<std::string>& allowed) const {
  std::string value = req_string(key);
  for (const auto& a : allowed)
    if (a == value) return value;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  fail(key, "is '" + value + "'; expected one of " + list);
}

std::vector<int64_t> JsonFields::req_int_array(std::string_view key, int64_t min_value) const {
  const nlohmann::json& arr = req_array(key);
  std::vector<int64_t> out;
  out.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i)
    out.push_back(to_int(std::string(key) + "[" + std::to_string(i) + "]", arr[i], min_value));
  return out;
}

const nlohmann::json& JsonFields::req_array(std::string_view key) const {
  const nlohmann::json* v = find(key);
  if (!v) fail(key, "is missing (expected an array)");
  if (!v->is_array()) fail(key, "expected an array, got " + shown(*v));
  return *v;
}

JsonFields JsonFields::req_object(std::string_view key) const {
  const nlohmann::json* v = find(key);
  if (!v) fail(key, "is missing (expected an object)");
  if (!v->is_object()) fail(key, "expected an object, got " + shown(*v));
  return JsonFields(*v, source_, path(key));
}

std::optional<JsonFields> JsonFields::opt_object(std::string_view key) const {
  const nlohmann::json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_object()) fail(key, "expected an object, got " + shown(*v));
  return JsonFields(*v, source_, path(key));
}

}  // namespace ferry::planner
