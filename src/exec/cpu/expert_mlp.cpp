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

void MlpScratch::reserve(int n_tok, int d, int f, int n_expert, int top_k) {
  const size_t T = n_tok;
  grow(x_rows, T * d);
  grow(gate, T * f);
  grow(up, T * f);
  grow(out, T * d);
  grow(offsets, static_cast<size_t>(n_expert) + 1);
  grow(rows, T * top_k);
  grow(weights, T * top_k);
}

void mlp_rows(const PackedMlp& mlp, MatmulFn matmul, const float* x, const int32_t* rows,
              const float* row_weight, int n, float* y, MlpScratch& s) {
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
  matmul(mlp.down, s.gate.data(), s.out.data(), n, nullptr);  // [n, D]
  for (int i = 0; i < n; ++i) {
    const float wgt = row_weight ? row_weight[i] : 1.0f;
    float* yr = y + (rows ? rows[i] : i) * d;
    const float* o = s.out.data() + i * d;
    for (size_t j = 0; j < d; ++j) yr[j] += wgt * o[j];
  }
}

size_t routed_experts(const std::vector<PackedMlp>& experts, MatmulFn matmul, const float* x, int n_tok,
                      const int32_t* topk_idx, const float* topk_weight, int top_k, float* y, MlpScratch& s) {
  const int n_expert = static_cast<int>(experts.size());
  const size_t n_assign = static_cast<size_t>(n_tok) * top_k;
  int32_t* offsets = s.offsets.data();
  std::fill(offsets, offsets + n_expert + 1, 0);
  for (size_t i = 0; i < n_assign; ++i) {
    FERRY_ASSERT(topk_idx[i] >= 0 && topk_idx[i] < n_expert);
    offsets[topk_idx[i] + 1]++;
  }
  for (int e = 0; e < n_expert; ++e) offsets[e + 1] += offsets[e];
  for (size_t i = 0; i < n_assign; ++i) {  // a counting sort; token order kept within an expert
    const int32_t at = offsets[topk_idx[i]]++;
    s.rows[at] = static_cast<int32_t>(i / top_k);
    s.weights[at] = topk_weight[i];
  }
  for (int e = n_expert; e > 0; --e) offsets[e] = offsets[e - 1];  // undo the fill's advance
  offsets[0] = 0;
  size_t bytes = 0;
  for (int e = 0; e < n_expert; ++e) {
    const int begin = offsets[e], count = offsets[e + 1] - begin;
    if (count == 0) continue;
    mlp_rows(experts[e], matmul, x, s.rows.data() + begin, s.weights.data() + begin, count, y, s);
    bytes += experts[e].bytes();
  }
  return bytes;
}

}  // namespace ferry::cpu_target
