// The policy search: enumerate batch N, micro-batch μ, attention and FFN devices, KV placement and the
// expert precision of each tier; for each, place as many experts on the GPU and in DRAM as memory
// allows (or, when the GPU only holds experts for the CPU-side FFN, as many as pays); keep the policy
// with the highest end-to-end tokens/s of the workload (prefill included). Deterministic: fixed grids,
// fixed order, ties to the first found.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ferry/planner/cost_model.h"
#include "ferry/planner/hardware_profile.h"
#include "ferry/planner/hrm.h"
#include "ferry/planner/policy.h"

namespace ferry::planner {

struct PlannerOptions {
  // Expert precisions the search may use per tier; bf16 only unless asked (quantising changes outputs).
  std::vector<Precision> expert_precisions = {Precision::Bf16};
  Precision kv_precision = Precision::Bf16;
  int group_size = kQuantGroup;  // int8/int4 experts: the quantisation group the policies are priced at
  bool overlap = true;
  // Restrict the search to MoE-Lightning's policy space: CPU attention, GPU FFN, bf16, the same pinned
  // experts in every layer, no SSD, prefill of μ whole prompts at a time with its workspace formula.
  bool moe_lightning_space = false;
  // Pins set by the user (--batch, --micro-batch, --attention, --ffn).
  std::optional<int64_t> batch_size;
  std::optional<int64_t> micro_batch;
  std::optional<Device> attention_device;
  std::optional<Device> ffn_device;
  // The KV share on the GPU of the families with GPU attention (otherwise searched over 0, 1/4, ..., 1).
  std::optional<double> kv_gpu_share;
  // The executor's buffer list and the KV capacity to price (CostOptions): set them, and every policy the
  // search returns is one that executor can allocate.
  std::shared_ptr<const BufferModel> buffers;
  std::optional<int64_t> kv_tokens;
};

struct Candidate {
  Policy policy;
  Estimate estimate;
  std::string family;  // "attention cpu, ffn gpu, experts bf16/bf16", ...
};

struct PlanResult {
  bool feasible = false;
  Candidate best;                       // valid when feasible
  std::vector<Candidate> alternatives;  // the best of every other family, fastest first
  std::vector<Candidate> neighbours;    // the chosen family at N/2 and 2N (may not fit)
  Candidate closest;                    // when infeasible: the candidate with the smallest shortfall
  int64_t evaluated = 0;
  double search_seconds = 0;
};

class Planner {
 public:
  Planner(const ModelShape& shape, const HardwareProfile& hw, const Workload& workload,
          PlannerOptions options);

  PlanResult plan() const;
  const CostModel& cost_model() const { return cost_; }
  // Builds the per-layer expert split for `gpu_total` experts on the GPU and `dram_total` in DRAM (the
  // rest on SSD), spread evenly over the MoE layers.
  void place_experts(Policy& p, int64_t gpu_total, int64_t dram_total) const;

 private:
  struct Family {
    Device dense, attention, ffn;
    Precision gpu_precision, dram_precision;
  };
  std::vector<Family> families() const;
  std::string family_name(const Family& f) const;
  // The best policy of a family at (N, μ, KV share), experts placed; nullopt if nothing fits.
  std::optional<Candidate> best_placement(const Family& f, int64_t n, int64_t mu, double kv_share,
                                          Candidate* closest, int64_t* evaluated) const;
  Policy base_policy(const Family& f, int64_t n, int64_t mu, double kv_share) const;

  ModelShape shape_;
  HardwareProfile hw_;
  Workload workload_;
  PlannerOptions options_;
  CostModel cost_;
};

}  // namespace ferry::planner

namespace ferry::planner {

struct AutoPlan {
  PlanResult result;
  PlannerOptions options;  // as used (precisions possibly widened)
  std::string note;        // why the precisions were widened; empty when they were not
};
// Plans with the given options. When `widen_precisions` is set and bf16 experts fit nowhere, plans again
// allowing int8, then int8 and int4, and says so in `note` (quantised experts change the outputs, so this
// never happens when the user named the precisions).
AutoPlan plan_with_fallback(const ModelShape& shape, const HardwareProfile& hw, const Workload& workload,
                            PlannerOptions options, bool widen_precisions);

}  // namespace ferry::planner
