// Prefill attention for one sequence, causal: tasks are (kv head, tile of query tokens); a tile holds
// up to 8 rows (tokens x heads of one GQA group) that share each key/value block load. Keys may
// include a cached prefix (n_past > 0).
#include <algorithm>

#include "cpu/attention_kernels.h"
#include "ferry/ops/attention.h"

namespace ferry::cpu {

void attention_prefill(const float* q, const KvCacheLayer& kv, const int32_t* block_table, int n_past, int n_tok,
                       const AttentionParams& p, float* out) {
  check_kv_layout(kv, p);
  const int group = p.n_head / kv.n_head_kv, dh = kv.head_dim;
  const int heads_per_task = std::min(group, kMaxAttendRows);
  const int head_chunks = (group + heads_per_task - 1) / heads_per_task;
  const int tok_tile = std::max(1, kMaxAttendRows / heads_per_task);
  const int tok_tiles = (n_tok + tok_tile - 1) / tok_tile;
  const int n_task = kv.n_head_kv * head_chunks * tok_tiles;
  const float scale = softmax_scale(kv, p);
  const Isa isa = active_isa();
  const size_t work = static_cast<size_t>(n_tok) * (n_past + n_tok) * p.n_head * dh;
#pragma omp parallel for schedule(dynamic, 1) if (n_task > 1 && work >= 64 * 1024)
  for (int task = n_task - 1; task >= 0; --task) {  // the longest (last) tiles first
    const int tile = task % tok_tiles;
    const int head_chunk = task / tok_tiles % head_chunks;
    const int kv_head = task / (tok_tiles * head_chunks);
    const int head0 = kv_head * group + head_chunk * heads_per_task;
    const int n_heads = std::min(heads_per_task, group - head_chunk * heads_per_task);
    AttendUnit unit;
    unit.kv_head = kv_head;
    AttendRows& rows = unit.rows;
    for (int t = tile * tok_tile; t < std::min(n_tok, (tile + 1) * tok_tile); ++t)
      for (int h = head0; h < head0 + n_heads; ++h) {
        const size_t at = (static_cast<size_t>(t) * p.n_head + h) * dh;
        const int hi = n_past + t + 1;
        rows.q[rows.n] = q + at;
        rows.out[rows.n] = out + at;
        rows.lo[rows.n] = p.sliding_window > 0 ? std::max(0, hi - p.sliding_window) : 0;
        rows.hi[rows.n] = hi;
        rows.n++;
      }
    attend(kv, block_table, &unit, 1, scale, isa);
  }
}

void attention_prefill_ref(const float* q, const KvCacheLayer& kv, const int32_t* block_table, int n_past, int n_tok,
                           const AttentionParams& p, float* out) {
  check_kv_layout(kv, p);
  const int group = p.n_head / kv.n_head_kv, dh = kv.head_dim;
  for (int t = 0; t < n_tok; ++t)
    for (int h = 0; h < p.n_head; ++h) {
      const size_t at = (static_cast<size_t>(t) * p.n_head + h) * dh;
      const int hi = n_past + t + 1;
      const int lo = p.sliding_window > 0 ? std::max(0, hi - p.sliding_window) : 0;
      attend_ref(kv, h / group, block_table, q + at, lo, hi, softmax_scale(kv, p), out + at);
    }
}

}  // namespace ferry::cpu
