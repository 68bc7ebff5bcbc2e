// The policy search: it plans every shipped model on every preset, the chosen policy fits both memories,
// more PCIe bandwidth or GPU memory never lowers the predicted throughput, it is deterministic, and on
// the MoE-Lightning settings it picks CPU attention with the FFN on the GPU.
#include <chrono>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ferry/planner/model_catalog.h"
#include "ferry/planner/planner.h"

namespace ferry::planner {
namespace {

ModelShape shape(const std::string& name) {
  return ModelShape::from_config(resolve_model(name).config, name);
}

const Workload kMtBench{10000, 77, 418, 128};

TEST(PlannerSearch, ShipsTheEightModelSpecs) {
  std::vector<std::string> want = {"dbrx",        "deepseek-v2-lite", "mixtral-8x22b",     "mixtral-8x7b",
                                   "olmoe-1b-7b", "phi-3.5-moe",      "qwen1.5-moe-a2.7b", "qwen3-30b-a3b"};
  EXPECT_EQ(model_names(), want);
}

class EveryModel : public ::testing::TestWithParam<std::string> {};

// Every model on every preset: a feasible plan that fits both memories. The 2 s budget is measured by
// tools/bench/plan_bench; here a generous bound only catches a search that has run away.
TEST_P(EveryModel, PlansOnEveryPresetAndFits) {
  ModelShape m = shape(GetParam());
  for (const std::string& preset : preset_names()) {
    SCOPED_TRACE(preset);
    HardwareProfile hw = hardware_preset(preset);
    auto t0 = std::chrono::steady_clock::now();
    AutoPlan ap = plan_with_fallback(m, hw, kMtBench, PlannerOptions{}, true);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(ap.result.feasible);
    EXPECT_LT(seconds, 20.0);
    const Estimate& e = ap.result.best.estimate;
    EXPECT_TRUE(e.memory.fits());
    EXPECT_LE(e.memory.gpu_bytes, e.memory.gpu_usable);
    EXPECT_LE(e.memory.cpu_bytes, e.memory.cpu_usable);
    EXPECT_GT(e.tokens_per_s, 0);
    EXPECT_LE(e.tokens_per_s, e.decode.tokens_per_s * (1 + 1e-9));
    ap.result.best.policy.validate_for(resolve_model(GetParam()).config, "plan");
  }
}

// Monotonicity over presets: doubling PCIe never lowers the prediction; nor does 1.5x GPU memory.
TEST_P(EveryModel, MorePcieOrGpuMemoryNeverLowersThroughput) {
  ModelShape m = shape(GetParam());
  const Workload w{2000, 77, 418, 64};
  for (const std::string& preset : preset_names()) {
    HardwareProfile hw = hardware_preset(preset);
    if (!hw.has_gpu()) continue;
    SCOPED_TRACE(preset);
    PlannerOptions o;
    PlanResult base = Planner(m, hw, w, o).plan();
    if (!base.feasible) {  // bf16 DBRX / 8x22B on the MoE-Lightning boxes: DRAM too small, no SSD
      EXPECT_FALSE(hw.has_ssd());
      EXPECT_GT(base.closest.estimate.memory.cpu_short(), 0);
      continue;
    }
    EXPECT_TRUE(base.best.estimate.memory.fits());

    HardwareProfile faster = hw;
    faster.links.h2d_gbps *= 2;
    faster.links.d2h_gbps *= 2;
    PlanResult more_pcie = Planner(m, faster, w, o).plan();
    ASSERT_TRUE(more_pcie.feasible);
    EXPECT_GE(more_pcie.best.estimate.tokens_per_s, base.best.estimate.tokens_per_s * (1 - 1e-12));

    HardwareProfile bigger = hw;
    bigger.gpu->capacity_bytes *= 1.5;
    PlanResult more_memory = Planner(m, bigger, w, o).plan();
    ASSERT_TRUE(more_memory.feasible);
    EXPECT_GE(more_memory.best.estimate.tokens_per_s, base.best.estimate.tokens_per_s * (1 - 1e-12));
    EXPECT_TRUE(more_memory.best.estimate.memory.fits());
  }
}

INSTANTIATE_TEST_SUITE_P(Models, EveryModel,
                         ::testing::Values("dbrx", "deepseek-v2-lite", "mixtral-8x22b", "mixtral-8x7b",
                                           "olmoe-1b-7b", "phi-3.5-moe", "qwen1.5-moe-a2.7b",
                                           "qwen3-30b-a3b"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

// The same with quantised tiers allowed (one model: the search is 9x larger).
TEST(PlannerSearch, MonotoneWithQuantisedTiersToo) {
  ModelShape m = shape("mixtral-8x22b");
  const Workload w{2000, 77, 418, 64};
  PlannerOptions o;
  o.expert_precisions = {Precision::Bf16, Precision::Int8, Precision::Int4};
  for (const char* preset : {"l4", "a100-40gb", "t4-ml"}) {
    SCOPED_TRACE(preset);
    HardwareProfile hw = hardware_preset(preset);
    PlanResult base = Planner(m, hw, w, o).plan();
    ASSERT_TRUE(base.feasible);
    HardwareProfile faster = hw;
    faster.links.h2d_gbps *= 2;
    faster.links.d2h_gbps *= 2;
    EXPECT_GE(Planner(m, faster, w, o).plan().best.estimate.tokens_per_s, base.best.estimate.tokens_per_s);
    HardwareProfile bigger = hw;
    bigger.gpu->capacity_bytes *= 1.5;
    EXPECT_GE(Planner(m, bigger, w, o).plan().best.estimate.tokens_per_s, base.best.estimate.tokens_per_s);
  }
}

TEST(PlannerSearch, IsDeterministic) {
  ModelShape m = shape("qwen3-30b-a3b");
  HardwareProfile hw = hardware_preset("l4");
  PlanResult a = Planner(m, hw, kMtBench, PlannerOptions{}).plan();
  PlanResult b = Planner(m, hw, kMtBench, PlannerOptions{}).plan();
  ASSERT_TRUE(a.feasible);
  EXPECT_EQ(a.best.policy.to_json(), b.best.policy.to_json());
  EXPECT_EQ(a.best.estimate.tokens_per_s, b.best.estimate.tokens_per_s);
}

// MoE-Lightning's settings: Mixtral 8x7B, MTBench and HELM synthetic reasoning, on its L4 and T4 boxes.
TEST(PlannerSearch, MoeLightningSettingsChooseCpuAttentionAndGpuFfn) {
  ModelShape m = shape("mixtral-8x7b");
  std::vector<Workload> workloads = {{10000, 77, 418, 32}, {10000, 77, 418, 256}, {10000, 242, 256, 50}};
  for (const char* preset : {"l4-ml", "t4-ml"})
    for (const Workload& w : workloads) {
      SCOPED_TRACE(std::string(preset) + " gen " + std::to_string(w.gen_len));
      PlanResult r = Planner(m, hardware_preset(preset), w, PlannerOptions{}).plan();
      ASSERT_TRUE(r.feasible);
      EXPECT_EQ(r.best.policy.attention_device, Device::Cpu);
      EXPECT_EQ(r.best.policy.ffn_device, Device::Gpu);
      EXPECT_EQ(r.best.estimate.decode.binding, Resource::H2d);  // PCIe-bound, as the paper finds
    }
}

// A small batch on a machine whose link is slow: computing experts where they lie (CPU) beats moving
// them (Fiddler's observation); a large batch on the same machine streams them to the GPU.
TEST(PlannerSearch, SmallBatchesComputeExpertsOnTheCpu) {
  ModelShape m = shape("mixtral-8x7b");
  HardwareProfile hw = hardware_preset("l4");
  PlannerOptions o;
  o.batch_size = 4;
  PlanResult small = Planner(m, hw, Workload{4, 77, 418, 128}, o).plan();
  ASSERT_TRUE(small.feasible);
  EXPECT_EQ(small.best.policy.ffn_device, Device::Cpu);
  PlanResult large = Planner(m, hw, kMtBench, PlannerOptions{}).plan();
  ASSERT_TRUE(large.feasible);
  EXPECT_EQ(large.best.policy.ffn_device, Device::Gpu);
}

TEST(PlannerSearch, CpuOnlyMachinesCacheExpertsInDramOverTheSsd) {
  ModelShape m = shape("mixtral-8x22b");  // 282 GB of bf16 experts; the preset host has 128 GB
  HardwareProfile hw = hardware_preset("cpu-server");
  PlanResult r = Planner(m, hw, kMtBench, PlannerOptions{}).plan();
  ASSERT_TRUE(r.feasible);
  const Policy& p = r.best.policy;
  int dram = 0, ssd = 0;
  for (size_t l = 0; l < p.ssd_experts_per_layer.size(); ++l) {
    dram += p.dram_experts_per_layer[l];
    ssd += p.ssd_experts_per_layer[l];
  }
  EXPECT_GT(dram, 0);
  EXPECT_GT(ssd, 0);
  EXPECT_GT(r.best.estimate.decode.per_layer.ssd, 0);
  EXPECT_TRUE(r.best.estimate.memory.fits());
  EXPECT_GT(r.best.estimate.memory.cpu_bytes, 0.9 * r.best.estimate.memory.cpu_usable);  // DRAM used as cache

  // Without an SSD and with bf16 only, nothing fits, and the closest policy says DRAM is short.
  HardwareOverrides no_ssd;
  no_ssd.ssd_gbps = 0;
  apply_overrides(hw, no_ssd);
  PlanResult none = Planner(m, hw, kMtBench, PlannerOptions{}).plan();
  EXPECT_FALSE(none.feasible);
  EXPECT_GT(none.closest.estimate.memory.cpu_short(), 0);
  // Allowing quantised experts makes it fit, and the fallback says so.
  AutoPlan ap = plan_with_fallback(m, hw, kMtBench, PlannerOptions{}, true);
  EXPECT_TRUE(ap.result.feasible);
  EXPECT_NE(ap.note.find("int"), std::string::npos);
}

}  // namespace
}  // namespace ferry::planner
