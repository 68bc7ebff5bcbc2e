// Internal to the cpu target: y = W·x for bf16 weights with f32 activations and f32 accumulation.
//
// The ops' AVX-512 bf16 matmul rounds activations to bf16 (vdpbf16ps), a relative error of 2^-9 per
// element. The oracle models' greedy margins (top-1 minus top-2 logit) go down to 2e-4 of the logit
// range and their routing margins to 6e-5 in probability, so that rounding flips tokens and experts.
// This kernel widens the bf16 weights to f32 in registers instead: the products are exact and the
// result matches the fp32 reference to f32 rounding, at the same weight traffic (decode is bound by
// it) and at the f32 FMA rate (half the bf16 dot-product rate) when compute-bound.
#pragma once
#include "ferry/ops/packed_matrix.h"

namespace ferry::cpu_target {

// x f32 [m, K], y f32 [m, N], W [N, K]; bias [N] or null. BF16 weights take cpu::matmul_exact_amx where
// AMX is active (activations split into three bf16 terms: exact products on tiles; as fast as the kernel
// below at m = 1, 1.4-2x faster from m = 8 on), else the kernel above (AVX-512) or cpu::matmul (below
// AVX-512, whose kernels widen weights to f32 too); other dtypes go to cpu::matmul. On a given machine
// every m takes the same kernel, so batching never changes a row's result.
void matmul_f32_activations(const cpu::PackedMatrix& w, const float* x, float* y, int m,
                            const float* bias = nullptr);

}  // namespace ferry::cpu_target
