// SiLU-multiply: out = silu(gate) * up, the gated activation of the expert FFN.
#include "cpu/parallel.h"
#include "cpu/simd_math.h"
#include "ferry/ops/activation_math.h"
#include "ferry/ops/elementwise.h"
#include "ferry/ops/isa.h"

namespace ferry::cpu {

namespace {

FERRY_TARGET_AVX512 void range_avx512(const float* gate, const float* up, float* out, int64_t i0, int64_t i1) {
  const __m512 one = _mm512_set1_ps(1.0f);
  int64_t i = i0;
  for (; i < i1; i += 16) {
    const __mmask16 m = i1 - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (i1 - i)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, e));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, up + i)));
  }
}

FERRY_TARGET_AVX2 void range_avx2(const float* gate, const float* up, float* out, int64_t i0, int64_t i1) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  for (; i < i1; ++i) out[i] = ferry::silu_mul(gate[i], up[i]);
}

}  // namespace

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  const Isa isa = active_isa();
  parallel_range(n, static_cast<size_t>(n) * 12, [&](int64_t i0, int64_t i1) {
    if (isa == Isa::Avx512) range_avx512(gate, up, out, i0, i1);
    else if (isa == Isa::Avx2) range_avx2(gate, up, out, i0, i1);
    else
      for (int64_t i = i0; i < i1; ++i) out[i] = ferry::silu_mul(gate[i], up[i]);
  });
}

void silu_mul_ref(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = ferry::silu_mul(gate[i], up[i]);
}

}  // namespace ferry::cpu
