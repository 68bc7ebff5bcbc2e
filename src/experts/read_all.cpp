// read_all: a batch of reads to completion, for callers that want bytes, not completions (loading a
// whole layer, tests). At most kWindow reads are in flight, so a huge list never piles up in a reader's
// queue; each read is tagged with its index here (the caller's tags may repeat) to name a failure.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "ferry/error.h"
#include "ferry/experts/chunk_reader.h"

namespace ferry::experts {
namespace {

constexpr size_t kWindow = 64;

std::string describe_failure(const ChunkReader& reader, const ChunkRead& r, int error) {
  std::string where = "reading '" + reader.path(r.file).string() + "' at offset " + std::to_string(r.offset) +
                      " (" + std::to_string(r.bytes) + " bytes): ";
  if (error == kEndOfFile)
    return where + "the file ends before offset+length (" + std::to_string(r.offset + r.bytes) +
           "); it is truncated or not the file expected: rebuild or re-copy it";
  return where + std::strerror(error) + " (check the disk and the file; the read may succeed if retried)";
}

}  // namespace

void read_all(ChunkReader& reader, std::span<const ChunkRead> reads) {
  std::vector<ChunkRead> batch;
  std::vector<ChunkCompletion> done;
  size_t next = 0, in_flight = 0;
  size_t failed = reads.size();  // index of the earliest failed read seen, reads.size() when none
  int failed_error = 0;
  while (in_flight > 0 || (next < reads.size() && failed == reads.size())) {
    // Top the window up, unless a read already failed: then only what is in flight is waited for
    // (it writes into the caller's buffers, so it must land before we throw).
    if (failed == reads.size() && next < reads.size() && in_flight < kWindow) {
      size_t n = std::min(kWindow - in_flight, reads.size() - next);
      batch.assign(reads.begin() + static_cast<ptrdiff_t>(next),
                   reads.begin() + static_cast<ptrdiff_t>(next + n));
      for (size_t i = 0; i < n; ++i) batch[i].tag = next + i;
      reader.submit(batch);
      next += n;
      in_flight += n;
    }
    done.clear();
    in_flight -= reader.wait(done, 1);
    for (const ChunkCompletion& c : done)
      if (c.error != 0 && c.tag < failed) {
        failed = static_cast<size_t>(c.tag);
        failed_error = c.error;
      }
  }
  if (failed < reads.size()) throw Error(describe_failure(reader, reads[failed], failed_error));
}

}  // namespace ferry::experts
