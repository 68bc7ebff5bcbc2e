#include "output_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "ferry/error.h"

namespace ferry::cli {

OutputFile::OutputFile(std::string path, std::string what) : path_(std::move(path)), what_(std::move(what)) {
  if (path_.empty()) throw Error("the " + what_ + " file name is empty");
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ >= 0) {
    created_ = true;
  } else if (errno == EEXIST) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  }
  if (fd_ < 0) {
    const int err = errno;
    std::string hint;
    if (err == ENOENT) hint = " (does the directory " + std::filesystem::path(path_).parent_path().string() + " exist?)";
    else if (err == EACCES || err == EROFS || err == EPERM) hint = " (is the directory writable?)";
    throw Error("cannot write " + what_ + " to " + path_ + ": " + std::strerror(err) + hint);
  }
  struct stat st {};
  regular_ = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (created_ && !written_ && !keep_) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(path_, ec) && std::filesystem::file_size(path_, ec) == 0)
      std::filesystem::remove(path_, ec);
  }
}

void OutputFile::fail(const std::string& doing, int err) const {
  const std::string object = doing == "write" ? what_ + " to " + path_ : "the " + what_ + " file " + path_;
  throw Error("cannot " + doing + " " + object + ": " + std::strerror(err));
}

size_t OutputFile::cut_torn_last_line() {
  FERRY_ASSERT(fd_ >= 0);
  if (!regular_) return 0;
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail("read", errno);
  const off_t size = st.st_size;
  if (size == 0) return 0;
  // Scan backwards for the last newline, through a second descriptor (this one is write-only).
  const int rfd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (rfd < 0) fail("read", errno);
  char buf[4096];
  off_t end = size, keep = 0;
  for (bool last_byte = true; end > 0;) {
    const off_t begin = std::max<off_t>(0, end - static_cast<off_t>(sizeof buf));
    const size_t n = static_cast<size_t>(end - begin);
    const ssize_t got = ::pread(rfd, buf, n, begin);
    if (got != static_cast<ssize_t>(n)) {
      const int err = got < 0 ? errno : EIO;
      ::close(rfd);
      fail("read", err);
    }
    if (last_byte && buf[n - 1] == '\n') {  // the last line is whole
      ::close(rfd);
      return 0;
    }
    last_byte = false;
    if (const char* nl = static_cast<const char*>(::memrchr(buf, '\n', n))) {
      keep = begin + (nl - buf) + 1;
      break;
    }
    end = begin;
  }
  ::close(rfd);
  if (::ftruncate(fd_, keep) != 0) fail("cut the torn last line of", errno);
  return static_cast<size_t>(size - keep);
}

void OutputFile::truncate() {
  FERRY_ASSERT(fd_ >= 0);
  if (regular_ && ::ftruncate(fd_, 0) != 0) fail("empty", errno);
}

void OutputFile::append(std::string_view bytes) {
  FERRY_ASSERT(fd_ >= 0);
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write", errno);
    }
    if (n == 0) fail("write", EIO);
    written_ = true;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

void OutputFile::close() {
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;
  if (regular_ && ::fdatasync(fd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(fd);
    fail("write", err);
  }
  if (::close(fd) != 0 && errno != EINTR) fail("write", errno);
}

}  // namespace ferry::cli
