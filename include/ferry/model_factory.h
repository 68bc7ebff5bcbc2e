// Builds the forward implementation a target names: `reference` (fp32, plain loops; the
// definition every other target must match) or `cpu` (the fast CPU ops, bf16 / int8 / int4 experts).
// The pipeline targets (sim:<profile>, pipeline:<device>) need a policy and a workload too: they are
// built by PipelineTarget::create (ferry/pipeline_target.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "ferry/checkpoint.h"
#include "ferry/model.h"

namespace ferry {

struct TargetOptions {
  std::string target = "reference";
  // cpu target (ferry/cpu_model.h):
  std::string expert_dtype = "bf16";  // routed expert weights: bf16, int8 or int4
  std::string kv_dtype = "bf16";      // KV cache: bf16, f16 or f32
  int group_size = 64;                // int8 / int4 quantisation group (32..128, a multiple of 16)
  int threads = 0;                    // 0: OpenMP's default (OMP_NUM_THREADS or every core)
  int64_t kv_cache_tokens = 0;        // KV capacity in tokens over all sequences; 0: auto
  bool bf16_activations = false;      // bf16 weights take bf16-rounded activations (faster prefill)
  double dram_budget_gb = 0;          // packed stores: DRAM for routed experts, the rest read from SSD; 0: all
  std::string eviction = "lru";       // the DRAM expert cache's policy: lru, lfu or score
  std::string reader = "auto";        // how expert chunks are read: auto, io_uring or pread
  std::string record_routing;         // cpu target: a JSONL file of every forward's routing
  bool populate = false;              // cpu target, packed stores: fault every mapped page in at load
  int reserve_tokens = 0;             // cpu target: activation buffers reserved at load for this many tokens
                                      // per forward (the job's largest prefill); 0: the model's default
  double substitute_below = 0;        // cpu target under a DRAM budget: substitution on a miss (cpu_model.h)
  std::string substitute_dtype = "int4";
};

// Throws ferry::Error for an unknown target or option value, listing the known ones. `auto` is resolved
// first (resolve_target).
std::unique_ptr<Model> create_model(const Checkpoint& checkpoint, const TargetOptions& options);

// `auto` becomes `cuda` when a CUDA GPU is usable (cuda_device_count() > 0, ferry/device.h), else `cpu`;
// `why` (when not null) then says which and why, e.g. "--target auto -> cpu (no CUDA GPU: ...)". Any other
// target is returned unchanged and `why` left empty.
std::string resolve_target(const std::string& target, std::string* why = nullptr);

}  // namespace ferry
