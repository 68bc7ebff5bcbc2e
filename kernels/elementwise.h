#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ferry::cuda {
// Element-wise ops on fp32 device arrays, each one launch on `stream`.
// y [rows, n] += bias [n] (row-broadcast).
void bias_add(float* y, const float* bias, int rows, int n, cudaStream_t stream);
// x[i] = clamp(x[i], -limit, limit), i < n.
void clamp(float* x, int64_t n, float limit, cudaStream_t stream);
// h[i] += y[i], i < n (the residual add; h + y in fp32 as cpu::residual_add).
void residual_add(float* h, const float* y, int64_t n, cudaStream_t stream);
// out[i] = silu(gate[i]) * up[i] (ferry/ops/activation_math.h); out may be gate.
void silu_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream);
// x[i] = 1 / (1 + exp(-x[i])).
void sigmoid(float* x, int64_t n, cudaStream_t stream);
// out[i] = bf16(x[i]) (round to nearest even, ferry/dtype.h).
void to_bf16(const float* x, uint16_t* out, int64_t n, cudaStream_t stream);
}  // namespace ferry::cuda
