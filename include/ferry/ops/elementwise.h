// Small element-wise ops of the decoder.
#pragma once
#include <cstdint>

#include "ferry/dtype.h"

namespace ferry::cpu {

// out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i]. out may alias gate or up.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
void silu_mul_ref(const float* gate, const float* up, float* out, int64_t n);

// y[i] = a[i] + b[i]. y may alias a or b.
void residual_add(const float* a, const float* b, float* y, int64_t n);
void residual_add_ref(const float* a, const float* b, float* y, int64_t n);

// out[t, :] = table[ids[t], :] as f32. table [V, D] in F32 or BF16. Throws ferry::Error on an id
// outside [0, V).
void embedding_gather(const void* table, DType dtype, int n_vocab, int d, const int32_t* ids, int n_tok, float* out);
void embedding_gather_ref(const void* table, DType dtype, int n_vocab, int d, const int32_t* ids, int n_tok,
                          float* out);

}  // namespace ferry::cpu
