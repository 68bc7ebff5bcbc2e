// y = W·x for a batch of M activation rows: x [M, K], y [M, N], W a PackedMatrix [N, K].
// One family of register-tiled kernels serves every M: small M (decode) runs one tile row over 3-4
// weight panels, streaming the weights once at DRAM bandwidth; larger M reuses each panel tile from L2
// across row tiles (compute-bound GEMM). ferry_ops --perf prints it beside oneDNN's matmul
// (onednn_matmul.h) at M = 1, 8, 64, 512; docs/BENCHMARKS.md has the figures.
// Activations at the AVX-512 level: rounded to bf16 for BF16 weights, quantised per group to int8
// (VNNI) for I8/I4 weights; the AVX2 and scalar levels keep them in f32.
// Large M, BF16 weights, AMX level (isa.h): from M = 4 on, the same packed panels feed AMX tiles
// (tdpbf16ps; matmul_amx.cpp) -- the panels are laid out as AMX B tiles, so no second copy of the weights.
// Activations are rounded to bf16 there too. Below AMX (AVX-512 without tiles, e.g. Zen 4) the AVX-512
// kernel serves every M: oneDNN is no faster there. Figures: docs/BENCHMARKS.md "Large-M bf16 matmul".
// Threads: OpenMP over chunks of output panels. Allocates nothing after the first call of a given size.
#pragma once
#include <cstdint>

#include "ferry/ops/packed_matrix.h"

namespace ferry::cpu {

// x f32 [m, K] (contiguous), y f32 [m, N]; bias [N] optional (added).
void matmul(const PackedMatrix& w, const float* x, float* y, int m, const float* bias = nullptr);

// Same with bf16 activations x_bf16 [m, K].
void matmul_xbf16(const PackedMatrix& w, const uint16_t* x_bf16, float* y, int m, const float* bias = nullptr);

// y = W·x with f32 activations and f32 accumulation: what the cpu target and the executor run (bf16
// activations are an option). The AVX-512 bf16 kernel of matmul() rounds activations to bf16, a relative
// error of 2^-9 per element; the oracle models' greedy margins (top-1 minus top-2 logit) go down to 2e-4
// of the logit range and their routing margins to 6e-5 in probability, so that rounding flips tokens and
// experts. Here BF16 weights are widened to f32 instead (matmul_exact.cpp): the products are exact and
// the result matches the fp32 reference to f32 rounding, at the same weight traffic (decode is bound by
// it) and at the f32 FMA rate (half the bf16 dot-product rate) when compute-bound. BF16 weights take
// matmul_exact_amx where AMX is active (as fast at m = 1, 1.4-2x faster from m = 8 on), else the AVX-512
// kernel of matmul_exact.cpp, or matmul() below AVX-512 (whose kernels widen weights to f32 too); other
// dtypes go to matmul(). On a given machine every m takes the same kernel, so batching never changes a
// row's result.
void matmul_f32_activations(const PackedMatrix& w, const float* x, float* y, int m, const float* bias = nullptr);

// BF16 weights with f32 activations and f32-accurate products, on AMX tiles: every activation is split
// into three bf16 terms (x = h + m + l, exactly), each product of terms is exact in f32 and the three
// partial sums are added at the end, so the result matches f32 activations with f32 FMAs to f32 rounding
// (the cpu target's numerics, matmul_f32_activations). Every M takes this path, and an output row
// depends only on its own activations: the result of a row does not change with the batch around it.
// Returns false, doing nothing, unless amx_active() and w is BF16; the caller then uses its own kernel.
bool matmul_exact_amx(const PackedMatrix& w, const float* x, float* y, int m, const float* bias = nullptr);

// Reference: dequantised W in f32, f64 accumulation, f32 (unrounded) activations.
void matmul_ref(const PackedMatrix& w, const float* x, float* y, int m, const float* bias = nullptr);

}  // namespace ferry::cpu
