#pragma once
#include <cuda_runtime.h>

namespace ferry::cuda {
// y[r, :] = LayerNorm(x[r, :]) * w + b (b may be null), fp32, device pointers; x, y [rows, n] (y may be x).
// Two passes over the row (mean, then the centred sum of squares), as cpu::layer_norm.
void layer_norm(const float* x, const float* w, const float* b, float* y, int rows, int n, float eps,
                cudaStream_t stream);
}  // namespace ferry::cuda
