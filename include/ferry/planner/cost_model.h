// The cost model: for one policy, the bytes every memory level must hold and the time every resource
// is busy per layer, in prefill and in decode, and from those the end-to-end tokens/s of a workload.
//
// Each kernel is roofline-timed on its device (max of FLOPs/peak and bytes/bandwidth, Eq. 7-8); each
// transfer on its link; with overlap on, a layer takes as long as its busiest resource (Eq. 12-14),
// never less than one micro-batch's round trip through the CPU and GPU stages.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/planner/buffer_model.h"
#include "ferry/planner/hardware_profile.h"
#include "ferry/planner/hrm.h"
#include "ferry/planner/policy.h"

namespace ferry::planner {

struct Workload {
  int64_t requests = 10000;
  double avg_prompt_len = 0;
  int64_t max_prompt_len = 0;
  int64_t gen_len = 0;
};

// Seconds each resource is busy.
struct ResourceTimes {
  double gpu_compute = 0, gpu_memory = 0, gpu_busy = 0;  // busy = Σ max(compute, memory) per kernel
  double cpu_compute = 0, cpu_memory = 0, cpu_busy = 0;
  double dram = 0;  // all DRAM traffic (CPU kernels, DMA sources, SSD landing) at the DRAM bandwidth
  double h2d = 0, d2h = 0, ssd = 0;
  double chain = 0;  // one micro-batch's round trip through the stages: the pipeline's latency floor
  void add(const ResourceTimes& o, double weight);
};

enum class Resource { GpuCompute, GpuMemory, CpuCompute, CpuMemory, Dram, H2d, D2h, Ssd, Chain, Serial };
std::string_view resource_name(Resource r);

// Busy seconds of each part of the model on the device it runs on (max of compute and memory roof per
// kernel), summed over layers: what a run's measured time per part is compared with.
struct PartTimes {
  double dense = 0;      // projections, norms, router, shared expert or dense MLP
  double attention = 0;  // attention over the KV cache
  double experts = 0;    // routed experts' FFNs
  double head = 0;       // final norm and lm_head
  void add(const PartTimes& o, double weight);
};

struct PhaseEstimate {
  ResourceTimes per_layer;  // averaged over layers (the lm_head counted in)
  PartTimes parts;          // over all layers
  double seconds = 0;       // prefill: one batch; decode: one step (all layers)
  Resource binding = Resource::Serial;
  double tokens_per_s = 0;
};

struct MemoryItem {
  std::string level;  // "gpu", "dram", "ssd"
  std::string what;
  double bytes = 0;
};

struct MemoryPlan {
  std::vector<MemoryItem> items;
  double gpu_bytes = 0, gpu_usable = 0;
  double cpu_bytes = 0, cpu_usable = 0;
  double ssd_bytes = 0, ssd_usable = 0;
  bool prefill_hidden_on_gpu = true;  // else the prefill activations of the whole batch spill to DRAM
  CacheSizes cache;                   // the same bytes grouped as the policy file records them
  double gpu_short() const { return gpu_bytes > gpu_usable ? gpu_bytes - gpu_usable : 0; }
  double cpu_short() const { return cpu_bytes > cpu_usable ? cpu_bytes - cpu_usable : 0; }
  double ssd_short() const { return ssd_bytes > ssd_usable ? ssd_bytes - ssd_usable : 0; }
  bool fits() const { return gpu_short() == 0 && cpu_short() == 0 && ssd_short() == 0; }
  // Largest shortfall relative to the usable capacity (0 when it fits): ranks infeasible policies.
  double worst_relative_short() const;
};

struct Estimate {
  MemoryPlan memory;
  PhaseEstimate prefill;  // one full batch
  PhaseEstimate decode;   // one step at the average context
  double batch_seconds = 0;
  double workload_seconds = 0;
  int64_t n_batches = 0;
  double tokens_per_s = 0;  // generated tokens / (prefill + decode), whole workload
};

// Layers that cost the same: same kind and the same expert split (a policy has a handful of these).
struct LayerClass {
  bool moe = false;
  double dense_params = 0;
  int gpu = 0, dram = 0, ssd = 0;
  int count = 0;
};

struct CostOptions {
  // MoE-Lightning's prefill workspace term 2.4·μ·s·K·(D + 3F) bytes instead of ferry's chunk workspace.
  bool moe_lightning_workspace = false;
  // The executor's buffer list (ferry/planner/buffer_model.h): with it, the memory plan of a profile with a
  // GPU is exactly what that executor allocates for a policy; without it, the analytic estimate.
  std::shared_ptr<const BufferModel> buffers;
  // KV positions to plan for over all sequences; unset: kv_tokens(N) of the workload.
  std::optional<int64_t> kv_tokens;
  // CPU matmuls of bf16 weights round activations to bf16 (the cpu target's --bf16-activations) instead of
  // taking them in f32 (exact products: the cpu target's default and the executor's host ops).
  bool cpu_bf16_activations = false;
};

class CostModel {
 public:
  CostModel(ModelShape shape, HardwareProfile hw, Workload workload, CostOptions options = {});

  // `itemize`: also list the bytes of every buffer (the search needs only the totals).
  MemoryPlan memory(const Policy& p, bool itemize = true) const;
  Estimate evaluate(const Policy& p, bool itemize = true) const;
  // Prefill of one batch of `n_seqs` sequences and one decode step of it at context `ctx`.
  PhaseEstimate prefill(const Policy& p, const MemoryPlan& mem, double n_seqs) const;
  PhaseEstimate decode_step(const Policy& p, double n_seqs, double ctx) const;
  // KV positions the cache must hold for `n_seqs` sequences (prompt + generation, one long prompt).
  double kv_tokens(double n_seqs) const;

  const ModelShape& shape() const { return shape_; }
  const HardwareProfile& hardware() const { return hw_; }
  const Workload& workload() const { return workload_; }
  const HrmRoofs& roofs() const { return roofs_; }

 private:
  MemoryPlan memory_of_buffers(const Policy& p, bool itemize) const;
  PhaseEstimate prefill_of(const Policy& p, const std::vector<LayerClass>& classes, const MemoryPlan& mem,
                           double n_seqs) const;
  PhaseEstimate decode_step_of(const Policy& p, const std::vector<LayerClass>& classes, double n_seqs,
                               double ctx) const;

  ModelShape shape_;
  HardwareProfile hw_;
  Workload workload_;
  CostOptions options_;
  CpuKernel dense_kernel_ = CpuKernel::Bf16Exact;  // the CPU's matmul of bf16 weights (options_)
  HrmRoofs roofs_;
  double dense_params_total_ = 0;
};

}  // namespace ferry::planner
