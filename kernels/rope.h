#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ferry::cuda {
// Rotary embedding in place on x [T, n_head, head_dim], device pointers, as cpu::rope (ferry/ops/rope.h):
// the first rotary_dim dims of each head rotate (0: head_dim), pairs (i, i + rotary_dim/2) when
// `interleaved` is false (HF rotate_half) or (2i, 2i + 1) when true; angle = positions[t] * inv_freq[i]
// (inv_freq [rotary_dim / 2] on the device), cos and sin times attention_factor.
void rope(float* x, int n_tok, const int32_t* positions, int n_head, int head_dim, int rotary_dim, bool interleaved,
          const float* inv_freq, float attention_factor, cudaStream_t stream);
}  // namespace ferry::cuda
