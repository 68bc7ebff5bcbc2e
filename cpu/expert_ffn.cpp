// Expert FFN over the group of tokens routed to one expert: gather the rows, gate/up matmuls over all
// of them at once (so the weights stream once per group), SiLU-multiply, down matmul (expert_ffn_rows);
// the weighted form scatter-adds the result into the output rows.
#include <cstring>
#include <vector>

#include "cpu/scratch.h"
#include "ferry/error.h"
#include "ferry/ops/activation_math.h"
#include "ferry/ops/elementwise.h"
#include "ferry/ops/expert_ffn.h"
#include "ferry/ops/matmul.h"

namespace ferry::cpu {

namespace {

void check_shapes(const ExpertWeights& w) {
  FERRY_ASSERT(w.gate && w.up && w.down);
  FERRY_ASSERT(w.gate->rows == w.up->rows && w.gate->cols == w.up->cols);
  FERRY_ASSERT(w.down->rows == w.gate->cols && w.down->cols == w.gate->rows);
}

}  // namespace

void expert_ffn_rows(const ExpertWeights& w, MatmulFn matmul, const float* x, const int32_t* rows, int n,
                     float* out, float* x_rows, float* gate, float* up) {
  if (n <= 0) return;
  check_shapes(w);
  FERRY_ASSERT(matmul && out && gate && up && (x_rows || !rows));
  const size_t d = w.gate->cols, f = w.gate->rows;
  const float* xin = x;
  if (rows) {  // [n, D]
    for (int i = 0; i < n; ++i) std::memcpy(x_rows + i * d, x + rows[i] * d, d * sizeof(float));
    xin = x_rows;
  }
  matmul(*w.gate, xin, gate, n, nullptr);  // [n, F]
  matmul(*w.up, xin, up, n, nullptr);      // [n, F]
  silu_mul(gate, up, gate, static_cast<int64_t>(n) * f);
  matmul(*w.down, gate, out, n, nullptr);  // [n, D]
}

void expert_ffn_rows_ref(const ExpertWeights& w, const float* x, const int32_t* rows, int n, float* out) {
  check_shapes(w);
  const size_t d = w.gate->cols, f = w.gate->rows;
  std::vector<float> gate(f), up(f);
  for (int i = 0; i < n; ++i) {
    const float* xr = x + (rows ? rows[i] : i) * d;
    matmul_ref(*w.gate, xr, gate.data(), 1);
    matmul_ref(*w.up, xr, up.data(), 1);
    for (size_t j = 0; j < f; ++j) gate[j] = ferry::silu_mul(gate[j], up[j]);
    matmul_ref(*w.down, gate.data(), out + i * d, 1);
  }
}

void expert_ffn(const ExpertWeights& w, const float* x, const int32_t* rows, const float* row_weight, int n_rows,
                float* y, MatmulFn matmul) {
  if (n_rows <= 0) return;
  check_shapes(w);
  const size_t n = n_rows, d = w.gate->cols, f = w.gate->rows;
  float* x_rows = scratch_as<float>(ScratchSlot::FfnGather, n * d);      // [n, D]
  float* hidden = scratch_as<float>(ScratchSlot::FfnHidden, 2 * n * f);  // gate, up [n, F]
  float* out = scratch_as<float>(ScratchSlot::FfnOut, n * d);            // [n, D]
  expert_ffn_rows(w, matmul, x, rows, n_rows, out, x_rows, hidden, hidden + n * f);
  for (size_t i = 0; i < n; ++i) {
    const float s = row_weight ? row_weight[i] : 1.0f;
    float* yr = y + rows[i] * d;
    const float* o = out + i * d;
    for (size_t j = 0; j < d; ++j) yr[j] += s * o[j];
  }
}

void expert_ffn_ref(const ExpertWeights& w, const float* x, const int32_t* rows, const float* row_weight, int n_rows,
                    float* y) {
  check_shapes(w);
  const size_t d = w.gate->cols;
  std::vector<float> out(d);
  for (int i = 0; i < n_rows; ++i) {
    expert_ffn_rows_ref(w, x, rows + i, 1, out.data());
    const float s = row_weight ? row_weight[i] : 1.0f;
    for (size_t j = 0; j < d; ++j) y[rows[i] * d + j] += s * out[j];
  }
}

}  // namespace ferry::cpu
