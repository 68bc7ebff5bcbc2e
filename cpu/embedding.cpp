// Embedding gather: rows of an f32 or bf16 table, widened to f32.
#include <cstring>
#include <string>

#include "cpu/parallel.h"
#include "ferry/error.h"
#include "ferry/ops/elementwise.h"

namespace ferry::cpu {

namespace {

void check_args(DType dtype, int n_vocab, const int32_t* ids, int n_tok) {
  if (dtype != DType::F32 && dtype != DType::BF16)
    throw Error("embedding_gather: the embedding table must be f32 or bf16, got " + std::string(dtype_name(dtype)));
  for (int t = 0; t < n_tok; ++t)
    if (ids[t] < 0 || ids[t] >= n_vocab)
      throw Error("embedding_gather: token id " + std::to_string(ids[t]) + " at position " + std::to_string(t) +
                  " is outside the vocabulary [0, " + std::to_string(n_vocab) +
                  "); the tokenizer and the model checkpoint do not match");
}

void gather_row(const void* table, DType dtype, int d, int32_t id, float* out) {
  if (dtype == DType::F32) {
    std::memcpy(out, static_cast<const float*>(table) + static_cast<size_t>(id) * d, sizeof(float) * d);
    return;
  }
  const uint16_t* row = static_cast<const uint16_t*>(table) + static_cast<size_t>(id) * d;
  for (int i = 0; i < d; ++i) {  // vectorised by the compiler: a 16-bit shift per element
    const uint32_t u = static_cast<uint32_t>(row[i]) << 16;
    std::memcpy(out + i, &u, 4);
  }
}

}  // namespace

void embedding_gather(const void* table, DType dtype, int n_vocab, int d, const int32_t* ids, int n_tok,
                      float* out) {
  check_args(dtype, n_vocab, ids, n_tok);
  parallel_range(n_tok, static_cast<size_t>(n_tok) * d * 6, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) gather_row(table, dtype, d, ids[t], out + t * d);
  });
}

void embedding_gather_ref(const void* table, DType dtype, int n_vocab, int d, const int32_t* ids, int n_tok,
                          float* out) {
  check_args(dtype, n_vocab, ids, n_tok);
  for (int t = 0; t < n_tok; ++t)
    for (int i = 0; i < d; ++i) {
      const size_t at = static_cast<size_t>(ids[t]) * d + i;
      out[static_cast<size_t>(t) * d + i] =
          dtype == DType::F32 ? static_cast<const float*>(table)[at] : bf16_to_f32(static_cast<const uint16_t*>(table)[at]);
    }
}

}  // namespace ferry::cpu
