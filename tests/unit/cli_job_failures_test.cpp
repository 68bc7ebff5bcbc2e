// `ferry run` when things go wrong: padded vocabularies, full disks, unwritable paths, torn last lines,
// bad prompt files. Each case checks what a user sees (exit code, the message) and what is on disk.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
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
    char tmpl[] = "/tmp/ferry-jobfail-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    for (const auto& e : fs::recursive_directory_iterator(path_, ec))
      if (e.is_directory(ec)) fs::permissions(e.path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

// The lines of a results file; every one must end with '\n' and be a JSON object with an id.
std::vector<nlohmann::json> read_results(const fs::path& p) {
  const std::string text = slurp(p);
  std::vector<nlohmann::json> out;
  EXPECT_TRUE(text.empty() || text.back() == '\n') << p << " ends without a newline";
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j;
    EXPECT_NO_THROW(j = nlohmann::json::parse(line)) << p << ": not JSON: " << line;
    EXPECT_TRUE(j.is_object() && j.contains("id")) << line;
    out.push_back(std::move(j));
  }
  return out;
}

// id -> record; fails the test when an id occurs twice.
std::map<std::string, nlohmann::json> by_id(const std::vector<nlohmann::json>& results) {
  std::map<std::string, nlohmann::json> m;
  for (const auto& j : results) EXPECT_TRUE(m.emplace(j["id"].get<std::string>(), j).second) << "id " << j["id"] << " twice";
  return m;
}

// Runs a shell command line (for ulimit), capturing stdout and stderr.
test::CommandResult run_shell(const std::string& line) {
  TempDir d;
  const std::string cmd = "(" + line + ") >" + quote(d / "out") + " 2>" + quote(d / "err") + " </dev/null";
  const int status = std::system(cmd.c_str());
  test::CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(d / "out");
  r.err = slurp(d / "err");
  return r;
}

const std::string kModel = test::oracle_dir("mixtral_spm").string();
const std::string kPrompts = (test::data_dir().parent_path().parent_path() / "tools" / "data" / "prompts.txt").string();

size_t prompt_count() {
  std::ifstream in(kPrompts);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.find_first_not_of(" \t\r") != std::string::npos;
  return n;
}

bool has_tokenizer(const std::string& fixture) {
  const fs::path d = test::oracle_dir(fixture);
  return fs::exists(d / "tokenizer.json") || fs::exists(d / "tokenizer.model");
}

// ---- padded vocabularies: every model with a tokenizer completes the prompts file ----

std::vector<std::string> fixtures_with_tokenizer() {
  std::vector<std::string> names;
  for (const std::string& fixture : test::oracle_fixtures())
    if (has_tokenizer(fixture)) names.push_back(fixture);
  return names;
}

class CliPaddedVocabModel : public ::testing::TestWithParam<std::string> {};

TEST_P(CliPaddedVocabModel, RunsThePromptsFileGreedyAndSampledOnReferenceAndCpu) {
  const std::string fixture = GetParam();
  const size_t n = prompt_count();
  ASSERT_GT(n, 0u);
  for (const char* target : {"reference", "cpu"})
    for (const char* sampling : {"", "--temperature 0.8 --seed 1"}) {
      SCOPED_TRACE(fixture + " --target " + target + " " + sampling);
      TempDir dir;
      auto r = test::run_ferry("run --no-progress --model " + quote(test::oracle_dir(fixture).string()) +
                               " --prompts " + quote(kPrompts) + " --target " + target + " " + sampling + " -o " +
                               quote(dir / "r.jsonl"));
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_NE(r.out.find("(0 failed)"), std::string::npos) << r.out;
      auto results = read_results(dir / "r.jsonl");
      EXPECT_EQ(by_id(results).size(), n);
      for (const auto& j : results) EXPECT_NE(j["finish_reason"], "error") << j.dump();
    }
}

// Every oracle model with a tokenizer: mixtral_spm, and the padded qwen2_moe_bpe, qwen3_moe_bpe, olmoe_bpe.
INSTANTIATE_TEST_SUITE_P(CliModels, CliPaddedVocabModel, ::testing::ValuesIn(fixtures_with_tokenizer()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(CliPaddedVocab, TheOracleModelsIncludeThePaddedOnes) {
  const auto names = fixtures_with_tokenizer();
  for (const char* padded : {"qwen2_moe_bpe", "qwen3_moe_bpe", "olmoe_bpe"}) {
    ASSERT_NE(std::find(names.begin(), names.end(), padded), names.end()) << padded;
    auto tok = load_tokenizer(test::oracle_dir(padded));
    auto cfg = nlohmann::json::parse(slurp(test::oracle_dir(padded) / "config.json"));
    EXPECT_GT(cfg["vocab_size"].get<size_t>(), tok->vocab_size()) << padded << " is no longer padded";
  }
}

TEST(CliPaddedVocab, GenerateOnAPaddedModelCompletes) {
  const std::string model = test::oracle_dir("qwen2_moe_bpe").string();
  auto one = test::run_ferry("generate -q -n 48 --ignore-eos -m " + quote(model) + " -p 'Hello there'");
  EXPECT_EQ(one.exit_code, 0) << one.err;
  auto file = test::run_ferry("generate -q -n 48 --temperature 0.8 --seed 1 -m " + quote(model) + " --prompts " +
                              quote(kPrompts));
  EXPECT_EQ(file.exit_code, 0) << file.err;
  EXPECT_EQ(file.out.find("] error:"), std::string::npos) << file.out;
}

TEST(CliPaddedVocab, AFailedRequestIsCountedAndTheJobGoesOn) {
  TempDir dir;
  std::string longp;
  for (int i = 0; i < 600; ++i) longp += "word ";
  write_file(dir / "p.txt", "one\n" + longp + "\nthree\n");
  auto r = test::run_ferry("run --no-progress -n 4 -m " + quote(kModel) + " --prompts " + quote(dir / "p.txt") +
                           " -o " + quote(dir / "r.jsonl"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.out.find("requests: 3 (1 failed)"), std::string::npos) << r.out;
  auto m = by_id(read_results(dir / "r.jsonl"));
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m["2"]["finish_reason"], "error");
  EXPECT_NE(m["2"]["error"].get<std::string>().find("context"), std::string::npos);
  EXPECT_EQ(m["3"]["finish_reason"], "length");
}

// ---- every write checked ----

TEST(CliWriteFailures, ResultsOnAFullDeviceStopTheJobWithTheReason) {
  auto r = test::run_ferry("run --no-progress -n 4 -m " + quote(kModel) + " --prompts " + quote(kPrompts) +
                           " -o /dev/full");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/dev/full"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("0 of "), std::string::npos) << r.err;  // nothing reported done
  EXPECT_EQ(r.out.find("requests:"), std::string::npos) << r.out;
}

TEST(CliWriteFailures, MetricsOnAFullDeviceIsAnError) {
  TempDir dir;
  auto r = test::run_ferry("run --no-progress -n 4 -m " + quote(kModel) + " --prompts " + quote(kPrompts) + " -o " +
                           quote(dir / "r.jsonl") + " --metrics /dev/full");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("metrics to /dev/full"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_EQ(by_id(read_results(dir / "r.jsonl")).size(), prompt_count());  // the results are whole
}

TEST(CliWriteFailures, MetricsAreWritten) {
  TempDir dir;
  write_file(dir / "m.json", "old contents that are longer than nothing\n");
  auto r = test::run_ferry("run --no-progress -n 2 -m " + quote(kModel) + " --prompts " + quote(kPrompts) + " -o " +
                           quote(dir / "r.jsonl") + " --metrics " + quote(dir / "m.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto m = nlohmann::json::parse(slurp(dir / "m.json"));
  EXPECT_EQ(m["requests"], prompt_count());
  EXPECT_EQ(m["failed"], 0);
}

// An output path that cannot be written is reported before the model loads: with a model directory that
// does not exist, the message is still about the output file.
TEST(CliWriteFailures, AnUnwritableOutputIsReportedBeforeTheModelLoads) {
  TempDir dir;
  fs::create_directory(dir / "ro");
  fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
  std::string read_only = dir / "ro";
  if (access(read_only.c_str(), W_OK) == 0) read_only = "/sys";  // root writes anywhere; sysfs refuses new files
  const std::string bad_model = " --model " + quote(dir / "no-such-model");
  for (const std::string& path : {dir / "missing-dir/r.jsonl", read_only + "/r.jsonl", dir.path().string()}) {
    SCOPED_TRACE(path);
    auto r = test::run_ferry("run --no-progress" + bad_model + " --prompts " + quote(kPrompts) + " -o " + quote(path));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("cannot write results to " + path), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("no-such-model"), std::string::npos) << r.err;
    auto m = test::run_ferry("run --no-progress" + bad_model + " --prompts " + quote(kPrompts) + " -o " +
                             quote(dir / "r.jsonl") + " --metrics " + quote(path));
    EXPECT_EQ(m.exit_code, 1);
    EXPECT_NE(m.err.find("cannot write metrics to " + path), std::string::npos) << m.err;
    EXPECT_FALSE(fs::exists(dir / "r.jsonl"));  // created to check it, removed when the job failed empty
  }
}

TEST(CliWriteFailures, AFailedStartLeavesAnExistingResultsFileAlone) {
  TempDir dir;
  const std::string old = "{\"id\":\"1\",\"text\":\"from before\"}\n";
  write_file(dir / "r.jsonl", old);
  auto r = test::run_ferry("run --no-progress --model " + quote(dir / "no-such-model") + " --prompts " +
                           quote(kPrompts) + " -o " + quote(dir / "r.jsonl") + " --metrics " + quote(dir / "m.json"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no-such-model"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(dir / "r.jsonl"), old);
  EXPECT_FALSE(fs::exists(dir / "m.json"));
}

// A disk that fills up part-way (the file size limit, RLIMIT_FSIZE, makes write() fail with EFBIG):
// the job stops at once naming the file, reports as written exactly the complete lines on disk, and
// --resume then completes it with every id once, as an uninterrupted run would.
TEST(CliWriteFailures, ADiskFillingUpMidJobThenResumeGivesEveryIdOnce) {
  TempDir dir;
  const std::string args = "run --no-progress -n 24 --temperature 0.8 --seed 4 -m " + quote(kModel) + " --prompts " +
                           quote(kPrompts);
  auto whole = test::run_ferry(args + " -o " + quote(dir / "whole.jsonl"));
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  const auto expected = by_id(read_results(dir / "whole.jsonl"));
  ASSERT_EQ(expected.size(), prompt_count());

  const std::string out = dir / "r.jsonl";
  // ulimit -f counts 512-byte blocks in POSIX sh (dash), 1024-byte ones in bash: 2 or 4 KB, a part of the ~7 KB file.
  auto cut = run_shell("trap '' XFSZ; ulimit -f 4; exec " + quote(FERRY_BINARY) + " " + args + " -o " + quote(out));
  EXPECT_EQ(cut.exit_code, 1) << cut.err;
  EXPECT_NE(cut.err.find("cannot write results to " + out), std::string::npos) << cut.err;
  EXPECT_NE(cut.err.find("File too large"), std::string::npos) << cut.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(cut.err, m, std::regex("stopped with ([0-9]+) of ([0-9]+) results written"))) << cut.err;
  const size_t reported = std::stoul(m[1]);
  EXPECT_EQ(std::stoul(m[2]), prompt_count());
  const std::string partial = slurp(out);
  const size_t complete_lines = static_cast<size_t>(std::count(partial.begin(), partial.end(), '\n'));
  EXPECT_EQ(reported, complete_lines);  // reported done == on disk
  EXPECT_LT(complete_lines, prompt_count());
  EXPECT_GT(partial.size(), 0u);

  auto resumed = test::run_ferry(args + " -o " + quote(out) + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(by_id(read_results(out)), expected);
}

// ---- a torn last line ----

class CliTornLine : public ::testing::Test {
 protected:
  void SetUp() override {
    args_ = "run --no-progress -n 16 --temperature 0.8 --seed 7 -m " + quote(kModel) + " --prompts " + quote(kPrompts);
    auto r = test::run_ferry(args_ + " -o " + quote(dir_ / "whole.jsonl"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    whole_ = slurp(dir_ / "whole.jsonl");
    expected_ = by_id(read_results(dir_ / "whole.jsonl"));
    ASSERT_EQ(expected_.size(), prompt_count());
  }
  // The first n lines of the uninterrupted run, then `tail`; resumed; the results must match.
  void resume_after(size_t n, const std::string& tail, bool rerun_without_resume_too = false) {
    size_t end = 0;
    for (size_t i = 0; i < n; ++i) end = whole_.find('\n', end) + 1;
    write_file(dir_ / "r.jsonl", whole_.substr(0, end) + tail);
    auto r = test::run_ferry(args_ + " -o " + quote(dir_ / "r.jsonl") + " --resume");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(tail.empty(), r.err.find("unfinished last line") == std::string::npos) << r.err;
    EXPECT_EQ(by_id(read_results(dir_ / "r.jsonl")), expected_);
    if (rerun_without_resume_too) {
      write_file(dir_ / "r.jsonl", whole_.substr(0, end) + tail);
      auto p = test::run_ferry(args_ + " -o " + quote(dir_ / "r.jsonl"));
      ASSERT_EQ(p.exit_code, 0) << p.err;
      EXPECT_EQ(slurp(dir_ / "r.jsonl"), whole_);
    }
  }
  TempDir dir_;
  std::string args_, whole_;
  std::map<std::string, nlohmann::json> expected_;
};

TEST_F(CliTornLine, AFragmentIsCutAndItsIdRedone) {
  const size_t n = prompt_count() - 1;
  size_t start = 0;
  for (size_t i = 0; i < n; ++i) start = whole_.find('\n', start) + 1;
  const std::string last = whole_.substr(start, whole_.find('\n', start) - start);
  resume_after(n, last.substr(0, last.size() / 2), /*rerun_without_resume_too=*/true);
}

TEST_F(CliTornLine, ACompleteRecordWithoutItsNewlineIsRedoneToo) {
  const size_t n = 5;
  size_t start = 0;
  for (size_t i = 0; i < n; ++i) start = whole_.find('\n', start) + 1;
  resume_after(n, whole_.substr(start, whole_.find('\n', start) - start));  // valid JSON, no '\n'
}

TEST_F(CliTornLine, AFileThatIsOnlyAFragmentIsEmptied) { resume_after(0, "{\"id\":\"3\",\"te"); }

TEST_F(CliTornLine, AWholeFileIsLeftAsItIs) {
  resume_after(prompt_count(), "");
  EXPECT_EQ(slurp(dir_ / "r.jsonl"), whole_);
}

// ---- prompt files ----

TEST(CliPromptFile, InvalidUtf8AndBadMaxTokensNameFileLineAndField) {
  TempDir dir;
  write_file(dir / "p.txt", "fine\nnot \xFF utf-8\n");
  auto r = test::run_ferry("run --no-progress -m " + quote(kModel) + " --prompts " + quote(dir / "p.txt") + " -o " +
                           quote(dir / "r.jsonl"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("p.txt:2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("UTF-8"), std::string::npos) << r.err;
  for (const char* v : {"4294967297", "-3", "2.5"}) {
    write_file(dir / "p.jsonl", std::string("{\"prompt\": \"hi\", \"max_tokens\": ") + v + "}\n");
    auto j = test::run_ferry("run --no-progress -m " + quote(kModel) + " --prompts " + quote(dir / "p.jsonl") +
                             " -o " + quote(dir / "r.jsonl"));
    EXPECT_EQ(j.exit_code, 1) << v;
    EXPECT_NE(j.err.find("p.jsonl:1"), std::string::npos) << j.err;
    EXPECT_NE(j.err.find("max_tokens"), std::string::npos) << j.err;
  }
  auto g = test::run_ferry("generate -m " + quote(kModel) + " --prompts " + quote(dir / "p.txt"));
  EXPECT_EQ(g.exit_code, 1);
  EXPECT_NE(g.err.find("p.txt:2"), std::string::npos) << g.err;
}

}  // namespace
}  // namespace ferry
