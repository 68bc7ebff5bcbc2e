// Constructors of the two fd-based readers, for make_chunk_reader (and tests that want one by name).
#pragma once
#include <memory>

#include "ferry/experts/chunk_reader.h"

namespace ferry::experts {

// Throws ferry::Error when io_uring cannot be set up (old kernel, seccomp, gVisor).
std::unique_ptr<ChunkReader> make_uring_reader(int queue_depth);
std::unique_ptr<ChunkReader> make_pread_reader();

}  // namespace ferry::experts
