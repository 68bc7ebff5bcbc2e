// One attempt at a read, folded into its progress (see read_progress.h).
#include "experts/read_progress.h"

#include <cerrno>

#include "ferry/error.h"

namespace ferry::experts {

void check_chunk_read(const ChunkRead& read, size_t n_files) {
  FERRY_ASSERT_MSG(read.file >= 0 && static_cast<size_t>(read.file) < n_files, "unknown file index");
  FERRY_ASSERT_MSG(read.bytes > 0 && read.bytes % kChunkAlign == 0,
                   "length not a positive multiple of 4 KiB");
  FERRY_ASSERT_MSG(read.offset % kChunkAlign == 0, "offset not 4 KiB-aligned");
  FERRY_ASSERT_MSG(reinterpret_cast<uintptr_t>(read.dst) % kChunkAlign == 0, "destination not 4 KiB-aligned");
}

std::optional<ChunkCompletion> finish_attempt(ReadProgress& p, int64_t result, bool direct_io,
                                              ReadCounters& counters) {
  if (result == -EINTR || result == -EAGAIN) return std::nullopt;  // nothing moved: try again
  if (result < 0) return ChunkCompletion{p.read.tag, static_cast<int>(-result)};
  if (result == 0) return ChunkCompletion{p.read.tag, kEndOfFile};
  FERRY_ASSERT_MSG(static_cast<size_t>(result) <= p.remaining(), "a read returned more than asked");
  p.done += static_cast<size_t>(result);
  counters.bytes_read += static_cast<uint64_t>(result);
  if (p.remaining() == 0) return ChunkCompletion{p.read.tag, 0};
  if (direct_io && p.done % kChunkAlign != 0) return ChunkCompletion{p.read.tag, kEndOfFile};
  ++counters.short_reads;
  return std::nullopt;
}

}  // namespace ferry::experts
