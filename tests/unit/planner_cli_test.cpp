// `ferry plan` and `ferry probe` end to end: the report, the policy file, the SVG, infeasibility, and a
// plan on the profile the probe measured.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ferry/planner/hardware_profile.h"
#include "ferry/planner/model_catalog.h"
#include "ferry/planner/policy.h"
#include "test_util.h"

namespace ferry::planner {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("ferry_planner_" + name + "_" + std::to_string(getpid()));
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(PlanCli, PrintsThePlanAndWritesThePolicyAndThePicture) {
  fs::path dir = temp_dir("plan");
  auto r = test::run_ferry(
      "plan --model mixtral-8x7b --hw l4-ml --prompt-len 77 --max-prompt-len 418 --gen-len 128 "
      "--explain --json " +
      (dir / "policy.json").string() + " --plot " + (dir / "roofline.svg").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* want :
       {"Policy", "attention cpu, expert FFN gpu", "tokens/s", "decode", "prefill", "binding roof",
        "PCIe host->device", "Memory plan", "resident experts", "KV cache", "P1", "Alternatives", "loses"})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  Policy p = Policy::load(dir / "policy.json");
  p.validate_for(resolve_model("mixtral-8x7b").config, "policy.json");
  EXPECT_EQ(p.attention_device, Device::Cpu);
  // The buffer sizes the executor carves its arenas from.
  EXPECT_GT(p.cache.gpu_dense_weights, 0);
  EXPECT_GT(p.cache.gpu_expert_cache, 0);
  EXPECT_GT(p.cache.gpu_stream_buffer, 0);
  EXPECT_GT(p.cache.dram_expert_cache, 0);
  EXPECT_GT(p.cache.dram_kv_cache, 0);
  EXPECT_LE(p.cache.gpu_dense_weights + p.cache.gpu_expert_cache + p.cache.gpu_stream_buffer +
                p.cache.gpu_kv_cache + p.cache.gpu_activations,
            24.0 * (1 << 30) * 0.86);
  std::string svg = slurp(dir / "roofline.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("P1"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  fs::remove_all(dir);
}

TEST(PlanCli, JsonWithoutAFilePrintsThePolicy) {
  auto r = test::run_ferry("plan --model olmoe-1b-7b --hw cpu-server --prompt-len 200 --gen-len 100 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Policy p = Policy::from_json(nlohmann::json::parse(r.out), "stdout");
  EXPECT_EQ(p.ffn_device, Device::Cpu);
}

TEST(PlanCli, TakesAConfigPathAndHostFlags) {
  std::string config = (model_configs_dir() / "qwen3-30b-a3b.json").string();
  auto r = test::run_ferry("plan --model " + config +
                           " --hw rtx4090 --host-dram-gb 256 --host-dram-gbps 150 "
                           "--host-cores 32 --host-cpu-tflops 2 --ssd-gbps 6 --prompt-len 512 --gen-len 256");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("256"), std::string::npos);
  EXPECT_NE(r.out.find("from flag"), std::string::npos);
}

TEST(PlanCli, SaysWhatIsShortWhenNothingFits) {
  auto r = test::run_ferry("plan --model dbrx --hw t4-ml --precisions bf16 --prompt-len 77 --gen-len 32");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("DRAM short by"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("no policy fits"), std::string::npos) << r.err;
  // Without --precisions the planner widens to quantised experts and says so.
  auto widened = test::run_ferry("plan --model dbrx --hw t4-ml --prompt-len 77 --gen-len 32");
  EXPECT_EQ(widened.exit_code, 0) << widened.err;
  EXPECT_NE(widened.out.find("bf16 experts fit nowhere"), std::string::npos);
}

TEST(PlanCli, BadArgumentsAreUserErrors) {
  auto r = test::run_ferry("plan --model no-such-model --hw l4 --prompt-len 10 --gen-len 10");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("mixtral-8x7b"), std::string::npos);  // lists the known names
  r = test::run_ferry("plan --model mixtral-8x7b --hw v100 --prompt-len 10 --gen-len 10");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("l4-ml"), std::string::npos);
}

// Measures this machine (quick mode: a few seconds), then plans on the measured profile.
TEST(ProbeCli, WritesAProfileThatPlanUses) {
  fs::path dir = temp_dir("probe");
  fs::path profile = dir / "probe.json";
  auto r = test::run_ferry("probe --quick --out " + profile.string() + " --ssd-path " + dir.string() +
                           " --ssd-gb 0.0625");
  bool ssd_measured = true;
  if (r.exit_code != 0 && r.err.find("O_DIRECT") != std::string::npos) {  // temp dir on tmpfs
    ssd_measured = false;
    r = test::run_ferry("probe --quick --out " + profile.string());
  }
  ASSERT_EQ(r.exit_code, 0) << r.err;
  HardwareProfile hw = HardwareProfile::load(profile);
  EXPECT_GT(hw.cpu.bandwidth_gbps, 0);
  EXPECT_GT(hw.cpu.peak.bf16_tflops, 0);
  EXPECT_FALSE(hw.cpu.gemm_curve.empty());
  EXPECT_GT(hw.cpu.attention_gbps, 0);
  EXPECT_EQ(hw.has_ssd(), ssd_measured);
  if (ssd_measured) EXPECT_GT(hw.links.ssd_read_gbps, 0);
  EXPECT_NE(hw.cpu.source.find("probe"), std::string::npos);
  auto plan =
      test::run_ferry("plan --model olmoe-1b-7b --hw " + profile.string() + " --prompt-len 100 --gen-len 50");
  EXPECT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_NE(plan.out.find("probe"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ferry::planner
