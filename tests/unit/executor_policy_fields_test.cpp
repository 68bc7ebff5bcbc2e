// Policy fields the pipelined executor runs one way only: any other value is refused at construction, the
// message naming the field as the policy file spells it, the value, and what runs. And the planner's auto
// policies for a pipeline target stay within those values.
#include <gtest/gtest.h>

#include <string>

#include "ferry/checkpoint.h"
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

}  // namespace
}  // namespace ferry
