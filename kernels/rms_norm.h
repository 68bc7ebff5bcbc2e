#pragma once
#include <cuda_runtime.h>

namespace ferry::cuda {
// y[r, :] = RMSNorm(x[r, :]) * w, fp32, device pointers. x, y: [rows, n] (y may be x); w: [n].
void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps, cudaStream_t stream);
}  // namespace ferry::cuda
