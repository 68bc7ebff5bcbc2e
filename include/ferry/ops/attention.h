// Attention over a paged KV cache (one layer's view), decode and prefill.
//
// KV layout: the cache is an arena of blocks of `block_size` tokens (a multiple of 16); within a block
// each kv head's keys are one contiguous run of block_size * Dh elements, then the next head's; the
// same for values:
//   k, v: [n_block][Hkv][block_size * Dh]   (bf16, f16 or f32)
// Inside one (block, kv head) run the elements are interleaved in pairs so that one 64-byte load feeds
// one bf16 dot-product instruction (vdpbf16ps):
//   keys   [Dh/2][block_size][2]: key j, dim d at ((d/2) * block_size + j) * 2 + d % 2  (16 keys per load)
//   values [block_size/2][Dh][2]: key j, dim d at ((j/2) * Dh + d) * 2 + j % 2         (16 dims per load)
// Use kv_cache_store / kv_cache_load rather than indexing by hand. A sequence owns a list of blocks (its
// block table); position p lives in block block_table[p / block_size], row p % block_size.
//
// Queries and outputs are f32 [T, H, Dh]; GQA maps query head h to kv head h / (H / Hkv).
#pragma once
#include <cstdint>

#include "ferry/dtype.h"

namespace ferry::cpu {

struct KvCacheLayer {
  void* k = nullptr;  // [n_block][Hkv][block_size][Dh]
  void* v = nullptr;  // [n_block][Hkv][block_size][Dh]
  DType dtype = DType::BF16;  // BF16, F16 or F32
  int n_block = 0;
  int block_size = 0;
  int n_head_kv = 0;  // Hkv
  int head_dim = 0;   // Dh

  size_t block_elems() const { return static_cast<size_t>(n_head_kv) * block_size * head_dim; }
  size_t bytes() const;  // of k and v together
  // Element offset of the run of (block, kv head) in k or v.
  size_t run_offset(int block, int kv_head) const {
    return (static_cast<size_t>(block) * n_head_kv + kv_head) * block_size * head_dim;
  }
};

struct AttentionParams {
  int n_head = 0;          // H (query heads); H % Hkv == 0
  float scale = 0.0f;      // softmax scale; 0 means 1/sqrt(Dh)
  int sliding_window = 0;  // > 0: position i attends to j with i - j < sliding_window
};

// Writes new keys/values: token i goes to cache slot slots[i] = block * block_size + row.
// k_new, v_new [T, Hkv, Dh] f32 (converted to the cache dtype with round-to-nearest-even).
void kv_cache_store(const KvCacheLayer& kv, const int32_t* slots, int n_tok, const float* k_new, const float* v_new);

// Reads back one token's keys and values as f32 [Hkv, Dh] each (tests, debugging).
void kv_cache_load(const KvCacheLayer& kv, int32_t slot, float* k_out, float* v_out);

// Slot of position `pos` of a sequence with this block table.
inline int32_t kv_slot(const int32_t* block_table, int pos, int block_size) {
  return block_table[pos / block_size] * block_size + pos % block_size;
}

// Decode: one query token per sequence, attending to all n_ctx[s] cached positions (its own included:
// store it first). q, out [S, H, Dh]. block_tables [S, block_table_stride]. Sequences may have
// different lengths. Parallel over (sequence, kv head), the whole query group per task.
void attention_decode(const float* q, const KvCacheLayer& kv, const int32_t* block_tables, int block_table_stride,
                      const int32_t* n_ctx, int n_seq, const AttentionParams& p, float* out);
void attention_decode_ref(const float* q, const KvCacheLayer& kv, const int32_t* block_tables,
                          int block_table_stride, const int32_t* n_ctx, int n_seq, const AttentionParams& p,
                          float* out);

// Prefill of one sequence: n_tok new tokens at positions n_past .. n_past + n_tok - 1, whose keys and
// values are already stored; causal (query i sees positions <= n_past + i), blocked over queries and keys.
// q, out [n_tok, H, Dh].
void attention_prefill(const float* q, const KvCacheLayer& kv, const int32_t* block_table, int n_past, int n_tok,
                       const AttentionParams& p, float* out);
void attention_prefill_ref(const float* q, const KvCacheLayer& kv, const int32_t* block_table, int n_past,
                           int n_tok, const AttentionParams& p, float* out);

}  // namespace ferry::cpu
