// The pread reader: the fallback when io_uring is refused. submit() does each read at once, one after
// the other (a short read is re-issued until the read is whole or fails), and queues its completion
// for wait(); so it never has more than one read on the disk, which is why io_uring is preferred.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>

#include "experts/chunk_files.h"
#include "experts/fd_readers.h"
#include "experts/read_progress.h"

namespace ferry::experts {
namespace {

// Linux moves at most ~2 GiB per read call; bigger reads finish through the short-read path.
constexpr size_t kMaxAttemptBytes = size_t{1} << 30;

class PreadReader final : public ChunkReader {
 public:
  ReaderKind kind() const override { return ReaderKind::Pread; }
  int open(const std::filesystem::path& path) override { return files_.open(path); }
  const std::filesystem::path& path(int file) const override { return files_.at(file).path; }

  void submit(std::span<const ChunkRead> reads) override {
    for (const ChunkRead& r : reads) {
      check_chunk_read(r, files_.size());
      const ChunkFile& f = files_.at(r.file);
      ReadProgress p{r, 0};
      for (;;) {
        ssize_t n =
            ::pread(f.fd, p.dst(), std::min(p.remaining(), kMaxAttemptBytes), static_cast<off_t>(p.offset()));
        if (auto c = finish_attempt(p, n < 0 ? -errno : n, f.direct, counters_)) {
          ready_.push_back(*c);
          break;
        }
      }
    }
  }

  size_t wait(std::vector<ChunkCompletion>& done, size_t /*min_complete: all are ready*/) override {
    size_t n = ready_.size();
    done.insert(done.end(), ready_.begin(), ready_.end());
    ready_.clear();
    return n;
  }

  size_t in_flight() const override { return ready_.size(); }
  uint64_t bytes_read() const override { return counters_.bytes_read; }
  uint64_t short_reads() const override { return counters_.short_reads; }

 private:
  ChunkFiles files_;
  std::deque<ChunkCompletion> ready_;
  ReadCounters counters_;
};

}  // namespace

std::unique_ptr<ChunkReader> make_pread_reader() {
  return std::make_unique<PreadReader>();
}

}  // namespace ferry::experts
