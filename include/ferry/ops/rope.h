// Rotary position embedding, in place on x [T, n_head, head_dim]. The first rotary_dim dims of each head
// rotate (rotary_dim <= head_dim, even); the rest pass through. The caller computes inv_freq
// [rotary_dim / 2] for its scaling type (linear, yarn, llama3, ...) and the attention factor (yarn mscale).
// Angles are pos * inv_freq[i] in fp32, then cos/sin in fp32, as transformers does.
//   HalfSplit (HF rotate_half): pairs (i, i + rotary_dim/2)
//   Interleaved (GGUF / GPT-J):  pairs (2i, 2i + 1)
#pragma once
#include <cstdint>

#include "ferry/model_config.h"

namespace ferry::cpu {

struct RopeParams {
  int n_head = 0;
  int head_dim = 0;
  int rotary_dim = 0;                           // 0 means head_dim
  RopePairing pairing = RopePairing::HalfSplit;
  const float* inv_freq = nullptr;              // [rotary_dim / 2]
  float attention_factor = 1.0f;                // multiplies cos and sin
};

// positions [T].
void rope(float* x, int n_tok, const int32_t* positions, const RopeParams& p);
void rope_ref(float* x, int n_tok, const int32_t* positions, const RopeParams& p);

// inv_freq[i] = 1 / theta^(2i / rotary_dim) (no scaling).
void rope_default_inv_freq(double theta, int rotary_dim, float* inv_freq);

}  // namespace ferry::cpu
