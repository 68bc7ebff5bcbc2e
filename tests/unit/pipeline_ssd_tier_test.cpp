// The pipelined executor's SSD tier: experts a policy puts on the SSD (ssd_experts_per_layer) are read from
// the packed store's expert file at each load of their layer, through a pinned staging half, and the tokens
// and logits are bit-identical to the cpu target's at the same precision, on the emulated GPU (sim:l4) and the
// synchronous `cpu` device, with attention on the host or the device. A policy with SSD experts over a
// Hugging Face directory, and a damaged store, are errors naming what to do.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "chunk_test_util.h"
#include "test_util.h"
#include "ferry/checkpoint.h"
#include "ferry/cpu_model.h"
#include "ferry/device.h"
#include "ferry/error.h"
#include "ferry/exec/pipelined_model.h"
#include "ferry/experts/packed_store.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
const fs::path kOracles = fs::path(FERRY_TEST_DATA) / "oracles";

struct Decoded {
  std::vector<std::vector<float>> logits;    // per sequence, every step's row
  std::vector<std::vector<int32_t>> tokens;  // per sequence, greedy
};

Decoded greedy(Model& m, int n_seq, int steps) {
  const int V = m.config().n_vocab;
  Decoded r;
  r.logits.resize(n_seq);
  r.tokens.resize(n_seq);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<ForwardItem> items;
  for (int s = 0; s < n_seq; ++s) prompts.push_back({1, 4 + s, 9, 2 + 3 * s, 7});
  for (int s = 0; s < n_seq; ++s) items.push_back({m.add_sequence(), prompts[s], false});
  std::vector<int32_t> next(n_seq);
  for (int step = 0; step < steps; ++step) {
    const std::vector<float> logits = m.forward(items);
    for (int s = 0; s < n_seq; ++s) {
      const float* row = logits.data() + static_cast<size_t>(s) * V;
      r.logits[s].insert(r.logits[s].end(), row, row + V);
      next[s] = static_cast<int32_t>(std::max_element(row, row + V) - row);
      r.tokens[s].push_back(next[s]);
      items[s] = {items[s].seq, std::span<const int32_t>(&next[s], 1), false};
    }
  }
  return r;
}


class PipelineSsdTier : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_threads_ = omp_get_max_threads();
    omp_set_num_threads(1);  // see executor_equivalence_test.cpp: bit-identical whatever the count
  }
  void TearDown() override { omp_set_num_threads(saved_threads_); }
  fs::path convert(const std::string& model, bool zstd) {
    const fs::path out = tmp_.path() / (model + (zstd ? "-zstd" : ""));
    experts::ConvertOptions o;
    o.precisions = {DType::BF16, DType::I4};
    o.zstd = zstd;
    experts::convert_to_store(*Checkpoint::open(kOracles / model), out, o);
    return out;
  }
  test::TempDir tmp_;
  int saved_threads_ = 1;
};

TEST_F(PipelineSsdTier, ExpertsOnTheSsdGiveTheCpuTargetsTokensAndLogitsBitForBit) {
  for (const std::string model : {"mixtral_spm", "qwen2_moe_bpe"}) {
    const fs::path store = convert(model, model == "mixtral_spm");
    const auto ckpt = Checkpoint::open(store);
    const ModelConfig& c = ckpt->config();
    const int E = c.n_expert;
    for (planner::Precision prec : {planner::Precision::Bf16, planner::Precision::Int4}) {
      CpuModelOptions co;
      co.expert_dtype = prec == planner::Precision::Bf16 ? DType::BF16 : DType::I4;
      CpuModel cpu_target(*Checkpoint::open(kOracles / model), co);
      const Decoded want = greedy(cpu_target, 4, 4);
      struct Case {
        int mu, n_ub, gpu, ssd;
        bool host;
      };
      for (const Case& k : {Case{2, 2, 0, 1, true}, Case{1, 4, 1, E / 2, false}, Case{4, 1, 0, E, true}, Case{2, 2, 0, 1, false},
                            Case{2, 2, E / 2, E / 2, true}}) {
        // "demand": sim:l4 with demand fetch (SSD experts fetched after the router too)
        for (const char* target : {"sim:l4", "cpu", "demand"}) {
          const bool demand = std::string(target) == "demand";
          auto dev = create_device(demand ? "sim:l4" : target);
          planner::Policy p = test::pipeline_policy(c, k.mu, k.n_ub, k.gpu, k.ssd, k.host, prec);
          if (demand) p.expert_fetch = planner::ExpertFetch::Demand;
          PipelinedModel m(*ckpt, *dev, p);
          const Decoded got = greedy(m, 4, 4);
          const std::string what = model + " " + std::string(planner::precision_name(prec)) + " mu=" +
                                   std::to_string(k.mu) + " gpu=" + std::to_string(k.gpu) + " ssd=" +
                                   std::to_string(k.ssd) + " on " + target;
          EXPECT_EQ(got.tokens, want.tokens) << what;
          EXPECT_TRUE(got.logits == want.logits) << what << ": logits differ";
          dev->synchronize();
          EXPECT_GT(m.stats().ssd_read_bytes, 0u) << what;
        }
      }
    }
  }
}

TEST_F(PipelineSsdTier, SsdExpertsNeedAStoreAndOnePrecision) {
  const auto hf = Checkpoint::open(kOracles / "mixtral_spm");
  const ModelConfig& c = hf->config();
  auto dev = create_device("sim:l4");
  try {
    PipelinedModel m(*hf, *dev, test::pipeline_policy(c, 1, 1, 0, 2, true, planner::Precision::Bf16));
    FAIL() << "SSD experts over a Hugging Face directory were accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ssd_experts_per_layer"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ferry convert"), std::string::npos) << msg;
  }
  const auto st = Checkpoint::open(convert("mixtral_spm", false));
  planner::Policy p = test::pipeline_policy(c, 1, 1, 0, 2, true, planner::Precision::Bf16);
  p.ssd_expert_precision = planner::Precision::Int4;
  auto dev2 = create_device("sim:l4");
  try {
    PipelinedModel m(*st, *dev2, p);
    FAIL() << "a second SSD precision was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ssd_expert_precision"), std::string::npos) << e.what();
  }
}

TEST_F(PipelineSsdTier, ADamagedExpertFileStopsTheRunNamingTheChunk) {
  const fs::path store = convert("mixtral_spm", false);
  const auto ckpt = Checkpoint::open(store);
  const ModelConfig& c = ckpt->config();
  // the experts file cut after the first MoE layer's chunks: the store opens (its dense weights are
  // whole) only on the SSD path, which reads the chunks when a layer loads
  const experts::StoreManifest& sm = *ckpt->packed_store();
  const experts::ExpertTierFile* f = sm.expert_file(DType::BF16, 0);
  ASSERT_NE(f, nullptr);
  auto dev = create_device("sim:l4");
  PipelinedModel m(*ckpt, *dev, test::pipeline_policy(c, 1, 1, 0, c.n_expert, true, planner::Precision::Bf16));
  const experts::ExpertChunk* last = f->find(c.n_layer - 1, c.n_expert - 1);
  ASSERT_NE(last, nullptr);
  fs::resize_file(store / f->file, last->offset);
  try {
    greedy(m, 1, 3);
    FAIL() << "a truncated store ran";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(f->file), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace ferry
