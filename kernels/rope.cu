// RoPE on the device: one block per token; each thread takes pairs (head, i) in a stride loop and rotates
// them with ferry/ops/rope_math.h (the angle in fp32 as transformers computes it, then cosf/sinf).
// Launch: T blocks x 128 threads, no shared memory. Each pair is touched by one thread only.
#include "ferry/error.h"
#include "ferry/ops/rope_math.h"
#include "kernels/cuda_check.h"
#include "kernels/rope.h"

namespace ferry::cuda {

namespace {

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads)
    rope_kernel(float* x, const int32_t* __restrict__ positions, int n_head, int head_dim, int half, bool interleaved,
                const float* __restrict__ inv_freq, float attention_factor) {
  const int t = blockIdx.x;
  const int pos = positions[t];
  float* xt = x + static_cast<size_t>(t) * n_head * head_dim;
  for (int p = threadIdx.x; p < n_head * half; p += kThreads) {
    const int h = p / half, i = p % half;
    const float angle = rope_angle(pos, inv_freq[i]);
    const float c = cosf(angle) * attention_factor, s = sinf(angle) * attention_factor;
    float* xh = xt + static_cast<size_t>(h) * head_dim;
    const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
    rope_rotate(xh[a], xh[b], c, s);
  }
}

}  // namespace

void rope(float* x, int n_tok, const int32_t* positions, int n_head, int head_dim, int rotary_dim, bool interleaved,
          const float* inv_freq, float attention_factor, cudaStream_t stream) {
  const int rot = rotary_dim ? rotary_dim : head_dim;
  FERRY_ASSERT(rot % 2 == 0 && rot <= head_dim && inv_freq != nullptr);
  if (n_tok <= 0 || n_head <= 0 || rot == 0) return;
  rope_kernel<<<n_tok, kThreads, 0, stream>>>(x, positions, n_head, head_dim, rot / 2, interleaved, inv_freq,
                                              attention_factor);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ferry::cuda
