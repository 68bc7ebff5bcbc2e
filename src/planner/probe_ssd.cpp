// SSD read bandwidth as the expert store will see it: O_DIRECT (no page cache) reads of 4 MiB blocks,
// eight in flight through io_uring, or one at a time with pread when io_uring is unavailable.
#include <fcntl.h>
#include <liburing.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ferry/error.h"
#include "ferry/planner/probe.h"

namespace ferry::planner {
namespace {

constexpr size_t kBlock = 4u << 20;
constexpr int kQueueDepth = 8;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct AlignedBuffer {
  explicit AlignedBuffer(size_t n) : p(static_cast<uint8_t*>(std::aligned_alloc(4096, n))) {
    if (!p) throw std::bad_alloc();
  }
  ~AlignedBuffer() { std::free(p); }
  uint8_t* p;
};

struct TempFile {
  std::string path;
  ~TempFile() {
    if (!path.empty()) unlink(path.c_str());
  }
};

// Seconds to read `bytes` of `fd` with io_uring, or a negative value when io_uring cannot be set up.
double read_uring(int fd, size_t bytes) {
  io_uring ring;
  if (io_uring_queue_init(kQueueDepth, &ring, 0) < 0) return -1;
  AlignedBuffer buf(kBlock * kQueueDepth);
  size_t next = 0, done = 0;
  int in_flight = 0;
  double t0 = now_s();
  while (done < bytes) {
    while (in_flight < kQueueDepth && next < bytes) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      if (!sqe) break;
      size_t len = std::min(kBlock, bytes - next);
      io_uring_prep_read(sqe, fd, buf.p + (next / kBlock % kQueueDepth) * kBlock, static_cast<unsigned>(len),
                         next);
      next += len;
      ++in_flight;
    }
    io_uring_submit(&ring);
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe(&ring, &cqe) < 0) {
      io_uring_queue_exit(&ring);
      return -1;
    }
    int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    --in_flight;
    if (res <= 0) {
      io_uring_queue_exit(&ring);
      throw Error("O_DIRECT read failed during the SSD probe: " + std::string(std::strerror(-res)));
    }
    done += static_cast<size_t>(res);
  }
  double dt = now_s() - t0;
  io_uring_queue_exit(&ring);
  return dt;
}

double read_pread(int fd, size_t bytes) {
  AlignedBuffer buf(kBlock);
  double t0 = now_s();
  for (size_t off = 0; off < bytes;) {
    ssize_t r = pread(fd, buf.p, std::min(kBlock, bytes - off), static_cast<off_t>(off));
    if (r <= 0)
      throw Error("O_DIRECT read failed during the SSD probe: " + std::string(std::strerror(errno)));
    off += static_cast<size_t>(r);
  }
  return now_s() - t0;
}

}  // namespace

SsdProbe probe_ssd(const std::string& dir, int64_t bytes_wanted, int repeats) {
  SsdProbe out;
  struct statvfs vfs;
  if (statvfs(dir.c_str(), &vfs) != 0)
    throw Error("SSD probe: cannot stat '" + dir + "': " + std::strerror(errno));
  out.free_bytes = static_cast<double>(vfs.f_bavail) * static_cast<double>(vfs.f_frsize);
  size_t bytes = static_cast<size_t>(std::max<int64_t>(bytes_wanted, kBlock)) / kBlock * kBlock;
  if (static_cast<double>(bytes) > out.free_bytes * 0.5)
    throw Error("SSD probe: '" + dir + "' has only " +
                std::to_string(static_cast<int64_t>(out.free_bytes / 1e6)) + " MB free; the probe writes " +
                std::to_string(bytes / 1000000) + " MB (set --ssd-bytes)");

  TempFile tmp;
  std::string pattern = dir + "/.ferry-probe-XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  int wfd = mkstemp(name.data());
  if (wfd < 0) throw Error("SSD probe: cannot create a file in '" + dir + "': " + std::strerror(errno));
  tmp.path = name.data();
  {
    std::vector<uint8_t> block(kBlock);
    for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<uint8_t>(i * 131 + 7);
    for (size_t off = 0; off < bytes; off += kBlock) {
      block[0] = static_cast<uint8_t>(off >> 22);
      if (write(wfd, block.data(), kBlock) != static_cast<ssize_t>(kBlock)) {
        close(wfd);
        throw Error("SSD probe: writing '" + tmp.path + "' failed: " + std::strerror(errno));
      }
    }
    fsync(wfd);
    close(wfd);
  }
  int fd = open(tmp.path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0)
    throw Error("SSD probe: '" + dir + "' does not support O_DIRECT (" + std::strerror(errno) +
                "; tmpfs does not): give --ssd-path a directory on the SSD");
  std::vector<double> rates;
  out.method = "io_uring, 8 x 4 MiB in flight, O_DIRECT";
  for (int r = 0; r < std::max(1, repeats); ++r) {
    double dt = read_uring(fd, bytes);
    if (dt < 0) {
      out.method = "pread 4 MiB, O_DIRECT";
      dt = read_pread(fd, bytes);
    }
    rates.push_back(static_cast<double>(bytes) / dt / 1e9);
  }
  close(fd);
  std::sort(rates.begin(), rates.end());
  out.read_gbps = rates[rates.size() / 2];
  return out;
}

}  // namespace ferry::planner
