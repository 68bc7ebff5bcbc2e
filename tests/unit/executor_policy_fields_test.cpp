// Policy fields the pipelined executor runs one way only: any other value is refused at construction, the
// message naming the field as the policy file spells it, the value, and what runs. And the planner's auto
// policies for a pipeline target stay within those values.
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "ferry/checkpoint.h"
#include "ferry/cpu_model.h"
#include "ferry/planner/hrm.h"
#include "ferry/device.h"
#include "ferry/error.h"
#include "ferry/exec/pipelined_model.h"
#include "test_util.h"

namespace ferry {
namespace {

std::string construction_error(const planner::Policy& p) {
  const auto ckpt = Checkpoint::open(test::oracle_dir("mixtral_spm"));
  auto dev = create_device("sim:l4");
  try {
    PipelinedModel m(*ckpt, *dev, p);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

planner::Policy base(bool host_attention) {
  const ModelConfig c = load_model_config(test::oracle_dir("mixtral_spm"));
  return test::pipeline_policy(c, 2, 2, 1, 0, host_attention, planner::Precision::Bf16);
}

TEST(ExecutorPolicyFields, TheRunnableValuesRun) {
  EXPECT_EQ(construction_error(base(true)), "");
  EXPECT_EQ(construction_error(base(false)), "");
}

TEST(ExecutorPolicyFields, EachFieldWithAValueTheExecutorCannotRunIsNamed) {
  struct Case {
    const char* field;
    void (*set)(planner::Policy&);
    const char* runs;  // what the message says does run
  };
  const Case cases[] = {
      {"devices.ffn", [](planner::Policy& p) { p.ffn_device = planner::Device::Cpu; }, "set it to gpu"},
      {"devices.dense", [](planner::Policy& p) { p.dense_device = planner::Device::Cpu; }, "set it to gpu"},
      {"devices.prefill", [](planner::Policy& p) { p.prefill_device = planner::Device::Cpu; }, "set it to gpu"},
      {"kv.gpu_share", [](planner::Policy& p) { p.kv_gpu_share = 0.5; }, "set kv.gpu_share to 0"},
      {"prefetch_depth", [](planner::Policy& p) { p.prefetch_depth = 2; }, "set it to 1"},
  };
  for (const Case& k : cases) {
    planner::Policy p = base(true);
    k.set(p);
    const std::string msg = construction_error(p);
    EXPECT_NE(msg.find(std::string("policy: ") + k.field), std::string::npos) << k.field << ": " << msg;
    EXPECT_NE(msg.find(k.runs), std::string::npos) << k.field << ": " << msg;
  }
  // device attention keeps the whole KV cache on the device
  planner::Policy p = base(false);
  p.kv_gpu_share = 0;
  const std::string msg = construction_error(p);
  EXPECT_NE(msg.find("kv.gpu_share is 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("set kv.gpu_share to 1"), std::string::npos) << msg;
}

// group_size is a policy field: the executor packs int8/int4 experts at the policy's group (the same logits as
// the cpu target at that group, not at the default), and the JSON carries it (absent: the default group).
TEST(ExecutorPolicyFields, GroupSizeIsThePolicysAndTravelsInItsJson) {
  const auto ckpt = Checkpoint::open(test::oracle_dir("mixtral_spm"));
  const ModelConfig& c = ckpt->config();
  const std::vector<int32_t> prompt{1, 5, 9, 14, 3};
  auto logits = [&](Model& m) {
    const int s = m.add_sequence();
    return m.forward(std::vector<ForwardItem>{{s, prompt, true}});
  };
  planner::Policy p = test::pipeline_policy(c, 1, 1, 0, 0, true, planner::Precision::Int4);
  p.group_size = 32;
  auto dev = create_device("cpu");
  PipelinedModel pipelined(*ckpt, *dev, p);
  CpuModelOptions at32, at64;
  at32.expert_dtype = at64.expert_dtype = DType::I4;
  at32.group_size = 32;
  CpuModel cpu32(*ckpt, at32), cpu64(*ckpt, at64);
  const std::vector<float> got = logits(pipelined);
  EXPECT_EQ(got, logits(cpu32));
  EXPECT_NE(got, logits(cpu64));

  const planner::Policy back = planner::Policy::from_json(p.to_json(), "test");
  EXPECT_EQ(back.group_size, 32);
  nlohmann::json old = p.to_json();
  old["experts"].erase("group_size");
  EXPECT_EQ(planner::Policy::from_json(old, "test").group_size, planner::kQuantGroup);
  nlohmann::json bad = p.to_json();
  bad["experts"]["group_size"] = 40;
  try {
    planner::Policy::from_json(bad, "pol.json");
    FAIL() << "group_size 40 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("group_size"), std::string::npos) << e.what();
  }
}

// The planner prices int8/int4 experts at the group it is given, and its policies carry that group.
TEST(ExecutorPolicyFields, ThePlannerPricesTheGroupItIsGiven) {
  EXPECT_GT(planner::bytes_per_element(planner::Precision::Int4, 32),
            planner::bytes_per_element(planner::Precision::Int4, 128));
  EXPECT_EQ(planner::bytes_per_element(planner::Precision::Int8, 64), planner::bytes_per_element(planner::Precision::Int8));
  const ModelConfig c = load_model_config(test::oracle_dir("mixtral_spm"));
  const planner::ModelShape m = planner::ModelShape::from_config(c, "mixtral_spm");
  EXPECT_GT(m.expert_bytes(planner::Precision::Int4, 32), m.expert_bytes(planner::Precision::Int4, 128));
}

}  // namespace
}  // namespace ferry
