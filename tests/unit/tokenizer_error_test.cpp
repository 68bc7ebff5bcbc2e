// Missing or malformed tokenizer files give a ferry::Error that names the file and what is wrong.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/tokenizer.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kOracles = fs::path(FERRY_TEST_DATA) / "oracles";

// The message of the ferry::Error that `load` throws ("" and a test failure if it does not throw).
template <typename F>
std::string error_of(F load) {
  try {
    load();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ferry::Error thrown";
  return "";
}

class TokenizerErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ferry_tok_err_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& file, const std::string& text) { std::ofstream(dir_ / file) << text; }
  // The qwen2 fixture's tokenizer.json with one change applied.
  std::string qwen_json_with(const std::function<void(json&)>& change) {
    std::ifstream in(kOracles / "qwen2_moe_bpe" / "tokenizer.json");
    json j = json::parse(in);
    change(j);
    return j.dump();
  }
  fs::path dir_;
};

TEST_F(TokenizerErrors, DirectoryWithoutTokenizerFilesIsNamed) {
  const std::string message = error_of([&] { load_tokenizer(dir_); });
  EXPECT_NE(message.find(dir_.string()), std::string::npos) << message;
  EXPECT_NE(message.find("tokenizer.model or tokenizer.json"), std::string::npos) << message;
  const std::string missing = error_of([&] { load_tokenizer(dir_ / "nope"); });
  EXPECT_NE(missing.find((dir_ / "nope").string()), std::string::npos) << missing;
}

TEST_F(TokenizerErrors, TruncatedJsonNamesTheFile) {
  write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0)");
  const std::string message = error_of([&] { load_tokenizer(dir_); });
  EXPECT_NE(message.find((dir_ / "tokenizer.json").string()), std::string::npos) << message;
  EXPECT_NE(message.find("not valid JSON"), std::string::npos) << message;
}

TEST_F(TokenizerErrors, MalformedFieldsAreNamed) {
  struct Case {
    std::function<void(json&)> change;
    std::string expected;  // must appear in the message
  };
  const std::vector<Case> cases = {
      {[](json& j) { j.erase("model"); }, "missing field \"model\""},
      {[](json& j) { j["model"]["vocab"] = json::array(); }, "model.vocab: expected an object"},
      {[](json& j) { j["model"]["vocab"]["zz"] = "seven"; }, "the id of token \"zz\" is not an integer"},
      {[](json& j) {
         j["model"]["merges"][0] = json::array({"nosuchtoken", "a"});
       },
       "model.merges[0]: token \"nosuchtoken\" is not in the vocabulary"},
      {[](json& j) { j["model"]["merges"][1] = "a b c"; }, "model.merges[1]: expected two tokens"},
      {[](json& j) { j["model"]["type"] = "Unigram"; }, "model type \"Unigram\" is not supported"},
      {[](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; },
       "pre_tokenizer.pretokenizers[0].pattern: the regular expression does not compile"},
      {[](json& j) { j["pre_tokenizer"]["pretokenizers"][1]["type"] = "Punctuation"; },
       "pre-tokenizer type \"Punctuation\" is not supported"},
      {[](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways"; },
       "unknown split behavior \"Sideways\""},
      {[](json& j) {
         j["normalizer"] = {{"type", "Precompiled"}};
       },
       "normalizer type \"Precompiled\""},
      {[](json& j) {
         j["decoder"] = {{"type", "CTC"}};
       },
       "decoder type \"CTC\""},
      {[](json& j) { j["added_tokens"][0].erase("content"); }, "added_tokens[0]: missing field \"content\""},
      {[](json& j) { j["added_tokens"][1]["special"] = "yes"; },
       "added_tokens[1].special: expected true or false"},
  };
  for (const Case& c : cases) {
    const std::string text = qwen_json_with(c.change);
    const std::string message =
        error_of([&] { load_hf_tokenizer_from_json_string(text, "my/tokenizer.json"); });
    EXPECT_EQ(message.rfind("my/tokenizer.json", 0), 0u) << message;
    EXPECT_NE(message.find(c.expected), std::string::npos)
        << "expected \"" << c.expected << "\" in: " << message;
  }
}

TEST_F(TokenizerErrors, CorruptSentencePieceModelNamesTheFile) {
  write("tokenizer.model", "this is not a protobuf");
  const std::string message = error_of([&] { load_tokenizer(dir_); });
  EXPECT_NE(message.find((dir_ / "tokenizer.model").string()), std::string::npos) << message;
}

TEST_F(TokenizerErrors, ConfigNamingAnUnknownTokenIsReported) {
  fs::copy_file(kOracles / "qwen2_moe_bpe" / "tokenizer.json", dir_ / "tokenizer.json");
  write("tokenizer_config.json", R"({"eos_token": "<|not_a_token|>"})");
  const std::string message = error_of([&] { load_tokenizer(dir_); });
  EXPECT_NE(message.find("tokenizer_config.json"), std::string::npos) << message;
  EXPECT_NE(message.find("<|not_a_token|>"), std::string::npos) << message;
  write("tokenizer_config.json", "{}");
  write("config.json", R"({"eos_token_id": 99999})");
  const std::string out_of_range = error_of([&] { load_tokenizer(dir_); });
  EXPECT_NE(out_of_range.find("config.json.eos_token_id"), std::string::npos) << out_of_range;
}

TEST_F(TokenizerErrors, ArbitraryJsonShapesNeverCrash) {
  // Wrong types at every level are errors, not crashes.
  for (const char* text :
       {"[]", "null", "3", R"({"model": 3})", R"({"model": {"vocab": {}, "merges": 7}})",
        R"({"model": {"vocab": {"a": -1}}})", R"({"model": {"vocab": {"a": 99999999}}})",
        R"({"model": {"vocab": {}}, "added_tokens": {}})",
        R"({"model": {"vocab": {}}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": 1}})",
        R"({"model": {"vocab": {}}, "normalizer": {"type": "Replace", "pattern": {"X": 1}}})",
        R"({"model": 55E555})" /* a number too large for a double (found by fuzzing) */}) {
    EXPECT_THROW(load_hf_tokenizer_from_json_string(text, "t.json"), Error) << text;
  }
}

}  // namespace
}  // namespace ferry
