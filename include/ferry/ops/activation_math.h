// Per-element activation math shared by the CPU ops and the CUDA kernels (__host__ __device__).
#pragma once
#include <cmath>

#include "ferry/dtype.h"

namespace ferry {

// silu(x) = x * sigmoid(x), computed as torch does in fp32: x / (1 + exp(-x)).
FERRY_HD float silu(float x) { return x / (1.0f + expf(-x)); }

FERRY_HD float silu_mul(float gate, float up) { return silu(gate) * up; }

}  // namespace ferry
