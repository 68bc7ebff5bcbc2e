// Internal to cpu/: element addressing and conversion in the paged KV cache (layout: attention.h).
#pragma once
#include <cstddef>
#include <cstring>

#include "ferry/dtype.h"

namespace ferry::cpu {

// Offsets inside one (block, kv head) run.
inline size_t key_index(int d, int j, int block_size) {
  return (static_cast<size_t>(d / 2) * block_size + j) * 2 + d % 2;
}
inline size_t value_index(int d, int j, int head_dim) {
  return (static_cast<size_t>(j / 2) * head_dim + d) * 2 + j % 2;
}

inline float kv_load(const void* base, DType dtype, size_t at) {
  switch (dtype) {
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[at]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(base)[at]);
    default: return static_cast<const float*>(base)[at];
  }
}

inline void kv_store(void* base, DType dtype, size_t at, float v) {
  switch (dtype) {
    case DType::BF16: static_cast<uint16_t*>(base)[at] = f32_to_bf16(v); break;
    case DType::F16: static_cast<uint16_t*>(base)[at] = f32_to_f16(v); break;
    default: static_cast<float*>(base)[at] = v; break;
  }
}

}  // namespace ferry::cpu
