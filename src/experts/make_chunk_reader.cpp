// make_chunk_reader: the reader a kind names. Auto prefers io_uring (several O_DIRECT reads in flight)
// and quietly falls back to pread where io_uring is refused; the reader's kind() says which it got,
// so a run can report it.
#include "experts/fd_readers.h"
#include "ferry/error.h"

namespace ferry::experts {

std::unique_ptr<ChunkReader> make_chunk_reader(ReaderKind kind, int queue_depth) {
  switch (kind) {
    case ReaderKind::Auto:
      try {
        return make_uring_reader(queue_depth);
      } catch (const Error&) {
        return make_pread_reader();
      }
    case ReaderKind::Uring:
      return make_uring_reader(queue_depth);
    case ReaderKind::Pread:
      return make_pread_reader();
    case ReaderKind::Fake:
      throw Error(
          "the fake chunk reader holds files in memory and is for tests only: choose auto, io_uring or "
          "pread");
  }
  FERRY_ASSERT_MSG(false, "unknown ReaderKind");
  return nullptr;
}

}  // namespace ferry::experts
