// Every corpus line through every fixture tokenizer must give exactly the ids (and decoded text) that the
// reference Python libraries produced (tests/data/tokenizers/README.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/tokenizer.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kTokenizerData = fs::path(FERRY_TEST_DATA) / "tokenizers";
const fs::path kOracles = fs::path(FERRY_TEST_DATA) / "oracles";

std::vector<json> read_jsonl(const fs::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(json::parse(line));
  return lines;
}

std::vector<std::string> corpus() {
  std::vector<std::string> texts;
  for (const json& j : read_jsonl(kTokenizerData / "corpus.jsonl")) texts.push_back(j.get<std::string>());
  return texts;
}

struct Fixture {
  const char* model_dir;      // under tests/data/oracles
  const char* expected_file;  // under tests/data/tokenizers
  const char* kind;
};
// gtest prints parameters in test listings; name the fixture instead of dumping its bytes.
void PrintTo(const Fixture& f, std::ostream* os) { *os << f.model_dir; }

class TokenizerFixture : public ::testing::TestWithParam<Fixture> {};

TEST_P(TokenizerFixture, EncodesEveryCorpusLineToTheReferenceIds) {
  const Fixture& f = GetParam();
  const auto tokenizer = load_tokenizer(kOracles / f.model_dir);
  EXPECT_EQ(tokenizer->kind(), f.kind);
  const std::vector<std::string> texts = corpus();
  const std::vector<json> expected = read_jsonl(kTokenizerData / f.expected_file);
  ASSERT_GE(texts.size(), 220u);
  ASSERT_EQ(texts.size(), expected.size());
  size_t n_identical = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::vector<TokenId> ids = tokenizer->encode(texts[i], /*add_special=*/false);
    const auto want = expected[i]["ids"].get<std::vector<TokenId>>();
    EXPECT_EQ(ids, want) << "line " << i + 1 << ": " << json(texts[i]).dump();
    n_identical += ids == want;
  }
  EXPECT_EQ(n_identical, texts.size());
  RecordProperty("identical_lines", std::to_string(n_identical) + "/" + std::to_string(texts.size()));
}

TEST_P(TokenizerFixture, DecodesReferenceIdsToTheReferenceText) {
  const Fixture& f = GetParam();
  const auto tokenizer = load_tokenizer(kOracles / f.model_dir);
  for (const json& line : read_jsonl(kTokenizerData / f.expected_file)) {
    const auto ids = line["ids"].get<std::vector<TokenId>>();
    EXPECT_EQ(tokenizer->decode(ids), line["decoded"].get<std::string>()) << line.dump();
  }
}

// Streaming token by token (emoji and CJK arrive as several byte tokens) gives the same text as decoding
// the whole sequence at once, and never emits a partial character.
TEST_P(TokenizerFixture, StreamingDecodeConcatenatesToTheFullDecode) {
  const Fixture& f = GetParam();
  const auto tokenizer = load_tokenizer(kOracles / f.model_dir);
  StreamingDecoder stream(*tokenizer);
  size_t n_partial_tokens = 0;  // tokens that ended inside a character
  for (const std::string& text : corpus()) {
    for (bool with_bos : {false, true}) {
      const std::vector<TokenId> ids = tokenizer->encode(text, with_bos);
      stream.reset();
      std::string streamed;
      for (TokenId id : ids) {
        const std::string piece = stream.push(id);
        DecodeState fresh;
        n_partial_tokens += piece.empty() && !tokenizer->token_bytes(id, fresh).empty();
        streamed += piece;
      }
      streamed += stream.finish();
      EXPECT_EQ(streamed, tokenizer->decode(ids)) << json(text).dump();
    }
  }
  EXPECT_GT(n_partial_tokens, 0u) << "the corpus should contain characters split over several tokens";
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, TokenizerFixture,
    ::testing::Values(
        Fixture{"mixtral_spm", "mixtral_spm.expected.jsonl", "sentencepiece"},
        Fixture{"qwen2_moe_bpe", "qwen2_moe_bpe.expected.jsonl", "bpe"},
        // The same tokenizer as qwen2_moe_bpe (README), loaded from its own directory and config files.
        Fixture{"qwen3_moe_bpe", "qwen2_moe_bpe.expected.jsonl", "bpe"},
        Fixture{"olmoe_bpe", "olmoe_bpe.expected.jsonl", "bpe"}),
    [](const ::testing::TestParamInfo<Fixture>& info) { return std::string(info.param.model_dir); });

}  // namespace
}  // namespace ferry
