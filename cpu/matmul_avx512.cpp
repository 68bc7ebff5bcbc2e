// AVX-512 matmul kernels (BF16 vdpbf16ps, VNNI vpdpbusd, FMA). A tile is MR activation rows by NP
// weight panels (16 output rows each) over the whole K: the NP panels stream from memory once per tile
// while MR x NP accumulators stay in registers. Small M (decode) runs one tile row (MR = M) over 3-4
// panels, i.e. a GEMV streaming the weights at DRAM bandwidth; larger M tiles 6-8 rows.
#include <algorithm>
#include <array>
#include <utility>

#include "cpu/matmul_kernels.h"
#include "cpu/simd.h"

namespace ferry::cpu {

namespace {

constexpr int kMaxMr = 8;

// GEMV (MR <= 2): each of the NP panel streams prefetches its line this far ahead into L2, every step.
// The hardware prefetchers stop at each 4 KiB page and restart late; measured on a 2-vCPU Emerald Rapids
// slice (2 threads, 14336x4096 and 4096x14336, cold weights), bf16 GEMV went from ~21 to ~25 GB/s at
// 192 lines (12 KiB) ahead and the int8/int4 ones gained 5-25% at 96 lines (6 KiB); nearer or farther
// was no better.
constexpr int kGemvPrefetchMaxMr = 2;
constexpr int kGemvPrefetchLinesBf16 = 192;
constexpr int kGemvPrefetchLinesQuant = 96;

// Prefetches (prefetcht1) line `line + ahead` of the stream of panel p in a tile whose first panel starts
// at `tile`; past the end of the panel (`lines` lines) it continues with the same panel of the next tile
// (panels are contiguous, so that is where the next tile will read), not into panel p + 1, which another
// stream of this tile is reading already.
__attribute__((always_inline)) inline void prefetch_panel_line(const void* tile, size_t pstride_bytes, int p, int np, size_t line, size_t ahead,
                                size_t lines) {
  const size_t at = line + ahead;
  const char* base = static_cast<const char*>(tile);
  __builtin_prefetch(at < lines ? base + p * pstride_bytes + at * 64 : base + (p + np) * pstride_bytes + (at - lines) * 64, 0,
                     2);
}
constexpr int kMaxNp = 4;

FERRY_TARGET_AVX512 inline __m512 load_scales16(const uint16_t* s, DType scale_dtype) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s));
  if (scale_dtype == DType::F16) return _mm512_cvtph_ps(raw);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// Stores 16 outputs of one activation row (fewer at the last panel), adding the bias.
FERRY_TARGET_AVX512 inline void store16(const MatmulArgs& a, int m, int panel, __m512 v) {
  const int n = a.w->rows, row0 = panel * kPanelRows;
  const int valid = std::min(kPanelRows, n - row0);
  const __mmask16 mask = valid >= 16 ? __mmask16(0xffff) : __mmask16((1u << valid) - 1);
  if (a.bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, a.bias + row0));
  _mm512_mask_storeu_ps(a.y + static_cast<size_t>(m) * n + row0, mask, v);
}

template <int MR, int NP>
struct F32Tile {
  FERRY_TARGET_AVX512 static void run(const MatmulArgs& a, int p0, int m0) {
    const PackedMatrix& w = *a.w;
    const int kp = w.cols_padded;
    const size_t pstride = w.panel_bytes() / sizeof(float);
    const float* wp = reinterpret_cast<const float*>(w.data.data()) + p0 * pstride;
    const float* x[MR];
    for (int m = 0; m < MR; ++m) x[m] = a.x_f32 + static_cast<size_t>(m0 + m) * kp;
    __m512 acc[MR][NP];
    for (int m = 0; m < MR; ++m)
      for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_setzero_ps();
    for (int k = 0; k < kp; ++k) {
      __m512 wv[NP];
      for (int p = 0; p < NP; ++p) wv[p] = _mm512_loadu_ps(wp + p * pstride + static_cast<size_t>(k) * 16);
      for (int m = 0; m < MR; ++m) {
        const __m512 xv = _mm512_set1_ps(x[m][k]);
        for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_fmadd_ps(wv[p], xv, acc[m][p]);
      }
    }
    for (int m = 0; m < MR; ++m)
      for (int p = 0; p < NP; ++p) store16(a, m0 + m, p0 + p, acc[m][p]);
  }
};

template <int MR, int NP>
struct Bf16Tile {
  FERRY_TARGET_AVX512 static void run(const MatmulArgs& a, int p0, int m0) {
    const PackedMatrix& w = *a.w;
    const int kp2 = w.cols_padded / 2;
    const size_t pstride = w.panel_bytes() / 4;  // in bf16 pairs
    const int32_t* wp = reinterpret_cast<const int32_t*>(w.data.data()) + p0 * pstride;
    const int32_t* x[MR];
    for (int m = 0; m < MR; ++m) x[m] = reinterpret_cast<const int32_t*>(a.x_bf16 + static_cast<size_t>(m0 + m) * 2 * kp2);
    __m512 acc[MR][NP];
    for (int m = 0; m < MR; ++m)
      for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int k2 = 0; k2 < kp2; ++k2) {
      if constexpr (MR <= kGemvPrefetchMaxMr)  // one 64-byte line per panel per step
        for (int p = 0; p < NP; ++p) prefetch_panel_line(wp, pstride * 4, p, NP, k2, kGemvPrefetchLinesBf16, kp2);
      __m512bh wv[NP];
      for (int p = 0; p < NP; ++p)
        wv[p] = (__m512bh)_mm512_loadu_si512(wp + p * pstride + static_cast<size_t>(k2) * 16);
      for (int m = 0; m < MR; ++m) {
        const __m512bh xv = (__m512bh)_mm512_set1_epi32(x[m][k2]);
        for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_dpbf16_ps(acc[m][p], wv[p], xv);
      }
    }
    for (int m = 0; m < MR; ++m)
      for (int p = 0; p < NP; ++p) store16(a, m0 + m, p0 + p, acc[m][p]);
  }
};

// Group-wise int8 / int4 weights against per-group int8 activations. Per group:
//   y += s_w * s_x * (sum(q_w * q_x) - z_w * sum(q_x))
// with q_w unsigned (I8: stored q + 128, z = 128; I4: nibbles and per-group z) and q_x signed,
// which is exactly vpdpbusd's u8 x s8.
template <bool kInt4, int MR, int NP>
struct QuantTile {
  FERRY_TARGET_AVX512 static void run(const MatmulArgs& a, int p0, int m0) {
    const PackedMatrix& w = *a.w;
    const int kp = w.cols_padded, gs = w.group_size, n_group = w.n_group();
    const size_t pstride = w.panel_bytes();
    const uint8_t* wp = w.data.data() + p0 * pstride;
    const uint16_t* sc = reinterpret_cast<const uint16_t*>(w.scales.data()) + static_cast<size_t>(p0) * n_group * 16;
    const uint8_t* zp = kInt4 ? w.zeros.data() + static_cast<size_t>(p0) * n_group * 16 : nullptr;
    const int32_t* xq[MR];
    const float* xs[MR];
    const float* xsum[MR];
    for (int m = 0; m < MR; ++m) {
      xq[m] = reinterpret_cast<const int32_t*>(a.x_q + static_cast<size_t>(m0 + m) * kp);
      xs[m] = a.x_scale + static_cast<size_t>(m0 + m) * n_group;
      xsum[m] = a.x_sum + static_cast<size_t>(m0 + m) * n_group;
    }
    const __m512i nibble = _mm512_set1_epi8(0x0f);
    __m512 acc[MR][NP];
    for (int m = 0; m < MR; ++m)
      for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_setzero_ps();
    for (int g = 0; g < n_group; ++g) {
      __m512i iacc[MR][NP];
      for (int m = 0; m < MR; ++m)
        for (int p = 0; p < NP; ++p) iacc[m][p] = _mm512_setzero_si512();
      if constexpr (!kInt4) {
        const int q_end = (g + 1) * gs / 4;
        for (int kq = g * gs / 4; kq < q_end; ++kq) {  // 4 k per step: [16 rows][4] u8
          if constexpr (MR <= kGemvPrefetchMaxMr)
            for (int p = 0; p < NP; ++p) prefetch_panel_line(wp, pstride, p, NP, kq, kGemvPrefetchLinesQuant, kp / 4);
          __m512i wv[NP];
          for (int p = 0; p < NP; ++p) wv[p] = _mm512_loadu_si512(wp + p * pstride + static_cast<size_t>(kq) * 64);
          for (int m = 0; m < MR; ++m) {
            const __m512i xv = _mm512_set1_epi32(xq[m][kq]);
            for (int p = 0; p < NP; ++p) iacc[m][p] = _mm512_dpbusd_epi32(iacc[m][p], wv[p], xv);
          }
        }
      } else {
        const int o_end = (g + 1) * gs / 8;
        for (int k8 = g * gs / 8; k8 < o_end; ++k8) {  // 8 k per step: [16 rows] u32 of 8 nibbles
          if constexpr (MR <= kGemvPrefetchMaxMr)
            for (int p = 0; p < NP; ++p) prefetch_panel_line(wp, pstride, p, NP, k8, kGemvPrefetchLinesQuant, kp / 8);
          __m512i lo[NP], hi[NP];
          for (int p = 0; p < NP; ++p) {
            const __m512i raw = _mm512_loadu_si512(wp + p * pstride + static_cast<size_t>(k8) * 64);
            lo[p] = _mm512_and_si512(raw, nibble);
            hi[p] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), nibble);
          }
          for (int m = 0; m < MR; ++m) {
            const __m512i xlo = _mm512_set1_epi32(xq[m][2 * k8]);
            const __m512i xhi = _mm512_set1_epi32(xq[m][2 * k8 + 1]);
            for (int p = 0; p < NP; ++p) {
              iacc[m][p] = _mm512_dpbusd_epi32(iacc[m][p], lo[p], xlo);
              iacc[m][p] = _mm512_dpbusd_epi32(iacc[m][p], hi[p], xhi);
            }
          }
        }
      }
      for (int p = 0; p < NP; ++p) {
        const size_t gi = (static_cast<size_t>(p) * n_group + g) * 16;
        const __m512 s = load_scales16(sc + gi, w.scale_dtype);
        const __m512 z = kInt4 ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(zp + gi))))
                               : _mm512_set1_ps(128.0f);
        for (int m = 0; m < MR; ++m) {
          const __m512 dot = _mm512_fnmadd_ps(z, _mm512_set1_ps(xsum[m][g]), _mm512_cvtepi32_ps(iacc[m][p]));
          acc[m][p] = _mm512_fmadd_ps(dot, _mm512_mul_ps(s, _mm512_set1_ps(xs[m][g])), acc[m][p]);
        }
      }
    }
    for (int m = 0; m < MR; ++m)
      for (int p = 0; p < NP; ++p) store16(a, m0 + m, p0 + p, acc[m][p]);
  }
};
template <int MR, int NP>
using Int8Tile = QuantTile<false, MR, NP>;
template <int MR, int NP>
using Int4Tile = QuantTile<true, MR, NP>;

using TileFn = void (*)(const MatmulArgs&, int, int);
using TileTable = std::array<TileFn, kMaxMr * kMaxNp>;

template <template <int, int> class Tile, int... I>
constexpr TileTable make_table(std::integer_sequence<int, I...>) {
  return {&Tile<I / kMaxNp + 1, I % kMaxNp + 1>::run...};
}
template <template <int, int> class Tile>
constexpr TileTable table_of() {
  return make_table<Tile>(std::make_integer_sequence<int, kMaxMr * kMaxNp>{});
}

struct TileShape {
  int mr, np;
};

// Register budget: 32 zmm. Float tiles keep MR x NP accumulators; quantised tiles twice that (int32
// per group and f32 overall). Few rows: one tile row over many panels (the weights stream once); more
// rows: a tile reused across row tiles while its panels sit in L2.
TileShape choose_tile(DType dtype, int m) {
  const bool quant = dtype == DType::I8 || dtype == DType::I4;
  if (quant) {
    if (m <= 3) return {m, 4};
    if (m <= 4) return {m, 3};
    return {4, 3};
  }
  if (m <= kMaxMr) return {m, std::clamp(24 / m, 1, kMaxNp)};
  return {6, 4};
}

}  // namespace

void matmul_panels_avx512(const MatmulArgs& a, int panel_begin, int panel_end) {
  static constexpr TileTable kF32 = table_of<F32Tile>();
  static constexpr TileTable kBf16 = table_of<Bf16Tile>();
  static constexpr TileTable kInt8 = table_of<Int8Tile>();
  static constexpr TileTable kInt4 = table_of<Int4Tile>();
  const TileTable* table = nullptr;
  switch (a.w->dtype) {
    case DType::F32: table = &kF32; break;
    case DType::BF16: table = &kBf16; break;
    case DType::I8: table = &kInt8; break;
    default: table = &kInt4; break;
  }
  const TileShape t = choose_tile(a.w->dtype, a.m);
  for (int p = panel_begin; p < panel_end; p += t.np) {
    const int np = std::min(t.np, panel_end - p);
    for (int m0 = 0; m0 < a.m; m0 += t.mr) {
      const int mr = std::min(t.mr, a.m - m0);
      (*table)[(mr - 1) * kMaxNp + (np - 1)](a, p, m0);
    }
  }
}

FERRY_TARGET_AVX512 void convert_rows_bf16_avx512(const float* x, int m, int k, int kp, uint16_t* out) {
  for (int i = 0; i < m; ++i) {
    const float* xr = x + static_cast<size_t>(i) * k;
    uint16_t* o = out + static_cast<size_t>(i) * kp;
    for (int j = 0; j < kp; j += 16) {
      const int valid = std::clamp(k - j, 0, 16), width = std::min(16, kp - j);
      const __m512 v = _mm512_maskz_loadu_ps(__mmask16((1u << valid) - 1), xr + j);
      const __m256i b = (__m256i)_mm512_cvtneps_pbh(v);
      _mm256_mask_storeu_epi16(o + j, __mmask16((1u << width) - 1), b);
    }
  }
}

FERRY_TARGET_AVX512 void quantize_rows_q8_avx512(const float* x, int m, int k, int kp, int group_size, int8_t* q,
                                                 float* scale, float* sum) {
  const int n_group = kp / group_size;
  const __m512 sign_off = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int i = 0; i < m; ++i) {
    const float* xr = x + static_cast<size_t>(i) * k;
    for (int g = 0; g < n_group; ++g) {
      const int k0 = g * group_size;
      __m512 amax = _mm512_setzero_ps();
      for (int j = k0; j < k0 + group_size; j += 16) {
        const __mmask16 mask = __mmask16((1u << std::clamp(k - j, 0, 16)) - 1);
        amax = _mm512_max_ps(amax, _mm512_and_ps(_mm512_maskz_loadu_ps(mask, xr + j), sign_off));
      }
      const float amax_s = _mm512_reduce_max_ps(amax);
      const __m512 inv = _mm512_set1_ps(amax_s > 0.0f ? 127.0f / amax_s : 0.0f);
      __m512i qsum = _mm512_setzero_si512();
      for (int j = k0; j < k0 + group_size; j += 16) {
        const __mmask16 mask = __mmask16((1u << std::clamp(k - j, 0, 16)) - 1);
        const __m512i qi = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, xr + j), inv));
        qsum = _mm512_add_epi32(qsum, qi);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + static_cast<size_t>(i) * kp + j), _mm512_cvtsepi32_epi8(qi));
      }
      scale[static_cast<size_t>(i) * n_group + g] = amax_s / 127.0f;
      sum[static_cast<size_t>(i) * n_group + g] = static_cast<float>(_mm512_reduce_add_epi32(qsum));
    }
  }
}

}  // namespace ferry::cpu
