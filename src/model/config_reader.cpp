#include "model/config_reader.h"

#include <cmath>
#include <limits>

#include "ferry/error.h"

namespace ferry {

const nlohmann::json* ConfigReader::find(std::string_view key) const {
  const nlohmann::json* node = &root_;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    std::string part(key.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (!node->is_object()) return nullptr;
    auto it = node->find(part);
    if (it == node->end() || it->is_null()) return nullptr;
    node = &*it;
    if (dot == std::string_view::npos) return node;
    start = dot + 1;
  }
}

void ConfigReader::fail(std::string_view key, const std::string& problem) const {
  throw Error(source_ + ": key '" + std::string(key) + "' " + problem);
}

int ConfigReader::to_int(std::string_view key, const nlohmann::json& v) const {
  double d = 0;
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < std::numeric_limits<int>::min() || i > std::numeric_limits<int>::max())
      fail(key, "is out of range: " + v.dump());
    return static_cast<int>(i);
  }
  if (v.is_number_float() && (d = v.get<double>(), std::isfinite(d) && d == std::floor(d)) &&
      std::abs(d) <= std::numeric_limits<int>::max())
    return static_cast<int>(d);
  fail(key, "must be an integer, got " + v.dump());
}

double ConfigReader::to_double(std::string_view key, const nlohmann::json& v) const {
  if (v.is_number()) return v.get<double>();
  fail(key, "must be a number, got " + v.dump());
}

int ConfigReader::req_int(std::string_view key) const {
  const nlohmann::json* v = find(key);
  if (!v) fail(key, "is missing; it is required to load this model (is the config.json complete?)");
  return to_int(key, *v);
}

int ConfigReader::req_int_any(std::initializer_list<std::string_view> keys) const {
  std::string names;
  for (std::string_view key : keys) {
    if (const nlohmann::json* v = find(key)) return to_int(key, *v);
    names += (names.empty() ? "" : " or ") + std::string(key);
  }
  fail(*keys.begin(),
       "(" + names + ") is missing; it is required to load this model (is the config.json complete?)");
}

int ConfigReader::opt_int(std::string_view key, int fallback) const {
  const nlohmann::json* v = find(key);
  return v ? to_int(key, *v) : fallback;
}

double ConfigReader::req_double(std::string_view key) const {
  const nlohmann::json* v = find(key);
  if (!v) fail(key, "is missing; it is required to load this model (is the config.json complete?)");
  return to_double(key, *v);
}

double ConfigReader::opt_double(std::string_view key, double fallback) const {
  const nlohmann::json* v = find(key);
  return v ? to_double(key, *v) : fallback;
}

bool ConfigReader::opt_bool(std::string_view key, bool fallback) const {
  const nlohmann::json* v = find(key);
  if (!v) return fallback;
  if (!v->is_boolean()) fail(key, "must be true or false, got " + v->dump());
  return v->get<bool>();
}

std::string ConfigReader::opt_string(std::string_view key, const std::string& fallback) const {
  const nlohmann::json* v = find(key);
  if (!v) return fallback;
  if (!v->is_string()) fail(key, "must be a string, got " + v->dump());
  return v->get<std::string>();
}

std::vector<int> ConfigReader::opt_int_list(std::string_view key) const {
  const nlohmann::json* v = find(key);
  std::vector<int> out;
  if (!v) return out;
  if (!v->is_array()) fail(key, "must be a list of integers, got " + v->dump());
  for (const auto& e : *v) out.push_back(to_int(key, e));
  return out;
}

std::vector<double> ConfigReader::opt_double_list(std::string_view key) const {
  const nlohmann::json* v = find(key);
  std::vector<double> out;
  if (!v) return out;
  if (!v->is_array()) fail(key, "must be a list of numbers, got " + v->dump());
  for (const auto& e : *v) out.push_back(to_double(key, e));
  return out;
}

std::vector<int> ConfigReader::int_or_int_list(std::string_view key) const {
  const nlohmann::json* v = find(key);
  if (!v) return {};
  if (v->is_array()) return opt_int_list(key);
  return {to_int(key, *v)};
}

}  // namespace ferry
