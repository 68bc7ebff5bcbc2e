// `ferry generate` and `ferry run` on the pipeline targets (sim:<profile>, pipeline:<device>) through the
// real binary: the same text as the cpu target, the multi-prompt mode, the end-of-run metrics, trace and
// timeline files, and the errors for a device too small for the model.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

const std::string kModel = test::oracle_dir("mixtral_spm").string();

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ferry-pipeline-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string generate(const std::string& target, const std::string& extra = "") {
  return "generate --ignore-eos -n 12 -m '" + kModel + "' -p 'Once upon a time' --target " + target + " " + extra;
}

// The executor computes what the cpu target computes (bit-identical logits), so greedy text is the same.
TEST(CliPipeline, GreedyTextMatchesTheCpuTarget) {
  const auto cpu = test::run_ferry(generate("cpu", "-q"));
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  for (const char* target : {"sim:l4", "sim:t4,h2d=2", "pipeline:cpu", "pipeline:sim:l4"}) {
    const auto r = test::run_ferry(generate(target, "-q"));
    ASSERT_EQ(r.exit_code, 0) << target << ": " << r.err;
    EXPECT_EQ(r.out, cpu.out) << target;
  }
  const auto int4_cpu = test::run_ferry(generate("cpu", "-q --expert-dtype int4"));
  const auto int4_sim = test::run_ferry(generate("sim:l4", "-q --expert-dtype int4"));
  ASSERT_EQ(int4_sim.exit_code, 0) << int4_sim.err;
  EXPECT_EQ(int4_sim.out, int4_cpu.out);
}

TEST(CliPipeline, PrintsRunMetricsBesideThePlannersPrediction) {
  const auto r = test::run_ferry(generate("sim:l4,h2d=1"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* what : {"wall time", "busy device compute", "busy H2D link", "busy D2H link", "busy CPU attention",
                           "overlap efficiency", "expert cache", "hit rate", "tokens/s", "planner prediction",
                           "auto (planned for sim:l4,h2d=1)", "sim timings are emulation"})
    EXPECT_NE(r.err.find(what), std::string::npos) << "missing '" << what << "' in:\n" << r.err;
  // the cpu device has no GPU profile to predict for
  const auto cpu = test::run_ferry(generate("pipeline:cpu"));
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  EXPECT_NE(cpu.err.find("planner prediction none"), std::string::npos) << cpu.err;
}

TEST(CliPipeline, PolicyFileFromThePlannerRuns) {
  TempDir dir;
  const auto plan = test::run_ferry("plan --model '" + kModel + "' --hw l4 --prompt-len 6 --gen-len 12 --requests 1 "
                                    "--attention cpu --json " + dir.file("policy.json"));
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  const auto r = test::run_ferry(generate("sim:l4", "--policy " + dir.file("policy.json")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(dir.file("policy.json") + ": N="), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("attention on cpu"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, test::run_ferry(generate("cpu", "-q")).out);
}

TEST(CliPipeline, MultiPromptModeDecodesAFileTogether) {
  TempDir dir;
  std::ofstream(dir.file("prompts.txt")) << "Hello there\nThe quick brown fox\nOnce upon a time\n";
  const std::string base = "generate -q --ignore-eos -n 8 -m '" + kModel + "' --prompts " + dir.file("prompts.txt");
  const auto cpu = test::run_ferry(base + " --target cpu");
  const auto sim = test::run_ferry(base + " --target sim:l4 --batch 2");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  ASSERT_EQ(sim.exit_code, 0) << sim.err;
  EXPECT_EQ(sim.out, cpu.out);
  EXPECT_EQ(sim.out.rfind("[1] ", 0), 0u) << sim.out;
  EXPECT_NE(sim.out.find("\n[2] "), std::string::npos) << sim.out;
  EXPECT_NE(sim.out.find("\n[3] "), std::string::npos) << sim.out;
}

TEST(CliPipeline, TraceAndTimelineAreWritten) {
  TempDir dir;
  const auto r = test::run_ferry(generate("sim:l4,h2d=1", "-q --trace " + dir.file("t.json") + " --timeline " +
                                                              dir.file("t.svg")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto trace = nlohmann::json::parse(slurp(dir.file("t.json")));
  ASSERT_TRUE(trace.contains("traceEvents"));
  int tasks = 0;
  for (const auto& e : trace["traceEvents"]) tasks += e["ph"] == "X";
  EXPECT_GT(tasks, 12 * 3);  // at least one task per layer per generated token
  const std::string svg = slurp(dir.file("t.svg"));
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("H2D"), std::string::npos);
}

TEST(CliPipeline, RunWritesPipelineMetrics) {
  TempDir dir;
  std::ofstream(dir.file("prompts.txt")) << "Hello there\nThe quick brown fox\n";
  const auto r = test::run_ferry("run -m '" + kModel + "' --prompts " + dir.file("prompts.txt") + " -n 6 --ignore-eos " +
                                 "--no-progress --target sim:l4 -o " + dir.file("out.jsonl") + " --metrics " +
                                 dir.file("m.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("overlap efficiency"), std::string::npos) << r.out;
  const auto m = nlohmann::json::parse(slurp(dir.file("m.json")));
  ASSERT_TRUE(m.contains("pipeline")) << m.dump();
  EXPECT_EQ(m["pipeline"]["device"], "sim:l4");
  EXPECT_GT(m["pipeline"]["expert_hits"].get<int64_t>() + m["pipeline"]["expert_misses"].get<int64_t>(), 0);
  EXPECT_TRUE(m["pipeline"]["planner_predicted_tokens_per_second"].is_number());
  EXPECT_TRUE(m["pipeline"]["sim_timings_are_emulation"].get<bool>());
}

// Demand fetch through the CLI: a policy that streams 5 of 6 experts per layer, run as is and with
// experts.fetch demand: the same text, and the run's metrics say what was not moved.
TEST(CliPipeline, DemandFetchGivesTheSameTextAndReportsWhatItDidNotMove) {
  TempDir dir;
  std::ofstream(dir.file("prompts.txt")) << "Once upon a time\n";
  nlohmann::json policy = nlohmann::json::parse(slurp((test::data_dir().parent_path() / "cli" / "data" / "policy_mixtral_spm.json").string()));
  policy["experts"]["gpu_per_layer"] = {1, 1, 1};
  policy["experts"]["dram_per_layer"] = {5, 5, 5};
  policy.erase("cache_bytes");
  std::string text[2];
  for (int demand = 0; demand < 2; ++demand) {
    policy["experts"]["fetch"] = demand ? "demand" : "prefetch";
    const std::string pol = dir.file("policy" + std::to_string(demand) + ".json");
    std::ofstream(pol) << policy.dump(2);
    const std::string out = dir.file("out" + std::to_string(demand) + ".jsonl");
    const auto r = test::run_ferry("run -m '" + kModel + "' --prompts " + dir.file("prompts.txt") +
                                   " -n 8 --ignore-eos --no-progress --target sim:l4 --policy " + pol + " -o " + out +
                                   " --metrics " + dir.file("m.json"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    text[demand] = nlohmann::json::parse(slurp(out))["text"];
    const auto m = nlohmann::json::parse(slurp(dir.file("m.json")))["pipeline"]["expert_fetch"];
    EXPECT_EQ(m["mode"], demand ? "demand" : "prefetch");
    if (demand) {
      EXPECT_GT(m["not_moved"].get<int64_t>(), 0) << m.dump();
      EXPECT_GT(m["bytes_not_moved"].get<int64_t>(), 0) << m.dump();
      EXPECT_NE(r.out.find("not moved"), std::string::npos) << r.out;
    }
  }
  EXPECT_EQ(text[1], text[0]);
}

// Residency through the CLI: the same policy (2 of 6 experts resident, demand fetch) with
// --expert-residency index and frequency: the same text; the metrics give the residency, its hit rate
// and trades, the demand predictor's precision and recall, and the emulated compute stream's stalls.
TEST(CliPipeline, ExpertResidencyFlagGivesTheSameTextAndReportsHitRateAndStalls) {
  TempDir dir;
  std::ofstream(dir.file("prompts.txt")) << "Once upon a time\nThe quick brown fox\n";
  nlohmann::json policy = nlohmann::json::parse(slurp((test::data_dir().parent_path() / "cli" / "data" / "policy_mixtral_spm.json").string()));
  policy["experts"]["gpu_per_layer"] = {2, 2, 2};
  policy["experts"]["dram_per_layer"] = {4, 4, 4};
  policy["experts"]["fetch"] = "demand";
  policy.erase("cache_bytes");
  std::string text[2];
  const char* const modes[] = {"index", "frequency"};
  for (int f = 0; f < 2; ++f) {
    policy["experts"]["residency"] = modes[f];
    const std::string pol = dir.file(std::string("policy_") + modes[f] + ".json");
    std::ofstream(pol) << policy.dump(2);
    const std::string out = dir.file(std::string("out_") + modes[f] + ".jsonl");
    const auto r = test::run_ferry("run -m '" + kModel + "' --prompts " + dir.file("prompts.txt") +
                                   " -n 40 --ignore-eos --no-progress --target sim:l4 --policy " + pol +
                                   " --expert-residency " + modes[f] + " -o " + out + " --metrics " + dir.file("m.json"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream lines(out);
    for (std::string line; std::getline(lines, line);) text[f] += nlohmann::json::parse(line)["text"].get<std::string>();
    const auto m = nlohmann::json::parse(slurp(dir.file("m.json")))["pipeline"];
    EXPECT_EQ(m["expert_residency"]["mode"], modes[f]);
    const double hit_rate = m["expert_residency"]["hit_rate"];
    const int64_t hits = m["expert_hits"], misses = m["expert_misses"];
    EXPECT_DOUBLE_EQ(hit_rate, static_cast<double>(hits) / (hits + misses));
    if (f == 0) EXPECT_EQ(m["expert_residency"]["trades"].get<int64_t>(), 0);
    const double precision = m["expert_fetch"]["prediction_precision"], recall = m["expert_fetch"]["prediction_recall"];
    EXPECT_GT(precision, 0.0);
    EXPECT_LE(precision, 1.0);
    EXPECT_GT(recall, 0.0);
    EXPECT_LE(recall, 1.0);
    EXPECT_TRUE(m["compute_stall_seconds"].is_number()) << m.dump();
    EXPECT_NE(r.out.find(std::string("residency by ") + modes[f]), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("compute stalls"), std::string::npos) << r.out;
  }
  EXPECT_EQ(text[1], text[0]);
}

// A device too small for the model: a clear error naming the buffer and what to do, and a non-zero exit.
TEST(CliPipeline, DeviceTooSmallIsAClearError) {
  // the planner (--policy auto) finds nothing that fits
  const auto planned = test::run_ferry(generate("sim:t4,scale=1e-5"));
  EXPECT_NE(planned.exit_code, 0);
  EXPECT_NE(planned.err.find("'dense weights"), std::string::npos) << planned.err;
  EXPECT_NE(planned.err.find("raise scale="), std::string::npos) << planned.err;
  // a policy planned for the full-size GPU (attention on the CPU, a shape the executor runs): the device
  // names the buffer that overflows
  TempDir dir;
  const auto plan = test::run_ferry("plan --model '" + kModel + "' --hw t4 --prompt-len 6 --gen-len 12 --requests 1 "
                                    "--attention cpu --json " + dir.file("policy.json"));
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  const auto filed = test::run_ferry(generate("sim:t4,scale=1e-5", "--policy " + dir.file("policy.json")));
  EXPECT_NE(filed.exit_code, 0);
  EXPECT_NE(filed.err.find("device sim:t4: buffer 'dense weights'"), std::string::npos) << filed.err;
  EXPECT_NE(filed.err.find("does not fit"), std::string::npos) << filed.err;
  EXPECT_NE(filed.err.find("raise or drop scale="), std::string::npos) << filed.err;
}

TEST(CliPipeline, PipelineFlagsOnOtherTargetsAreErrors) {
  const auto r = test::run_ferry(generate("cpu", "--policy auto.json"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("pipeline targets"), std::string::npos) << r.err;
  const auto bad = test::run_ferry(generate("sim:nonexistent-gpu"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("nonexistent-gpu"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace ferry
