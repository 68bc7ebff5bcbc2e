#include "cpu/scratch.h"

#include <cstdlib>
#include <new>

namespace ferry::cpu {

namespace {

struct Buffer {
  void* data = nullptr;
  size_t bytes = 0;
  ~Buffer() { std::free(data); }
};

thread_local Buffer t_buffers[static_cast<int>(ScratchSlot::kCount)];

}  // namespace

void* scratch(ScratchSlot slot, size_t bytes) {
  Buffer& b = t_buffers[static_cast<int>(slot)];
  if (bytes > b.bytes || b.data == nullptr) {
    size_t want = bytes < 4096 ? 4096 : bytes + bytes / 4;
    want = (want + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, want);
    if (!p) throw std::bad_alloc();
    std::free(b.data);
    b.data = p;
    b.bytes = want;
  }
  return b.data;
}

}  // namespace ferry::cpu
