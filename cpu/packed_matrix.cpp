// Packing and group-wise quantisation of weight matrices (layout and error bounds: packed_matrix.h).
#include "ferry/ops/packed_matrix.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "ferry/error.h"

namespace ferry::cpu {

AlignedBytes::AlignedBytes(size_t n) : size_(n) {
  if (n == 0) return;
  // Large buffers (weights streamed by the matmul) ask for transparent huge pages: fewer TLB misses
  // while streaming. A no-op where THP is off.
  constexpr size_t kHuge = size_t{2} << 20;
  const bool huge = n >= 2 * kHuge;
  const size_t align = huge ? kHuge : 64;
  void* p = std::aligned_alloc(align, (n + align - 1) / align * align);
  if (!p) throw std::bad_alloc();
  if (huge) madvise(p, (n + align - 1) / align * align, MADV_HUGEPAGE);
  std::memset(p, 0, n);
  data_.reset(static_cast<uint8_t*>(p));
}

void AlignedBytes::Free::operator()(uint8_t* p) const {
  if (owned) std::free(p);
}

AlignedBytes AlignedBytes::view(void* data, size_t n) {
  AlignedBytes b;
  b.data_ = std::unique_ptr<uint8_t[], Free>(static_cast<uint8_t*>(data), Free{false});
  b.size_ = n;
  return b;
}

PackedMatrix packed_shape(int rows, int cols, DType dtype, const QuantOptions& q) {
  PackedMatrix m;
  m.dtype = dtype;
  m.rows = rows;
  m.cols = cols;
  m.scale_dtype = q.scale_dtype;
  switch (dtype) {
    case DType::F32: m.cols_padded = cols; break;
    case DType::BF16: m.cols_padded = (cols + 1) / 2 * 2; break;
    default:
      m.group_size = q.group_size;
      m.cols_padded = (cols + q.group_size - 1) / q.group_size * q.group_size;
  }
  return m;
}

PackedSizes packed_sizes(const PackedMatrix& shape) {
  PackedSizes s;
  s.data = static_cast<size_t>(shape.n_panel()) * shape.panel_bytes();
  if (shape.group_size) {
    const size_t n = static_cast<size_t>(shape.n_panel()) * shape.n_group() * kPanelRows;
    s.scales = n * 2;
    if (shape.dtype == DType::I4) s.zeros = n;
  }
  return s;
}

PackedMatrix packed_view(const PackedMatrix& w, void* data, void* scales, void* zeros) {
  PackedMatrix v;
  v.dtype = w.dtype;
  v.rows = w.rows;
  v.cols = w.cols;
  v.cols_padded = w.cols_padded;
  v.group_size = w.group_size;
  v.scale_dtype = w.scale_dtype;
  v.data = AlignedBytes::view(data, w.data.size());
  if (w.scales.size()) v.scales = AlignedBytes::view(scales, w.scales.size());
  if (w.zeros.size()) v.zeros = AlignedBytes::view(zeros, w.zeros.size());
  return v;
}

size_t PackedMatrix::panel_bytes() const {
  const size_t kp = static_cast<size_t>(cols_padded) * kPanelRows;
  switch (dtype) {
    case DType::F32: return kp * 4;
    case DType::BF16: return kp * 2;
    case DType::I8: return kp;
    case DType::I4: return kp / 2;
    default: return 0;
  }
}

size_t PackedMatrix::weight_bytes() const {
  return static_cast<size_t>(n_panel()) * panel_bytes() + scales.size() + zeros.size();
}

namespace {

float scale_to_f32(uint16_t s, DType scale_dtype) {
  return scale_dtype == DType::F16 ? f16_to_f32(s) : bf16_to_f32(s);
}

// The smallest representable scale >= s, so that no value of the group clips.
uint16_t scale_round_up(float s, DType scale_dtype) {
  uint16_t bits = scale_dtype == DType::F16 ? f32_to_f16(s) : f32_to_bf16(s);
  if (scale_to_f32(bits, scale_dtype) < s) bits++;  // positive values: the next bit pattern is larger
  return bits;
}

void check_pack_args(int rows, int cols, DType dtype, const QuantOptions& q) {
  if (rows <= 0 || cols <= 0)
    throw Error("pack_matrix: empty matrix [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::I8 && dtype != DType::I4)
    throw Error("pack_matrix: weight dtype must be f32, bf16, int8 or int4, got " + std::string(dtype_name(dtype)));
  if (dtype == DType::I8 || dtype == DType::I4) {
    if (q.group_size < 32 || q.group_size > 128 || q.group_size % 16 != 0)
      throw Error("pack_matrix: quantisation group size must be 32..128 and a multiple of 16, got " +
                  std::to_string(q.group_size));
    if (q.scale_dtype != DType::BF16 && q.scale_dtype != DType::F16)
      throw Error("pack_matrix: quantisation scales must be bf16 or f16, got " +
                  std::string(dtype_name(q.scale_dtype)));
  }
}

PackedMatrix make_empty(int rows, int cols, DType dtype, const QuantOptions& q) {
  check_pack_args(rows, cols, dtype, q);
  PackedMatrix m = packed_shape(rows, cols, dtype, q);
  const PackedSizes sizes = packed_sizes(m);
  m.data = AlignedBytes(sizes.data);
  if (sizes.scales) m.scales = AlignedBytes(sizes.scales);
  if (sizes.zeros) m.zeros = AlignedBytes(sizes.zeros);
  return m;
}

// Packs one panel from 16 source rows (row r is `src(r)`: a pointer to cols f32, or null past the end).
void pack_panel(PackedMatrix& m, int panel, const float* const* src) {
  const int kp = m.cols_padded;
  uint8_t* base = m.data.data() + static_cast<size_t>(panel) * m.panel_bytes();
  auto value = [&](int r, int k) { return src[r] && k < m.cols ? src[r][k] : 0.0f; };
  if (m.dtype == DType::F32) {
    float* out = reinterpret_cast<float*>(base);  // [Kp][16]
    for (int k = 0; k < kp; ++k)
      for (int r = 0; r < kPanelRows; ++r) out[k * kPanelRows + r] = value(r, k);
    return;
  }
  if (m.dtype == DType::BF16) {
    uint16_t* out = reinterpret_cast<uint16_t*>(base);  // [Kp/2][16][2]
    for (int k = 0; k < kp; ++k)
      for (int r = 0; r < kPanelRows; ++r) out[((k / 2) * kPanelRows + r) * 2 + k % 2] = f32_to_bf16(value(r, k));
    return;
  }
  const int gs = m.group_size, n_group = m.n_group();
  uint16_t* scales = reinterpret_cast<uint16_t*>(m.scales.data()) + static_cast<size_t>(panel) * n_group * kPanelRows;
  uint8_t* zeros = m.zeros.size() ? m.zeros.data() + static_cast<size_t>(panel) * n_group * kPanelRows : nullptr;
  for (int g = 0; g < n_group; ++g) {
    for (int r = 0; r < kPanelRows; ++r) {
      const int k0 = g * gs;
      if (m.dtype == DType::I8) {
        float amax = 0.0f;
        for (int k = k0; k < k0 + gs; ++k) amax = std::max(amax, std::fabs(value(r, k)));
        const uint16_t s_bits = scale_round_up(amax / 127.0f, m.scale_dtype);
        const float s = scale_to_f32(s_bits, m.scale_dtype);
        scales[g * kPanelRows + r] = s_bits;
        for (int k = k0; k < k0 + gs; ++k) {
          int q = s > 0.0f ? static_cast<int>(std::lrintf(value(r, k) / s)) : 0;
          q = std::clamp(q, -127, 127);
          base[((k / 4) * kPanelRows + r) * 4 + k % 4] = static_cast<uint8_t>(q + 128);  // [Kp/4][16][4]
        }
      } else {  // I4
        float lo = 0.0f, hi = 0.0f;  // the range always holds 0, so zero (and padding) is exact
        for (int k = k0; k < k0 + gs; ++k) {
          lo = std::min(lo, value(r, k));
          hi = std::max(hi, value(r, k));
        }
        const uint16_t s_bits = scale_round_up((hi - lo) / 15.0f, m.scale_dtype);
        const float s = scale_to_f32(s_bits, m.scale_dtype);
        const int z = s > 0.0f ? std::clamp(static_cast<int>(std::lrintf(-lo / s)), 0, 15) : 0;
        scales[g * kPanelRows + r] = s_bits;
        zeros[g * kPanelRows + r] = static_cast<uint8_t>(z);
        for (int k = k0; k < k0 + gs; ++k) {
          int q = s > 0.0f ? static_cast<int>(std::lrintf(value(r, k) / s)) + z : z;
          q = std::clamp(q, 0, 15);
          // [Kp/8][16] u32; byte j of the u32 holds q[k8 + j] (low nibble) and q[k8 + 4 + j] (high)
          const int k8 = k / 8, j = k % 8;
          uint8_t& byte = base[(static_cast<size_t>(k8) * kPanelRows + r) * 4 + (j & 3)];
          byte = static_cast<uint8_t>(j < 4 ? (byte & 0xf0) | q : (byte & 0x0f) | (q << 4));
        }
      }
    }
  }
}

template <typename RowFn>
PackedMatrix pack_rows(int rows, int cols, DType dtype, const QuantOptions& q, RowFn row_f32) {
  PackedMatrix m = make_empty(rows, cols, dtype, q);
  const int n_panel = m.n_panel();
#pragma omp parallel
  {
    std::vector<float> rows_f32(static_cast<size_t>(kPanelRows) * cols);
#pragma omp for schedule(static)
    for (int p = 0; p < n_panel; ++p) {
      const float* src[kPanelRows];
      for (int r = 0; r < kPanelRows; ++r) {
        const int row = p * kPanelRows + r;
        src[r] = row < rows ? row_f32(row, rows_f32.data() + static_cast<size_t>(r) * cols) : nullptr;
      }
      pack_panel(m, p, src);
    }
  }
  return m;
}

}  // namespace

PackedMatrix pack_matrix(const float* w, int rows, int cols, DType dtype, const QuantOptions& q) {
  return pack_rows(rows, cols, dtype, q,
                   [&](int row, float*) { return w + static_cast<size_t>(row) * cols; });
}

PackedMatrix pack_matrix_bf16(const uint16_t* w_bf16, int rows, int cols, DType dtype, const QuantOptions& q) {
  return pack_rows(rows, cols, dtype, q, [&](int row, float* buf) {
    const uint16_t* src = w_bf16 + static_cast<size_t>(row) * cols;
    for (int k = 0; k < cols; ++k) buf[k] = bf16_to_f32(src[k]);
    return static_cast<const float*>(buf);
  });
}

float packed_at(const PackedMatrix& m, int row, int col) {
  FERRY_ASSERT(row >= 0 && row < m.rows && col >= 0 && col < m.cols);
  const int p = row / kPanelRows, r = row % kPanelRows;
  const uint8_t* base = m.data.data() + static_cast<size_t>(p) * m.panel_bytes();
  switch (m.dtype) {
    case DType::F32: return reinterpret_cast<const float*>(base)[static_cast<size_t>(col) * kPanelRows + r];
    case DType::BF16:
      return bf16_to_f32(reinterpret_cast<const uint16_t*>(base)[((col / 2) * kPanelRows + r) * 2 + col % 2]);
    default: break;
  }
  const size_t gi = (static_cast<size_t>(p) * m.n_group() + col / m.group_size) * kPanelRows + r;
  const float s = scale_to_f32(reinterpret_cast<const uint16_t*>(m.scales.data())[gi], m.scale_dtype);
  if (m.dtype == DType::I8) {
    const int q = base[((static_cast<size_t>(col) / 4) * kPanelRows + r) * 4 + col % 4];
    return static_cast<float>(q - 128) * s;
  }
  const int j = col % 8;
  const uint8_t byte = base[((static_cast<size_t>(col) / 8) * kPanelRows + r) * 4 + (j & 3)];
  const int q = j < 4 ? byte & 0x0f : byte >> 4;
  return static_cast<float>(q - m.zeros.data()[gi]) * s;
}

void dequantize(const PackedMatrix& m, float* out) {
#pragma omp parallel for schedule(static)
  for (int row = 0; row < m.rows; ++row)
    for (int col = 0; col < m.cols; ++col) out[static_cast<size_t>(row) * m.cols + col] = packed_at(m, row, col);
}

}  // namespace ferry::cpu
