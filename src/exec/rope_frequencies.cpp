#include "ferry/rope_frequencies.h"

#include <algorithm>
#include <cmath>

#include "ferry/error.h"

namespace ferry {

namespace {

// base^(2i/d) for i < d/2, in fp32 as transformers computes it.
std::vector<float> default_inv_freq(double base, int dim) {
  std::vector<float> inv(dim / 2);
  for (int i = 0; i < dim / 2; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(base), exponent);
  }
  return inv;
}

double yarn_get_mscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

RopeFrequencies rope_frequencies(const RopeConfig& rope, int max_position, int seq_len) {
  const int dim = rope.rotary_dim;
  if (dim <= 0 || dim % 2 != 0) throw Error("RoPE rotary dimension must be a positive even number, got " + std::to_string(dim));
  RopeFrequencies out;
  switch (rope.scaling) {
    case RopeScalingType::None:
      out.inv_freq = default_inv_freq(rope.theta, dim);
      break;
    case RopeScalingType::Linear:
      out.inv_freq = default_inv_freq(rope.theta, dim);
      for (float& f : out.inv_freq) f = static_cast<float>(f / rope.factor);
      break;
    case RopeScalingType::Dynamic: {
      // NTK-aware: the base grows once the sequence is longer than the original context.
      const int orig = rope.original_max_position > 0 ? rope.original_max_position : max_position;
      double base = rope.theta;
      if (seq_len > orig)
        base = rope.theta * std::pow(rope.factor * seq_len / orig - (rope.factor - 1.0),
                                     static_cast<double>(dim) / (dim - 2));
      out.inv_freq = default_inv_freq(base, dim);
      break;
    }
    case RopeScalingType::Yarn: {
      const double base = rope.theta, factor = rope.factor;
      const int orig = rope.original_max_position > 0 ? rope.original_max_position : max_position;
      if (rope.yarn_mscale != 0.0 && rope.yarn_mscale_all_dim != 0.0)
        out.attention_factor = static_cast<float>(yarn_get_mscale(factor, rope.yarn_mscale) /
                                                  yarn_get_mscale(factor, rope.yarn_mscale_all_dim));
      else
        out.attention_factor = static_cast<float>(yarn_get_mscale(factor, 1.0));
      auto correction_dim = [&](double n_rot) {
        return (dim * std::log(orig / (n_rot * 2 * M_PI))) / (2 * std::log(base));
      };
      double low = std::max(std::floor(correction_dim(rope.yarn_beta_fast)), 0.0);
      double high = std::min(std::ceil(correction_dim(rope.yarn_beta_slow)), static_cast<double>(dim - 1));
      if (low == high) high += 0.001;
      out.inv_freq.resize(dim / 2);
      for (int i = 0; i < dim / 2; ++i) {
        float pos_freq = std::pow(static_cast<float>(base), static_cast<float>(2 * i) / dim);
        float extrapolation = 1.0f / pos_freq;
        float interpolation = 1.0f / static_cast<float>(factor * pos_freq);
        float ramp = static_cast<float>(std::clamp((i - low) / (high - low), 0.0, 1.0));
        float extrapolation_weight = 1.0f - ramp;
        out.inv_freq[i] = interpolation * (1 - extrapolation_weight) + extrapolation * extrapolation_weight;
      }
      break;
    }
    case RopeScalingType::Llama3: {
      out.inv_freq = default_inv_freq(rope.theta, dim);
      const double orig = rope.original_max_position;
      const double low_wavelen = orig / rope.llama3_low_freq_factor;
      const double high_wavelen = orig / rope.llama3_high_freq_factor;
      for (float& f : out.inv_freq) {
        double wavelen = 2 * M_PI / f;
        if (wavelen > low_wavelen) {
          f = static_cast<float>(f / rope.factor);
        } else if (wavelen >= high_wavelen) {
          double smooth = (orig / wavelen - rope.llama3_low_freq_factor) /
                          (rope.llama3_high_freq_factor - rope.llama3_low_freq_factor);
          f = static_cast<float>((1 - smooth) * f / rope.factor + smooth * f);
        }
      }
      break;
    }
    case RopeScalingType::LongRope: {
      const int orig = rope.original_max_position > 0 ? rope.original_max_position : max_position;
      const auto& ext = seq_len > orig ? rope.longrope_long_factor : rope.longrope_short_factor;
      if (static_cast<int>(ext.size()) != dim / 2)
        throw Error("longrope factors have " + std::to_string(ext.size()) + " entries; expected rotary_dim/2 = " +
                    std::to_string(dim / 2));
      out.inv_freq.resize(dim / 2);
      for (int i = 0; i < dim / 2; ++i)
        out.inv_freq[i] = 1.0f / static_cast<float>(ext[i] * std::pow(static_cast<float>(rope.theta),
                                                                      static_cast<float>(2 * i) / dim));
      double mscale = seq_len > orig ? rope.longrope_long_mscale : rope.longrope_short_mscale;
      if (mscale == 0.0) {
        double factor = static_cast<double>(max_position) / orig;
        mscale = factor <= 1.0 ? 1.0 : std::sqrt(1 + std::log(factor) / std::log(static_cast<double>(orig)));
      }
      out.attention_factor = static_cast<float>(mscale);
      break;
    }
  }
  return out;
}

}  // namespace ferry
