// Portable matmul kernel: decode one panel to f32, then plain dot products.
#include <cstddef>

#include "cpu/matmul_kernels.h"
#include "cpu/scratch.h"

namespace ferry::cpu {

namespace {

// Panel p of w as f32 [16][Kp] (the kernels' arithmetic: (q - z) * s).
void decode_panel(const PackedMatrix& w, int p, float* out) {
  const int kp = w.cols_padded;
  const uint8_t* base = w.data.data() + static_cast<size_t>(p) * w.panel_bytes();
  for (int r = 0; r < kPanelRows; ++r) {
    float* o = out + static_cast<size_t>(r) * kp;
    switch (w.dtype) {
      case DType::F32:
        for (int k = 0; k < kp; ++k) o[k] = reinterpret_cast<const float*>(base)[static_cast<size_t>(k) * kPanelRows + r];
        break;
      case DType::BF16:
        for (int k = 0; k < kp; ++k)
          o[k] = bf16_to_f32(reinterpret_cast<const uint16_t*>(base)[((static_cast<size_t>(k) / 2) * kPanelRows + r) * 2 + k % 2]);
        break;
      default: {
        const int gs = w.group_size, n_group = w.n_group();
        const uint16_t* sc = reinterpret_cast<const uint16_t*>(w.scales.data()) + static_cast<size_t>(p) * n_group * kPanelRows;
        for (int k = 0; k < kp; ++k) {
          const int g = k / gs;
          const float s = w.scale_dtype == DType::F16 ? f16_to_f32(sc[g * kPanelRows + r]) : bf16_to_f32(sc[g * kPanelRows + r]);
          int q, z;
          if (w.dtype == DType::I8) {
            q = base[((static_cast<size_t>(k) / 4) * kPanelRows + r) * 4 + k % 4];
            z = 128;
          } else {
            const int j = k % 8;
            const uint8_t byte = base[((static_cast<size_t>(k) / 8) * kPanelRows + r) * 4 + (j & 3)];
            q = j < 4 ? byte & 0x0f : byte >> 4;
            z = w.zeros.data()[(static_cast<size_t>(p) * n_group + g) * kPanelRows + r];
          }
          o[k] = static_cast<float>(q - z) * s;
        }
      }
    }
  }
}

}  // namespace

void matmul_panels_scalar(const MatmulArgs& a, int panel_begin, int panel_end) {
  const PackedMatrix& w = *a.w;
  const int kp = w.cols_padded, n = w.rows;
  float* panel = scratch_as<float>(ScratchSlot::MatmulTile, static_cast<size_t>(kPanelRows) * kp);
  for (int p = panel_begin; p < panel_end; ++p) {
    decode_panel(w, p, panel);
    for (int r = 0; r < kPanelRows; ++r) {
      const int row = p * kPanelRows + r;
      if (row >= n) break;
      const float* wr = panel + static_cast<size_t>(r) * kp;
      for (int i = 0; i < a.m; ++i) {
        const float* xr = a.x_f32 + static_cast<size_t>(i) * kp;
        float acc = 0.0f;
        for (int k = 0; k < kp; ++k) acc += wr[k] * xr[k];
        a.y[static_cast<size_t>(i) * n + row] = acc + (a.bias ? a.bias[row] : 0.0f);
      }
    }
  }
}

}  // namespace ferry::cpu
