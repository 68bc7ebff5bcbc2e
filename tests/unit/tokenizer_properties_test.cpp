// Round trips, BOS/EOS from the config files, streaming across split characters, and the UTF-8 and
// byte-level tables the decoders rely on.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/tokenizer.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Ids = std::vector<TokenId>;

const fs::path kOracles = fs::path(FERRY_TEST_DATA) / "oracles";

std::vector<std::string> corpus() {
  std::ifstream in(fs::path(FERRY_TEST_DATA) / "tokenizers" / "corpus.jsonl");
  std::vector<std::string> texts;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) texts.push_back(json::parse(line).get<std::string>());
  return texts;
}

bool is_ascii(const std::string& s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

// A scratch model directory holding copies of fixture files plus the config files a test writes.
class ScratchDir {
 public:
  ScratchDir() {
    path_ = fs::temp_directory_path() /
            ("ferry_tok_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() { fs::remove_all(path_); }
  void copy_from(const std::string& fixture, const std::string& file) {
    fs::copy_file(kOracles / fixture / file, path_ / file);
  }
  void write(const std::string& file, const std::string& text) { std::ofstream(path_ / file) << text; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(TokenizerRoundTrip, ByteLevelWithoutNormalizerAndSentencePieceReproduceEveryLine) {
  for (const char* fixture : {"olmoe_bpe", "mixtral_spm"}) {
    const auto tokenizer = load_tokenizer(kOracles / fixture);
    for (const std::string& text : corpus())
      EXPECT_EQ(tokenizer->decode(tokenizer->encode(text, false)), text)
          << fixture << ": " << json(text).dump();
  }
}

TEST(TokenizerRoundTrip, NfcTokenizerReproducesTheNfcFormOnly) {
  const auto tokenizer = load_tokenizer(kOracles / "qwen2_moe_bpe");
  size_t n_changed = 0;
  for (const std::string& text : corpus()) {
    const std::string once = tokenizer->decode(tokenizer->encode(text, false));
    // What comes back is normalized already: a second round trip changes nothing.
    EXPECT_EQ(tokenizer->decode(tokenizer->encode(once, false)), once) << json(text).dump();
    if (once != text) {
      ++n_changed;
      EXPECT_FALSE(is_ascii(text)) << "NFC leaves ASCII alone: " << json(text).dump();
    }
  }
  EXPECT_EQ(n_changed, 10u);  // the lines tests/data/tokenizers/README.md lists as changed by NFC
  // "e" + COMBINING ACUTE ACCENT composes to U+00E9.
  EXPECT_EQ(tokenizer->decode(tokenizer->encode("cafe\xCC\x81", false)), "caf\xC3\xA9");
}

TEST(TokenizerRoundTrip, MixtralTokenizerJsonAgreesWithSentencePieceExceptOnSpacesAndControlNames) {
  // Read by ferry's own tokenizer.json path, the converted Mixtral tokenizer gives the SentencePiece ids on
  // all lines but the 38 that tests/data/tokenizers/README.md explains (whitespace runs, "<s>" in text).
  std::ifstream file(kOracles / "mixtral_spm" / "tokenizer.json");
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const auto hf = load_hf_tokenizer_from_json_string(text, "mixtral tokenizer.json");
  const auto spm = load_tokenizer(kOracles / "mixtral_spm");
  EXPECT_EQ(hf->kind(), "bpe");
  size_t n_same = 0;
  for (const std::string& line : corpus()) n_same += hf->encode(line, false) == spm->encode(line, false);
  EXPECT_EQ(n_same, 282u);
  EXPECT_EQ(hf->encode("two  spaces", false),
            (Ids{*hf->piece_to_id("\xE2\x96\x81two"), *hf->piece_to_id("\xE2\x96\x81\xE2\x96\x81"),
                 *hf->piece_to_id("sp"), *hf->piece_to_id("aces")}));
}

TEST(TokenizerSpecialTokens, MixtralAddsBosFromTokenizerConfig) {
  const auto tokenizer = load_tokenizer(kOracles / "mixtral_spm");
  EXPECT_EQ(tokenizer->kind(), "sentencepiece");
  EXPECT_TRUE(tokenizer->add_bos());
  EXPECT_FALSE(tokenizer->add_eos());
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_ids(), Ids{2});
  EXPECT_EQ(tokenizer->vocab_size(), 32000u);
  EXPECT_EQ(tokenizer->encode("Hello world", true), (Ids{1, 22557, 1526}));
  EXPECT_EQ(tokenizer->encode("Hello world", false), (Ids{22557, 1526}));
  EXPECT_EQ(tokenizer->decode(Ids{1, 22557, 1526, 2}), "Hello world");
  EXPECT_TRUE(tokenizer->is_special(0) && tokenizer->is_special(1) && tokenizer->is_special(2));
  EXPECT_FALSE(tokenizer->is_special(22557));
  EXPECT_EQ(tokenizer->id_to_piece(22557), "\xE2\x96\x81Hello");
  EXPECT_EQ(tokenizer->piece_to_id("\xE2\x96\x81Hello"), 22557);
  EXPECT_EQ(tokenizer->piece_to_id("no such piece"), std::nullopt);
  // "<s>" typed in a prompt is text, not the control token.
  const Ids ids = tokenizer->encode("<s>", false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 0);
}

TEST(TokenizerSpecialTokens, QwenHasNoBosAndMatchesChatTokensInText) {
  const auto tokenizer = load_tokenizer(kOracles / "qwen2_moe_bpe");
  EXPECT_FALSE(tokenizer->add_bos());
  EXPECT_EQ(tokenizer->bos_id(), std::nullopt);
  EXPECT_EQ(tokenizer->eos_ids(), Ids{1500});
  EXPECT_EQ(tokenizer->vocab_size(), 1503u);
  EXPECT_EQ(tokenizer->encode("hi", true), tokenizer->encode("hi", false));
  const Ids ids = tokenizer->encode("<|im_start|>user\nhi<|im_end|>", true);
  EXPECT_EQ(ids.front(), 1501);
  EXPECT_EQ(ids.back(), 1502);
  for (TokenId id : {1500, 1501, 1502}) EXPECT_TRUE(tokenizer->is_special(id)) << id;
  EXPECT_EQ(tokenizer->decode(ids, /*skip_special=*/true), "user\nhi");
}

TEST(TokenizerSpecialTokens, TokenizerConfigAcceptsContentObjectsAndAddFlags) {
  ScratchDir dir;
  dir.copy_from("qwen2_moe_bpe", "tokenizer.json");
  dir.write("tokenizer_config.json", R"({"bos_token": {"content": "<|im_start|>", "special": true},
      "eos_token": {"content": "<|im_end|>"}, "add_bos_token": true, "add_eos_token": true})");
  dir.write("config.json", R"({"bos_token_id": 1500, "eos_token_id": [1500, 1502]})");
  const auto tokenizer = load_tokenizer(dir.path());
  EXPECT_EQ(tokenizer->bos_id(), 1501);                // tokenizer_config wins over config.json
  EXPECT_EQ(tokenizer->eos_ids(), (Ids{1502, 1500}));  // its eos first, then config.json's others
  const Ids ids = tokenizer->encode("hi", true);
  EXPECT_EQ(ids.front(), 1501);
  EXPECT_EQ(ids.back(), 1502);
  EXPECT_EQ(ids.size(), tokenizer->encode("hi", false).size() + 2);
}

TEST(TokenizerSpecialTokens, ConfigJsonIsTheFallback) {
  ScratchDir dir;
  dir.copy_from("qwen2_moe_bpe", "tokenizer.json");
  dir.write("config.json", R"({"bos_token_id": 1501, "eos_token_id": [1500, 1502]})");
  const auto tokenizer = load_tokenizer(dir.path());
  EXPECT_EQ(tokenizer->bos_id(), 1501);
  EXPECT_EQ(tokenizer->eos_ids(), (Ids{1500, 1502}));
  EXPECT_FALSE(tokenizer->add_bos());  // nothing asks for it: a byte-level BPE file adds no BOS by default
  EXPECT_TRUE(tokenizer->is_eos(1502));
}

TEST(TokenizerSpecialTokens, SentencePieceBosCanBeTurnedOff) {
  ScratchDir dir;
  dir.copy_from("mixtral_spm", "tokenizer.model");
  dir.write("tokenizer_config.json", R"({"add_bos_token": false, "bos_token": "<s>", "eos_token": "</s>"})");
  const auto tokenizer = load_tokenizer(dir.path());
  EXPECT_FALSE(tokenizer->add_bos());
  EXPECT_EQ(tokenizer->encode("Hello world", true), (Ids{22557, 1526}));
  // Without tokenizer.json or configs, a SentencePiece model adds its own BOS.
  ScratchDir bare;
  bare.copy_from("mixtral_spm", "tokenizer.model");
  EXPECT_EQ(load_tokenizer(bare.path())->encode("Hello world", true), (Ids{1, 22557, 1526}));
}

TEST(TokenizerStreaming, EmojiSplitOverByteTokensIsEmittedWhole) {
  for (const char* fixture : {"olmoe_bpe", "qwen2_moe_bpe", "mixtral_spm"}) {
    const auto tokenizer = load_tokenizer(kOracles / fixture);
    const std::string text = "ok \xF0\x9F\xA6\x80 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD!";  // "ok 🦀 👍🏽!"
    const Ids ids = tokenizer->encode(text, false);
    StreamingDecoder stream(*tokenizer);
    std::string streamed;
    size_t n_empty = 0;
    for (TokenId id : ids) {
      const std::string piece = stream.push(id);
      EXPECT_TRUE(utf8::is_valid(piece)) << fixture;
      n_empty += piece.empty();
      streamed += piece;
    }
    streamed += stream.finish();
    EXPECT_EQ(streamed, text) << fixture;
    EXPECT_GT(n_empty, 0u) << fixture << ": expected the emoji to span several tokens";
  }
}

TEST(TokenizerStreaming, UnfinishedCharacterBecomesReplacementAtTheEnd) {
  const auto tokenizer = load_tokenizer(kOracles / "olmoe_bpe");
  const Ids ids = tokenizer->encode("\xF0\x9F\xA6\x80", false);
  ASSERT_GE(ids.size(), 2u);
  StreamingDecoder stream(*tokenizer);
  EXPECT_EQ(stream.push(ids[0]), "");
  EXPECT_EQ(stream.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(tokenizer->decode(Ids{ids[0]}), "\xEF\xBF\xBD");
}

TEST(TokenizerThreads, ConcurrentEncodesAgreeWithASingleThread) {
  // encode() is const and shared by the engine's threads (word cache and regex state are thread-safe).
  const auto tokenizer = load_tokenizer(kOracles / "qwen2_moe_bpe");
  const std::vector<std::string> texts = corpus();
  std::vector<Ids> expected;
  for (const std::string& text : texts) expected.push_back(tokenizer->encode(text, false));
  std::vector<size_t> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < mismatches.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round)
        for (size_t i = 0; i < texts.size(); ++i)
          mismatches[t] += tokenizer->encode(texts[i], false) != expected[i];
    });
  }
  for (auto& thread : threads) thread.join();
  for (size_t m : mismatches) EXPECT_EQ(m, 0u);
}

TEST(Utf8Repair, MaximalSubpartOrPerByte) {
  // Python's bytes.decode(errors="replace") and Rust's from_utf8_lossy replace maximal subparts;
  // SentencePiece replaces every byte.
  const std::string truncated_then_ascii =
      "\xF0\x9F"
      "A";
  EXPECT_EQ(utf8::repaired(truncated_then_ascii, Utf8Repair::kMaximalSubpart),
            "\xEF\xBF\xBD"
            "A");
  EXPECT_EQ(utf8::repaired(truncated_then_ascii, Utf8Repair::kPerByte),
            "\xEF\xBF\xBD\xEF\xBF\xBD"
            "A");
  // A surrogate encoding is three ill-formed subparts either way.
  EXPECT_EQ(utf8::repaired("\xED\xA0\x80", Utf8Repair::kMaximalSubpart),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8::repaired("caf\xC3\xA9", Utf8Repair::kPerByte), "caf\xC3\xA9");
  EXPECT_FALSE(utf8::is_valid("\xC0\xAF"));  // overlong '/'
  EXPECT_TRUE(utf8::is_valid("\xF4\x8F\xBF\xBF"));
  EXPECT_FALSE(utf8::is_valid("\xF4\x90\x80\x80"));  // beyond U+10FFFF
}

TEST(ByteLevelTable, IsTheGpt2Table) {
  EXPECT_EQ(byte_level::char_of_byte(' '), "\xC4\xA0");   // 'Ġ' U+0120
  EXPECT_EQ(byte_level::char_of_byte('\n'), "\xC4\x8A");  // 'Ċ' U+010A
  EXPECT_EQ(byte_level::char_of_byte('a'), "a");
  EXPECT_EQ(byte_level::char_of_byte(0xAD), "\xC5\x83");  // 'Ń' U+0143 (soft hyphen is not printable)
  EXPECT_EQ(byte_level::char_of_byte(0xE9), "\xC3\xA9");  // printable Latin-1 maps to itself
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
  std::string encoded, decoded;
  byte_level::append_encoded(encoded, all_bytes);
  ASSERT_TRUE(byte_level::append_decoded(decoded, encoded));
  EXPECT_EQ(decoded, all_bytes);
  EXPECT_FALSE(byte_level::append_decoded(decoded, "\xE2\x96\x81"));  // '▁' is not in the table
}

}  // namespace
}  // namespace ferry
