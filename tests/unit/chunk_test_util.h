// Helpers for the chunk reader and xxhash tests: reproducible pseudo-random bytes (the same generator as
// the python script that produced the reference xxhash values) and a temporary directory.
#pragma once
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace ferry::test {

// Byte i is the top byte of the (i+1)-th state of a 64-bit LCG (Knuth's MMIX constants) from `state`.
inline std::vector<uint8_t> lcg_bytes(size_t n, uint64_t state = 0x9E3779B97F4A7C15ULL) {
  std::vector<uint8_t> out(n);
  for (uint8_t& b : out) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    b = static_cast<uint8_t>(state >> 56);
  }
  return out;
}

// A fresh directory under /tmp, removed with everything in it when the object goes.
class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/ferry-chunk-XXXXXX";
    if (!mkdtemp(name)) throw std::runtime_error("mkdtemp failed");
    path_ = name;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace ferry::test
