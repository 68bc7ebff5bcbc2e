// A whole file mapped read-only (the packed store's dense weights and resident experts are used in place).
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace ferry::experts {

class MappedFile {
 public:
  // Throws ferry::Error naming the path. populate: fault every page in now (MAP_POPULATE).
  explicit MappedFile(const std::filesystem::path& path, bool populate = false);
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ferry::experts
