// Reading (and writing) safetensors files: u64 little-endian header length N, N bytes of JSON header,
// then the data buffer. Every tensor entry is validated (dtype, shape, offsets that tile the buffer)
// before any byte of data is trusted. Offsets are relative to the data buffer; end is exclusive.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ferry/dtype.h"

namespace ferry {

// The reference implementation refuses larger headers; so does ferry.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsTensor {
  std::string name;
  DType dtype =
      DType::Unknown;  // Unknown for valid safetensors dtypes ferry does not compute with (F8_*, U16, ...)
  std::string dtype_name;      // as written in the header, e.g. "BF16"
  int element_size = 0;        // bytes per element
  std::vector<int64_t> shape;  // row-major; [] is a scalar
  uint64_t begin = 0;          // byte offsets within the data buffer, end exclusive
  uint64_t end = 0;
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<SafetensorsTensor> tensors;                    // sorted by data offset
  std::map<std::string, std::string> metadata;               // "__metadata__"
  uint64_t header_bytes = 0;                                 // N
  uint64_t data_bytes = 0;                                   // size of the data buffer
  uint64_t data_offset() const { return 8 + header_bytes; }  // where the data buffer starts in the file
  const SafetensorsTensor* find(std::string_view name) const;

  std::unordered_map<std::string, size_t> index;  // name -> position in `tensors`
};

// Validates a whole safetensors file given as bytes (the length prefix, the header, and that the
// offsets tile the data buffer exactly). Pure: touches only `file_bytes`. `source` names the file
// in messages. Throws ferry::Error.
SafetensorsHeader parse_safetensors(std::span<const std::byte> file_bytes, const std::string& source);

// Validates the JSON header alone, for a data buffer of `data_bytes` bytes that follows it.
SafetensorsHeader parse_safetensors_header(std::string_view header_json, uint64_t data_bytes,
                                           const std::string& source);

// A safetensors file mapped read-only. Tensor data stays valid while the object lives.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<SafetensorsTensor>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const SafetensorsTensor* find(std::string_view name) const { return header_.find(name); }
  // Throws ferry::Error naming the file when the tensor is absent.
  const SafetensorsTensor& at(std::string_view name) const;

  // The tensor's bytes in the mapping, possibly misaligned for its dtype.
  std::span<const std::byte> raw(const SafetensorsTensor& t) const;
  bool is_aligned(const SafetensorsTensor& t) const;
  // The tensor's bytes at an address aligned for its dtype: the mapping itself when the tensor
  // starts aligned, otherwise a copy made once and owned by this object. Thread-safe.
  std::span<const std::byte> aligned(const SafetensorsTensor& t) const;

 private:
  struct Impl;
  SafetensorsFile(std::filesystem::path path, std::unique_ptr<Impl> impl);
  std::filesystem::path path_;
  std::unique_ptr<Impl> impl_;
  SafetensorsHeader header_;
};

struct SafetensorsWriteTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;  // numel * dtype_size bytes
};

// Writes a file the way the reference writer does: header padded with spaces to a multiple of 8,
// tensors ordered by descending element size, then name, so every tensor starts aligned.
void write_safetensors(const std::filesystem::path& path, std::span<const SafetensorsWriteTensor> tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype string for a ferry dtype ("BF16"); empty for dtypes safetensors lacks.
std::string_view safetensors_dtype_name(DType t);

}  // namespace ferry
