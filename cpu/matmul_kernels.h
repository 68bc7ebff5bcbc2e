// Internal to cpu/: the matmul kernels of each ISA level, over a range of output panels.
// matmul.cpp prepares the activations in the form each kernel reads and splits panels over threads.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ferry/ops/packed_matrix.h"

namespace ferry::cpu {

struct MatmulArgs {
  const PackedMatrix* w = nullptr;
  int m = 0;
  // Activations, as the kernel of (ISA, weight dtype) wants them; rows are cols_padded long:
  const float* x_f32 = nullptr;      // f32 [m][Kp]: F32 weights; every dtype at Avx2 and Scalar
  const uint16_t* x_bf16 = nullptr;  // bf16 [m][Kp]: BF16 weights at Avx512
  const int8_t* x_q = nullptr;       // int8 [m][Kp]: I8/I4 weights at Avx512, per-group symmetric
  const float* x_scale = nullptr;    // [m][n_group]: scale of x_q (Avx512)
  const float* x_sum = nullptr;      // [m][n_group]: Avx512: sum of x_q; Avx2/Scalar: sum of x_f32
  const uint16_t* x_tiles = nullptr; // BF16 weights at Amx: A tiles, see pack_tiles_amx
  int x_terms = 1;                   // bf16 terms per activation in x_tiles: 1 (rounded) or 3 (exact)
  float* y = nullptr;                // [m][N]
  const float* bias = nullptr;       // [N] or null
};

// Panels [panel_begin, panel_end) of y. Each thread calls these on its own range.
void matmul_panels_avx512(const MatmulArgs& a, int panel_begin, int panel_end);
void matmul_panels_avx2(const MatmulArgs& a, int panel_begin, int panel_end);
void matmul_panels_scalar(const MatmulArgs& a, int panel_begin, int panel_end);
// BF16 weights only, from x_tiles (matmul_amx.cpp). Runs only when amx_active().
void matmul_panels_amx(const MatmulArgs& a, int panel_begin, int panel_end);

// Activation preparation at Avx512: x f32 [m][k] -> bf16 [m][kp] (zero padded).
void convert_rows_bf16_avx512(const float* x, int m, int k, int kp, uint16_t* out);
// Activations as AMX A tiles [n_mblock][n_kblock][16][32] bf16 (n_kblock = ceil(kp / 32)), zero padded.
// terms = 1: each row rounded to bf16, 16 rows per block. terms = 3: each f32 split exactly into three
// bf16 terms (x = h + m + l) on three consecutive tile rows, 5 rows per block. amx_tiles_elems: the size.
size_t amx_tiles_elems(int m, int kp, int terms);
void pack_tiles_amx(const float* x, int m, int k, int kp, int terms, uint16_t* tiles);
void pack_tiles_amx_bf16(const uint16_t* x, int m, int k, int kp, uint16_t* tiles);
// x f32 [m][k] -> int8 [m][kp] per group of group_size: scale = max|x| / 127, q = round(x / scale).
void quantize_rows_q8_avx512(const float* x, int m, int k, int kp, int group_size, int8_t* q, float* scale,
                             float* sum);

}  // namespace ferry::cpu
