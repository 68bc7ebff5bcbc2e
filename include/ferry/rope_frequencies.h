// RoPE frequencies for every scaling type the supported families use, computed as Hugging Face
// transformers does (modeling_rope_utils.py), so positions map to identical angles.
#pragma once
#include <vector>

#include "ferry/model_config.h"

namespace ferry {

struct RopeFrequencies {
  std::vector<float> inv_freq;      // [rotary_dim / 2]
  float attention_factor = 1.0f;    // multiplies cos and sin (yarn, longrope)
};

// `seq_len` matters only for dynamic NTK and longrope (which switch behaviour past the original
// context); pass the longest position the caller will use.
RopeFrequencies rope_frequencies(const RopeConfig& rope, int max_position, int seq_len);

}  // namespace ferry
