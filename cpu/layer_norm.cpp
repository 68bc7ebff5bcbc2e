// LayerNorm over rows, with or without bias: y = (x - mean) / sqrt(var + eps) * w + b (two passes
// over the row for the variance, as torch does, so large means do not cancel).
#include <cmath>

#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "ferry/ops/isa.h"
#include "ferry/ops/norm.h"
#include "ferry/ops/norm_math.h"

namespace ferry::cpu {

namespace {

FERRY_TARGET_AVX512 void rows_avx512(const float* x, const float* w, const float* b, float* y, int64_t r0,
                                     int64_t r1, int n, float eps) {
  auto mask_at = [n](int i) { return n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1); };
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mask_at(i), xr + i));
    const float mean_s = _mm512_reduce_add_ps(acc) / static_cast<float>(n);
    const __m512 mean = _mm512_set1_ps(mean_s);
    acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
      const __mmask16 m = mask_at(i);
      const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xr + i), mean);
      acc = _mm512_fmadd_ps(d, d, acc);
    }
    const __m512 inv = _mm512_set1_ps(layer_norm_inv(_mm512_reduce_add_ps(acc), n, eps));
    for (int i = 0; i < n; i += 16) {
      const __mmask16 m = mask_at(i);
      __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + i), mean), inv),
                               _mm512_maskz_loadu_ps(m, w + i));
      if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i));
      _mm512_mask_storeu_ps(yr + i, m, v);
    }
  }
}

// Portable rows (also the Avx2 level: the compiler vectorises the element-wise passes).
void rows_portable(const float* x, const float* w, const float* b, float* y, int64_t r0, int64_t r1, int n,
                   float eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += xr[i];
    const float mean = sum / static_cast<float>(n);
    float sq = 0.0f;
    for (int i = 0; i < n; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
    const float inv = layer_norm_inv(sq, n, eps);
    for (int i = 0; i < n; ++i) yr[i] = layer_norm_apply(xr[i], mean, inv, w[i], b ? b[i] : 0.0f);
  }
}

}  // namespace

void layer_norm(const float* x, const float* w, const float* b, float* y, int rows, int n, float eps) {
  const Isa isa = active_isa();
  parallel_range(rows, static_cast<size_t>(rows) * n * 8, [&](int64_t r0, int64_t r1) {
    if (isa == Isa::Avx512) rows_avx512(x, w, b, y, r0, r1, n, eps);
    else rows_portable(x, w, b, y, r0, r1, n, eps);
  });
}

void layer_norm_ref(const float* x, const float* w, const float* b, float* y, int rows, int n, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * n;
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += xr[i];
    const double mean = sum / n;
    double sq = 0.0;
    for (int i = 0; i < n; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
    const float inv = layer_norm_inv(static_cast<float>(sq), n, eps);
    for (int i = 0; i < n; ++i)
      y[static_cast<size_t>(r) * n + i] = layer_norm_apply(xr[i], static_cast<float>(mean), inv, w[i], b ? b[i] : 0.0f);
  }
}

}  // namespace ferry::cpu
