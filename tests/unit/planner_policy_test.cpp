// Policy: JSON round trip, and errors that name the file and the key for every kind of bad field.
#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/planner/model_catalog.h"
#include "ferry/planner/policy.h"

namespace ferry::planner {
namespace {

Policy sample_policy() {
  Policy p;
  p.model = "mixtral-8x7b";
  p.hardware = "l4-ml";
  p.batch_size = 2752;
  p.micro_batch = 192;
  p.prefill_chunk_tokens = 2048;
  p.attention_device = Device::Cpu;
  p.ffn_device = Device::Gpu;
  p.dense_device = Device::Gpu;
  p.prefill_device = Device::Gpu;
  p.gpu_experts_per_layer.assign(32, 1);
  p.gpu_experts_per_layer[0] = 2;
  p.dram_experts_per_layer.assign(32, 7);
  p.dram_experts_per_layer[0] = 5;
  p.ssd_experts_per_layer.assign(32, 0);
  p.ssd_experts_per_layer[0] = 1;
  p.gpu_expert_precision = Precision::Int8;
  p.dram_expert_precision = Precision::Bf16;
  p.ssd_expert_precision = Precision::Int4;
  p.kv_precision = Precision::Bf16;
  p.cache.gpu_expert_cache = 12345678901;
  p.cache.dram_kv_cache = 5;
  p.prefetch_depth = 2;
  p.overlap = false;
  return p;
}

std::string error_of(const nlohmann::json& j) {
  try {
    Policy::from_json(j, "run/policy.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Policy, JsonRoundTrip) {
  Policy p = sample_policy();
  nlohmann::json j = p.to_json();
  Policy back = Policy::from_json(j, "policy.json");
  EXPECT_EQ(back.to_json(), j);
  EXPECT_EQ(back.batch_size, 2752);
  EXPECT_EQ(back.n_micro_batches(), 15);  // ceil(2752 / 192)
  EXPECT_EQ(back.gpu_experts_per_layer[0], 2);
  EXPECT_EQ(back.ssd_expert_precision, Precision::Int4);
  EXPECT_EQ(back.cache.gpu_expert_cache, 12345678901);
  EXPECT_FALSE(back.overlap);
  EXPECT_EQ(back.expert_fetch, ExpertFetch::Prefetch);  // the default
  p.expert_fetch = ExpertFetch::Demand;
  EXPECT_EQ(Policy::from_json(p.to_json(), "policy.json").expert_fetch, ExpertFetch::Demand);
  nlohmann::json old = j;  // a policy written before the field: prefetch
  old["experts"].erase("fetch");
  EXPECT_EQ(Policy::from_json(old, "policy.json").expert_fetch, ExpertFetch::Prefetch);
  p.expert_fetch = ExpertFetch::Prefetch;
  EXPECT_EQ(back.expert_residency, ExpertResidency::Frequency);  // the default
  p.expert_residency = ExpertResidency::Index;
  EXPECT_EQ(Policy::from_json(p.to_json(), "policy.json").expert_residency, ExpertResidency::Index);
  old["experts"].erase("residency");  // a policy written before the field: frequency
  EXPECT_EQ(Policy::from_json(old, "policy.json").expert_residency, ExpertResidency::Frequency);
  p.expert_residency = ExpertResidency::Frequency;

  auto path = std::filesystem::temp_directory_path() / "ferry_policy_roundtrip.json";
  p.save(path);
  EXPECT_EQ(Policy::load(path).to_json(), j);
  std::filesystem::remove(path);
}

TEST(Policy, BadFieldsNameTheFileAndTheKey) {
  const nlohmann::json good = sample_policy().to_json();
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    std::string key;
  };
  std::vector<Case> cases = {
      {[](nlohmann::json& j) { j.erase("batch_size"); }, "batch_size"},
      {[](nlohmann::json& j) { j["batch_size"] = 0; }, "batch_size"},
      {[](nlohmann::json& j) { j["micro_batch"] = 100000; }, "micro_batch"},
      {[](nlohmann::json& j) { j["prefill_chunk_tokens"] = "big"; }, "prefill_chunk_tokens"},
      {[](nlohmann::json& j) { j["devices"]["attention"] = "tpu"; }, "devices.attention"},
      {[](nlohmann::json& j) { j["devices"].erase("ffn"); }, "devices.ffn"},
      {[](nlohmann::json& j) { j["experts"]["gpu_per_layer"][3] = -1; }, "experts.gpu_per_layer[3]"},
      {[](nlohmann::json& j) { j["experts"]["dram_per_layer"].erase(0); }, "experts.dram_per_layer"},
      {[](nlohmann::json& j) { j["experts"]["precision"]["gpu"] = "fp8"; }, "experts.precision.gpu"},
      {[](nlohmann::json& j) { j["kv"]["gpu_share"] = 1.5; }, "kv.gpu_share"},
      {[](nlohmann::json& j) { j["kv"]["gpu_share"] = 0.5; }, "kv.gpu_share"},  // CPU attention
      {[](nlohmann::json& j) { j["overlap"] = "yes"; }, "overlap"},
      {[](nlohmann::json& j) { j["experts"]["fetch"] = "lazy"; }, "experts.fetch"},
      {[](nlohmann::json& j) { j["version"] = 7; }, "version"},
      {[](nlohmann::json& j) { j["format"] = "flexgen"; }, "format"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = good;
    c.edit(j);
    std::string msg = error_of(j);
    SCOPED_TRACE(c.key + ": " + msg);
    EXPECT_NE(msg.find("run/policy.json"), std::string::npos);
    EXPECT_NE(msg.find("'" + c.key + "'"), std::string::npos);
  }
  EXPECT_EQ(error_of(good), "");
}

TEST(Policy, ValidatesExpertCountsAgainstTheModel) {
  ModelConfig mixtral = resolve_model("mixtral-8x7b").config;
  Policy p = sample_policy();
  EXPECT_NO_THROW(p.validate_for(mixtral, "policy.json"));
  p.dram_experts_per_layer[5] = 6;  // 1 + 6 + 0 = 7 of 8
  try {
    p.validate_for(mixtral, "policy.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("layer 5"), std::string::npos) << msg;
    EXPECT_NE(msg.find("policy.json"), std::string::npos) << msg;
  }
  ModelConfig olmoe = resolve_model("olmoe-1b-7b").config;  // 16 layers
  EXPECT_THROW(sample_policy().validate_for(olmoe, "policy.json"), Error);
}

}  // namespace
}  // namespace ferry::planner
