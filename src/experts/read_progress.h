// The bookkeeping every reader shares: one read in progress, and what one attempt at it means. A read
// may take several attempts (a short read leaves a remainder to re-issue at offset+done into dst+done);
// keeping that rule in one place means the fake, which injects short reads, tests the same logic the
// io_uring and pread readers run.
#pragma once
#include <cstdint>
#include <optional>

#include "ferry/experts/chunk_reader.h"

namespace ferry::experts {

struct ReadCounters {
  uint64_t bytes_read = 0;
  uint64_t short_reads = 0;  // attempts that moved some bytes but not all (each one re-issued)
};

struct ReadProgress {
  ChunkRead read;
  size_t done = 0;  // bytes already in dst

  uint64_t offset() const { return read.offset + done; }
  uint8_t* dst() const { return static_cast<uint8_t*>(read.dst) + done; }
  size_t remaining() const { return read.bytes - done; }
};

// Checks the contract of a read (alignment, length, file index below n_files): a broken one is a
// programmer error, so it asserts.
void check_chunk_read(const ChunkRead& read, size_t n_files);

// Folds one attempt into `p`: `result` is the byte count (0: at end of file) or -errno, as pread and
// io_uring report. Returns the completion when the read is finished, or nullopt when the remainder
// must be re-issued (a short read, counted, or EINTR/EAGAIN, retried as is). `direct_io`: the fd is
// O_DIRECT, which moves whole blocks except at end of file, so a remainder starting off a block
// boundary means the file ended there (re-issuing it would only be refused with EINVAL).
std::optional<ChunkCompletion> finish_attempt(ReadProgress& p, int64_t result, bool direct_io,
                                              ReadCounters& counters);

}  // namespace ferry::experts
