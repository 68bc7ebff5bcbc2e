// PackedLayout: a packed weight matrix (ferry/ops/packed_matrix.h) as raw pointers and shape fields, and
// the __host__ __device__ arithmetic that reads it: the device twin of cpu::packed_at. The CUDA kernels
// read expert pages and dense weights through these functions, and tests/unit/packed_layout_test.cpp
// checks them against cpu::packed_at for every element, so the shared device math is covered by CPU tests.
//
// The layout, restated as words. Every dtype's panel (16 rows) is [Kp / V][16] words of 4 bytes:
// word w of row r holds the V values k = w*V + j, j < V, of that row:
//   F32   V = 1: the f32 itself
//   BF16  V = 2: value j in bits [16j, 16j + 16)                 (the [Kp/2][16][2] bf16 pairs)
//   I8    V = 4: value j in byte j, u8 = q + 128                 (the [Kp/4][16][4] quads)
//   I4    V = 8: value j in byte j & 3, low nibble for j < 4, high nibble for j >= 4
// and the dequantised value is (q - 128)·s (I8) or (q - z)·s (I4) with s, z of group k / group_size,
// stored [panel][group][16]. V divides group_size (a multiple of 16), so a word never straddles groups.
// Pointers: `data` must be 4-byte aligned (panels are multiples of 64 bytes; device buffers are 256-byte
// aligned), `scales` 2-byte aligned.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ferry/dtype.h"
#include "ferry/ops/packed_matrix.h"

namespace ferry {

inline constexpr int kPackedPanelRows = 16;  // = cpu::kPanelRows

struct PackedLayout {
  const uint8_t* data = nullptr;    // [n_panel] panels
  const uint8_t* scales = nullptr;  // I8/I4: [n_panel][n_group][16] bf16 or f16, else null
  const uint8_t* zeros = nullptr;   // I4: [n_panel][n_group][16] u8, else null
  DType dtype = DType::F32;         // F32, BF16, I8 or I4
  DType scale_dtype = DType::BF16;  // BF16 or F16
  int rows = 0;                     // N (out)
  int cols = 0;                     // K (in)
  int cols_padded = 0;              // Kp
  int group_size = 0;               // I8/I4, else 0
};

// Values per 4-byte word: 1 (F32), 2 (BF16), 4 (I8), 8 (I4); 0 for another dtype.
FERRY_HD int packed_values_per_word(DType t) {
  switch (t) {
    case DType::F32: return 1;
    case DType::BF16: return 2;
    case DType::I8: return 4;
    case DType::I4: return 8;
    default: return 0;
  }
}

FERRY_HD int packed_n_panel(const PackedLayout& m) { return (m.rows + kPackedPanelRows - 1) / kPackedPanelRows; }
FERRY_HD int packed_words_per_row(const PackedLayout& m) { return m.cols_padded / packed_values_per_word(m.dtype); }
FERRY_HD int packed_n_group(const PackedLayout& m) { return m.group_size ? m.cols_padded / m.group_size : 0; }
// Bytes of one panel: words per row x 16 rows x 4 bytes (= PackedMatrix::panel_bytes()).
FERRY_HD size_t packed_panel_bytes(const PackedLayout& m) {
  return static_cast<size_t>(packed_words_per_row(m)) * kPackedPanelRows * 4;
}

// The raw word `word` of row r of panel `panel`.
FERRY_HD uint32_t packed_word(const PackedLayout& m, int panel, int word, int r) {
  const uint8_t* p = m.data + static_cast<size_t>(panel) * packed_panel_bytes(m) +
                     (static_cast<size_t>(word) * kPackedPanelRows + r) * 4;
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint32_t*>(p);  // 4-byte aligned (see above)
#else
  uint32_t u;
  std::memcpy(&u, p, 4);
  return u;
#endif
}

// Index of the scale (and zero point) of row r of panel `panel`, group `group`.
FERRY_HD size_t packed_group_index(const PackedLayout& m, int panel, int group, int r) {
  return (static_cast<size_t>(panel) * packed_n_group(m) + group) * kPackedPanelRows + r;
}

// The group's scale (I8/I4; 1 for F32 and BF16).
FERRY_HD float packed_scale(const PackedLayout& m, int panel, int group, int r) {
  if (m.dtype != DType::I8 && m.dtype != DType::I4) return 1.0f;
  const size_t i = packed_group_index(m, panel, group, r);
#if defined(__CUDA_ARCH__)
  const uint16_t bits = reinterpret_cast<const uint16_t*>(m.scales)[i];
#else
  uint16_t bits;
  std::memcpy(&bits, m.scales + 2 * i, 2);
#endif
  return m.scale_dtype == DType::F16 ? f16_to_f32(bits) : bf16_to_f32(bits);
}

// The group's zero point (I4; 0 otherwise).
FERRY_HD int packed_zero(const PackedLayout& m, int panel, int group, int r) {
  return m.dtype == DType::I4 ? static_cast<int>(m.zeros[packed_group_index(m, panel, group, r)]) : 0;
}

// Value j (< packed_values_per_word) of word u, dequantised with the group's scale and zero point.
FERRY_HD float packed_word_value(DType dtype, uint32_t u, int j, float scale, int zero) {
  switch (dtype) {
    case DType::F32: {
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case DType::BF16: return bf16_to_f32(static_cast<uint16_t>(u >> (16 * j)));
    case DType::I8: return static_cast<float>(static_cast<int>((u >> (8 * j)) & 0xffu) - 128) * scale;
    case DType::I4: {
      const int q = static_cast<int>((u >> (8 * (j & 3) + 4 * (j >> 2))) & 0xfu);
      return static_cast<float>(q - zero) * scale;
    }
    default: return 0.0f;
  }
}

// The V = packed_values_per_word values of word `word` of row `row` (cols k = word*V + j, j < V),
// dequantised into v[0, V): the panel / row-in-panel / group arithmetic of the kernels that decode a word at
// a time (unpack for cuBLAS, the tiled matmul). row < n_panel * 16, word < cols_padded / V; rows and cols of
// the padding read 0. Returns V.
FERRY_HD int packed_row_word(const PackedLayout& m, int row, int word, float* v) {
  const int n = packed_values_per_word(m.dtype);
  const int panel = row / kPackedPanelRows, r = row % kPackedPanelRows;
  const int group = m.group_size ? word * n / m.group_size : 0;  // V divides group_size: one group per word
  const uint32_t u = packed_word(m, panel, word, r);
  const float s = packed_scale(m, panel, group, r);
  const int z = packed_zero(m, panel, group, r);
  for (int j = 0; j < n; ++j) v[j] = packed_word_value(m.dtype, u, j, s, z);
  return n;
}

// Element (row, col) of the dequantised matrix, row < rows, col < cols_padded (padding reads 0).
FERRY_HD float packed_element(const PackedLayout& m, int row, int col) {
  const int v = packed_values_per_word(m.dtype);
  const int panel = row / kPackedPanelRows, r = row % kPackedPanelRows, word = col / v;
  const int group = m.group_size ? col / m.group_size : 0;
  return packed_word_value(m.dtype, packed_word(m, panel, word, r), col % v, packed_scale(m, panel, group, r),
                           packed_zero(m, panel, group, r));
}

// The layout of a PackedMatrix's own bytes (host or device memory, whichever they are). Inline members
// only: the kernels library uses it without linking ferry_cpu.
inline PackedLayout packed_layout(const cpu::PackedMatrix& w) {
  PackedLayout m;
  m.data = w.data.data();
  m.scales = w.scales.size() ? w.scales.data() : nullptr;
  m.zeros = w.zeros.size() ? w.zeros.data() : nullptr;
  m.dtype = w.dtype;
  m.scale_dtype = w.scale_dtype;
  m.rows = w.rows;
  m.cols = w.cols;
  m.cols_padded = w.cols_padded;
  m.group_size = w.group_size;
  return m;
}

}  // namespace ferry
