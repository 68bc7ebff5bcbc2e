// PackedMatrix: a weight matrix W [rows=out, cols=in] (y = W·x, as stored in checkpoints) repacked once
// at load time into the layout the CPU matmul kernels stream, in one of four element types.
//
// Layout. Rows are grouped in panels of 16 (the last padded with zeros); each panel is one contiguous
// stream, and within it the k values of the 16 rows are interleaved so that one 64-byte load feeds one
// SIMD dot-product instruction:
//   F32  panel [Kp][16]           f32
//   BF16 panel [Kp/2][16][2]      bf16      (vdpbf16ps pairs)
//   I8   panel [Kp/4][16][4]      u8 = q+128, symmetric int8 q in [-127, 127]   (vpdpbusd quads)
//   I4   panel [Kp/8][16][4]      one u32 per row holding 8 nibbles: byte j = q[k+j] | q[k+4+j] << 4
// Kp = cols rounded up to the group size (I8/I4), to 2 (BF16), or cols (F32); padding is zero.
//
// Quantisation is group-wise along cols (the input dimension), group_size in 32..128, a multiple of 16:
//   I8: w ≈ (q - 128) · s, s = max|w| / 127 over the group (rounded up to the scale dtype)
//   I4: w ≈ (q - z) · s,   q, z in [0, 15], s = (max - min) / 15 (rounded up), z = round(-min / s)
// Scales (bf16 or f16) and zero points (I4 only) are stored [panel][group][16].
//
// Error bounds (per element, s = the group's stored scale):
//   BF16: round-to-nearest-even, |w - w'| <= 2^-9 |w|
//   I8:   |w - w'| <= s / 2
//   I4:   |w - w'| <= s        (s / 2 inside the group's range; up to s at its ends, from rounding z)
// For weights drawn from normal(0, sigma) the normalised mean squared error of the dequantised matrix
// (sum (w - w')^2 / sum w^2) stays below kQuantNmseBound{I8,I4}, and a GEMV with such weights stays
// within kGemvNmseBound{I8,I4} of the bf16 GEMV (its activations are quantised too: per group, int8).
// Both are checked by tests/unit/quant_test.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "ferry/dtype.h"

namespace ferry::cpu {

inline constexpr int kPanelRows = 16;
inline constexpr int kDefaultGroupSize = 64;

// Stated NMSE bounds, normal-distributed weights, group <= 128. For uniform rounding error the NMSE is
// about (s / sigma)^2 / 12 with s = range / 255 (int8) or range / 15 (int4) and range ~5 sigma for a group
// of 128: ~3e-5 (int8) and ~1e-2 (int4); the bounds leave room for the scale rounding.
inline constexpr double kQuantNmseBoundI8 = 1e-4;
inline constexpr double kQuantNmseBoundI4 = 1.5e-2;
// GEMV result vs the bf16 GEMV: the weight error above plus the activations' int8 rounding.
inline constexpr double kGemvNmseBoundI8 = 3e-4;
inline constexpr double kGemvNmseBoundI4 = 1.5e-2;

struct QuantOptions {
  int group_size = kDefaultGroupSize;  // 32..128, multiple of 16 (I8, I4)
  DType scale_dtype = DType::BF16;     // BF16 or F16
};

// A 64-byte aligned byte buffer: owned, or a view of bytes someone else owns (a device buffer).
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(size_t n);
  // Bytes owned elsewhere (they may be device memory the host never reads). Not freed.
  static AlignedBytes view(void* data, size_t n);
  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }
  bool owned() const { return data_.get_deleter().owned; }

 private:
  struct Free {
    Free() noexcept : owned(true) {}  // (no member initialiser: the enclosing class needs this complete)
    explicit Free(bool owns) noexcept : owned(owns) {}
    bool owned;
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t[], Free> data_;
  size_t size_ = 0;
};

struct PackedMatrix {
  DType dtype = DType::F32;       // F32, BF16, I8 or I4
  int rows = 0;                   // N (out)
  int cols = 0;                   // K (in)
  int cols_padded = 0;            // Kp
  int group_size = 0;             // I8/I4 only, else 0
  DType scale_dtype = DType::BF16;
  AlignedBytes data;              // [n_panel] panels, see above
  AlignedBytes scales;            // I8/I4: [n_panel][n_group][16] bf16/f16
  AlignedBytes zeros;             // I4:    [n_panel][n_group][16] u8

  int n_panel() const { return (rows + kPanelRows - 1) / kPanelRows; }
  int n_group() const { return group_size ? cols_padded / group_size : 0; }
  size_t panel_bytes() const;        // bytes of one panel in `data`
  size_t weight_bytes() const;       // bytes a matmul streams: data + scales + zeros
};

// A matrix with w's shape and dtype whose arrays are the given bytes (each as long as w's; scales and
// zeros null when w has none): the weights as a device holds them.
PackedMatrix packed_view(const PackedMatrix& w, void* data, void* scales, void* zeros);
// A view of w's own bytes.
inline PackedMatrix packed_view(const PackedMatrix& w) {
  return packed_view(w, const_cast<uint8_t*>(w.data.data()), const_cast<uint8_t*>(w.scales.data()),
                     const_cast<uint8_t*>(w.zeros.data()));
}

// The metadata of the matrix pack_matrix makes for these arguments (no arrays), and the bytes of its
// arrays: what a planner needs to size a buffer for weights it has not packed.
PackedMatrix packed_shape(int rows, int cols, DType dtype, const QuantOptions& q = {});
struct PackedSizes {
  size_t data = 0, scales = 0, zeros = 0;
};
PackedSizes packed_sizes(const PackedMatrix& shape);

// Packs a row-major [rows, cols] matrix. dtype F32, BF16, I8 or I4. Throws ferry::Error on a bad
// dtype or group size.
PackedMatrix pack_matrix(const float* w, int rows, int cols, DType dtype, const QuantOptions& q = {});
PackedMatrix pack_matrix_bf16(const uint16_t* w_bf16, int rows, int cols, DType dtype,
                              const QuantOptions& q = {});

// The matrix the kernels compute with, as row-major f32 [rows, cols].
void dequantize(const PackedMatrix& w, float* out);

// One element of the dequantised matrix (slow; for tests and references).
float packed_at(const PackedMatrix& w, int row, int col);

}  // namespace ferry::cpu
