// Dense y [m, N] = x [m, K] · Wᵀ (+ bias) on the device for a packed W [N, K]: few rows read the panels
// directly (packed_matmul.h, the GEMV path); more rows unpack W a chunk of rows at a time into a row-major
// scratch and multiply with cuBLAS.
//
// cuBLAS modes (GemmMode), the executor's numerics target being the cpu target (f32 activations times
// exact bf16 weights, f32 accumulation):
//   F32   (default) the chunk is unpacked to f32 (exact for bf16 and f32 weights; the dequantised value
//         for int8/int4) and multiplied with cublasSgemm on f32 activations (CUBLAS_DEFAULT_MATH: no TF32),
//         the closest match to the cpu target.
//   Bf16  the chunk is unpacked to bf16 (exact for bf16 weights; int8/int4 dequantised values rounded to
//         bf16) and the activations rounded to bf16: cublasGemmEx bf16 x bf16 -> f32, CUBLAS_COMPUTE_32F.
//         Faster on tensor cores, but the activations' rounding (2^-9 relative) can flip greedy tokens on
//         the oracle models (see cpu/matmul_exact.cpp, ferry/ops/matmul.h).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "ferry/ops/packed_layout.h"

namespace ferry::cuda {

enum class GemmMode { F32, Bf16 };

// Rows above which a dense matmul takes cuBLAS: at this many rows the unpacked chunk is reused enough.
inline constexpr int kCublasMinRows = 16;

// What the cuBLAS path needs, owned by the caller (device memory, planned once).
struct GemmContext {
  cublasHandle_t handle = nullptr;
  GemmMode mode = GemmMode::F32;
  void* chunk = nullptr;           // unpacked rows of W: f32 or bf16 [rows, K]
  size_t chunk_bytes = 0;          // at least 16 rows of the widest K
  uint16_t* x_bf16 = nullptr;      // Bf16 mode: activations [m, K]
  size_t x_bf16_elems = 0;
  void* workspace = nullptr;       // cuBLAS workspace (device memory), re-bound after every cublasSetStream
  size_t workspace_bytes = 0;      // (null: cuBLAS's own pool, allocated by cuBLAS itself)
};

// y [m, w.rows] = x [m, w.cols] · Wᵀ + bias (bias [w.rows] or null); device pointers.
void dense_matmul(const GemmContext& g, const PackedLayout& w, const float* x, float* y, int m, const float* bias,
                  cudaStream_t stream);

// out [n_rows, w.cols] row-major = rows [row0, row0 + n_rows) of W, as f32 or as bf16 (rounded to
// nearest even).
void unpack_rows_f32(const PackedLayout& w, int row0, int n_rows, float* out, cudaStream_t stream);
void unpack_rows_bf16(const PackedLayout& w, int row0, int n_rows, uint16_t* out, cudaStream_t stream);

}  // namespace ferry::cuda
