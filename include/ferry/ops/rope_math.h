// Rotary embedding math shared by the CPU ops and the CUDA kernels (__host__ __device__).
#pragma once
#include <cmath>

#include "ferry/dtype.h"

namespace ferry {

// The angle of dimension pair i at position pos, in fp32 as transformers computes it (inv_freq @ pos).
FERRY_HD float rope_angle(int pos, float inv_freq) { return static_cast<float>(pos) * inv_freq; }

// Rotates the pair (x0, x1) by an angle with this cos and sin:
//   x0' = x0 cos - x1 sin,  x1' = x1 cos + x0 sin
FERRY_HD void rope_rotate(float& x0, float& x1, float c, float s) {
  const float a = x0, b = x1;
  x0 = a * c - b * s;
  x1 = b * c + a * s;
}

}  // namespace ferry
