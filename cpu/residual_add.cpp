// Residual add: y = a + b (element-wise; the compiler vectorises the loop at every level).
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "ferry/ops/elementwise.h"
#include "ferry/ops/isa.h"

namespace ferry::cpu {

namespace {

FERRY_TARGET_AVX512 void range_avx512(const float* a, const float* b, float* y, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 16) {
    const __mmask16 m = i1 - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (i1 - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
  }
}

void range_portable(const float* a, const float* b, float* y, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) y[i] = a[i] + b[i];
}

}  // namespace

void residual_add(const float* a, const float* b, float* y, int64_t n) {
  const Isa isa = active_isa();
  parallel_range(n, static_cast<size_t>(n) * 12, [&](int64_t i0, int64_t i1) {
    if (isa == Isa::Avx512) range_avx512(a, b, y, i0, i1);
    else range_portable(a, b, y, i0, i1);
  });
}

void residual_add_ref(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

}  // namespace ferry::cpu
