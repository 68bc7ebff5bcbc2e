// Embedding gather: one block per token, threads stride over the row. Launch: T blocks x 256 threads,
// no shared memory.
#include "kernels/cuda_check.h"
#include "kernels/embed.h"

namespace ferry::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    embed_kernel(const void* __restrict__ table, DType dtype, int n_vocab, int d, const int32_t* __restrict__ tokens,
                 float* __restrict__ h) {
  const int32_t id = tokens[blockIdx.x];
  float* out = h + static_cast<size_t>(blockIdx.x) * d;
  const bool valid = id >= 0 && id < n_vocab;
  const size_t row = static_cast<size_t>(valid ? id : 0) * d;
  for (int i = threadIdx.x; i < d; i += kThreads) {
    float v = 0.0f;
    if (valid)
      v = dtype == DType::F32 ? static_cast<const float*>(table)[row + i]
                              : bf16_to_f32(static_cast<const uint16_t*>(table)[row + i]);
    out[i] = v;
  }
}

}  // namespace

void embed_gather(const void* table, DType dtype, int n_vocab, int d, const int32_t* tokens, int n_tok, float* h,
                  cudaStream_t stream) {
  if (dtype != DType::F32 && dtype != DType::BF16)
    throw Error("cuda embed_gather: the embedding table must be f32 or bf16, got " + std::string(dtype_name(dtype)));
  if (n_tok <= 0) return;
  embed_kernel<<<n_tok, kThreads, 0, stream>>>(table, dtype, n_vocab, d, tokens, h);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ferry::cuda
