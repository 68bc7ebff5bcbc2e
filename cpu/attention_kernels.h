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
// AMX-BF16 tiles (attention_amx.cpp): bf16 cache, head_dim a multiple of 16; only when amx_active().
void attend_bf16_amx(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units, int n_units,
                     float scale);
// f32 FMAs on widened lines (attention_fma.cpp): bf16 or f16 cache, head_dim a multiple of 16, Avx512.
void attend_fma_avx512(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units, int n_units,
                       float scale);

// Whether vdpbf16ps delivers at least the flops of f32 FMAs on this CPU (measured once, ~0.1 ms: true on
// AMD Zen 4, false on Intel, where it runs at half the FMA rate). FERRY_ATTN_BF16=dpbf16|fma overrides.
bool bf16_dot_product_is_fast();

// Which kernel serves a bf16 cache at the Avx512 level without AMX tiles: Auto picks by
// bf16_dot_product_is_fast(). Process-wide; tests set it to check both kernels on any CPU.
enum class Bf16AttentionKernel { Auto, Dpbf16, Fma };
void set_bf16_attention_kernel(Bf16AttentionKernel k);
Bf16AttentionKernel bf16_attention_kernel();

// The cache lines of one unit step (32 keys of one kv head from c0; bf16 or f16 cache): the keys of its two
// 16-key chunks (Dh/2 lines each, one per dim pair, block_size * 4 bytes apart) and their value pairs (Dh/2
// contiguous lines each). The kernels prefetch the next unit step's lines into L2 while they compute one:
// every run of keys or values is only a few KiB and the hardware prefetchers stop at 4 KiB pages, so
// without this the loads wait on DRAM (measured: ~20% of the bandwidth lost with the AMX kernel).
struct StepLines {
  const char* k[2] = {};  // null: chunk absent (past the end)
  const char* v[2] = {};
  size_t kstride = 0;
  int lines = 0;  // per region; 0: nothing to fetch
};
StepLines step_lines(const KvCacheLayer& kv, int kv_head, const int32_t* block_table, int c0, int end);

// Lines [i0, i1) of the key (values = false) or value regions of both chunks, into L2. Always inlined:
// GCC deems a function that only prefetches pure and deletes the calls to it.
__attribute__((always_inline)) inline void prefetch_lines(const StepLines& pf, bool values, int i0, int i1) {
  for (int c = 0; c < 2; ++c) {
    const char* base = values ? pf.v[c] : pf.k[c];
    if (!base) continue;
    const size_t stride = values ? 64 : pf.kstride;
    for (int i = i0; i < i1; ++i) __builtin_prefetch(base + i * stride, 0, 2);  // prefetcht1
  }
}

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
