// Expert FFN over the group of tokens routed to one expert: gather the rows, gate/up matmuls over all
// of them at once (so the weights stream once per group), SiLU-multiply, down matmul, weighted
// scatter-add into the output rows.
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

void expert_ffn(const ExpertWeights& w, const float* x, const int32_t* rows, const float* row_weight, int n_rows,
                float* y) {
  if (n_rows <= 0) return;
  check_shapes(w);
  const int d = w.gate->cols, f = w.gate->rows;
  float* xg = scratch_as<float>(ScratchSlot::FfnGather, static_cast<size_t>(n_rows) * d);          // [n, D]
  float* hidden = scratch_as<float>(ScratchSlot::FfnHidden, 2 * static_cast<size_t>(n_rows) * f);  // 2 x [n, F]
  float* out = scratch_as<float>(ScratchSlot::FfnOut, static_cast<size_t>(n_rows) * d);            // [n, D]
  for (int i = 0; i < n_rows; ++i)
    std::memcpy(xg + static_cast<size_t>(i) * d, x + static_cast<size_t>(rows[i]) * d, sizeof(float) * d);
  float* gate = hidden;
  float* up = hidden + static_cast<size_t>(n_rows) * f;
  matmul(*w.gate, xg, gate, n_rows);
  matmul(*w.up, xg, up, n_rows);
  silu_mul(gate, up, gate, static_cast<int64_t>(n_rows) * f);
  matmul(*w.down, gate, out, n_rows);
  for (int i = 0; i < n_rows; ++i) {
    const float s = row_weight ? row_weight[i] : 1.0f;
    float* yr = y + static_cast<size_t>(rows[i]) * d;
    const float* o = out + static_cast<size_t>(i) * d;
    for (int j = 0; j < d; ++j) yr[j] += s * o[j];
  }
}

void expert_ffn_ref(const ExpertWeights& w, const float* x, const int32_t* rows, const float* row_weight, int n_rows,
                    float* y) {
  check_shapes(w);
  const int d = w.gate->cols, f = w.gate->rows;
  std::vector<float> gate(f), up(f), out(d);
  for (int i = 0; i < n_rows; ++i) {
    const float* xr = x + static_cast<size_t>(rows[i]) * d;
    matmul_ref(*w.gate, xr, gate.data(), 1);
    matmul_ref(*w.up, xr, up.data(), 1);
    for (int j = 0; j < f; ++j) gate[j] = ferry::silu_mul(gate[j], up[j]);
    matmul_ref(*w.down, gate.data(), out.data(), 1);
    const float s = row_weight ? row_weight[i] : 1.0f;
    for (int j = 0; j < d; ++j) y[static_cast<size_t>(rows[i]) * d + j] += s * out[j];
  }
}

}  // namespace ferry::cpu
