// Transitional: the expert MLP is the cpu op cpu::expert_ffn_rows (ferry/ops/expert_ffn.h) and MatmulFn
// lives in exec/cpu/layer_blocks.h. Include that header instead; this one goes once no file includes it.
#pragma once
#include "exec/cpu/layer_blocks.h"
