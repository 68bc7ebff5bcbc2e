// Internal to the cpu op set's decoder layer (layer_blocks.h): one SwiGLU MLP over a set of rows of a
// batch, every matmul through a MatmulFn so bf16 weights can take f32 activations (exact_matmul.h),
// and the one weighted accumulation both targets use, so the same sums are computed the same way.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "exec/cpu/cpu_weights.h"

namespace ferry::cpu_target {

using MatmulFn = void (*)(const cpu::PackedMatrix& w, const float* x, float* y, int m, const float* bias);

// Buffers of one MLP call, reserved for T rows and hidden width F (the widest MLP).
struct MlpScratch {
  std::vector<float> x_rows;    // [T, D] gathered input rows
  std::vector<float> gate, up;  // [T, F]
  std::vector<float> out;       // [T, D] routed expert outputs before they are scattered
  void reserve(int n_tok, int d, int f);
  size_t bytes() const;
};

// out[i] = mlp(x[rows[i]]) for i < n (rows null: x[i]); out [n, D] (may be s.out). Unweighted.
void mlp_forward(const PackedMlp& mlp, MatmulFn matmul, const float* x, const int32_t* rows, int n, float* out,
                 MlpScratch& s);

// y[j] += w * o[j], j < d: every weighted sum of expert outputs goes through this one loop.
inline void add_scaled(float* y, const float* o, float w, size_t d) {
  for (size_t j = 0; j < d; ++j) y[j] += w * o[j];
}

}  // namespace ferry::cpu_target
