// Policy: everything that decides how a run executes, as one value. The planner produces it, `ferry plan
// --json` writes it, the executor reads it; a run is reproducible from its policy file. Treat it as an
// immutable value: build it once (planner or from_json) and pass it by const reference.
//
// Batch vocabulary (MoE-Lightning's): N = batch_size, the sequences in flight, i.e. the tokens one decode
// pass over the model processes; μ = micro_batch, the tokens one device kernel processes; N/μ micro-batches
// per layer. Prefill runs in chunks of prefill_chunk_tokens, independent of μ.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ferry/precision.h"

namespace ferry {
struct ModelConfig;
}

namespace ferry::planner {

enum class Device { Cpu, Gpu };
enum class ExpertFetch { Prefetch, Demand };
std::string_view expert_fetch_name(ExpertFetch f);
// Which experts of a layer stay resident on the device: Frequency re-ranks them as the run goes, from the
// routing it observes (the most routed ones stay, a streamed expert replaces a colder resident one);
// Index keeps experts 0 .. gpu_per_layer - 1 for the whole run.
enum class ExpertResidency { Frequency, Index };
std::string_view expert_residency_name(ExpertResidency r);
// Storage precision of expert weights or the KV cache (ferry/precision.h); int8/int4 in groups of
// kQuantGroup weights unless the policy's group_size says otherwise.
using ferry::Precision;
using ferry::parse_precision;
using ferry::precision_name;
constexpr int kQuantGroup = 64;

std::string_view device_name(Device d);
// Bytes per stored element, including the group scales (and int4's zero points) of groups of group_size.
double bytes_per_element(Precision p, int group_size = kQuantGroup);
// Whether the CPU and device kernels take this quantisation group: 32..128, a multiple of 16.
bool valid_group_size(int group_size);
// Parses "cpu"/"gpu"; throws ferry::Error naming `where` otherwise.
Device parse_device(std::string_view s, const std::string& where);

// Bytes the planner reserves for each buffer (the executor carves its arenas from these).
struct CacheSizes {
  int64_t gpu_dense_weights = 0;  // attention/router/shared-expert/lm_head weights on the GPU
  int64_t gpu_expert_cache = 0;   // experts resident on the GPU for the whole run
  int64_t gpu_stream_buffer = 0;  // ring for streamed experts: (prefetch_depth + 1) layers' streamed part
  int64_t gpu_kv_cache = 0;
  int64_t gpu_activations = 0;    // activations + workspace at the peak phase
  int64_t dram_expert_cache = 0;  // experts resident in host DRAM
  int64_t dram_kv_cache = 0;
  int64_t dram_pinned_staging = 0;  // pinned relays for activations and SSD reads
  int64_t dram_other = 0;           // embeddings, CPU-side weights and workspaces
  int64_t ssd_expert_store = 0;
};

struct Policy {
  std::string model;     // informational: the model the policy was planned for
  std::string hardware;  // informational: the profile it was planned on

  int64_t batch_size = 1;                 // N
  int64_t micro_batch = 1;                // μ
  int64_t prefill_chunk_tokens = 1;       // tokens per prefill kernel
  Device attention_device = Device::Cpu;  // decode attention (prefill attention runs on prefill_device)
  Device ffn_device = Device::Gpu;        // where experts not resident on the GPU are computed
  Device dense_device = Device::Gpu;      // projections, router, shared experts, lm_head
  Device prefill_device = Device::Gpu;

  // Per layer [L]; 0 for dense (non-MoE) layers. gpu + dram + ssd = n_expert in MoE layers.
  std::vector<int> gpu_experts_per_layer;
  std::vector<int> dram_experts_per_layer;
  std::vector<int> ssd_experts_per_layer;
  Precision gpu_expert_precision = Precision::Bf16;
  Precision dram_expert_precision = Precision::Bf16;
  Precision ssd_expert_precision = Precision::Bf16;
  int group_size = kQuantGroup;  // int8/int4 experts: weights per scale (valid_group_size)

  Precision kv_precision = Precision::Bf16;
  double kv_gpu_share = 0;  // fraction of the KV cache kept on the GPU (the rest in DRAM)

  CacheSizes cache;
  int prefetch_depth = 1;  // layers of experts fetched ahead (1 = double buffering)
  // How streamed experts reach the device: Prefetch copies every streamed expert of a layer one layer ahead;
  // Demand copies ahead only those the last forward routed at that layer, and after the layer's router
  // fetches the routed ones that did not come (experts no token routes to are not moved).
  ExpertFetch expert_fetch = ExpertFetch::Prefetch;
  ExpertResidency expert_residency = ExpertResidency::Frequency;
  bool overlap = true;     // transfers, CPU and GPU work overlap (CGOPipe); false runs them in turn

  int64_t n_micro_batches() const { return (batch_size + micro_batch - 1) / micro_batch; }

  nlohmann::json to_json() const;
  // Checks every field; throws ferry::Error naming `source` and the key.
  static Policy from_json(const nlohmann::json& j, const std::string& source);
  static Policy load(const std::filesystem::path& path);
  void save(const std::filesystem::path& path) const;
  // Checks the per-layer expert counts against the model; throws ferry::Error naming `source`.
  void validate_for(const ModelConfig& model, const std::string& source) const;
};

}  // namespace ferry::planner
