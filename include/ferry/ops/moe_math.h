// Small pieces of the MoE layer's bookkeeping shared by the host ops and the CUDA kernels
// (__host__ __device__), checked on the CPU by tests/unit/moe_math_test.cpp.
#pragma once
#include <cstdint>

#include "ferry/dtype.h"

namespace ferry {

// order[0..k) = the slots 0..k-1 of one token sorted by ascending expert index idx[slot] (an insertion
// sort: stable, so equal indices, which a router never produces, keep their slot order). ffn_output sums
// the routed outputs in this order, as the reference forward does.
FERRY_HD void moe_ascending_slots(const int32_t* idx, int k, int* order) {
  for (int j = 0; j < k; ++j) {
    int i = j;
    while (i > 0 && idx[order[i - 1]] > idx[j]) {
      order[i] = order[i - 1];
      --i;
    }
    order[i] = j;
  }
}

}  // namespace ferry
