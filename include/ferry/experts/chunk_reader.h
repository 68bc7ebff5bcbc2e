// ChunkReader: how expert chunks come off the SSD. One interface, three implementations:
//   io_uring  O_DIRECT reads through liburing, several in flight, into 4 KiB-aligned buffers (the page cache
//             is bypassed, so a DRAM budget is honest and the disk runs at its raw rate);
//   pread     one read at a time per call, O_DIRECT when the filesystem allows it, else buffered; used
//             automatically when io_uring is refused (old kernels, seccomp, gVisor);
//   fake      an in-memory file set that injects short reads, EIO, latency and flipped bytes (tests).
//
// Contract. A read names an open file, a 4 KiB-aligned offset, a length that is a multiple of 4 KiB and a
// 4 KiB-aligned destination (the store pads every chunk to that). submit() queues reads; wait() returns
// completions. A short read is finished by the reader itself (the remainder is re-issued), so a completion
// is either the whole length (error 0) or a failure: an errno value (EIO, ...) or kEndOfFile when the file
// ends before the read does. Readers are used from one thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::experts {

inline constexpr size_t kChunkAlign = 4096;  // offsets, lengths and buffers of every read

struct ChunkRead {
  int file = 0;          // from ChunkReader::open
  uint64_t offset = 0;   // multiple of kChunkAlign
  size_t bytes = 0;      // multiple of kChunkAlign, > 0
  void* dst = nullptr;   // aligned to kChunkAlign, `bytes` long
  uint64_t tag = 0;      // handed back in the completion
};

struct ChunkCompletion {
  uint64_t tag = 0;
  int error = 0;  // 0: all bytes read; else an errno value or kEndOfFile
};
inline constexpr int kEndOfFile = -1;

enum class ReaderKind { Auto, Uring, Pread, Fake };
std::string_view reader_kind_name(ReaderKind k);  // "auto", "io_uring", "pread", "fake"
ReaderKind parse_reader_kind(std::string_view s);  // throws ferry::Error naming the choices

class ChunkReader {
 public:
  virtual ~ChunkReader() = default;
  virtual ReaderKind kind() const = 0;
  // Opens `path` read-only; returns its index for ChunkRead::file. Throws ferry::Error naming the path.
  virtual int open(const std::filesystem::path& path) = 0;
  virtual const std::filesystem::path& path(int file) const = 0;
  // Queues reads (they may start at once). Never blocks for long: at most until queue space frees.
  virtual void submit(std::span<const ChunkRead> reads) = 0;
  // Appends to `done` the completions that are ready, waiting until at least `min_complete` have come
  // (clamped to the number in flight). Returns how many it appended.
  virtual size_t wait(std::vector<ChunkCompletion>& done, size_t min_complete) = 0;
  virtual size_t in_flight() const = 0;
  // Registers [base, base + bytes) in units of `unit` bytes (each at most 1 GiB; bytes a multiple of it) for
  // the reader's fixed-buffer path (io_uring: io_uring_register_buffers once, then read_fixed, which spares
  // the kernel mapping the destination pages at every read); a read whose destination lies inside one unit
  // takes it. Returns whether the memory was registered: false when the reader has no such path or the
  // kernel refused (the memlock limit of a non-root user, say). Reads work either way.
  virtual bool register_memory(void* /*base*/, size_t /*bytes*/, size_t /*unit*/) { return false; }
  // Bytes read so far and the number of short reads re-issued (metrics).
  virtual uint64_t bytes_read() const = 0;
  virtual uint64_t short_reads() const = 0;
};

// Reads every request to completion; throws ferry::Error naming the file, the offset and the errno text
// (or "the file ends at ...") for the first one that fails.
void read_all(ChunkReader& reader, std::span<const ChunkRead> reads);

// io_uring when it can be set up (queue_depth entries), else pread. Uring throws when io_uring is refused,
// Pread never does. Fake is made with make_fake_reader.
std::unique_ptr<ChunkReader> make_chunk_reader(ReaderKind kind, int queue_depth = 16);

// The fake: files are byte vectors registered by name; faults are injected per file.
struct FakeFaults {
  size_t short_read_bytes = 0;      // when > 0, each read returns at most this many bytes per attempt
  uint64_t eio_at_offset = UINT64_MAX;  // a read covering this offset fails with EIO
  int eio_times = 1;                // ... this many times, then succeeds (INT32_MAX: always)
  uint64_t flip_at_offset = UINT64_MAX;  // this byte is XOR 0x01 in what a read returns
  int flip_times = 1;               // ... this many times (INT32_MAX: always)
  double latency_s = 0;             // each read completes this much later (simulated by sleeping in wait)
};
class FakeChunkReader : public ChunkReader {
 public:
  // The contents of `path` for later open() calls (open of an unregistered path throws like a missing file).
  virtual void add_file(const std::filesystem::path& path, std::vector<uint8_t> bytes) = 0;
  virtual void set_faults(const std::filesystem::path& path, const FakeFaults& faults) = 0;
};
std::unique_ptr<FakeChunkReader> make_fake_reader();

// An owned buffer aligned to kChunkAlign (for reads and staging).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes);
  AlignedBuffer(AlignedBuffer&& o) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();
  uint8_t* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  uint8_t* p_ = nullptr;
  size_t n_ = 0;
};

// XXH64 (the xxHash 64-bit algorithm, seed 0 unless given): the store's per-chunk checksum.
uint64_t xxhash64(const void* data, size_t bytes, uint64_t seed = 0);

}  // namespace ferry::experts
