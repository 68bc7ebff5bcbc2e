// The io_uring reader: up to queue_depth reads in flight at once, each in one slot of a fixed table
// (the slot index is the SQE's user_data), so the ring can never hold more than it was sized for and
// the completion queue (twice the depth) never overflows. A short read is re-issued from the same slot.
// Completions reaped while submit() waits for a free slot are kept until wait() hands them out.
#include <liburing.h>

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <string>

#include "experts/chunk_files.h"
#include "experts/fd_readers.h"
#include "experts/read_progress.h"
#include "ferry/error.h"

namespace ferry::experts {
namespace {

// io_uring lengths are 32-bit; a longer read is simply completed by the short-read path.
constexpr size_t kMaxAttemptBytes = size_t{1} << 30;
constexpr size_t kMaxFixedBuffers = 16384;  // the kernel's limit on registered buffers

class UringReader final : public ChunkReader {
 public:
  explicit UringReader(int queue_depth) : slots_(static_cast<size_t>(queue_depth)) {
    FERRY_ASSERT_MSG(queue_depth >= 1 && queue_depth <= 4096, "io_uring queue depth out of range");
    int rc = io_uring_queue_init(static_cast<unsigned>(queue_depth), &ring_, 0);
    if (rc < 0)
      throw Error(std::string("io_uring is unavailable here (io_uring_queue_init: ") + std::strerror(-rc) +
                  "; old kernel, seccomp or a sandbox such as gVisor?): the 'auto' reader uses pread "
                  "instead, or choose 'pread'");
    for (size_t i = slots_.size(); i-- > 0;) free_slots_.push_back(i);
  }

  ~UringReader() override {
    // Reads still in flight write into the caller's buffers: let them land before the ring goes.
    try {
      flush();
      while (free_slots_.size() < slots_.size()) reap(true);
    } catch (const Error&) {
    }
    io_uring_queue_exit(&ring_);
  }

  ReaderKind kind() const override { return ReaderKind::Uring; }
  int open(const std::filesystem::path& path) override { return files_.open(path); }
  const std::filesystem::path& path(int file) const override { return files_.at(file).path; }

  void submit(std::span<const ChunkRead> reads) override {
    for (const ChunkRead& r : reads) {
      check_chunk_read(r, files_.size());
      while (free_slots_.empty()) {
        flush();  // the reads prepared so far must be in the kernel before we wait on them
        reap(true);
      }
      size_t slot = free_slots_.back();
      free_slots_.pop_back();
      slots_[slot] = ReadProgress{r, 0};
      prepare(slot);
    }
    flush();
  }

  size_t wait(std::vector<ChunkCompletion>& done, size_t min_complete) override {
    min_complete = std::min(min_complete, in_flight());
    size_t appended = 0;
    for (;;) {
      while (!ready_.empty()) {
        done.push_back(ready_.front());
        ready_.pop_front();
        ++appended;
      }
      if (free_slots_.size() == slots_.size()) break;  // nothing left in the ring
      // Block only while short of min_complete; otherwise take what is already there.
      if (!reap(appended < min_complete)) break;
    }
    return appended;
  }

  size_t in_flight() const override { return slots_.size() - free_slots_.size() + ready_.size(); }

  bool register_memory(void* base, size_t bytes, size_t unit) override {
    if (fixed_count_ || !base || unit == 0 || unit > (size_t{1} << 30) || bytes == 0 || bytes % unit ||
        bytes / unit > kMaxFixedBuffers)
      return false;
    std::vector<iovec> iov(bytes / unit);
    for (size_t i = 0; i < iov.size(); ++i) iov[i] = {static_cast<uint8_t*>(base) + i * unit, unit};
    if (io_uring_register_buffers(&ring_, iov.data(), static_cast<unsigned>(iov.size())) < 0) return false;
    fixed_base_ = static_cast<uint8_t*>(base);
    fixed_unit_ = unit;
    fixed_count_ = iov.size();
    return true;
  }
  uint64_t bytes_read() const override { return counters_.bytes_read; }
  uint64_t short_reads() const override { return counters_.short_reads; }

 private:
  // Queues an SQE for what remains of the read in `slot` (not yet submitted: see flush).
  void prepare(size_t slot) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    // One SQE per busy slot and no more slots than SQ entries, so the SQ always has room once flushed.
    if (!sqe) {
      flush();
      sqe = io_uring_get_sqe(&ring_);
    }
    FERRY_ASSERT_MSG(sqe, "io_uring submission queue full");
    const ReadProgress& p = slots_[slot];
    unsigned len = static_cast<unsigned>(std::min(p.remaining(), kMaxAttemptBytes));
    uint8_t* dst = p.dst();
    const int fd = files_.at(p.read.file).fd;
    const size_t unit = fixed_unit_ ? static_cast<size_t>(dst - fixed_base_) / fixed_unit_ : 0;
    if (fixed_count_ && dst >= fixed_base_ && unit < fixed_count_ && dst + len <= fixed_base_ + (unit + 1) * fixed_unit_)
      io_uring_prep_read_fixed(sqe, fd, dst, len, p.offset(), static_cast<int>(unit));
    else
      io_uring_prep_read(sqe, fd, dst, len, p.offset());
    io_uring_sqe_set_data64(sqe, slot);
  }

  void flush() {
    for (;;) {
      int rc = io_uring_submit(&ring_);
      if (rc >= 0) return;
      if (rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
        throw Error(std::string("io_uring_submit failed: ") + std::strerror(-rc) +
                    " (retry with the pread reader)");
      // EAGAIN/EBUSY: the kernel is short of resources or completions are backed up; reap one first.
      if (rc != -EINTR) reap(true);
    }
  }

  // Takes one completion off the ring (waiting for it when `block`); returns false when none was there.
  // A finished read goes to ready_ and frees its slot; a short one is re-issued from the same slot.
  bool reap(bool block) {
    io_uring_cqe* cqe = nullptr;
    int rc;
    do rc = block ? io_uring_wait_cqe(&ring_, &cqe) : io_uring_peek_cqe(&ring_, &cqe);
    while (rc == -EINTR);
    if (rc == -EAGAIN && !block) return false;
    if (rc < 0)
      throw Error(std::string("waiting for io_uring completions failed: ") + std::strerror(-rc) +
                  " (retry with the pread reader)");
    size_t slot = static_cast<size_t>(io_uring_cqe_get_data64(cqe));
    int64_t res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    ReadProgress& p = slots_.at(slot);
    if (auto c = finish_attempt(p, res, files_.at(p.read.file).direct, counters_)) {
      ready_.push_back(*c);
      free_slots_.push_back(slot);
    } else {
      prepare(slot);
      flush();
    }
    return true;
  }

  io_uring ring_{};
  ChunkFiles files_;
  std::vector<ReadProgress> slots_;
  std::vector<size_t> free_slots_;
  std::deque<ChunkCompletion> ready_;
  ReadCounters counters_;
  uint8_t* fixed_base_ = nullptr;  // the registered memory (register_memory), in units of fixed_unit_
  size_t fixed_unit_ = 0, fixed_count_ = 0;
};

}  // namespace

std::unique_ptr<ChunkReader> make_uring_reader(int queue_depth) {
  return std::make_unique<UringReader>(queue_depth);
}

}  // namespace ferry::experts
