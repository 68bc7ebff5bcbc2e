// Dense matmul dispatch (dense_matmul.h) and the unpack kernel of the cuBLAS path.
//   unpack_kernel<T>: one thread per (row, word) of the chunk, grid-stride; writes the word's V values of
//   the row (k < cols) to out[row - row0][k]. Launch: <= 4096 blocks x 256 threads, no shared memory.
#include <algorithm>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/dense_matmul.h"
#include "kernels/elementwise.h"
#include "kernels/packed_matmul.h"

namespace ferry::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

__device__ __forceinline__ void put(float* out, size_t i, float v) { out[i] = v; }
__device__ __forceinline__ void put(uint16_t* out, size_t i, float v) { out[i] = f32_to_bf16(v); }

template <typename T>
__global__ void __launch_bounds__(kThreads) unpack_kernel(PackedLayout w, int row0, int n_rows, T* __restrict__ out) {
  const int v = packed_values_per_word(w.dtype);
  const int words = w.cols_padded / v;
  const int64_t total = static_cast<int64_t>(n_rows) * words;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int local = static_cast<int>(idx / words), word = static_cast<int>(idx % words);
    const int k0 = word * v;
    float vals[8];
    packed_row_word(w, row0 + local, word, vals);  // tested against cpu::packed_at (packed_layout_test)
    T* dst = out + static_cast<size_t>(local) * w.cols;
    for (int j = 0; j < v && k0 + j < w.cols; ++j) put(dst, k0 + j, vals[j]);
  }
}

template <typename T>
void unpack(const PackedLayout& w, int row0, int n_rows, T* out, cudaStream_t stream) {
  FERRY_ASSERT(row0 >= 0 && row0 + n_rows <= w.rows && packed_values_per_word(w.dtype) > 0);
  const int64_t total = static_cast<int64_t>(n_rows) * (w.cols_padded / packed_values_per_word(w.dtype));
  if (total <= 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, kMaxBlocks));
  unpack_kernel<T><<<blocks, kThreads, 0, stream>>>(w, row0, n_rows, out);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void unpack_rows_f32(const PackedLayout& w, int row0, int n_rows, float* out, cudaStream_t stream) {
  unpack(w, row0, n_rows, out, stream);
}

void unpack_rows_bf16(const PackedLayout& w, int row0, int n_rows, uint16_t* out, cudaStream_t stream) {
  unpack(w, row0, n_rows, out, stream);
}

void dense_matmul(const GemmContext& g, const PackedLayout& w, const float* x, float* y, int m, const float* bias,
                  cudaStream_t stream) {
  if (m <= 0 || w.rows <= 0) return;
  if (m < kCublasMinRows || !g.handle) {
    RowMap rows;
    rows.n_rows = m;
    packed_matmul(w, x, w.cols, y, w.rows, bias, rows, m, stream);
    return;
  }
  const bool bf16 = g.mode == GemmMode::Bf16;
  const size_t elem = bf16 ? 2 : 4;
  const size_t row_bytes = elem * static_cast<size_t>(w.cols);
  int chunk_rows = static_cast<int>(std::min<size_t>(g.chunk_bytes / row_bytes, static_cast<size_t>(w.rows)));
  if (chunk_rows < std::min(w.rows, kPackedPanelRows))
    throw Error("cuda dense_matmul: the unpack scratch of " + std::to_string(g.chunk_bytes) +
                " bytes holds fewer than 16 rows of " + std::to_string(w.cols) + " columns");
  if (chunk_rows < w.rows) chunk_rows = chunk_rows / kPackedPanelRows * kPackedPanelRows;
  FERRY_CUBLAS_CHECK(cublasSetStream(g.handle, stream));
  // cublasSetStream resets the workspace to cuBLAS's default pool (allocated by cuBLAS: a hidden cudaMalloc
  // in the decode loop, outside the arena): bind ours again.
  if (g.workspace) FERRY_CUBLAS_CHECK(cublasSetWorkspace(g.handle, g.workspace, g.workspace_bytes));
  const float one = 1.0f, zero = 0.0f;
  const int K = w.cols, N = w.rows;
  if (bf16) {
    if (static_cast<size_t>(m) * K > g.x_bf16_elems)
      throw Error("cuda dense_matmul: the bf16 activation scratch holds " + std::to_string(g.x_bf16_elems) +
                  " elements, " + std::to_string(static_cast<size_t>(m) * K) + " needed");
    to_bf16(x, g.x_bf16, static_cast<int64_t>(m) * K, stream);
  }
  for (int row0 = 0; row0 < N; row0 += chunk_rows) {
    const int nr = std::min(chunk_rows, N - row0);
    // Row-major y [m, N] is column-major yᵀ [N, m]; its rows row0.. are C = chunkᵀ·xᵀ with the chunk
    // [nr, K] row-major (column-major [K, nr], op T) and x [m, K] row-major (column-major [K, m]).
    if (bf16) {
      unpack_rows_bf16(w, row0, nr, static_cast<uint16_t*>(g.chunk), stream);
      FERRY_CUBLAS_CHECK(cublasGemmEx(g.handle, CUBLAS_OP_T, CUBLAS_OP_N, nr, m, K, &one, g.chunk, CUDA_R_16BF, K,
                                      g.x_bf16, CUDA_R_16BF, K, &zero, y + row0, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
    } else {
      unpack_rows_f32(w, row0, nr, static_cast<float*>(g.chunk), stream);
      FERRY_CUBLAS_CHECK(cublasSgemm(g.handle, CUBLAS_OP_T, CUBLAS_OP_N, nr, m, K, &one,
                                     static_cast<const float*>(g.chunk), K, x, K, &zero, y + row0, N));
    }
  }
  if (bias) bias_add(y, bias, m, N, stream);
}

}  // namespace ferry::cuda
