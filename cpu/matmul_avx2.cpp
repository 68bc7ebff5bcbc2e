// AVX2 + FMA matmul kernels: every weight type is widened to f32 in registers and multiplied with f32
// activations (no activation rounding). One panel (16 rows = 2 ymm) per step, 1-4 activation rows.
#include <algorithm>
#include <cstring>

#include "cpu/matmul_kernels.h"
#include "cpu/simd.h"

namespace ferry::cpu {

namespace {

FERRY_TARGET_AVX2 inline __m256 load_scales8(const uint16_t* s, DType scale_dtype) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
  if (scale_dtype == DType::F16) return _mm256_cvtph_ps(raw);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}

FERRY_TARGET_AVX2 inline __m256 load_zeros8(const uint8_t* z) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(z))));
}

FERRY_TARGET_AVX2 inline void store_panel(const MatmulArgs& a, int m, int panel, __m256 lo, __m256 hi) {
  const int n = a.w->rows, row0 = panel * kPanelRows;
  const int valid = std::min(kPanelRows, n - row0);
  alignas(32) float out[16];
  _mm256_store_ps(out, lo);
  _mm256_store_ps(out + 8, hi);
  float* y = a.y + static_cast<size_t>(m) * n + row0;
  for (int r = 0; r < valid; ++r) y[r] = out[r] + (a.bias ? a.bias[row0 + r] : 0.0f);
}

// The f32 weights of step `step` of one panel for one half (8 rows): element j of the step.
// F32: step = k (1 value); BF16: k/2 (2 values); I8: k/4 (4 values, q + 128); I4: k/8 (8 values, q).
template <DType kType>
struct Step;
template <>
struct Step<DType::F32> {
  static constexpr int kK = 1;
  FERRY_TARGET_AVX2 static void load(const uint8_t* panel, int step, int half, __m256* v) {
    v[0] = _mm256_loadu_ps(reinterpret_cast<const float*>(panel) + static_cast<size_t>(step) * 16 + half * 8);
  }
};
template <>
struct Step<DType::BF16> {
  static constexpr int kK = 2;
  FERRY_TARGET_AVX2 static void load(const uint8_t* panel, int step, int half, __m256* v) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + static_cast<size_t>(step) * 64 + half * 32));
    v[0] = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));
    v[1] = _mm256_castsi256_ps(_mm256_and_si256(raw, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
};
template <>
struct Step<DType::I8> {
  static constexpr int kK = 4;
  FERRY_TARGET_AVX2 static void load(const uint8_t* panel, int step, int half, __m256* v) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + static_cast<size_t>(step) * 64 + half * 32));
    const __m256i byte = _mm256_set1_epi32(0xff);
    v[0] = _mm256_cvtepi32_ps(_mm256_and_si256(raw, byte));
    v[1] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(raw, 8), byte));
    v[2] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(raw, 16), byte));
    v[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(raw, 24));
  }
};
template <>
struct Step<DType::I4> {
  static constexpr int kK = 8;
  FERRY_TARGET_AVX2 static void load(const uint8_t* panel, int step, int half, __m256* v) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + static_cast<size_t>(step) * 64 + half * 32));
    const __m256i nib = _mm256_set1_epi32(0x0f);
    v[0] = _mm256_cvtepi32_ps(_mm256_and_si256(raw, nib));
    v[1] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(raw, 8), nib));
    v[2] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(raw, 16), nib));
    v[3] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(raw, 24), nib));
    v[4] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(raw, 4), nib));
    v[5] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(raw, 12), nib));
    v[6] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(raw, 20), nib));
    v[7] = _mm256_cvtepi32_ps(_mm256_srli_epi32(raw, 28));
  }
};

// Float weights: MR activation rows x one panel.
template <DType kType, int MR>
FERRY_TARGET_AVX2 void float_tile(const MatmulArgs& a, int p, int m0) {
  using S = Step<kType>;
  const PackedMatrix& w = *a.w;
  const int kp = w.cols_padded;
  const uint8_t* panel = w.data.data() + static_cast<size_t>(p) * w.panel_bytes();
  __m256 acc[MR][2];
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  for (int step = 0; step < kp / S::kK; ++step) {
    for (int h = 0; h < 2; ++h) {
      __m256 v[S::kK];
      S::load(panel, step, h, v);
      for (int m = 0; m < MR; ++m) {
        const float* x = a.x_f32 + static_cast<size_t>(m0 + m) * kp + static_cast<size_t>(step) * S::kK;
        for (int j = 0; j < S::kK; ++j) acc[m][h] = _mm256_fmadd_ps(v[j], _mm256_broadcast_ss(x + j), acc[m][h]);
      }
    }
  }
  for (int m = 0; m < MR; ++m) store_panel(a, m0 + m, p, acc[m][0], acc[m][1]);
}

// Quantised weights: per group, sum q * x in f32, then y += s * (sum - z * sum(x)).
template <DType kType, int MR>
FERRY_TARGET_AVX2 void quant_tile(const MatmulArgs& a, int p, int m0) {
  using S = Step<kType>;
  const PackedMatrix& w = *a.w;
  const int kp = w.cols_padded, gs = w.group_size, n_group = w.n_group();
  const uint8_t* panel = w.data.data() + static_cast<size_t>(p) * w.panel_bytes();
  const uint16_t* sc = reinterpret_cast<const uint16_t*>(w.scales.data()) + static_cast<size_t>(p) * n_group * 16;
  const uint8_t* zp = kType == DType::I4 ? w.zeros.data() + static_cast<size_t>(p) * n_group * 16 : nullptr;
  __m256 acc[MR][2];
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  for (int g = 0; g < n_group; ++g) {
    for (int h = 0; h < 2; ++h) {
      __m256 gacc[MR];
      for (int m = 0; m < MR; ++m) gacc[m] = _mm256_setzero_ps();
      for (int step = g * gs / S::kK; step < (g + 1) * gs / S::kK; ++step) {
        __m256 v[S::kK];
        S::load(panel, step, h, v);
        for (int m = 0; m < MR; ++m) {
          const float* x = a.x_f32 + static_cast<size_t>(m0 + m) * kp + static_cast<size_t>(step) * S::kK;
          for (int j = 0; j < S::kK; ++j) gacc[m] = _mm256_fmadd_ps(v[j], _mm256_broadcast_ss(x + j), gacc[m]);
        }
      }
      const size_t gi = static_cast<size_t>(g) * 16 + h * 8;
      const __m256 s = load_scales8(sc + gi, w.scale_dtype);
      const __m256 z = zp ? load_zeros8(zp + gi) : _mm256_set1_ps(128.0f);
      for (int m = 0; m < MR; ++m) {
        const __m256 xsum = _mm256_set1_ps(a.x_sum[static_cast<size_t>(m0 + m) * n_group + g]);
        acc[m][h] = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, xsum, gacc[m]), acc[m][h]);
      }
    }
  }
  for (int m = 0; m < MR; ++m) store_panel(a, m0 + m, p, acc[m][0], acc[m][1]);
}

template <DType kType>
void run_panels(const MatmulArgs& a, int panel_begin, int panel_end) {
  constexpr bool kQuant = kType == DType::I8 || kType == DType::I4;
  constexpr int kMr = kQuant ? 2 : 4;
  for (int p = panel_begin; p < panel_end; ++p) {
    for (int m0 = 0; m0 < a.m; m0 += kMr) {
      const int mr = std::min(kMr, a.m - m0);
      if constexpr (kQuant) {
        if (mr == 2) quant_tile<kType, 2>(a, p, m0);
        else quant_tile<kType, 1>(a, p, m0);
      } else {
        switch (mr) {
          case 4: float_tile<kType, 4>(a, p, m0); break;
          case 3: float_tile<kType, 3>(a, p, m0); break;
          case 2: float_tile<kType, 2>(a, p, m0); break;
          default: float_tile<kType, 1>(a, p, m0); break;
        }
      }
    }
  }
}

}  // namespace

void matmul_panels_avx2(const MatmulArgs& a, int panel_begin, int panel_end) {
  switch (a.w->dtype) {
    case DType::F32: run_panels<DType::F32>(a, panel_begin, panel_end); break;
    case DType::BF16: run_panels<DType::BF16>(a, panel_begin, panel_end); break;
    case DType::I8: run_panels<DType::I8>(a, panel_begin, panel_end); break;
    default: run_panels<DType::I4>(a, panel_begin, panel_end); break;
  }
}

}  // namespace ferry::cpu
