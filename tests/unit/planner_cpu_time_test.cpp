// The planner's time of a cpu-target run, by hand: each CPU part priced on the measured curve of the
// kernel that runs it (bf16 weights with f32 or bf16 activations, int8/int4 experts, prompt attention by
// length, the KV store), and routed experts at the rows each touched expert receives.
#include <gtest/gtest.h>

#include "ferry/cpu_prediction.h"
#include "ferry/planner/cost_model.h"
#include "ferry/planner/model_catalog.h"

namespace ferry::planner {
namespace {

struct Fixture {
  ModelConfig config = resolve_model("mixtral-8x7b").config;
  ModelShape shape = ModelShape::from_config(config, "mixtral-8x7b");
  HardwareProfile hw = cpu_profile();
  Workload w{1, 128, 128, 8};

  // Memory far faster than compute, so every kernel is priced on its compute curve alone.
  static HardwareProfile cpu_profile() {
    HardwareProfile hw = hardware_preset("cpu-server");
    hw.cpu.bandwidth_gbps = 1e5;
    hw.cpu.attention_gbps = 1e5;
    hw.cpu.gemm_curve = {{1, 40}, {256, 800}};
    hw.cpu.kernels.bf16_exact = {{1, 20}, {256, 400}};
    hw.cpu.kernels.int8 = {{1, 60}, {256, 900}};
    hw.cpu.kernels.int4 = {{1, 90}, {256, 1000}};
    hw.cpu.kernels.prefill_attention = {{32, 100}, {512, 400}};
    hw.cpu.kernels.kv_store_gbps = 4;
    return hw;
  }
  Estimate estimate(const CpuModelOptions& o, int batch) const {
    CostOptions co;
    co.cpu_bf16_activations = o.bf16_activations;
    CostModel cost(shape, hw, w, co);
    return cost.evaluate(cpu_target_policy(config, o, batch, 4096), false);
  }
};

TEST(PlannerCpuTime, BatchOneExpertsRunAtOneRowOnTheExactKernel) {
  Fixture f;
  const Estimate e = f.estimate({}, 1);
  // One token, top-2: two experts touched, one row each, 2·2·P FLOPs per layer at the exact curve's rows=1
  // rate. (Spreading the FLOPs over all eight experts at a quarter row each would price four times this.)
  const double per_layer = 4 * f.shape.expert_params / 20e9;
  EXPECT_NEAR(e.decode.parts.experts, f.shape.n_layer * per_layer, 1e-9 * e.decode.parts.experts);
  // Dense projections and lm_head at one row on the same kernel.
  double dense_flops = 0;
  for (double p : f.shape.dense_params_per_layer) dense_flops += 2 * p;
  EXPECT_NEAR(e.decode.parts.dense, dense_flops / 20e9, 1e-9 * e.decode.parts.dense);
  EXPECT_NEAR(e.decode.parts.head, 2 * f.shape.lm_head_params / 20e9, 1e-9 * e.decode.parts.head);
  // Without overlap the step is the sum of its parts.
  const PartTimes& p = e.decode.parts;
  EXPECT_NEAR(e.decode.seconds, p.dense + p.attention + p.experts + p.head, 1e-9 * e.decode.seconds);
}

TEST(PlannerCpuTime, Bf16ActivationsAndQuantisedExpertsTakeTheirOwnCurves) {
  Fixture f;
  const double exact = f.estimate({}, 1).decode.parts.experts;
  CpuModelOptions bf16;
  bf16.bf16_activations = true;
  EXPECT_NEAR(f.estimate(bf16, 1).decode.parts.experts / exact, 20.0 / 40.0, 1e-9);
  CpuModelOptions int8;
  int8.expert_dtype = DType::I8;
  EXPECT_NEAR(f.estimate(int8, 1).decode.parts.experts / exact, 20.0 / 60.0, 1e-9);
  CpuModelOptions int4;
  int4.expert_dtype = DType::I4;
  const Estimate e4 = f.estimate(int4, 1);
  EXPECT_NEAR(e4.decode.parts.experts / exact, 20.0 / 90.0, 1e-9);
  EXPECT_NEAR(e4.decode.parts.dense, f.estimate({}, 1).decode.parts.dense, 1e-12);  // dense stays bf16
}

TEST(PlannerCpuTime, PromptAttentionAtTheRateMeasuredForThePromptLength) {
  Fixture f;
  const Estimate e = f.estimate({}, 1);
  const double chunk = 128;                                              // one prompt of 128 tokens
  const double flops = chunk * f.shape.attn_flops_per_position * 129 / 2;  // causal: (s + 1) / 2 keys each
  const double rate = 250e9;  // 100 at 32, 400 at 512: 128 is halfway in log(length)
  const double store = chunk * f.shape.kv_bytes_per_token_layer(Precision::Bf16) / 4e9;
  EXPECT_NEAR(e.prefill.parts.attention, f.shape.n_layer * (flops / rate + store), 1e-9 * e.prefill.parts.attention);
}

TEST(PlannerCpuTime, TheCpuTargetPolicyRunsEverythingOnTheCpuFromDram) {
  Fixture f;
  CpuModelOptions o;
  o.expert_dtype = DType::I4;
  o.group_size = 32;
  const Policy p = cpu_target_policy(f.config, o, 24, 512);
  EXPECT_EQ(p.batch_size, 24);
  EXPECT_EQ(p.micro_batch, 24);
  EXPECT_EQ(p.prefill_chunk_tokens, 512);
  EXPECT_EQ(p.attention_device, Device::Cpu);
  EXPECT_EQ(p.ffn_device, Device::Cpu);
  EXPECT_EQ(p.dense_device, Device::Cpu);
  EXPECT_EQ(p.prefill_device, Device::Cpu);
  EXPECT_EQ(p.dram_expert_precision, Precision::Int4);
  EXPECT_EQ(p.group_size, 32);
  for (int l = 0; l < f.config.n_layer; ++l) {
    EXPECT_EQ(p.gpu_experts_per_layer[l], 0);
    EXPECT_EQ(p.dram_experts_per_layer[l], f.config.n_expert);
  }
}

TEST(PlannerCpuTime, TheComparisonScalesMeasuredTimesToThePredictedUnits) {
  CpuRunPrediction p;
  p.policy.batch_size = 4;
  p.workload = {8, 10, 12, 5};
  p.estimate.tokens_per_s = 100;
  p.estimate.decode.tokens_per_s = 200;
  p.estimate.decode.parts.experts = 0.010;
  p.estimate.prefill.parts.dense = 0.050;
  GenerationStats s;
  s.requests = 8;
  s.prompt_tokens = 80;
  s.generated_tokens = 40;
  s.prefill_seconds = 0.4;
  s.decode_seconds = 0.16;
  s.wall_seconds = 0.5;
  CpuForwardTimes m;
  m.decode.forwards = 8;  // two batches of four steps
  m.decode.experts = 0.096;
  m.prefill.tokens = 80;  // the predicted batch is 4 prompts of 10 tokens: half of what ran
  m.prefill.dense = 0.2;
  std::vector<PredictedMeasured> rows = compare_cpu_run(p, s, m);
  auto row = [&](const std::string& what) {
    for (const PredictedMeasured& r : rows)
      if (r.what == what) return r;
    ADD_FAILURE() << "no row " << what;
    return PredictedMeasured{};
  };
  EXPECT_DOUBLE_EQ(row("tokens/s (generated, whole run)").measured, 80);  // 40 tokens in 0.5 s
  EXPECT_DOUBLE_EQ(row("decode tokens/s").measured, 200);                 // 32 after the first each, 0.16 s
  EXPECT_DOUBLE_EQ(row("decode tokens/s").ratio(), 1.0);
  EXPECT_DOUBLE_EQ(row("prefill tokens/s").measured, 200);
  EXPECT_DOUBLE_EQ(row("decode step: experts (ms)").measured, 12);  // 96 ms over 8 steps
  EXPECT_DOUBLE_EQ(row("decode step: experts (ms)").predicted, 10);
  EXPECT_DOUBLE_EQ(row("prefill batch: dense (ms)").measured, 100);  // 200 ms for twice the batch
}

}  // namespace
}  // namespace ferry::planner
