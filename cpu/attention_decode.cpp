// Decode attention: one new token per sequence over its paged KV cache. A task is one sequence (or a
// share of its kv heads when there are few sequences): its units, one per (kv head, up to 8 query heads
// of its group), walk the sequence's cache blocks together, so keys and values are read once for the
// whole GQA group and in arena order. Sequences of different lengths are balanced by dynamic scheduling.
#include <omp.h>

#include <algorithm>

#include "cpu/attention_kernels.h"
#include "ferry/ops/attention.h"

namespace ferry::cpu {

namespace {

constexpr int kMaxUnitsPerTask = 16;

struct DecodeSplit {
  int group;           // query heads per kv head
  int units_per_head;  // ceil(group / 8)
  int heads_per_task;  // kv heads in one task
  int tasks_per_seq;
};

DecodeSplit decode_split(const KvCacheLayer& kv, const AttentionParams& p, int n_seq) {
  DecodeSplit s;
  s.group = p.n_head / kv.n_head_kv;
  s.units_per_head = (s.group + kMaxAttendRows - 1) / kMaxAttendRows;
  s.heads_per_task = std::max(1, std::min(kv.n_head_kv, kMaxUnitsPerTask / s.units_per_head));
  // Enough tasks to keep every thread busy when there are few sequences.
  const int want_tasks = 4 * omp_get_max_threads();
  while (s.heads_per_task > 1 && n_seq * ((kv.n_head_kv + s.heads_per_task - 1) / s.heads_per_task) < want_tasks)
    s.heads_per_task = (s.heads_per_task + 1) / 2;
  s.tasks_per_seq = (kv.n_head_kv + s.heads_per_task - 1) / s.heads_per_task;
  return s;
}

}  // namespace

void attention_decode(const float* q, const KvCacheLayer& kv, const int32_t* block_tables, int block_table_stride,
                      const int32_t* n_ctx, int n_seq, const AttentionParams& p, float* out) {
  check_kv_layout(kv, p);
  const DecodeSplit sp = decode_split(kv, p, n_seq);
  const int n_task = n_seq * sp.tasks_per_seq;
  const float scale = softmax_scale(kv, p);
  const Isa isa = active_isa();
  const int dh = kv.head_dim;
  size_t total_ctx = 0;
  for (int s = 0; s < n_seq; ++s) total_ctx += n_ctx[s];
  const bool parallel = n_task > 1 && total_ctx * kv.n_head_kv * dh >= 32 * 1024;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int task = 0; task < n_task; ++task) {
    const int seq = task / sp.tasks_per_seq;
    const int head_begin = task % sp.tasks_per_seq * sp.heads_per_task;
    const int head_end = std::min(kv.n_head_kv, head_begin + sp.heads_per_task);
    const int lo = p.sliding_window > 0 ? std::max(0, n_ctx[seq] - p.sliding_window) : 0;
    AttendUnit units[kMaxUnitsPerTask];
    int n_units = 0;
    for (int kv_head = head_begin; kv_head < head_end; ++kv_head)
      for (int r0 = 0; r0 < sp.group; r0 += kMaxAttendRows) {
        AttendUnit& u = units[n_units++];
        u.kv_head = kv_head;
        u.rows.n = std::min(kMaxAttendRows, sp.group - r0);
        for (int r = 0; r < u.rows.n; ++r) {
          const size_t at = (static_cast<size_t>(seq) * p.n_head + kv_head * sp.group + r0 + r) * dh;
          u.rows.q[r] = q + at;
          u.rows.out[r] = out + at;
          u.rows.lo[r] = lo;
          u.rows.hi[r] = n_ctx[seq];
        }
      }
    attend(kv, block_tables + static_cast<size_t>(seq) * block_table_stride, units, n_units, scale, isa);
  }
}

void attention_decode_ref(const float* q, const KvCacheLayer& kv, const int32_t* block_tables,
                          int block_table_stride, const int32_t* n_ctx, int n_seq, const AttentionParams& p,
                          float* out) {
  check_kv_layout(kv, p);
  const int group = p.n_head / kv.n_head_kv, dh = kv.head_dim;
  for (int s = 0; s < n_seq; ++s)
    for (int h = 0; h < p.n_head; ++h) {
      const size_t at = (static_cast<size_t>(s) * p.n_head + h) * dh;
      const int lo = p.sliding_window > 0 ? std::max(0, n_ctx[s] - p.sliding_window) : 0;
      attend_ref(kv, h / group, block_tables + static_cast<size_t>(s) * block_table_stride, q + at, lo, n_ctx[s],
                 softmax_scale(kv, p), out + at);
    }
}

}  // namespace ferry::cpu
