// Matmuls that read packed weights (ferry/ops/packed_layout.h) directly, dequantising in registers or
// shared memory and accumulating in fp32: y[out(a), n] = sum_k W[n, k] * x[in(a), k] (+ bias[n]).
//
// The rows a call computes (its "assignments" a) are either dense, a in [0, n_rows), or grouped by expert:
// block z of the grid serves expert e = first_expert + z and its assignments a in
// [offsets[e], offsets[e + 1]), read on the device, so the host never needs the counts and an expert
// without tokens costs blocks that exit at once. x row in(a) = in_rows[a] (null: a); y row
// out(a) = out_rows[a] (null: a).
//
// Two kernels, chosen by the most rows one matrix may see (max_rows, known on the host):
//   small  (max_rows <= kSmallMaxRows): one block per (panel of 16 weight rows, 4 assignments); each
//          thread streams words of the panel with their 16 rows' values in registers, then a warp-shuffle
//          and shared-memory reduction. The decode path (GEMV): weights are read once per 4 rows.
//   tiled  (more rows): one block per (panel, 64 assignments); the panel's values for 32 k at a time are
//          decoded into shared memory beside the 64 x rows, so weights are read once per 64 rows.
// Dense matmuls with many rows go to cuBLAS instead (dense_matmul.h).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "ferry/ops/packed_layout.h"

namespace ferry::cuda {

inline constexpr int kSmallMaxRows = 8;

// One routed expert's SwiGLU weights as the device reads them (an expert table is an array of these in
// device memory).
struct ExpertLayout {
  PackedLayout gate;  // [F, D]
  PackedLayout up;    // [F, D]
  PackedLayout down;  // [D, F]
};

// Which rows a matmul computes (see above).
struct RowMap {
  int n_rows = 0;                     // dense: assignments [0, n_rows)
  const int32_t* offsets = nullptr;   // grouped: [E + 1] on the device (null: dense)
  int first_expert = 0;               // grouped: experts [first_expert, first_expert + n_experts)
  int n_experts = 1;
  const int32_t* in_rows = nullptr;   // x row of assignment a (null: a)
  const int32_t* out_rows = nullptr;  // y row of assignment a (null: a)
};

// Dense or grouped matmul with one weight matrix `w` for every expert (dense: the only one).
// x [*, ldx], y [*, ldy], bias [w.rows] or null; max_rows bounds the assignments of one expert.
void packed_matmul(const PackedLayout& w, const float* x, int ldx, float* y, int ldy, const float* bias,
                   const RowMap& rows, int max_rows, cudaStream_t stream);

// Grouped expert FFN halves over an expert table (device array, [E]): for each expert e of rows
//   gate_up:  act[out(a), f] = silu(gate_e[f]·x[in(a)]) * (up_e[f]·x[in(a)])         act [*, lda]
//   down:     y[out(a), d] = down_e[d]·act[in(a)]                                     y [*, ldy]
// n_out is the widest output (F for gate_up, D for down) over the table's experts.
void expert_gate_up(const ExpertLayout* table, int n_out, const float* x, int ldx, float* act, int lda,
                    const RowMap& rows, int max_rows, cudaStream_t stream);
void expert_down(const ExpertLayout* table, int n_out, const float* act, int lda, float* y, int ldy,
                 const RowMap& rows, int max_rows, cudaStream_t stream);

}  // namespace ferry::cuda
