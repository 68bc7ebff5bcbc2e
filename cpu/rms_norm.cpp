// RMSNorm over rows: y = x / sqrt(mean(x^2) + eps) * w.
#include <cmath>

#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "ferry/ops/isa.h"
#include "ferry/ops/norm.h"
#include "ferry/ops/norm_math.h"

namespace ferry::cpu {

namespace {

FERRY_TARGET_AVX512 void rows_avx512(const float* x, const float* w, float* y, int64_t r0, int64_t r1, int n,
                                     float eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
      const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(m, xr + i);
      acc = _mm512_fmadd_ps(v, v, acc);
    }
    const __m512 inv = _mm512_set1_ps(rms_inv(_mm512_reduce_add_ps(acc), n, eps));
    for (int i = 0; i < n; i += 16) {
      const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
      const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + i), inv), _mm512_maskz_loadu_ps(m, w + i));
      _mm512_mask_storeu_ps(yr + i, m, v);
    }
  }
}

FERRY_TARGET_AVX2 void rows_avx2(const float* x, const float* w, float* y, int64_t r0, int64_t r1, int n,
                                 float eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i), _mm256_loadu_ps(xr + i), acc);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    float sum = 0.0f;
    for (float l : lanes) sum += l;
    for (; i < n; ++i) sum += xr[i] * xr[i];
    const float inv_s = rms_inv(sum, n, eps);
    const __m256 inv = _mm256_set1_ps(inv_s);
    i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), inv), _mm256_loadu_ps(w + i)));
    for (; i < n; ++i) yr[i] = rms_apply(xr[i], inv_s, w[i]);
  }
}

void rows_scalar(const float* x, const float* w, float* y, int64_t r0, int64_t r1, int n, float eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += xr[i] * xr[i];
    const float inv = rms_inv(sum, n, eps);
    for (int i = 0; i < n; ++i) yr[i] = rms_apply(xr[i], inv, w[i]);
  }
}

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps) {
  const Isa isa = active_isa();
  parallel_range(rows, static_cast<size_t>(rows) * n * 8, [&](int64_t r0, int64_t r1) {
    if (isa == Isa::Avx512) rows_avx512(x, w, y, r0, r1, n, eps);
    else if (isa == Isa::Avx2) rows_avx2(x, w, y, r0, r1, n, eps);
    else rows_scalar(x, w, y, r0, r1, n, eps);
  });
}

void rms_norm_ref(const float* x, const float* w, float* y, int rows, int n, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * n;
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float inv = rms_inv(static_cast<float>(sum), n, eps);
    for (int i = 0; i < n; ++i) y[static_cast<size_t>(r) * n + i] = rms_apply(xr[i], inv, w[i]);
  }
}

}  // namespace ferry::cpu
