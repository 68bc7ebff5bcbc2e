// Stores into and loads from the paged KV cache (layout in ferry/ops/attention.h).
#include <string>

#include "cpu/kv_elem.h"
#include "ferry/error.h"
#include "ferry/ops/attention.h"

namespace ferry::cpu {

size_t KvCacheLayer::bytes() const { return 2 * static_cast<size_t>(n_block) * block_elems() * dtype_size(dtype); }

namespace {

template <typename Convert>
void store_rows(const KvCacheLayer& kv, const int32_t* slots, int n_tok, const float* k_new, const float* v_new,
                Convert convert) {
  using Elem = decltype(convert(0.0f));
  const int bs = kv.block_size, dh = kv.head_dim, hkv = kv.n_head_kv;
  Elem* k = static_cast<Elem*>(kv.k);
  Elem* v = static_cast<Elem*>(kv.v);
  for (int i = 0; i < n_tok; ++i) FERRY_ASSERT(slots[i] >= 0 && slots[i] / bs < kv.n_block);
  // A prompt's rows are spread over both cores: the keys' transposed layout makes these strided writes,
  // as costly per layer as the prompt's attention itself when run on one core. Every (token, head) writes
  // its own elements.
#pragma omp parallel for collapse(2) schedule(static) if (n_tok * hkv >= 256)
  for (int i = 0; i < n_tok; ++i) {
    for (int h = 0; h < hkv; ++h) {
      const int block = slots[i] / bs, j = slots[i] % bs;
      const size_t run = kv.run_offset(block, h);
      const float* kr = k_new + (static_cast<size_t>(i) * hkv + h) * dh;
      const float* vr = v_new + (static_cast<size_t>(i) * hkv + h) * dh;
      for (int d = 0; d < dh; ++d) {
        k[run + key_index(d, j, bs)] = convert(kr[d]);
        v[run + value_index(d, j, dh)] = convert(vr[d]);
      }
    }
  }
}

}  // namespace

void kv_cache_store(const KvCacheLayer& kv, const int32_t* slots, int n_tok, const float* k_new, const float* v_new) {
  switch (kv.dtype) {
    case DType::BF16: store_rows(kv, slots, n_tok, k_new, v_new, [](float x) { return f32_to_bf16(x); }); break;
    case DType::F16: store_rows(kv, slots, n_tok, k_new, v_new, [](float x) { return f32_to_f16(x); }); break;
    default: store_rows(kv, slots, n_tok, k_new, v_new, [](float x) { return x; }); break;
  }
}

void kv_cache_load(const KvCacheLayer& kv, int32_t slot, float* k_out, float* v_out) {
  const int bs = kv.block_size, dh = kv.head_dim;
  const int block = slot / bs, j = slot % bs;
  FERRY_ASSERT(slot >= 0 && block < kv.n_block);
  for (int h = 0; h < kv.n_head_kv; ++h) {
    const size_t run = kv.run_offset(block, h);
    for (int d = 0; d < dh; ++d) {
      k_out[static_cast<size_t>(h) * dh + d] = kv_load(kv.k, kv.dtype, run + key_index(d, j, bs));
      v_out[static_cast<size_t>(h) * dh + d] = kv_load(kv.v, kv.dtype, run + value_index(d, j, dh));
    }
  }
}

}  // namespace ferry::cpu
