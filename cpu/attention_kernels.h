// Internal to cpu/: the attention kernel shared by decode and prefill. One call attends a few query
// rows (heads of one GQA group, possibly of several tokens) to the keys of one kv head of one sequence,
// with online softmax, reading each cache block's keys and values once for all rows.
#pragma once
#include <cmath>
#include <cstdint>

#include "ferry/ops/attention.h"
#include "ferry/ops/isa.h"

namespace ferry::cpu {

inline constexpr int kMaxAttendRows = 8;

struct AttendRows {
  int n = 0;
  const float* q[kMaxAttendRows] = {};  // [Dh] f32, unscaled
  float* out[kMaxAttendRows] = {};      // [Dh] f32
  int lo[kMaxAttendRows] = {};          // row r sees key positions [lo, hi)
  int hi[kMaxAttendRows] = {};
};

// A unit of work: up to 8 query rows against one kv head.
struct AttendUnit {
  int kv_head = 0;
  AttendRows rows;
};

// Attends every unit to the keys of one sequence (block_table). The AVX-512 kernel walks the cache
// block by block and, inside a block, unit by unit: with the units of consecutive kv heads the reads
// follow the arena's layout ([block][kv head][...]) as two long streams, keys and values.
void attend_portable(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units, int n_units,
                     float scale, Isa isa);
void attend_bf16_avx512(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units, int n_units,
                        float scale);

// Picks the kernel for this cache and ISA level.
void attend(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units, int n_units, float scale,
            Isa isa);

// The reference: one query row, plain loops in double over the visible positions.
void attend_ref(const KvCacheLayer& kv, int kv_head, const int32_t* block_table, const float* q, int lo, int hi,
                float scale, float* out);

void check_kv_layout(const KvCacheLayer& kv, const AttentionParams& p);

inline float softmax_scale(const KvCacheLayer& kv, const AttentionParams& p) {
  return p.scale != 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(kv.head_dim));
}

}  // namespace ferry::cpu
