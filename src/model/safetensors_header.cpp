// Parsing and validating safetensors headers. Nothing here trusts the file: every length, offset
// and shape is checked (overflow-safe) before the data buffer is used.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/safetensors.h"

namespace ferry {
namespace {

using nlohmann::json;

constexpr const char* kCorruptHint = "the file is truncated or corrupt — re-download it";

struct DTypeInfo {
  std::string_view name;
  DType dtype;
  int size;
};

// The dtypes of the safetensors format with a whole number of bytes per element. Sub-byte formats
// (F4, F6_*) are refused: no model ferry reads uses them.
constexpr DTypeInfo kDTypes[] = {
    {"BOOL", DType::BOOL, 1},
    {"U8", DType::U8, 1},
    {"I8", DType::I8, 1},
    {"F8_E5M2", DType::Unknown, 1},
    {"F8_E4M3", DType::Unknown, 1},
    {"F8_E8M0", DType::Unknown, 1},
    {"F8_E4M3FNUZ", DType::Unknown, 1},
    {"F8_E5M2FNUZ", DType::Unknown, 1},
    {"I16", DType::Unknown, 2},
    {"U16", DType::Unknown, 2},
    {"F16", DType::F16, 2},
    {"BF16", DType::BF16, 2},
    {"I32", DType::I32, 4},
    {"U32", DType::Unknown, 4},
    {"F32", DType::F32, 4},
    {"C64", DType::Unknown, 8},
    {"F64", DType::F64, 8},
    {"I64", DType::I64, 8},
    {"U64", DType::Unknown, 8},
};

const DTypeInfo* find_dtype(std::string_view name) {
  for (const auto& d : kDTypes)
    if (d.name == name) return &d;
  return nullptr;
}

std::string supported_dtype_list() {
  std::string s;
  for (const auto& d : kDTypes) {
    if (!s.empty()) s += ", ";
    s += d.name;
  }
  return s;
}

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw Error(source + ": " + what);
}

[[noreturn]] void fail_tensor(const std::string& source, const std::string& name, const std::string& what) {
  throw Error(source + ": tensor '" + name + "': " + what);
}

// A JSON value that is a non-negative integer representable as uint64.
bool as_u64(const json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    out = static_cast<uint64_t>(s);
    return true;
  }
  return false;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  s += ']';
  return s;
}

SafetensorsTensor parse_entry(const std::string& source, const std::string& name, const json& entry,
                              uint64_t data_bytes) {
  if (!entry.is_object())
    fail_tensor(source, name, "header entry is not a JSON object; " + std::string(kCorruptHint));
  SafetensorsTensor t;
  t.name = name;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string())
    fail_tensor(source, name, "header entry has no \"dtype\" string; " + std::string(kCorruptHint));
  t.dtype_name = dtype_it->get<std::string>();
  const DTypeInfo* info = find_dtype(t.dtype_name);
  if (!info)
    fail_tensor(source, name,
                "unknown dtype '" + t.dtype_name +
                    "' (safetensors dtypes ferry reads: " + supported_dtype_list() +
                    "); the file is corrupt or uses a format ferry does not support");
  t.dtype = info->dtype;
  t.element_size = info->size;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array())
    fail_tensor(source, name, "header entry has no \"shape\" array; " + std::string(kCorruptHint));
  uint64_t numel = 1;
  bool numel_overflow = false;
  for (const json& d : *shape_it) {
    uint64_t dim = 0;
    if (!as_u64(d, dim) || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail_tensor(
          source, name,
          "shape " + shape_it->dump() + " has an entry that is not a non-negative integer; " + kCorruptHint);
    t.shape.push_back(static_cast<int64_t>(dim));
    if (__builtin_mul_overflow(numel, dim, &numel)) numel_overflow = true;
  }

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2 || !as_u64((*off_it)[0], t.begin) ||
      !as_u64((*off_it)[1], t.end))
    fail_tensor(
        source, name,
        "\"data_offsets\" must be two non-negative integers [begin, end]; " + std::string(kCorruptHint));
  if (t.begin > t.end)
    fail_tensor(source, name,
                "data_offsets [" + std::to_string(t.begin) + "," + std::to_string(t.end) +
                    "] begin after end; " + kCorruptHint);
  if (t.end > data_bytes)
    fail_tensor(source, name,
                "data_offsets [" + std::to_string(t.begin) + "," + std::to_string(t.end) +
                    "] exceed the data buffer of " + std::to_string(data_bytes) + " bytes; " + kCorruptHint);

  uint64_t expected_bytes = 0;
  if (numel_overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(numel, static_cast<uint64_t>(info->size), &expected_bytes) ||
      expected_bytes != t.end - t.begin)
    fail_tensor(source, name,
                "dtype " + t.dtype_name + " with shape " + shape_string(t.shape) + " needs " +
                    (numel_overflow ? std::string("more than 2^64")
                                    : std::to_string(numel) + " x " + std::to_string(info->size)) +
                    " bytes but data_offsets [" + std::to_string(t.begin) + "," + std::to_string(t.end) +
                    "] hold " + std::to_string(t.end - t.begin) + "; " + kCorruptHint);
  return t;
}

// The offsets must tile [0, data_bytes) exactly: no hole, no overlap, nothing after the last tensor.
void check_tiling(const std::string& source, std::vector<SafetensorsTensor>& tensors, uint64_t data_bytes) {
  std::sort(tensors.begin(), tensors.end(), [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end != b.end ? a.end < b.end : a.name < b.name;
  });
  uint64_t covered = 0;
  const SafetensorsTensor* previous = nullptr;
  for (const auto& t : tensors) {
    if (t.begin < covered)
      fail_tensor(source, t.name,
                  "data_offsets [" + std::to_string(t.begin) + "," + std::to_string(t.end) +
                      "] overlap tensor '" + previous->name + "' [" + std::to_string(previous->begin) + "," +
                      std::to_string(previous->end) + "]; " + kCorruptHint);
    if (t.begin > covered)
      fail_tensor(source, t.name,
                  "data_offsets [" + std::to_string(t.begin) + "," + std::to_string(t.end) +
                      "] leave a gap: bytes [" + std::to_string(covered) + "," + std::to_string(t.begin) +
                      ") of the data buffer belong to no tensor; " + kCorruptHint);
    covered = t.end;
    previous = &t;
  }
  if (covered != data_bytes)
    fail(source, "the data buffer has " + std::to_string(data_bytes) + " bytes but the tensors cover only " +
                     std::to_string(covered) + "; " + kCorruptHint);
}

}  // namespace

int64_t SafetensorsTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const SafetensorsTensor* SafetensorsHeader::find(std::string_view name) const {
  auto it = index.find(std::string(name));
  return it == index.end() ? nullptr : &tensors[it->second];
}

SafetensorsHeader parse_safetensors_header(std::string_view header_json, uint64_t data_bytes,
                                           const std::string& source) {
  size_t first = header_json.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || header_json[first] != '{')
    fail(source, "the header is not a JSON object; this is not a safetensors file or it is corrupt");

  // nlohmann keeps the last of duplicate keys silently; the callback sees every top-level key first.
  std::unordered_set<std::string> seen;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) {
      std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second)
        fail(source, "tensor '" + key + "' appears twice in the header; " + kCorruptHint);
    }
    return true;
  };
  json root;
  try {
    root = json::parse(header_json.begin(), header_json.end(), on_event);
  } catch (const json::exception& e) {
    fail(source, std::string("the header is not valid JSON (") + e.what() + "); " + kCorruptHint);
  }
  if (!root.is_object()) fail(source, "the header is not a JSON object; " + std::string(kCorruptHint));

  SafetensorsHeader header;
  header.data_bytes = data_bytes;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object())
        fail(source, "__metadata__ is not a JSON object of strings; " + std::string(kCorruptHint));
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          fail(source, "__metadata__ entry '" + m.key() + "' is not a string; " + std::string(kCorruptHint));
        header.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    header.tensors.push_back(parse_entry(source, it.key(), *it, data_bytes));
  }
  check_tiling(source, header.tensors, data_bytes);
  header.index.reserve(header.tensors.size());
  for (size_t i = 0; i < header.tensors.size(); ++i) header.index.emplace(header.tensors[i].name, i);
  return header;
}

SafetensorsHeader parse_safetensors(std::span<const std::byte> file_bytes, const std::string& source) {
  if (file_bytes.size() < 8)
    fail(source, "file has " + std::to_string(file_bytes.size()) +
                     " bytes, fewer than the 8-byte header length; " + kCorruptHint);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(file_bytes[static_cast<size_t>(i)]);
  if (n > kSafetensorsMaxHeaderBytes)
    fail(source, "header length " + std::to_string(n) + " exceeds the limit of " +
                     std::to_string(kSafetensorsMaxHeaderBytes) +
                     " bytes; this is not a safetensors file or it is corrupt");
  if (n > file_bytes.size() - 8)
    fail(source, "header length " + std::to_string(n) + " runs past the end of the file (" +
                     std::to_string(file_bytes.size()) + " bytes); " + kCorruptHint);
  std::string_view header_json(reinterpret_cast<const char*>(file_bytes.data()) + 8, static_cast<size_t>(n));
  SafetensorsHeader header = parse_safetensors_header(header_json, file_bytes.size() - 8 - n, source);
  header.header_bytes = n;
  return header;
}

}  // namespace ferry
