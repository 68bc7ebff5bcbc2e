// AlignedBuffer: owned memory aligned to kChunkAlign, because O_DIRECT reads need aligned destinations
// (and staging buffers handed to the same reads must be too).
#include <cstdlib>
#include <new>
#include <utility>

#include "ferry/experts/chunk_reader.h"

namespace ferry::experts {

AlignedBuffer::AlignedBuffer(size_t bytes) : n_(bytes) {
  if (bytes == 0) return;
  // aligned_alloc wants a size that is a multiple of the alignment.
  size_t rounded = (bytes + kChunkAlign - 1) / kChunkAlign * kChunkAlign;
  p_ = static_cast<uint8_t*>(std::aligned_alloc(kChunkAlign, rounded));
  if (!p_) throw std::bad_alloc();
}

AlignedBuffer::AlignedBuffer(AlignedBuffer&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(p_);
    p_ = std::exchange(o.p_, nullptr);
    n_ = std::exchange(o.n_, 0);
  }
  return *this;
}

AlignedBuffer::~AlignedBuffer() {
  std::free(p_);
}

}  // namespace ferry::experts
