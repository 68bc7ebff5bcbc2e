// The planner's memory plan is the pipelined executor's allocation: the buffer list priced from the model's
// shapes equals, byte for byte, what the executor takes from the device; and `--policy auto` over device
// sizes from "nothing fits" to "everything resident" never plans a run that then fails.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ferry/checkpoint.h"
#include "ferry/cpu_model.h"
#include "ferry/device.h"
#include "ferry/error.h"
#include "ferry/exec/pipeline_buffers.h"
#include "ferry/exec/pipelined_model.h"
#include "ferry/pipeline_target.h"
#include "test_util.h"

namespace ferry {
namespace {

using planner::Precision;

struct Case {
  int mu, n_ub, gpu, ssd;
  bool host_attention;
  Precision precision;
};

TEST(PipelineBuffers, TheListPricedFromShapesIsWhatTheExecutorAllocates) {
  for (const std::string& name : test::oracle_fixtures()) {
    SCOPED_TRACE(name);
    auto ckpt = Checkpoint::open(test::oracle_dir(name));
    const ModelConfig& c = ckpt->config();
    const PipelineBufferModel model(c, ckpt.get());
    const Case cases[] = {{1, 1, 0, 0, true, Precision::Bf16},
                          {2, 3, c.n_expert / 2, 0, true, Precision::Int8},
                          {4, 2, c.n_expert, 0, false, Precision::Int4},
                          {3, 2, 1, 0, false, Precision::Bf16}};
    for (const Case& k : cases) {
      planner::Policy p = test::pipeline_policy(c, k.mu, k.n_ub, k.gpu, k.ssd, k.host_attention, k.precision);
      p.prefill_chunk_tokens = 7;
      auto dev = create_device("sim:l4");
      PipelinedModel executor(*ckpt, *dev, p);
      const planner::BufferList list = model.buffers(p, pipeline_kv_tokens(c, p));
      const int64_t used = static_cast<int64_t>(dev->used_bytes()), planned = list.total(planner::BufferLevel::Device);
      // Embeddings stored in f32 are priced as f32; the executor keeps them in bf16 when they are exact there.
      if (ckpt->view({WeightKind::Embed, -1, -1}).dtype == DType::BF16)
        EXPECT_EQ(used, planned) << "mu " << k.mu << " pages " << k.n_ub << " gpu " << k.gpu << " precision "
                                 << planner::precision_name(k.precision);
      else
        EXPECT_LE(used, planned);
      // the KV capacity is the policy's cache_bytes field, to the block
      EXPECT_EQ(executor.kv_blocks() * executor.kv_block_tokens(), 20 * 64);
    }
  }
}

TEST(PipelineBuffers, DenseBytesFromTheConfigAloneMatchABf16Checkpoint) {
  // Planning without weights (ferry plan on a config) prices the tensors the config declares.
  for (const std::string& name : test::oracle_fixtures()) {
    auto ckpt = Checkpoint::open(test::oracle_dir(name));
    if (ckpt->view({WeightKind::Embed, -1, -1}).dtype != DType::BF16) continue;
    EXPECT_EQ(pipeline_dense_bytes(ckpt->config(), nullptr), pipeline_dense_bytes(ckpt->config(), ckpt.get()))
        << name;
  }
}

TEST(PipelineBuffers, ACacheBytesFieldSmallerThanItsBuffersIsAnErrorNamingIt) {
  auto ckpt = Checkpoint::open(test::oracle_dir("mixtral_spm"));
  const ModelConfig& c = ckpt->config();
  struct Field {
    const char* key;
    int64_t planner::CacheSizes::*member;
  };
  const Field fields[] = {{"gpu_dense_weights", &planner::CacheSizes::gpu_dense_weights},
                          {"gpu_expert_cache", &planner::CacheSizes::gpu_expert_cache},
                          {"gpu_stream_buffer", &planner::CacheSizes::gpu_stream_buffer},
                          {"gpu_activations", &planner::CacheSizes::gpu_activations},
                          {"dram_expert_cache", &planner::CacheSizes::dram_expert_cache},
                          {"dram_pinned_staging", &planner::CacheSizes::dram_pinned_staging},
                          {"dram_other", &planner::CacheSizes::dram_other}};
  for (const Field& f : fields) {
    planner::Policy p = test::pipeline_policy(c, 2, 2, c.n_expert / 2, 0, true, Precision::Bf16);
    p.cache.*f.member = 1000;
    auto dev = create_device("sim:l4");
    try {
      PipelinedModel executor(*ckpt, *dev, p);
      ADD_FAILURE() << f.key << " of 1000 bytes was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("cache_bytes.") + f.key + " is 1000 bytes"), std::string::npos)
          << e.what();
    }
  }
  // Budgets at least as large as the buffers are accepted: the planner's own figures.
  planner::Policy p = test::pipeline_policy(c, 2, 2, c.n_expert / 2, 0, true, Precision::Bf16);
  p.cache = PipelineBufferModel(c, ckpt.get()).buffers(p, pipeline_kv_tokens(c, p)).cache_sizes();
  auto dev = create_device("sim:l4");
  EXPECT_NO_THROW(PipelinedModel(*ckpt, *dev, p));
}

// One prompt through prefill and a few decode steps: the whole schedule, every buffer touched.
void run_a_little(Model& m, const std::vector<int32_t>& prompt) {
  const int seq = m.add_sequence();
  const ForwardItem first{seq, prompt, false};
  std::vector<float> logits = m.forward(std::span<const ForwardItem>(&first, 1));
  for (int step = 0; step < 3; ++step) {
    const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    const ForwardItem item{seq, std::span<const int32_t>(&next, 1), false};
    logits = m.forward(std::span<const ForwardItem>(&item, 1));
  }
  m.free_sequence(seq);
}

TEST(PipelineBuffers, AutoPoliciesRunOnEveryDeviceSizeFromNothingFitsToEverythingResident) {
  const double l4_bytes = 24.0 * (1 << 30);
  // Models whose every layer is MoE: with two MoE layers (qwen2_moe_bpe) the double-buffered ring holds as
  // many experts as pinning them all, so there streaming never saves room and the planner rightly pins.
  for (const char* name : {"mixtral_spm", "olmoe_bpe"}) {
    auto ckpt = Checkpoint::open(test::oracle_dir(name));
    const ModelConfig& c = ckpt->config();
    for (int64_t requests : {16, 64}) {
      int infeasible = 0, streaming = 0, resident = 0, ran = 0;
      // fine steps: on models this small one expert image is a few percent of the device
      for (double mib = 0.25; mib <= 64; mib *= std::pow(2.0, 1.0 / 8)) {
        PipelineTargetOptions o;
        o.target = "sim:l4,scale=" + std::to_string(mib * (1 << 20) / l4_bytes);
        o.workload.requests = requests;
        o.workload.avg_prompt_len = 12;
        o.workload.max_prompt_len = 24;
        o.workload.gen_len = 8;
        std::unique_ptr<PipelineTarget> t;
        try {
          t = PipelineTarget::create(*ckpt, o);
        } catch (const Error& e) {
          // the only acceptable failure: the planner finding nothing that fits, said as such
          EXPECT_NE(std::string(e.what()).find("finds no policy"), std::string::npos)
              << name << " at " << mib << " MiB: " << e.what();
          ++infeasible;
          continue;
        }
        const planner::Policy& p = t->policy();
        bool streams = false;
        for (int l = 0; l < c.n_layer; ++l) streams = streams || (c.layer_is_moe[l] && p.gpu_experts_per_layer[l] < c.n_expert);
        (streams ? streaming : resident) += 1;
        std::vector<int32_t> prompt(static_cast<size_t>(o.workload.max_prompt_len));
        for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7 + 3) % c.n_vocab);
        EXPECT_NO_THROW(run_a_little(*t, prompt)) << name << " at " << mib << " MiB";
        ++ran;
      }
      SCOPED_TRACE(std::string(name) + ", " + std::to_string(requests) + " requests");
      EXPECT_GT(infeasible, 0) << "the sweep does not start where nothing fits";
      EXPECT_GT(streaming, 0) << "no planned run streams experts";
      EXPECT_GT(resident, 0) << "the sweep does not reach every expert resident";
      EXPECT_GT(ran, 0);
    }
  }
}

}  // namespace
}  // namespace ferry
