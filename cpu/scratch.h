// Internal to cpu/: per-thread scratch buffers that grow to the largest size asked for and are then
// reused, so ops allocate nothing in steady state. Each slot is an independent buffer; a function uses
// distinct slots for buffers that are live at the same time, and never holds a slot across a call into
// another op that may use the same slot.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ferry::cpu {

enum class ScratchSlot : int {
  MatmulActivations,  // converted / quantised activations of matmul
  MatmulActScales,    // their per-group scales and sums
  MatmulTile,         // per-thread weight tile / decoded panel of the kernels
  MatmulInput,        // matmul_xbf16: activations widened to f32
  FfnGather,          // expert FFN: gathered input rows
  FfnHidden,          // expert FFN: gate/up outputs
  FfnOut,             // expert FFN: down output
  MoeRouting,         // MoE layer: router logits and top-k
  MoeGrouping,        // moe_experts: tokens grouped by expert
  Attention,          // attention per-thread rows
  RowTemp,            // small per-row temporaries (rope angles, router probabilities)
  Reference,          // reference implementations
  kCount
};

// A 64-byte aligned buffer of at least `bytes` bytes, owned by the calling thread.
void* scratch(ScratchSlot slot, size_t bytes);

template <typename T>
T* scratch_as(ScratchSlot slot, size_t count) {
  return static_cast<T*>(scratch(slot, count * sizeof(T)));
}

}  // namespace ferry::cpu
