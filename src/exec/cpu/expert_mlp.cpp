#include "exec/cpu/expert_mlp.h"

#include <cstring>

#include "ferry/error.h"
#include "ferry/ops/elementwise.h"

namespace ferry::cpu_target {

namespace {

template <typename T>
void grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

void MlpScratch::reserve(int n_tok, int d, int f) {
  const size_t T = n_tok;
  grow(x_rows, T * d);
  grow(gate, T * f);
  grow(up, T * f);
  grow(out, T * d);
}

size_t MlpScratch::bytes() const { return sizeof(float) * (x_rows.size() + gate.size() + up.size() + out.size()); }

void mlp_forward(const PackedMlp& mlp, MatmulFn matmul, const float* x, const int32_t* rows, int n, float* out,
                 MlpScratch& s) {
  if (n <= 0) return;
  const size_t d = mlp.gate.cols, f = mlp.gate.rows;
  FERRY_ASSERT(s.gate.size() >= n * f && s.x_rows.size() >= n * d);
  const float* xin = x;
  if (rows) {
    for (int i = 0; i < n; ++i) std::memcpy(s.x_rows.data() + i * d, x + rows[i] * d, d * sizeof(float));
    xin = s.x_rows.data();
  }
  matmul(mlp.gate, xin, s.gate.data(), n, nullptr);  // [n, F]
  matmul(mlp.up, xin, s.up.data(), n, nullptr);      // [n, F]
  cpu::silu_mul(s.gate.data(), s.up.data(), s.gate.data(), static_cast<int64_t>(n) * f);
  matmul(mlp.down, s.gate.data(), out, n, nullptr);  // [n, D]
}

}  // namespace ferry::cpu_target
