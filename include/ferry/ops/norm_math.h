// Row-wise normalisation math shared by the CPU ops and the CUDA kernels (__host__ __device__).
#pragma once
#include <cmath>

#include "ferry/dtype.h"

namespace ferry {

// 1 / sqrt(mean(x^2) + eps) from a sum of squares over n elements.
FERRY_HD float rms_inv(float sum_sq, int n, float eps) { return 1.0f / sqrtf(sum_sq / static_cast<float>(n) + eps); }

// y = x * inv * w (Llama-style RMSNorm: the weight multiplies the normalised value).
FERRY_HD float rms_apply(float x, float inv, float w) { return x * inv * w; }

// LayerNorm: 1 / sqrt(var + eps), var = sum((x - mean)^2) / n (biased, as torch).
FERRY_HD float layer_norm_inv(float sum_sq_centered, int n, float eps) {
  return 1.0f / sqrtf(sum_sq_centered / static_cast<float>(n) + eps);
}

// y = (x - mean) * inv * w + b.
FERRY_HD float layer_norm_apply(float x, float mean, float inv, float w, float b) { return (x - mean) * inv * w + b; }

}  // namespace ferry
