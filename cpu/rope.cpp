// Rotary position embedding (half-split and interleaved pairs). The angles of a token are computed once
// and applied to all its heads.
#include <cmath>

#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "ferry/error.h"
#include "ferry/ops/rope.h"
#include "ferry/ops/rope_math.h"

namespace ferry::cpu {

namespace {

int rotary_dim_of(const RopeParams& p) {
  const int rot = p.rotary_dim ? p.rotary_dim : p.head_dim;
  FERRY_ASSERT(rot % 2 == 0 && rot <= p.head_dim && p.inv_freq != nullptr);
  return rot;
}

// Pair i of a head: (i, i + half) for HalfSplit, (2i, 2i + 1) for Interleaved.
inline void pair_index(RopePairing pairing, int i, int half, int& a, int& b) {
  if (pairing == RopePairing::HalfSplit) {
    a = i;
    b = i + half;
  } else {
    a = 2 * i;
    b = 2 * i + 1;
  }
}

}  // namespace

void rope(float* x, int n_tok, const int32_t* positions, const RopeParams& p) {
  const int rot = rotary_dim_of(p), half = rot / 2;
  parallel_range(n_tok, static_cast<size_t>(n_tok) * p.n_head * p.head_dim * 8, [&](int64_t t0, int64_t t1) {
    float* cs = scratch_as<float>(ScratchSlot::RowTemp, 2 * static_cast<size_t>(half));
    for (int64_t t = t0; t < t1; ++t) {
      for (int i = 0; i < half; ++i) {
        const float angle = rope_angle(positions[t], p.inv_freq[i]);
        cs[i] = std::cos(angle) * p.attention_factor;
        cs[half + i] = std::sin(angle) * p.attention_factor;
      }
      for (int h = 0; h < p.n_head; ++h) {
        float* xh = x + (t * p.n_head + h) * static_cast<int64_t>(p.head_dim);
        if (p.pairing == RopePairing::HalfSplit) {
          for (int i = 0; i < half; ++i) {  // contiguous halves: vectorised by the compiler
            const float a = xh[i], b = xh[i + half];
            xh[i] = a * cs[i] - b * cs[half + i];
            xh[i + half] = b * cs[i] + a * cs[half + i];
          }
        } else {
          for (int i = 0; i < half; ++i) rope_rotate(xh[2 * i], xh[2 * i + 1], cs[i], cs[half + i]);
        }
      }
    }
  });
}

void rope_ref(float* x, int n_tok, const int32_t* positions, const RopeParams& p) {
  const int rot = rotary_dim_of(p), half = rot / 2;
  for (int t = 0; t < n_tok; ++t)
    for (int h = 0; h < p.n_head; ++h) {
      float* xh = x + (static_cast<size_t>(t) * p.n_head + h) * p.head_dim;
      for (int i = 0; i < half; ++i) {
        const float angle = rope_angle(positions[t], p.inv_freq[i]);
        int a, b;
        pair_index(p.pairing, i, half, a, b);
        rope_rotate(xh[a], xh[b], std::cos(angle) * p.attention_factor, std::sin(angle) * p.attention_factor);
      }
    }
}

void rope_default_inv_freq(double theta, int rotary_dim, float* inv_freq) {
  // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)); the exponent is rounded to fp32 as
  // there, the power is taken in double and rounded once (within an ulp of torch's fp32 pow).
  for (int i = 0; i < rotary_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(rotary_dim);
    inv_freq[i] = static_cast<float>(1.0 / std::pow(theta, static_cast<double>(exponent)));
  }
}

}  // namespace ferry::cpu
