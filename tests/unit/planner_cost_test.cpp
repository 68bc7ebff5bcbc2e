// The memory plan and per-layer times of one fixed policy, computed by hand: Mixtral 8x7B on l4-ml,
// MTBench-like workload (prompt avg 77, max 418, generate 128), N = 1000, μ = 100, one expert per layer
// on the GPU, seven in DRAM, CPU attention, GPU FFN.
#include <gtest/gtest.h>

#include "ferry/planner/cost_model.h"
#include "ferry/planner/model_catalog.h"
#include "ferry/planner/planner.h"

namespace ferry::planner {
namespace {

constexpr double kExpert = 352321536;  // 3·4096·14336 bf16

struct Fixture {
  ModelShape shape = ModelShape::from_config(resolve_model("mixtral-8x7b").config, "mixtral-8x7b");
  HardwareProfile hw = hardware_preset("l4-ml");
  Workload w{10000, 77, 418, 128};
  CostModel cost{shape, hw, w};
  Policy policy() const {
    Policy p;
    p.batch_size = 1000;
    p.micro_batch = 100;
    p.prefill_chunk_tokens = 2048;
    p.attention_device = Device::Cpu;
    p.ffn_device = Device::Gpu;
    p.dense_device = Device::Gpu;
    p.prefill_device = Device::Gpu;
    p.gpu_experts_per_layer.assign(32, 1);
    p.dram_experts_per_layer.assign(32, 7);
    p.ssd_experts_per_layer.assign(32, 0);
    return p;
  }
};

double item(const MemoryPlan& m, const std::string& level, const std::string& prefix) {
  for (const MemoryItem& it : m.items)
    if (it.level == level && it.what.rfind(prefix, 0) == 0) return it.bytes;
  return -1;
}

TEST(PlannerCost, MemoryPlanByHand) {
  Fixture f;
  MemoryPlan m = f.cost.memory(f.policy());
  const double dense = 2949120000;  // (32·41,984,000 + lm_head 32000·4096) params · 2 B
  const double resident = 32 * kExpert;
  const double buffer = 2 * 7 * kExpert;  // double buffer of one layer's 7 streamed experts
  // Decode working set: hidden+residual of 1000 sequences, QKV/attention-out and FFN workspace of
  // μ=100 tokens, fp32 logits of 100 rows.
  const double decode_act =
      1000 * 4096 * 2 * 2 + 100 * (6144 + 4096) * 2 + 100 * 32000 * 4.0 + 100 * 2 * (2 * 14336 + 4096) * 2;
  // Prefill working set of a 2048-token chunk, and the batch's 77,000 hidden states (they fit).
  const double prefill_act = 2048 * 4096 * 2 * 3 + 2048 * (6144 + 4096) * 2 +
                             2048 * 2 * (2 * 14336 + 4096) * 2 + 2 * 2048 * 4096 + 1000 * 32000 * 4.0;
  const double prefill_hidden = 77000.0 * 4096 * 2 * 2;
  EXPECT_DOUBLE_EQ(item(m, "gpu", "dense weights"), dense);
  EXPECT_DOUBLE_EQ(item(m, "gpu", "resident experts"), resident);
  EXPECT_DOUBLE_EQ(item(m, "gpu", "expert stream buffer"), buffer);
  EXPECT_TRUE(m.prefill_hidden_on_gpu);
  EXPECT_DOUBLE_EQ(m.gpu_bytes,
                   dense + resident + std::max(buffer + decode_act, buffer + prefill_act + prefill_hidden));
  EXPECT_DOUBLE_EQ(m.gpu_usable, 24.0 * (1 << 30) * 0.86);

  // DRAM: 7 experts x 32 layers, KV for 1000·(77+128) + (418-77) positions x 4 KiB x 32 layers,
  // embeddings, pinned relays for QKV/attention-out/hidden of every sequence.
  const double kv = (1000.0 * (77 + 128) + (418 - 77)) * 4096 * 32;
  EXPECT_DOUBLE_EQ(item(m, "dram", "experts"), 32 * 7 * kExpert);
  EXPECT_DOUBLE_EQ(item(m, "dram", "KV cache"), kv);
  EXPECT_DOUBLE_EQ(m.cpu_bytes,
                   32 * 7 * kExpert + kv + 32000.0 * 4096 * 2 + 1000.0 * (6144 + 4096 + 8192) * 2);
  EXPECT_DOUBLE_EQ(m.cpu_usable, 192.0 * (1 << 30) * 0.8);
  EXPECT_TRUE(m.fits());
  EXPECT_EQ(m.ssd_bytes, 0);
}

TEST(PlannerCost, DecodeStepByHand) {
  Fixture f;
  Policy p = f.policy();
  PhaseEstimate d = f.cost.decode_step(p, 1000, 77 + 64);
  // PCIe per layer: the 7 streamed experts (all touched at N=1000) + attention outputs of 1000 tokens.
  const double h2d = (7 * kExpert + 1000 * 4096 * 2) / 16e9;
  EXPECT_NEAR(d.per_layer.h2d * 32, h2d * 32, 1e-12);
  EXPECT_EQ(d.binding, Resource::H2d);
  // CPU attention: 1000 tokens x 141 positions x 4 KiB at 100 GB/s (memory-bound at 4 FLOP/B).
  EXPECT_NEAR(d.per_layer.cpu_busy * 32, 32 * 1000.0 * 141 * 4096 / 100e9, 1e-12);
  // Step = 32 PCIe-bound layers + the lm_head on the GPU: 10 micro-batches, each reading the 262 MB
  // head and writing 100 fp32 logit rows at 285 GB/s (memory-bound).
  const double head = 10 * (32000.0 * 4096 * 2 + 100 * 32000 * 4.0) / 285e9;
  EXPECT_NEAR(d.seconds, 32 * h2d + head, 1e-9);
  EXPECT_NEAR(d.tokens_per_s, 1000 / (32 * h2d + head), 1e-6);
}

TEST(PlannerCost, PrefetchMovesEveryStreamedExpertDemandOnlyTheTouchedOnes) {
  Fixture f;
  Policy p = f.policy();
  p.batch_size = 1;
  p.micro_batch = 1;
  // Prefetch: the 7 streamed experts cross every step whatever the router does.
  PhaseEstimate ahead = f.cost.decode_step(p, 1, 100);
  EXPECT_NEAR(ahead.per_layer.h2d, (7 * kExpert + 4096 * 2) / 16e9, 1e-12);
  // Demand: one token touches 2 of 8 experts, each streamed one with probability p = 1/4; the last step's
  // touched ones move ahead (p), the touched ones it did not touch after the router (p(1-p)), and those
  // are on the layer's critical path.
  p.expert_fetch = ExpertFetch::Demand;
  PhaseEstimate demand = f.cost.decode_step(p, 1, 100);
  EXPECT_NEAR(demand.per_layer.h2d, (7 * kExpert * 0.25 * 1.75 + 4096 * 2) / 16e9, 1e-12);
  EXPECT_GE(demand.per_layer.chain - ahead.per_layer.chain, 7 * kExpert * 0.25 * 0.75 / 16e9 * (1 - 1e-9));
  EXPECT_GT(demand.tokens_per_s, ahead.tokens_per_s);  // PCIe-bound: fewer bytes win
}

TEST(PlannerCost, CpuCapacityLimitsTheTokensInFlight) {
  Fixture f;
  Policy p = f.policy();
  // KV per sequence: 205 positions x 128 KiB = 26.9 MB; DRAM after the experts holds about 3,000.
  p.batch_size = 2000;
  EXPECT_TRUE(f.cost.memory(p).fits());
  p.batch_size = 6000;
  MemoryPlan m = f.cost.memory(p);
  EXPECT_FALSE(m.fits());
  EXPECT_GT(m.cpu_short(), 0);
  EXPECT_EQ(m.gpu_short(), 0);
}

TEST(PlannerCost, WorkloadCountsPrefillAndEveryBatch) {
  Fixture f;
  Policy p = f.policy();
  Estimate e = f.cost.evaluate(p);
  EXPECT_EQ(e.n_batches, 10);  // 10,000 requests in batches of 1,000
  double batch = e.prefill.seconds + 127 * e.decode.seconds;
  EXPECT_NEAR(e.batch_seconds, batch, 1e-9);
  EXPECT_NEAR(e.workload_seconds, 10 * batch, 1e-6);
  EXPECT_NEAR(e.tokens_per_s, 10000.0 * 128 / (10 * batch), 1e-9);
  EXPECT_LT(e.tokens_per_s, e.decode.tokens_per_s);  // prefill costs something
}

TEST(PlannerCost, PlaceExpertsSpreadsEvenly) {
  Fixture f;
  Planner planner(f.shape, f.hw, f.w, PlannerOptions{});
  Policy p = f.policy();
  planner.place_experts(p, 40, 150);  // 256 experts: 40 GPU, 150 DRAM, 66 SSD
  int gpu = 0, dram = 0, ssd = 0;
  for (int l = 0; l < 32; ++l) {
    EXPECT_EQ(p.gpu_experts_per_layer[l] + p.dram_experts_per_layer[l] + p.ssd_experts_per_layer[l], 8);
    EXPECT_GE(p.gpu_experts_per_layer[l], 1);
    EXPECT_LE(p.gpu_experts_per_layer[l], 2);
    EXPECT_GE(p.ssd_experts_per_layer[l], 2);
    EXPECT_LE(p.ssd_experts_per_layer[l], 3);
    gpu += p.gpu_experts_per_layer[l];
    dram += p.dram_experts_per_layer[l];
    ssd += p.ssd_experts_per_layer[l];
  }
  EXPECT_EQ(gpu, 40);
  EXPECT_EQ(dram, 150);
  EXPECT_EQ(ssd, 66);
}

}  // namespace
}  // namespace ferry::planner
