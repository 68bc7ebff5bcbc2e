// Writing safetensors files the way the reference writer lays them out.
#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/safetensors.h"

namespace ferry {

std::string_view safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::I8:
      return "I8";
    case DType::U8:
      return "U8";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::BOOL:
      return "BOOL";
    case DType::F64:
      return "F64";
    default:
      return "";
  }
}

void write_safetensors(const std::filesystem::path& path, std::span<const SafetensorsWriteTensor> tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const SafetensorsWriteTensor*> order;
  for (const auto& t : tensors) order.push_back(&t);
  // Largest element size first, then by name: every tensor then starts aligned for its dtype.
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    int sa = dtype_size(a->dtype), sb = dtype_size(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto* t : order) {
    std::string_view dtype = safetensors_dtype_name(t->dtype);
    FERRY_ASSERT_MSG(!dtype.empty(), "dtype has no safetensors name");
    int64_t numel = 1;
    for (int64_t d : t->shape) numel *= d;
    FERRY_ASSERT_MSG(static_cast<uint64_t>(numel) * dtype_size(t->dtype) == t->data.size(),
                     "tensor data size disagrees with its shape");
    header[t->name] = {
        {"dtype", dtype}, {"shape", t->shape}, {"data_offsets", {offset, offset + t->data.size()}}};
    offset += t->data.size();
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(path.string() + ": cannot create file");
  uint64_t n = json.size();
  unsigned char prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(prefix), 8);
  out.write(json.data(), static_cast<std::streamsize>(json.size()));
  for (const auto* t : order)
    out.write(reinterpret_cast<const char*>(t->data.data()), static_cast<std::streamsize>(t->data.size()));
  if (!out) throw Error(path.string() + ": write failed");
}

}  // namespace ferry
