#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ferry::cuda {
// Groups the T*K assignments by expert, exactly as group_by_expert of the cpu layer blocks (a counting
// sort, assignments ascending within an expert): offsets [E + 1], and for the assignment at position
// offsets[e] + j its token (assign_token = i / K) and its slot (assign_slot = i = t*K + k). Device
// pointers; one block. Expert indices outside [0, E) (a router never makes them) are dropped. With
// position_of [E] (device, a permutation) the groups are in position order, as the host's.
void group_by_expert(const int32_t* topk_idx, int n_tok, int k, int n_expert, int32_t* offsets,
                     int32_t* assign_token, int32_t* assign_slot, cudaStream_t stream,
                     const int32_t* position_of = nullptr);
}  // namespace ferry::cuda
