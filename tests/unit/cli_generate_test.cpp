// End-to-end tests of `ferry generate` and `ferry run` through the real binary.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ferry/tokenizer.h"
#include "test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ferry-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

std::vector<nlohmann::json> read_jsonl(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

const std::string kModel = test::oracle_dir("mixtral_spm").string();

TEST(CliGenerate, GreedyOutputIsTheTransformersGreedyText) {
  auto f = SafetensorsFile::open(test::oracle_dir("mixtral_spm") / "reference.safetensors");
  auto greedy = test::read_tensor<int64_t>(*f, "greedy.0");
  auto tok = load_tokenizer(kModel);
  std::vector<TokenId> ids(greedy.begin(), greedy.end());
  const std::string expected = tok->decode(ids, /*skip_special=*/true);
  auto r = test::run_ferry("generate -q --ignore-eos -n 32 -m " + quote(kModel) + " -p 'Hi there'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, expected + "\n");
}

TEST(CliGenerate, SameSeedSameTextDifferentSeedDifferentText) {
  const std::string base = "generate -q --ignore-eos -n 24 --temperature 1.0 --top-p 0.95 -m " + quote(kModel) + " -p 'Once upon'";
  auto a = test::run_ferry(base + " --seed 5"), b = test::run_ferry(base + " --seed 5"), c = test::run_ferry(base + " --seed 6");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
}

TEST(CliGenerate, StopStringEndsTheTextBeforeIt) {
  auto full = test::run_ferry("generate -q --ignore-eos -n 32 -m " + quote(kModel) + " -p 'Hi there'");
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const std::string text = full.out.substr(0, full.out.size() - 1);
  ASSERT_GT(text.size(), 20u);
  const std::string stop = text.substr(10, 4);
  const size_t first = text.find(stop);
  auto r = test::run_ferry("generate -q --ignore-eos -n 32 -m " + quote(kModel) + " -p 'Hi there' --stop " + quote(stop));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, text.substr(0, first) + "\n");
}

TEST(CliGenerate, PromptLongerThanTheContextIsAClearError) {
  std::string prompt;
  for (int i = 0; i < 600; ++i) prompt += "word ";
  auto r = test::run_ferry("generate -m " + quote(kModel) + " -p " + quote(prompt));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("context"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("512"), std::string::npos) << r.err;
}

TEST(CliGenerate, NonexistentModelDirIsAClearError) {
  auto r = test::run_ferry("generate -m /nonexistent/model-dir -p hi");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent/model-dir"), std::string::npos) << r.err;
}

TEST(CliGenerate, BadSamplingFlagIsAClearError) {
  auto r = test::run_ferry("generate -m " + quote(kModel) + " -p hi --top-p 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--top-p"), std::string::npos) << r.err;
}

TEST(CliRun, WritesOneResultPerPromptAndResumeSkipsFinishedOnes) {
  TempDir dir;
  write_file(dir.path() / "prompts.txt", "Hello there\n\nThe capital of France is\nOne\\ntwo\n");
  const std::string out = (dir.path() / "results.jsonl").string();
  const std::string cmd = "run --no-progress -n 8 --ignore-eos -m " + quote(kModel) + " --prompts " +
                          quote((dir.path() / "prompts.txt").string()) + " -o " + quote(out);
  auto r = test::run_ferry(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto results = read_jsonl(out);
  ASSERT_EQ(results.size(), 3u);
  std::set<int> lines;
  for (auto& j : results) {
    EXPECT_EQ(j["tokens"], 8);
    EXPECT_EQ(j["finish_reason"], "length");
    lines.insert(j["line"].get<int>());
  }
  EXPECT_EQ(lines, (std::set<int>{1, 3, 4}));
  EXPECT_NE(r.out.find("throughput:"), std::string::npos);

  auto again = test::run_ferry(cmd + " --resume");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(read_jsonl(out).size(), 3u);  // nothing re-run
  EXPECT_NE(again.err.find("3 already done"), std::string::npos) << again.err;
}

// The bundled defaults (the trained tiny model, the bundled prompts) with --show 2: the summary is
// followed by the first two prompts of the file and their texts, as the results file holds them.
TEST(CliRun, BundledDefaultsAndShowPrintTheFirstResults) {
  TempDir dir;
  const std::string out = (dir.path() / "results.jsonl").string();
  auto r = test::run_ferry("run --no-progress -n 12 --show 2 -o " + quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("tiny_moe"), std::string::npos) << r.err;  // the bundled model
  const auto results = read_jsonl(out);
  ASSERT_GE(results.size(), 2u);
  const size_t at = r.out.find("first results:");
  ASSERT_NE(at, std::string::npos) << r.out;
  std::map<int, std::string> text_of;
  for (const auto& j : results) text_of[j["line"].get<int>()] = j["text"];
  for (int line : {1, 2}) {
    std::string text = text_of.at(line);
    for (char& ch : text)
      if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
    EXPECT_NE(r.out.find("-> " + text.substr(0, 40), at), std::string::npos) << "line " << line << ": " << r.out;
  }
  EXPECT_EQ(r.out.find("-> ", r.out.find("-> ", r.out.find("-> ", at) + 1) + 1), std::string::npos)
      << "more than 2 results shown: " << r.out;
}

// --hw on the cpu target: the planner's prediction for the profile beside what the run measured, in the
// summary and in --metrics, one row per rate and per part of the model; the measured rates are the run's.
TEST(CliRun, HwPutsThePlannersPredictionBesideTheMeasurement) {
  TempDir dir;
  write_file(dir.path() / "p.txt", "Hello there\nThe capital of France is\nOnce upon a time\n");
  const std::string out = (dir.path() / "r.jsonl").string(), metrics = (dir.path() / "m.json").string();
  auto r = test::run_ferry("run --no-progress -n 6 --ignore-eos --target cpu --batch 2 --hw cpu-server -m " +
                           quote(kModel) + " --prompts " + quote((dir.path() / "p.txt").string()) + " -o " +
                           quote(out) + " --metrics " + quote(metrics));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("planner vs this run (profile cpu-server, N=2"), std::string::npos) << r.out;
  std::ifstream in(metrics);
  const nlohmann::json m = nlohmann::json::parse(in);
  const nlohmann::json& pvm = m.at("predicted_vs_measured");
  EXPECT_EQ(pvm.at("hardware"), "cpu-server");
  std::map<std::string, nlohmann::json> rows;
  for (const auto& row : pvm.at("rows")) rows[row.at("what")] = row;
  for (const char* what : {"tokens/s (generated, whole run)", "decode tokens/s", "prefill tokens/s",
                           "decode step: experts (ms)", "decode step: all (ms)", "prefill batch: attention (ms)"}) {
    ASSERT_TRUE(rows.count(what)) << what;
    EXPECT_GT(rows[what].at("predicted").get<double>(), 0) << what;
    EXPECT_GT(rows[what].at("measured").get<double>(), 0) << what;
  }
  EXPECT_DOUBLE_EQ(rows["tokens/s (generated, whole run)"].at("measured").get<double>(),
                   m.at("tokens_per_second").get<double>());
  const double decode = (m.at("generated_tokens").get<double>() - 3) / m.at("decode_seconds").get<double>();
  EXPECT_NEAR(rows["decode tokens/s"].at("measured").get<double>(), decode, 1e-9 * decode);
}

TEST(CliRun, BatchingDoesNotChangeGreedyResults) {
  TempDir dir;
  write_file(dir.path() / "p.jsonl",
             "{\"prompt\": \"Hi there\", \"id\": \"a\"}\n{\"prompt\": \"A much longer prompt about experts\", \"id\": \"b\", "
             "\"max_tokens\": 5}\n{\"prompt\": \"x\", \"id\": \"c\"}\n");
  auto run = [&](int batch) {
    const std::string out = (dir.path() / ("r" + std::to_string(batch) + ".jsonl")).string();
    auto r = test::run_ferry("run --no-progress -n 12 --ignore-eos --batch " + std::to_string(batch) + " -m " +
                             quote(kModel) + " --prompts " + quote((dir.path() / "p.jsonl").string()) + " -o " + quote(out));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, std::string> by_id;
    for (auto& j : read_jsonl(out)) by_id[j["id"]] = j["text"];
    return by_id;
  };
  auto one = run(1), three = run(3);
  EXPECT_EQ(one, three);
  ASSERT_EQ(one.size(), 3u);
}

TEST(CliRun, MalformedJsonLineNamesFileAndLine) {
  TempDir dir;
  write_file(dir.path() / "p.jsonl", "{\"prompt\": \"ok\"}\n{\"prompt\": oops}\n");
  auto r = test::run_ferry("run --no-progress -m " + quote(kModel) + " --prompts " +
                           quote((dir.path() / "p.jsonl").string()) + " -o " + quote((dir.path() / "o").string()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("p.jsonl:2"), std::string::npos) << r.err;
}

TEST(CliRun, OverlongPromptFailsThatRequestOnlyAndExitsNonZero) {
  TempDir dir;
  std::string longp;
  for (int i = 0; i < 600; ++i) longp += "word ";
  write_file(dir.path() / "p.txt", "short one\n" + longp + "\n");
  const std::string out = (dir.path() / "r.jsonl").string();
  auto r = test::run_ferry("run --no-progress -n 4 -m " + quote(kModel) + " --prompts " +
                           quote((dir.path() / "p.txt").string()) + " -o " + quote(out));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("p.txt:2"), std::string::npos) << r.err;
  auto results = read_jsonl(out);
  ASSERT_EQ(results.size(), 2u);
  int errors = 0;
  for (auto& j : results) errors += j["finish_reason"] == "error";
  EXPECT_EQ(errors, 1);
}

TEST(CliHelp, ListsEverySubcommand) {
  auto r = test::run_ferry("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd : {"run", "generate", "inspect", "tokenize", "plan", "probe"})
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
  auto v = test::run_ferry("--version");
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.out.find("ferry "), std::string::npos);
}

}  // namespace
}  // namespace ferry

namespace ferry {
namespace {

// A packed store under a DRAM budget of a few experts: the same text as with every expert in DRAM, the
// tiers' counters on stderr, and the routing of every forward in the trace file.
TEST(CliGenerate, APackedStoreUnderADramBudgetGivesTheSameText) {
  TempDir dir;
  const std::string store = (dir.path() / "store").string();
  auto c = test::run_ferry("convert -q --model " + quote(kModel) + " --out " + quote(store));
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const std::string base = "generate --target cpu --ignore-eos -n 12 -m " + quote(store) + " -p 'Hi there'";
  auto all = test::run_ferry(base + " -q");
  ASSERT_EQ(all.exit_code, 0) << all.err;
  const std::string trace = (dir.path() / "routing.jsonl").string();
  auto tiered = test::run_ferry(base + " --dram-budget 0.0001 --eviction score --populate --record-routing " +
                                quote(trace));
  ASSERT_EQ(tiered.exit_code, 0) << tiered.err;
  EXPECT_EQ(tiered.out, all.out);
  EXPECT_NE(tiered.err.find("experts under the DRAM budget"), std::string::npos) << tiered.err;
  std::ifstream in(trace);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines)
    EXPECT_NE(nlohmann::json::parse(line)["routing"].size(), 0u);
  EXPECT_EQ(lines, 12);  // the prompt's forward and 11 decode steps
  // a Hugging Face directory cannot stream experts: the error says how to convert
  auto hf = test::run_ferry("generate --target cpu -n 2 -m " + quote(kModel) + " -p 'x' --dram-budget 0.0001");
  EXPECT_NE(hf.exit_code, 0);
  EXPECT_NE(hf.err.find("ferry convert"), std::string::npos) << hf.err;
}

}  // namespace
}  // namespace ferry
