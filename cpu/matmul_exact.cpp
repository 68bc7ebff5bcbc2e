// y = W·x with f32 activations for BF16 weights (matmul.h, matmul_f32_activations): the weights widened
// to f32 in registers, so every product is exact and the result matches the fp32 reference to f32
// rounding. AVX-512 tiles of MR activation rows x NP panels (16 output rows each): the NP panels stream once per
// tile, their bf16 pairs widened to two f32 vectors (even k: shift left 16; odd k: mask the high half),
// each multiplied by a broadcast activation. k runs in order, so every output is the same sequence of
// f32 FMAs whatever the batch (batching does not change results).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <utility>

#include "ferry/error.h"
#include "ferry/ops/isa.h"
#include "ferry/ops/matmul.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define FERRY_EXACT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

namespace ferry::cpu {

namespace {

constexpr int kMaxMr = 8;
constexpr int kMaxNp = 4;
constexpr size_t kParallelMinBytes = 256 * 1024;  // below this many weight bytes one thread is faster

struct Args {
  const PackedMatrix* w;
  const float* x;  // [m, K]
  float* y;        // [m, N]
  const float* bias;
  int m;
};

template <int MR, int NP>
struct Tile {
  FERRY_EXACT_AVX512 static void run(const Args& a, int p0, int m0) {
    const PackedMatrix& w = *a.w;
    const int k = w.cols, k_pairs = k / 2;
    const size_t pstride = w.panel_bytes() / 4;  // in bf16 pairs
    const int32_t* wp = reinterpret_cast<const int32_t*>(w.data.data()) + p0 * pstride;
    const float* x[MR];
    for (int m = 0; m < MR; ++m) x[m] = a.x + static_cast<size_t>(m0 + m) * k;
    const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    __m512 acc[MR][NP];
    for (int m = 0; m < MR; ++m)
      for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_setzero_ps();
    for (int k2 = 0; k2 < k_pairs; ++k2) {
      __m512 even[NP], odd[NP];
      for (int p = 0; p < NP; ++p) {
        const __m512i raw = _mm512_loadu_si512(wp + p * pstride + static_cast<size_t>(k2) * 16);
        even[p] = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
        odd[p] = _mm512_castsi512_ps(_mm512_and_si512(raw, high));
      }
      for (int m = 0; m < MR; ++m) {
        const __m512 x0 = _mm512_set1_ps(x[m][2 * k2]), x1 = _mm512_set1_ps(x[m][2 * k2 + 1]);
        for (int p = 0; p < NP; ++p) {
          acc[m][p] = _mm512_fmadd_ps(even[p], x0, acc[m][p]);
          acc[m][p] = _mm512_fmadd_ps(odd[p], x1, acc[m][p]);
        }
      }
    }
    if (k % 2) {  // the last column: the even half of a zero-padded pair
      for (int p = 0; p < NP; ++p) {
        const __m512i raw = _mm512_loadu_si512(wp + p * pstride + static_cast<size_t>(k_pairs) * 16);
        const __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
        for (int m = 0; m < MR; ++m)
          acc[m][p] = _mm512_fmadd_ps(even, _mm512_set1_ps(x[m][k - 1]), acc[m][p]);
      }
    }
    const int n = w.rows;
    for (int p = 0; p < NP; ++p) {
      const int row0 = (p0 + p) * kPanelRows, valid = std::min(kPanelRows, n - row0);
      const __mmask16 mask = valid >= 16 ? __mmask16(0xffff) : __mmask16((1u << valid) - 1);
      const __m512 b = a.bias ? _mm512_maskz_loadu_ps(mask, a.bias + row0) : _mm512_setzero_ps();
      for (int m = 0; m < MR; ++m)
        _mm512_mask_storeu_ps(a.y + static_cast<size_t>(m0 + m) * n + row0, mask,
                              _mm512_add_ps(acc[m][p], b));
    }
  }
};

using TileFn = void (*)(const Args&, int, int);
using TileTable = std::array<TileFn, kMaxMr * kMaxNp>;

template <int... I>
constexpr TileTable make_table(std::integer_sequence<int, I...>) {
  return {&Tile<I / kMaxNp + 1, I % kMaxNp + 1>::run...};
}

void run_panels(const Args& a, int panel_begin, int panel_end) {
  static constexpr TileTable kTable = make_table(std::make_integer_sequence<int, kMaxMr * kMaxNp>{});
  // Register budget (32 zmm): MR x NP accumulators, 2 NP widened weights, 2 broadcasts.
  const int mr_max = a.m <= kMaxMr ? a.m : 6;
  const int np_max = a.m <= kMaxMr ? std::clamp(20 / a.m, 1, kMaxNp) : 3;
  for (int p = panel_begin; p < panel_end; p += np_max) {
    const int np = std::min(np_max, panel_end - p);
    for (int m0 = 0; m0 < a.m; m0 += mr_max) {
      const int mr = std::min(mr_max, a.m - m0);
      kTable[(mr - 1) * kMaxNp + (np - 1)](a, p, m0);
    }
  }
}

}  // namespace

void matmul_f32_activations(const PackedMatrix& w, const float* x, float* y, int m, const float* bias) {
  if (m <= 0) return;
  // AMX: the same exact products on tiles (x split into three bf16 terms), at every m.
  if (matmul_exact_amx(w, x, y, m, bias)) return;
  if (w.dtype != DType::BF16 || active_isa() != Isa::Avx512) {
    matmul(w, x, y, m, bias);
    return;
  }
  const Args a{&w, x, y, bias, m};
  const int n_panel = w.n_panel();
  const size_t work = w.weight_bytes() * static_cast<size_t>(std::max(1, m / 8));
  const int n_threads = std::min(omp_get_max_threads(), n_panel);
  if (n_threads <= 1 || work < kParallelMinBytes || omp_in_parallel()) {
    run_panels(a, 0, n_panel);
    return;
  }
  // Chunks of panels handed out dynamically: when a thread is descheduled (a busy machine), the others
  // take its share instead of waiting for it at the end of a static split.
  const int chunk = std::max(4, n_panel / (8 * n_threads));
  const int n_chunk = (n_panel + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
  for (int c = 0; c < n_chunk; ++c) run_panels(a, c * chunk, std::min(n_panel, (c + 1) * chunk));
}

}  // namespace ferry::cpu
