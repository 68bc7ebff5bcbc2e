// The one place ferry talks to oneDNN: a matmul y = W·x whose weights oneDNN has reordered once into its
// preferred layout (format_tag::any), with primitives cached by M. bf16 and f32 weights.
// The op harness compares ferry's matmul against it; callers may use it for very large M.
#pragma once
#include <cstdint>
#include <memory>

#include "ferry/ops/packed_matrix.h"

namespace ferry::cpu {

class OnednnMatmul {
 public:
  // Copies W (dequantised from `w`) into oneDNN's layout in `weight_dtype` (F32 or BF16).
  OnednnMatmul(const PackedMatrix& w, DType weight_dtype);
  ~OnednnMatmul();
  OnednnMatmul(const OnednnMatmul&) = delete;
  OnednnMatmul& operator=(const OnednnMatmul&) = delete;

  // x f32 [m, K] -> y f32 [m, N]. bf16 weights take bf16 activations: x is converted first.
  void run(const float* x, float* y, int m);
  int rows() const;
  int cols() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::cpu
