// Input validation (issue 14, "silent nonsense"): the helpers of ferry/validate.h; every bad flag of
// `ferry plan`, `generate` and `run` refused with a message naming the flag, the value and what is
// allowed; hardware-profile and policy JSON fields; and model loading: rms_norm_eps, tensors the model
// does not use (a config with fewer layers than the checkpoint), NaN/Inf weights, and a header entry
// missing from a safetensors file, named instead of reported as a gap at its neighbour.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <thread>

#include <nlohmann/json.hpp>

#include "ferry/checkpoint.h"
#include "ferry/error.h"
#include "ferry/model_config.h"
#include "ferry/model_factory.h"
#include "ferry/planner/hardware_profile.h"
#include "ferry/planner/policy.h"
#include "ferry/reference_model.h"
#include "ferry/validate.h"
#include "model_fixtures.h"
#include "test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- the helpers ---------------------------------------------------------------------------------

TEST(InputValidation, PositiveNumber) {
  EXPECT_EQ(require_positive(2.5, "--x"), 2.5);
  EXPECT_EQ(require_positive(1e-300, "--x"), 1e-300);
  EXPECT_EQ(error_of([] { require_positive(0, "--gpu-mem-gb", "GB"); }),
            "--gpu-mem-gb: got 0; expected a finite number > 0 (GB)");
  EXPECT_EQ(error_of([] { require_positive(-1, "--gpu-mem-gb", "GB", 1e5); }),
            "--gpu-mem-gb: got -1; expected a number > 0 and <= 100000 (GB)");
  EXPECT_THAT(error_of([] { require_positive(NAN, "--x"); }), HasSubstr("got nan"));
  EXPECT_THAT(error_of([] { require_positive(INFINITY, "--x"); }), HasSubstr("got inf"));
  EXPECT_THAT(error_of([] { require_positive(-INFINITY, "--x"); }), HasSubstr("got -inf"));
  EXPECT_THAT(error_of([] { require_positive(1e6, "--x", "", 1e5); }), HasSubstr("got 1000000;"));
  EXPECT_EQ(require_positive(1e5, "--x", "", 1e5), 1e5);
}

TEST(InputValidation, NonNegativeNumberAndRanges) {
  EXPECT_EQ(require_non_negative(0, "--ssd-gbps"), 0);
  EXPECT_EQ(error_of([] { require_non_negative(-0.5, "--ssd-gbps", "0: no SSD tier"); }),
            "--ssd-gbps: got -0.5; expected a finite number >= 0 (0: no SSD tier)");
  EXPECT_THAT(error_of([] { require_non_negative(NAN, "--x"); }), HasSubstr("got nan"));
  // (0, 1]
  const NumberRange top_p{0, 1, true, false};
  EXPECT_EQ(require_in_range(1, top_p, "--top-p"), 1);
  EXPECT_EQ(error_of([&] { require_in_range(0, top_p, "--top-p"); }),
            "--top-p: got 0; expected a number > 0 and <= 1");
  EXPECT_THAT(error_of([&] { require_in_range(1.5, top_p, "--top-p"); }), HasSubstr("got 1.5"));
  // [0, 1)
  EXPECT_EQ(error_of([] { require_in_range(1, {0, 1, false, true}, "--min-p"); }),
            "--min-p: got 1; expected a number >= 0 and < 1");
  // [a, b]
  EXPECT_EQ(error_of([] { require_in_range(7, {32, 128}, "--group-size"); }),
            "--group-size: got 7; expected a number from 32 to 128");
}

TEST(InputValidation, Counts) {
  EXPECT_EQ(require_count(0, 0, 64, "--threads"), 0);
  EXPECT_EQ(error_of([] { require_count(10000, 0, 64, "--threads", "0: every core"); }),
            "--threads: got 10000; expected an integer from 0 to 64 (0: every core)");
  EXPECT_EQ(error_of([] { require_count(-1, 1, std::numeric_limits<int64_t>::max(), "--batch"); }),
            "--batch: got -1; expected an integer >= 1");
  EXPECT_EQ(error_of([] { require_count(3, 5, 5, "n"); }), "n: got 3; expected 5");
}

TEST(InputValidation, WholeCountsFromFloatsNeverConvertOutOfRange) {
  EXPECT_EQ(require_whole_count(12.0, 0, 100, "k"), 12);
  EXPECT_EQ(require_whole_count(-3.0, -5, 5, "k"), -3);
  // Each of these would be undefined behaviour in a plain static_cast<int64_t>.
  for (double bad : {1e300, -1e300, 9223372036854775808.0, static_cast<double>(NAN),
                     static_cast<double>(INFINITY), -static_cast<double>(INFINITY)})
    EXPECT_THAT(error_of([&] { require_whole_count(bad, 0, std::numeric_limits<int64_t>::max(), "k"); }),
                HasSubstr("k: got ")) << bad;
  EXPECT_EQ(error_of([] { require_whole_count(2.5, 0, 10, "k"); }),
            "k: got 2.5; expected an integer from 0 to 10");
  EXPECT_THAT(error_of([] { require_whole_count(11, 0, 10, "k"); }), HasSubstr("got 11;"));
}

TEST(InputValidation, ChoicesAndText) {
  EXPECT_EQ(require_choice("int8", {"bf16", "int8", "int4"}, "--expert-dtype"), "int8");
  EXPECT_EQ(error_of([] { require_choice("int3", {"bf16", "int8", "int4"}, "--expert-dtype"); }),
            "--expert-dtype: got 'int3'; expected one of bf16, int8, int4");
  EXPECT_EQ(require_non_empty("</s>", "--stop"), "</s>");
  EXPECT_EQ(error_of([] { require_non_empty("", "--stop", "a stop string"); }),
            "--stop: got an empty string; expected non-empty text (a stop string)");
}

TEST(InputValidation, InvalidValueKeepsTheNameAndTheDetailApart) {
  try {
    require_positive(-2, "policy.json: key 'x'");
    FAIL();
  } catch (const InvalidValue& e) {
    EXPECT_EQ(e.name(), "policy.json: key 'x'");
    EXPECT_EQ(e.detail(), "got -2; expected a finite number > 0");
  }
  EXPECT_EQ(number_text(3), "3");
  EXPECT_EQ(number_text(0.25), "0.25");
  EXPECT_EQ(number_text(1e20), "1e+20");
}

// ---- ferry plan ------------------------------------------------------------------------------------

struct BadFlag {
  std::string args;    // added to a valid command line
  std::string phrase;  // expected on stderr: the flag's name, the value, what is allowed
};

// Each bad flag: a non-zero exit, no plan or text on stdout, and the phrase on stderr.
void expect_refused(const std::string& command, const std::vector<BadFlag>& cases) {
  for (const BadFlag& c : cases) {
    SCOPED_TRACE(c.args);
    const auto r = test::run_ferry(command + " " + c.args);
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_THAT(r.err, HasSubstr(c.phrase));
    EXPECT_EQ(r.out, "");
  }
}

const std::string kPlan = "plan --model mixtral-8x7b --hw l4 --gen-len 32 ";

TEST(PlanCli, RefusesNonPositiveNanAndInfiniteHardwareFigures) {
  expect_refused(kPlan + "--prompt-len 100",
                 {
                     {"--gpu-mem-gb -1", "--gpu-mem-gb: got -1; expected a number > 0"},
                     {"--gpu-mem-gb 0", "--gpu-mem-gb: got 0; expected a number > 0"},
                     {"--gpu-mem-gb nan", "--gpu-mem-gb: got nan"},
                     {"--gpu-mem-gb inf", "--gpu-mem-gb: got inf"},
                     {"--gpu-mem-gb 1e300", "--gpu-mem-gb: got 1e+300"},
                     {"--pcie-gbps 0", "--pcie-gbps: got 0; expected a number > 0"},
                     {"--pcie-gbps -3", "--pcie-gbps: got -3"},
                     {"--host-cores 0", "--host-cores: got 0; expected an integer from 1 to"},
                     {"--host-cores -4", "--host-cores: got -4"},
                     {"--host-dram-gb 0", "--host-dram-gb: got 0"},
                     {"--host-dram-gb nan", "--host-dram-gb: got nan"},
                     {"--host-dram-gbps -1", "--host-dram-gbps: got -1"},
                     {"--host-dram-gbps inf", "--host-dram-gbps: got inf"},
                     {"--host-cpu-tflops 0", "--host-cpu-tflops: got 0"},
                     {"--host-cpu-tflops nan", "--host-cpu-tflops: got nan"},
                     {"--ssd-gbps -1", "--ssd-gbps: got -1; expected a number from 0 to"},
                     {"--ssd-gbps nan", "--ssd-gbps: got nan"},
                     {"--ssd-gb 0", "--ssd-gb: got 0"},
                     {"--ssd-gb -inf", "--ssd-gb: got -inf"},
                 });
}

TEST(PlanCli, RefusesBadWorkloadAndSearchFlags) {
  expect_refused("plan --model mixtral-8x7b --hw l4 --gen-len 32",
                 {
                     {"--prompt-len nan", "--prompt-len: got nan"},
                     {"--prompt-len inf", "--prompt-len: got inf"},
                     {"--prompt-len -inf", "--prompt-len: got -inf"},
                     {"--prompt-len 0", "--prompt-len: got 0; expected a number from 1 to"},
                     {"--prompt-len 0.5", "--prompt-len: got 0.5"},
                     {"--prompt-len 1e300", "--prompt-len: got 1e+300"},
                 });
  expect_refused("plan --model mixtral-8x7b --hw l4 --prompt-len 100",
                 {
                     {"--gen-len 0", "--gen-len: got 0; expected an integer from 1 to"},
                     {"--gen-len -5", "--gen-len: got -5"},
                 });
  expect_refused(kPlan + "--prompt-len 100",
                 {
                     {"--batch 0", "--batch: got 0; expected an integer from 1 to"},
                     {"--batch -1", "--batch: got -1"},
                     {"--micro-batch 0", "--micro-batch: got 0"},
                     {"--max-prompt-len 0", "--max-prompt-len: got 0"},
                     {"--requests 0", "--requests: got 0"},
                     {"--requests -10", "--requests: got -10"},
                     {"--kv-precision int3", "--kv-precision: got 'int3'; expected one of bf16, int8, int4"},
                     {"--attention tpu", "--attention: got 'tpu'; expected one of cpu, gpu"},
                     {"--ffn npu", "--ffn: got 'npu'"},
                     {"--policy-space flexgen", "--policy-space: got 'flexgen'; expected one of ferry, moe-lightning"},
                     {"--micro-batch 64 --batch 32", "--micro-batch: got 64, larger than --batch 32"},
                     {"--max-prompt-len 10", "--max-prompt-len: got 10, shorter than the average --prompt-len 100"},
                 });
}

TEST(PlanCli, RefusesHardwareFlagsTheProfileWouldIgnore) {
  expect_refused("plan --model olmoe-1b-7b --hw cpu-server --prompt-len 100 --gen-len 32",
                 {
                     {"--gpu-mem-gb 24", "--gpu-mem-gb: the hardware profile 'cpu-server' has no GPU"},
                     {"--pcie-gbps 25", "--pcie-gbps: the hardware profile 'cpu-server' has no GPU"},
                     {"--ssd-gbps 0 --ssd-gb 100", "--ssd-gb: the hardware profile 'cpu-server' has no SSD tier"},
                 });
}

TEST(PlanCli, DocumentedZerosStillWork) {
  // --ssd-gbps 0 removes the SSD tier, as its help says.
  auto r = test::run_ferry(kPlan + "--prompt-len 100 --ssd-gbps 0 --host-cores 8 --pcie-gbps 20");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("no SSD tier"));
}

TEST(ProbeCli, RefusesABadSsdSize) {
  expect_refused("probe --quick",
                 {{"--ssd-gb 0", "--ssd-gb: got 0"}, {"--ssd-gb nan", "--ssd-gb: got nan"}, {"--ssd-gb 1e300", "--ssd-gb: got 1e+300"},
                  {"--out ''", "--out: got an empty string"}});
}

// ---- hardware profile JSON -------------------------------------------------------------------------

nlohmann::json good_profile() { return planner::hardware_preset("l4").to_json(); }

std::string profile_error(const nlohmann::json& j) {
  return error_of([&] { planner::HardwareProfile::from_json(j, "hw.json"); });
}

TEST(InputValidation, HardwareProfileFieldsAreFiniteAndInRange) {
  ASSERT_EQ(profile_error(good_profile()), "");
  struct Case {
    std::vector<std::string> path;
    nlohmann::json value;
    std::string phrase;
  };
  const std::vector<Case> cases = {
      {{"gpu", "capacity_bytes"}, -1, "hw.json: key 'gpu.capacity_bytes'"},
      {{"gpu", "capacity_bytes"}, 1e300, "hw.json: key 'gpu.capacity_bytes': got 1e+300"},
      {{"gpu", "bandwidth_gbps"}, 1e300, "hw.json: key 'gpu.bandwidth_gbps': got 1e+300"},
      {{"gpu", "usable_fraction"}, 0, "hw.json: key 'gpu.usable_fraction': got 0; expected a number > 0 and <= 1"},
      {{"cpu", "usable_fraction"}, 1.5, "hw.json: key 'cpu.usable_fraction': got 1.5"},
      {{"cpu", "cores"}, 0, "hw.json: key 'cpu.cores': got 0; expected an integer from 1 to"},
      {{"cpu", "cores"}, 1e300, "hw.json: key 'cpu.cores'"},
      {{"cpu", "peak", "bf16_tflops"}, 1e300, "hw.json: key 'cpu.peak.bf16_tflops': got 1e+300"},
      {{"cpu", "gemm_curve"}, nlohmann::json::array({{{"rows", 16}, {"gflops", 0}}}),
       "hw.json: key 'cpu.gemm_curve[0].gflops': got 0"},
      {{"links", "h2d_gbps"}, 1e300, "hw.json: key 'links.h2d_gbps': got 1e+300"},
      {{"links", "h2d_gbps"}, 0, "h2d_gbps"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = good_profile();
    nlohmann::json* node = &j;
    for (size_t i = 0; i + 1 < c.path.size(); ++i) node = &(*node)[c.path[i]];
    (*node)[c.path.back()] = c.value;
    EXPECT_THAT(profile_error(j), HasSubstr(c.phrase)) << c.value.dump();
  }
}

TEST(InputValidation, HardwareOverridesAreCheckedAndNamedByTheirFlag) {
  auto overridden = [](auto set) {
    planner::HardwareProfile hw = planner::hardware_preset("l4");
    planner::HardwareOverrides o;
    set(o);
    return error_of([&] { planner::apply_overrides(hw, o); });
  };
  EXPECT_THAT(overridden([](auto& o) { o.gpu_memory_gb = -1; }), HasSubstr("--gpu-mem-gb: got -1"));
  EXPECT_THAT(overridden([](auto& o) { o.pcie_gbps = NAN; }), HasSubstr("--pcie-gbps: got nan"));
  EXPECT_THAT(overridden([](auto& o) { o.host_cores = 0; }), HasSubstr("--host-cores: got 0"));
  EXPECT_THAT(overridden([](auto& o) { o.host_dram_gbps = INFINITY; }), HasSubstr("--host-dram-gbps: got inf"));
  EXPECT_EQ(overridden([](auto& o) { o.ssd_gbps = 0; }), "");
}

// ---- policy JSON -----------------------------------------------------------------------------------

nlohmann::json good_policy() {
  planner::Policy p;
  p.batch_size = 64;
  p.micro_batch = 16;
  p.prefill_chunk_tokens = 512;
  p.gpu_experts_per_layer = {2, 2};
  p.dram_experts_per_layer = {2, 2};
  p.ssd_experts_per_layer = {0, 0};
  return p.to_json();
}

std::string policy_error(const nlohmann::json& j) {
  return error_of([&] { planner::Policy::from_json(j, "policy.json"); });
}

TEST(InputValidation, PolicyFieldsAreCountsInRangeAndKnownNames) {
  ASSERT_EQ(policy_error(good_policy()), "");
  auto with = [](const std::string& key, nlohmann::json value) {
    nlohmann::json j = good_policy();
    j[key] = std::move(value);
    return policy_error(j);
  };
  EXPECT_THAT(with("batch_size", 0), HasSubstr("policy.json: key 'batch_size'"));
  EXPECT_THAT(with("batch_size", 1e300), HasSubstr("policy.json: key 'batch_size'"));
  EXPECT_THAT(with("batch_size", int64_t{1} << 40), HasSubstr("policy.json: key 'batch_size': got 1099511627776"));
  EXPECT_THAT(with("micro_batch", 0), HasSubstr("policy.json: key 'micro_batch'"));
  EXPECT_THAT(with("micro_batch", 65), HasSubstr("larger than batch_size 64"));
  EXPECT_THAT(with("prefill_chunk_tokens", 0), HasSubstr("policy.json: key 'prefill_chunk_tokens'"));
  EXPECT_THAT(with("prefetch_depth", 1e18), HasSubstr("policy.json: key 'prefetch_depth'"));

  nlohmann::json j = good_policy();
  j["experts"]["gpu_per_layer"] = {2, 1e300};
  EXPECT_THAT(policy_error(j), HasSubstr("policy.json: key 'experts.gpu_per_layer[1]'"));
  j["experts"]["gpu_per_layer"] = {2, int64_t{1} << 33};  // would wrap in int
  EXPECT_THAT(policy_error(j), HasSubstr("policy.json: key 'experts.gpu_per_layer[1]': got 8589934592"));
  j = good_policy();
  j["devices"]["attention"] = "tpu";
  EXPECT_THAT(policy_error(j), AllOf(HasSubstr("devices.attention"), HasSubstr("'tpu'")));
  j = good_policy();
  j["experts"]["precision"]["gpu"] = "fp8";
  EXPECT_THAT(policy_error(j), AllOf(HasSubstr("experts.precision.gpu"), HasSubstr("'fp8'")));
  j = good_policy();
  j["cache_bytes"]["gpu_kv_cache"] = -1;
  EXPECT_THAT(policy_error(j), HasSubstr("cache_bytes.gpu_kv_cache"));
}

TEST(InputValidation, PolicyExpertsPerLayerWithinTheModelsExperts) {
  ModelConfig m = parse_model_config(test::tiny_mixtral_config(), "config.json");  // L=2, E=4
  nlohmann::json j = good_policy();
  j["experts"]["gpu_per_layer"] = {6, 2};
  j["experts"]["dram_per_layer"] = {-2, 2};
  EXPECT_THAT(policy_error(j), HasSubstr("experts.dram_per_layer[0]"));  // negative: refused at load
  j["experts"]["dram_per_layer"] = {0, 2};
  j["experts"]["ssd_per_layer"] = {0, 0};
  planner::Policy p = planner::Policy::from_json(j, "policy.json");
  EXPECT_THAT(error_of([&] { p.validate_for(m, "policy.json"); }),
              AllOf(HasSubstr("policy.json: key 'experts.gpu_per_layer[0]': got 6; expected an integer from 0 to 4"),
                    HasSubstr("4 routed experts in layer 0")));
}

TEST(InputValidation, ANumberTooLargeForJsonIsReportedWithTheFile) {
  test::TempDir dir;
  test::write_text(dir / "pol.json", R"({"format": "ferry-policy", "version": 1e999})");
  test::write_text(dir / "hw.json", R"({"format": "ferry-hardware", "version": 1e999})");
  EXPECT_THAT(error_of([&] { planner::Policy::load(dir / "pol.json"); }),
              AllOf(HasSubstr((dir / "pol.json").string()), HasSubstr("not valid JSON")));
  EXPECT_THAT(error_of([&] { planner::HardwareProfile::load(dir / "hw.json"); }),
              AllOf(HasSubstr((dir / "hw.json").string()), HasSubstr("not valid JSON")));
}

// ---- generate and run ------------------------------------------------------------------------------

const std::string kModel = test::oracle_dir("mixtral_spm").string();

std::vector<BadFlag> bad_generation_flags() {
  const std::string too_many_threads =
      std::to_string(4 * static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency())) + 1);
  return {
      {"--stop ''", "--stop: got an empty string"},
      {"--stop x --stop ''", "--stop: got an empty string"},
      {"--threads -1", "--threads: got -1; expected an integer from 0 to"},
      {"--threads 10000", "--threads: got 10000"},
      {"--threads " + too_many_threads, "--threads: got " + too_many_threads},
      {"--batch 0", "--batch: got 0; expected an integer from 1 to"},
      {"--batch -1", "--batch: got -1"},
      {"--kv-tokens -1", "--kv-tokens: got -1; expected an integer from 0 to"},
      {"-n 0", "--max-tokens: got 0; expected an integer from 1 to"},
      {"-n -3", "--max-tokens: got -3"},
      {"--temperature -1", "--temperature: got -1; expected a finite number >= 0"},
      {"--temperature nan", "--temperature: got nan"},
      {"--temperature inf", "--temperature: got inf"},
      {"--top-p 0", "--top-p: got 0; expected a number > 0 and <= 1"},
      {"--top-p 1.5", "--top-p: got 1.5"},
      {"--top-p nan", "--top-p: got nan"},
      {"--min-p 1", "--min-p: got 1; expected a number >= 0 and < 1"},
      {"--min-p -0.1", "--min-p: got -0.1"},
      {"--top-k -1", "--top-k: got -1"},
      {"--repeat-penalty 0", "--repeat-penalty: got 0; expected a finite number > 0"},
      {"--repeat-penalty inf", "--repeat-penalty: got inf"},
      {"--group-size 7", "--group-size: got 7; expected an integer from 32 to 128"},
      {"--expert-dtype int3", "--expert-dtype: got 'int3'; expected one of bf16, int8, int4"},
      {"--kv-dtype f8", "--kv-dtype: got 'f8'; expected one of bf16, f16, f32"},
  };
}

TEST(CliBadFlags, GenerateRefusesEachBadFlagBeforeLoadingTheModel) {
  expect_refused("generate -m '" + kModel + "' -p hi", bad_generation_flags());
}

TEST(CliBadFlags, RunRefusesEachBadFlagBeforeLoadingTheModel) {
  test::TempDir dir;
  test::write_text(dir / "prompts.txt", "hi\n");
  const std::string run = "run --no-progress -m '" + kModel + "' --prompts '" + (dir / "prompts.txt").string() +
                          "' -o '" + (dir / "out.jsonl").string() + "'";
  expect_refused(run, bad_generation_flags());
  EXPECT_FALSE(fs::exists(dir / "out.jsonl"));
}

TEST(CliBadFlags, ZeroStillMeansAutoWhereTheHelpSaysSo) {
  const auto r = test::run_ferry("generate -q --target cpu --threads 0 --kv-tokens 0 --top-k 0 --min-p 0 -n 2 -m '" +
                                 kModel + "' -p hi");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto help = test::run_ferry("generate --help");
  EXPECT_THAT(help.out, AllOf(HasSubstr("0 (the default) for every core"), HasSubstr("0 (the default) for auto")));
}

// ---- model loading ---------------------------------------------------------------------------------

std::string open_error(const fs::path& dir) {
  return error_of([&] { Checkpoint::open(dir); });
}

TEST(BadModelInputs, RmsNormEpsMustBePositiveAndFinite) {
  for (double eps : {0.0, -1e-6, 2.0}) {
    SCOPED_TRACE(eps);
    test::TempDir dir;
    auto config = test::tiny_mixtral_config();
    config["rms_norm_eps"] = eps;
    test::write_model_dir(dir.path(), config, test::tiny_mixtral_tensors(false));
    EXPECT_THAT(open_error(dir.path()),
                AllOf(HasSubstr((dir / "config.json").string() + ": key 'rms_norm_eps': got " + number_text(eps)),
                      HasSubstr("expected a number > 0")));
  }
  // The same for a config read on its own (ferry plan, ferry inspect).
  auto config = test::tiny_mixtral_config();
  config["rms_norm_eps"] = 0;
  EXPECT_THAT(error_of([&] { parse_model_config(config, "c.json"); }), HasSubstr("c.json: key 'rms_norm_eps'"));
}

TEST(BadModelInputs, ConfigWithFewerLayersThanTheCheckpointIsRefusedNamingTheUnusedTensors) {
  test::TempDir dir;
  auto config = test::tiny_mixtral_config();  // the tensors have 2 layers
  config["num_hidden_layers"] = 1;
  test::write_model_dir(dir.path(), config, test::tiny_mixtral_tensors(false));
  const std::string msg = open_error(dir.path());
  EXPECT_THAT(msg, AllOf(HasSubstr(dir.path().string()), HasSubstr("not used by the model"),
                         HasSubstr("'model.layers.1."), HasSubstr("more)"),
                         HasSubstr("belong to layers 1 and above"), HasSubstr("describes 1 layer (")));
  // The fused layout and the sharded layout say the same.
  test::TempDir sharded;
  test::write_sharded_model_dir(sharded.path(), config, test::tiny_mixtral_tensors(true), 2);
  EXPECT_THAT(open_error(sharded.path()),
              AllOf(HasSubstr("model.layers.1.mlp.experts"), HasSubstr("layers 1 and above")));
}

TEST(BadModelInputs, ATensorTheModelDoesNotUseIsRefusedByName) {
  test::TempDir dir;
  auto tensors = test::tiny_mixtral_tensors(false);
  tensors.push_back(test::make_tensor("model.layers.0.mlp.extra_proj.weight", {4, 16}));
  test::write_model_dir(dir.path(), test::tiny_mixtral_config(), tensors);
  EXPECT_THAT(open_error(dir.path()),
              AllOf(HasSubstr("1 tensor in the checkpoint is not used by the model: "
                              "'model.layers.0.mlp.extra_proj.weight'"),
                    HasSubstr("describes a model without them")));
  // Optional weights the loaders read when present (biases) are used, not refused.
  test::TempDir with_bias;
  tensors = test::tiny_mixtral_tensors(false);
  tensors.push_back(test::make_tensor("model.layers.1.self_attn.q_proj.bias", {16}));
  test::write_model_dir(with_bias.path(), test::tiny_mixtral_config(), tensors);
  EXPECT_EQ(open_error(with_bias.path()), "");
}

TEST(BadModelInputs, NanOrInfWeightsAreRefusedNamingTheTensor) {
  const std::string name = "model.layers.1.block_sparse_moe.experts.2.w1.weight";
  for (DType dtype : {DType::BF16, DType::F16, DType::F32})
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + std::to_string(bad));
      test::TempDir dir;
      auto tensors = test::tiny_mixtral_tensors(false);
      for (auto& t : tensors)
        if (t.name == name) {
          t.dtype = dtype;
          t.values[37] = bad;
          t.values[50] = bad;
        }
      test::write_model_dir(dir.path(), test::tiny_mixtral_config(), tensors);
      auto ckpt = Checkpoint::open(dir.path());  // headers and shapes are fine
      const std::string msg = error_of([&] { ckpt->f32({WeightKind::ExpertGate, 1, 2}); });
      EXPECT_THAT(msg, AllOf(HasSubstr("tensor '" + name + "'"), HasSubstr("ExpertGate (layer 1, expert 2)"),
                             HasSubstr("2 non-finite values"), HasSubstr("at element 37 of [24,16]"),
                             HasSubstr(std::isnan(bad) ? "NaN" : bad > 0 ? "+Inf" : "-Inf"),
                             HasSubstr(dir.path().string())));
      // Every target loads through it: the model refuses to load.
      EXPECT_THAT(error_of([&] { load_weights_f32(*ckpt); }), HasSubstr(name));
    }
  test::TempDir cpu_dir;
  auto tensors = test::tiny_mixtral_tensors(false);
  for (auto& t : tensors)
    if (t.name == "model.norm.weight") t.values[3] = NAN;
  test::write_model_dir(cpu_dir.path(), test::tiny_mixtral_config(), tensors);
  auto ckpt = Checkpoint::open(cpu_dir.path());
  TargetOptions cpu;
  cpu.target = "cpu";
  EXPECT_THAT(error_of([&] { create_model(*ckpt, cpu); }), HasSubstr("'model.norm.weight'"));
}

// Rewrites a safetensors file without the header entry `name`, keeping the data buffer: the tensor's bytes
// stay, claimed by no entry (what a damaged header looks like).
void drop_header_entry(const fs::path& file, const std::string& name) {
  std::ifstream in(file, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  ASSERT_EQ(header.erase(name), 1u) << name;
  std::string text = header.dump();
  while (text.size() % 8) text += ' ';
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  out += text + bytes.substr(8 + n);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << out;
}

TEST(BadModelInputs, AMissingHeaderEntryIsReportedByName) {
  const std::string name = "model.layers.0.self_attn.k_proj.weight";
  test::TempDir dir;
  test::write_model_dir(dir.path(), test::tiny_mixtral_config(), test::tiny_mixtral_tensors(false));
  drop_header_entry(dir / "model.safetensors", name);
  EXPECT_THAT(open_error(dir.path()),
              AllOf(HasSubstr((dir / "model.safetensors").string()),
                    HasSubstr("the header has no entry for tensor '" + name + "'"), Not(HasSubstr("gap"))));

  // Sharded: the index says which shard should have it.
  test::TempDir sharded;
  test::write_sharded_model_dir(sharded.path(), test::tiny_mixtral_config(), test::tiny_mixtral_tensors(false), 2);
  std::ifstream in(sharded / "model.safetensors.index.json");
  const std::string shard = nlohmann::json::parse(in)["weight_map"][name].get<std::string>();
  drop_header_entry(sharded / shard, name);
  EXPECT_THAT(open_error(sharded.path()),
              AllOf(HasSubstr((sharded / shard).string()), HasSubstr("the header has no entry for tensor '" + name + "'"),
                    HasSubstr("model.safetensors.index.json places in this file")));
}

}  // namespace
}  // namespace ferry
