#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "ferry/dtype.h"

namespace ferry::cuda {
// h [T, D] f32 = rows tokens [T] of the table [V, D] (f32 or bf16, widened exactly), device pointers.
// A token id outside [0, V) gives a row of zeros (the host checks ids before it uploads them).
void embed_gather(const void* table, DType dtype, int n_vocab, int d, const int32_t* tokens, int n_tok, float* h,
                  cudaStream_t stream);
}  // namespace ferry::cuda
