// A safetensors file mapped read-only, with copies for tensors whose start is misaligned for their
// dtype (writers other than the reference one need not align tensors).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "ferry/error.h"
#include "ferry/safetensors.h"

namespace ferry {

namespace {
struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};
}  // namespace

struct SafetensorsFile::Impl {
  const std::byte* map = nullptr;
  size_t map_bytes = 0;
  std::mutex copies_mutex;
  std::unordered_map<std::string, std::unique_ptr<std::byte, FreeDeleter>> aligned_copies;  // by tensor name

  ~Impl() {
    if (map) munmap(const_cast<std::byte*>(map), map_bytes);
  }
};

SafetensorsFile::SafetensorsFile(std::filesystem::path path, std::unique_ptr<Impl> impl)
    : path_(std::move(path)), impl_(std::move(impl)) {}

SafetensorsFile::~SafetensorsFile() = default;

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string source = path.string();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(source + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw Error(source + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(source + ": not a regular file");
  }
  auto impl = std::make_unique<Impl>();
  impl->map_bytes = static_cast<size_t>(st.st_size);
  if (impl->map_bytes > 0) {
    void* p = mmap(nullptr, impl->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw Error(source + ": cannot map " + std::to_string(impl->map_bytes) +
                  " bytes: " + std::strerror(err));
    }
    impl->map = static_cast<const std::byte*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(path, std::move(impl)));
  file->header_ =
      parse_safetensors(std::span<const std::byte>(file->impl_->map, file->impl_->map_bytes), source);
  return file;
}

const SafetensorsTensor& SafetensorsFile::at(std::string_view name) const {
  const SafetensorsTensor* t = find(name);
  if (!t) throw Error(path_.string() + ": has no tensor '" + std::string(name) + "'");
  return *t;
}

std::span<const std::byte> SafetensorsFile::raw(const SafetensorsTensor& t) const {
  return {impl_->map + header_.data_offset() + t.begin, static_cast<size_t>(t.nbytes())};
}

bool SafetensorsFile::is_aligned(const SafetensorsTensor& t) const {
  auto address = reinterpret_cast<uintptr_t>(impl_->map + header_.data_offset() + t.begin);
  return t.element_size <= 1 || address % static_cast<uintptr_t>(t.element_size) == 0;
}

std::span<const std::byte> SafetensorsFile::aligned(const SafetensorsTensor& t) const {
  std::span<const std::byte> bytes = raw(t);
  if (is_aligned(t) || bytes.empty()) return bytes;
  std::lock_guard lock(impl_->copies_mutex);
  auto& copy = impl_->aligned_copies[t.name];
  if (!copy) {
    // 64: a cache line, enough for any dtype and for vector loads.
    size_t rounded = (bytes.size() + 63) / 64 * 64;
    auto* p = static_cast<std::byte*>(std::aligned_alloc(64, rounded));
    if (!p) throw std::bad_alloc();
    std::memcpy(p, bytes.data(), bytes.size());
    copy.reset(p);
  }
  return {copy.get(), bytes.size()};
}

}  // namespace ferry
