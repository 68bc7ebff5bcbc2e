// The open files of a real (fd-based) reader. Each is opened O_DIRECT so reads bypass the page cache
// (a DRAM budget stays honest and the disk runs at its raw rate); a filesystem that refuses O_DIRECT
// (EINVAL: tmpfs on older kernels, some network and FUSE filesystems) gets a buffered fd instead, and
// the file records that, because an O_DIRECT fd needs the block-boundary rule of finish_attempt.
#pragma once
#include <filesystem>
#include <vector>

namespace ferry::experts {

struct ChunkFile {
  std::filesystem::path path;
  int fd = -1;
  bool direct = false;  // opened with O_DIRECT
};

class ChunkFiles {
 public:
  ChunkFiles() = default;
  ChunkFiles(const ChunkFiles&) = delete;
  ChunkFiles& operator=(const ChunkFiles&) = delete;
  ~ChunkFiles();

  // Opens `path` read-only (O_DIRECT when allowed); returns its index. Throws ferry::Error naming it.
  int open(const std::filesystem::path& path);
  const ChunkFile& at(int file) const { return files_.at(static_cast<size_t>(file)); }
  size_t size() const { return files_.size(); }

 private:
  std::vector<ChunkFile> files_;
};

// Tests only: while set, every open behaves as if the filesystem refused O_DIRECT, so the buffered
// fallback is exercised on machines whose /tmp accepts O_DIRECT.
void refuse_direct_io_for_tests(bool refuse);

}  // namespace ferry::experts
