// Transitional: the exact bf16 matmul is the cpu op cpu::matmul_f32_activations (ferry/ops/matmul.h).
// Include that header instead; this one goes once no file includes it.
#pragma once
#include "ferry/ops/matmul.h"

namespace ferry::cpu_target {

using cpu::matmul_f32_activations;

}  // namespace ferry::cpu_target
