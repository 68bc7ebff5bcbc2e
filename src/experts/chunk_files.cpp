// Opening files for chunk reads: O_DIRECT first, buffered when the filesystem refuses it (chunk_files.h).
#include "experts/chunk_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "ferry/error.h"

namespace ferry::experts {
namespace {
std::atomic<bool> g_refuse_direct{false};

int open_retrying(const char* path, int flags) {
  int fd;
  do fd = ::open(path, flags);
  while (fd < 0 && errno == EINTR);
  return fd;
}
}  // namespace

void refuse_direct_io_for_tests(bool refuse) {
  g_refuse_direct = refuse;
}

ChunkFiles::~ChunkFiles() {
  for (const ChunkFile& f : files_) ::close(f.fd);
}

int ChunkFiles::open(const std::filesystem::path& path) {
  ChunkFile f{path, -1, true};
  int err = EINVAL;
  if (!g_refuse_direct) {
    f.fd = open_retrying(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    err = errno;
  }
  if (f.fd < 0 && err == EINVAL) {
    f.direct = false;
    f.fd = open_retrying(path.c_str(), O_RDONLY | O_CLOEXEC);
    err = errno;
  }
  if (f.fd < 0)
    throw Error("cannot open expert chunk file '" + path.string() + "': " + std::strerror(err) +
                " (check that the path exists and is readable)");
  files_.push_back(std::move(f));
  return static_cast<int>(files_.size() - 1);
}

}  // namespace ferry::experts
