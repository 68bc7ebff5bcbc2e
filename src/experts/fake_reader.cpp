// The fake reader: files are byte vectors in memory, and faults (short reads, EIO, flipped bytes,
// latency) are injected per file, so the expert store's error handling can be tested without a bad disk.
// Every attempt goes through finish_attempt, the same short-read bookkeeping the real readers use.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <thread>

#include "experts/read_progress.h"
#include "ferry/error.h"

namespace ferry::experts {
namespace {

using Clock = std::chrono::steady_clock;

struct FakeFile {
  std::vector<uint8_t> bytes;
  FakeFaults faults;
  int eio_left = 0, flip_left = 0;  // what remains of eio_times / flip_times
};

// Spends one of a fault's remaining uses (INT32_MAX: never runs out); false when none remain.
bool take_fault(int& left) {
  if (left <= 0) return false;
  if (left != INT32_MAX) --left;
  return true;
}

bool covers(uint64_t pos, size_t len, uint64_t at) {
  return at >= pos && at - pos < len;
}

class FakeReader final : public FakeChunkReader {
 public:
  ReaderKind kind() const override { return ReaderKind::Fake; }

  void add_file(const std::filesystem::path& path, std::vector<uint8_t> bytes) override {
    files_[path].bytes = std::move(bytes);  // in place: files already open see the new contents
  }

  void set_faults(const std::filesystem::path& path, const FakeFaults& faults) override {
    auto it = files_.find(path);
    FERRY_ASSERT_MSG(it != files_.end(), "set_faults on a file the fake does not have (add_file first)");
    it->second.faults = faults;
    it->second.eio_left = faults.eio_times;
    it->second.flip_left = faults.flip_times;
  }

  int open(const std::filesystem::path& path) override {
    auto it = files_.find(path);
    if (it == files_.end())
      throw Error("cannot open expert chunk file '" + path.string() + "': " + std::strerror(ENOENT) +
                  " (fake reader: add_file it first)");
    open_.push_back(&*it);
    return static_cast<int>(open_.size() - 1);
  }
  const std::filesystem::path& path(int file) const override {
    return open_.at(static_cast<size_t>(file))->first;
  }

  void submit(std::span<const ChunkRead> reads) override {
    for (const ChunkRead& r : reads) {
      check_chunk_read(r, open_.size());
      auto delay = std::chrono::duration<double>(open_[static_cast<size_t>(r.file)]->second.faults.latency_s);
      pending_.push_back(
          {ReadProgress{r, 0}, Clock::now() + std::chrono::duration_cast<Clock::duration>(delay)});
    }
  }

  size_t wait(std::vector<ChunkCompletion>& done, size_t min_complete) override {
    min_complete = std::min(min_complete, pending_.size());
    size_t appended = 0;
    while (!pending_.empty()) {
      // Reads complete in order of due time (submission order among equals); one not yet due is
      // waited for only while short of min_complete.
      auto first_due = std::min_element(pending_.begin(), pending_.end(),
                                        [](const Pending& a, const Pending& b) { return a.due < b.due; });
      if (first_due->due > Clock::now()) {
        if (appended >= min_complete) break;
        std::this_thread::sleep_until(first_due->due);
      }
      Pending p = *first_due;
      pending_.erase(first_due);
      done.push_back(complete(p.progress));
      ++appended;
    }
    return appended;
  }

  size_t in_flight() const override { return pending_.size(); }
  uint64_t bytes_read() const override { return counters_.bytes_read; }
  uint64_t short_reads() const override { return counters_.short_reads; }

 private:
  struct Pending {
    ReadProgress progress;
    Clock::time_point due;
  };

  // Runs attempts until the read is finished, re-issuing the remainder after each short one.
  ChunkCompletion complete(ReadProgress& p) {
    FakeFile& f = open_[static_cast<size_t>(p.read.file)]->second;
    for (;;)
      if (auto c = finish_attempt(p, attempt(f, p), /*direct_io=*/false, counters_)) return *c;
  }

  // One attempt, like one pread: a byte count (0 at end of file) or -errno.
  static int64_t attempt(FakeFile& f, const ReadProgress& p) {
    uint64_t pos = p.offset();
    size_t len = p.remaining();
    if (f.faults.short_read_bytes > 0) len = std::min(len, f.faults.short_read_bytes);
    if (covers(pos, len, f.faults.eio_at_offset) && take_fault(f.eio_left)) return -EIO;
    if (pos >= f.bytes.size()) return 0;
    len = static_cast<size_t>(std::min<uint64_t>(len, f.bytes.size() - pos));
    std::memcpy(p.dst(), f.bytes.data() + pos, len);
    if (covers(pos, len, f.faults.flip_at_offset) && take_fault(f.flip_left))
      p.dst()[f.faults.flip_at_offset - pos] ^= 0x01;
    return static_cast<int64_t>(len);
  }

  std::map<std::filesystem::path, FakeFile> files_;
  std::vector<std::pair<const std::filesystem::path, FakeFile>*> open_;
  std::deque<Pending> pending_;
  ReadCounters counters_;
};

}  // namespace

std::unique_ptr<FakeChunkReader> make_fake_reader() {
  return std::make_unique<FakeReader>();
}

}  // namespace ferry::experts
