// Grouping of the routing assignments by expert, in one block of 256 threads:
//   1. count per expert (shared-memory atomics),
//   2. thread 0 turns the counts into offsets (exclusive scan, serial over E) and write cursors,
//   3. the assignments, in chunks of 256 in ascending order i: each thread's rank among the chunk's
//      earlier assignments to the same expert (a scan of the chunk in shared memory) gives its position
//      cursor[e] + rank, so assignments stay ascending within an expert; then the cursors advance.
// Deterministic (no atomics decide positions). Launch: 1 block x 256 threads; shared memory:
// 256 ints (static) + E ints (dynamic).
#include "ferry/ops/moe_math.h"
#include "kernels/cuda_check.h"
#include "kernels/group_by_expert.h"

namespace ferry::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    group_kernel(const int32_t* __restrict__ topk_idx, int n_assign, int k, int n_expert, int32_t* __restrict__ offsets,
                 int32_t* __restrict__ assign_token, int32_t* __restrict__ assign_slot,
                 const int32_t* __restrict__ position_of) {
  extern __shared__ int32_t cursor[];  // [E]
  __shared__ int32_t chunk_expert[kThreads];
  const int tid = threadIdx.x;
  for (int e = tid; e < n_expert; e += kThreads) cursor[e] = 0;
  __syncthreads();
  for (int i = tid; i < n_assign; i += kThreads) {
    int e = topk_idx[i];
    if (e >= 0 && e < n_expert) atomicAdd(&cursor[position_of ? position_of[e] : e], 1);
  }
  __syncthreads();
  if (tid == 0) moe_offsets_from_counts(cursor, n_expert, offsets);  // counts -> offsets and cursors
  __syncthreads();
  for (int base = 0; base < n_assign; base += kThreads) {
    const int i = base + tid;
    int e = i < n_assign ? topk_idx[i] : -1;
    if (e < 0 || e >= n_expert) e = -1;
    else if (position_of) e = position_of[e];  // the group is the expert's position
    chunk_expert[tid] = e;
    __syncthreads();
    if (e >= 0) {
      const int at = cursor[e] + moe_chunk_rank(chunk_expert, tid, e);
      assign_token[at] = i / k;
      assign_slot[at] = i;
    }
    __syncthreads();  // every thread has read the cursors before any advances
    if (e >= 0) atomicAdd(&cursor[e], 1);
    __syncthreads();  // the cursors have advanced, chunk_expert may be overwritten
  }
}

}  // namespace

void group_by_expert(const int32_t* topk_idx, int n_tok, int k, int n_expert, int32_t* offsets,
                     int32_t* assign_token, int32_t* assign_slot, cudaStream_t stream,
                     const int32_t* position_of) {
  FERRY_ASSERT(n_expert > 0 && k > 0);
  const size_t shared = static_cast<size_t>(n_expert) * sizeof(int32_t);
  // 48 KiB without an opt-in, static (chunk_expert, 1 KiB) and dynamic together
  if (shared + kThreads * sizeof(int32_t) > 48 * 1024)
    throw Error("cuda group_by_expert: " + std::to_string(n_expert) + " experts is too many");
  group_kernel<<<1, kThreads, shared, stream>>>(topk_idx, n_tok * k, k, n_expert, offsets, assign_token,
                                                assign_slot, position_of);
  FERRY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ferry::cuda
