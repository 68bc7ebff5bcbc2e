// `ferry tokenize` on the fixture models: the llama-tokenize style listing and the --ids form.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

namespace ferry {
namespace {

namespace fs = std::filesystem;

const fs::path kOracles = fs::path(FERRY_TEST_DATA) / "oracles";

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr
};

CommandResult run_ferry(const std::string& args) {
  const std::string command = std::string("'") + FERRY_BINARY + "' " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string model_arg(const char* fixture) {
  return "--model '" + (kOracles / fixture).string() + "'";
}

TEST(TokenizeCommand, ListsOneTokenPerLineWithBos) {
  const CommandResult run = run_ferry("tokenize " + model_arg("mixtral_spm") + " 'Hello world'");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.output,
            "     1 -> '<s>'\n"
            " 22557 -> ' Hello'\n"
            "  1526 -> ' world'\n");
}

TEST(TokenizeCommand, PrintsIdsOnlyAndCanDropBos) {
  CommandResult run = run_ferry("tokenize --ids --no-bos " + model_arg("mixtral_spm") + " 'Hello world'");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.output, "[22557, 1526]\n");
  run = run_ferry("tokenize --ids " + model_arg("mixtral_spm") + " 'Hello world'");
  EXPECT_EQ(run.output, "[1, 22557, 1526]\n");
}

TEST(TokenizeCommand, EscapesControlCharactersAndPartialBytes) {
  // Byte-level BPE: the newline shows as \n, the special token by name; an emoji that is split over
  // byte tokens shows its bytes escaped.
  const CommandResult run = run_ferry("tokenize " + model_arg("qwen2_moe_bpe") +
                                      " \"$(printf '<|im_start|>user\\n\\360\\237\\246\\200')\"");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.output.rfind("  1501 -> '<|im_start|>'\n", 0), 0u) << run.output;
  EXPECT_NE(run.output.find(" -> '\\n'\n"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("'\\xf0"), std::string::npos) << run.output;
}

TEST(TokenizeCommand, MissingTokenizerIsAnErrorNamingTheDirectory) {
  const fs::path empty = fs::temp_directory_path() / "ferry_tokenize_cli_empty";
  fs::create_directories(empty);
  const CommandResult run = run_ferry("tokenize --model '" + empty.string() + "' hi");
  fs::remove_all(empty);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.output.find(empty.string() + ": no tokenizer found"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace ferry
