// ferry's tokenizer.json reader on small hand-written tokenizers, one behaviour at a time. The expected
// ids follow the rules of the Hugging Face `tokenizers` library (checked against it for these inputs).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/tokenizer.h"

namespace ferry {
namespace {

using nlohmann::json;
using Ids = std::vector<TokenId>;

const json kVocab = {{"a", 0},     {"b", 1},      {"c", 2},
                     {" ", 3},     {"ab", 4},     {"bc", 5},
                     {"abc", 6},   {"<mask>", 7}, {"<|im_start|>", 8},
                     {"hello", 9}, {"x", 10},     {"aa", 11}};

json added(TokenId id, const std::string& content, json flags = json::object()) {
  json t = {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
            {"rstrip", false}, {"normalized", false}, {"special", false}};
  t.update(flags);
  return t;
}

json tokenizer_json(json merges, json added_tokens = json::array(), json model_extra = json::object()) {
  json model = {{"type", "BPE"}, {"vocab", kVocab}, {"merges", std::move(merges)}};
  model.update(model_extra);
  return {{"version", "1.0"},          {"added_tokens", std::move(added_tokens)},
          {"normalizer", nullptr},     {"pre_tokenizer", nullptr},
          {"post_processor", nullptr}, {"decoder", nullptr},
          {"model", std::move(model)}};
}

// Merges as ["a", "b"] pairs (a braced list of pairs would read as a JSON object).
json pairs(std::initializer_list<std::pair<const char*, const char*>> list) {
  json out = json::array();
  for (auto [left, right] : list) out.push_back(json::array({left, right}));
  return out;
}

std::unique_ptr<Tokenizer> load(const json& j) {
  return load_hf_tokenizer_from_json_string(j.dump(), "test.json");
}

TEST(BpeTokenizer, LowerRankMergesApplyFirstWhateverTheirPosition) {
  // "abc": with b+c ranked first the word ends as [a, bc]; with a+b first, as [ab, c].
  EXPECT_EQ(load(tokenizer_json(pairs({{"b", "c"}, {"a", "b"}})))->encode("abc", false), (Ids{0, 5}));
  EXPECT_EQ(load(tokenizer_json(pairs({{"a", "b"}, {"b", "c"}})))->encode("abc", false), (Ids{4, 2}));
  // A merge of merged symbols continues the chain.
  EXPECT_EQ(load(tokenizer_json(pairs({{"b", "c"}, {"a", "bc"}})))->encode("abc", false), (Ids{6}));
}

TEST(BpeTokenizer, ReadsMergesAsStringsOrPairs) {
  const auto as_pairs = load(tokenizer_json(pairs({{"b", "c"}, {"a", "b"}})));
  const auto as_strings = load(tokenizer_json(json::array({"b c", "a b"})));
  for (const char* text : {"abc", "ababc", "cab", "bcbcab"})
    EXPECT_EQ(as_pairs->encode(text, false), as_strings->encode(text, false)) << text;
}

TEST(BpeTokenizer, EqualMergesGoLeftmostFirst) {
  EXPECT_EQ(load(tokenizer_json(pairs({{"a", "a"}})))->encode("aaa", false), (Ids{11, 0}));
}

TEST(BpeTokenizer, LongWordsMergeCorrectly) {
  // 20,000 'a's merge pairwise from the left: 10,000 "aa" tokens (and the merge loop stays fast).
  const auto tokenizer = load(tokenizer_json(pairs({{"a", "a"}})));
  const Ids ids = tokenizer->encode(std::string(20001, 'a'), false);
  ASSERT_EQ(ids.size(), 10001u);
  EXPECT_EQ(ids.front(), 11);
  EXPECT_EQ(ids.back(), 0);
}

TEST(BpeTokenizer, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  // No merge leads to "abc", yet with ignore_merges the word is one token.
  EXPECT_EQ(load(tokenizer_json(pairs({{"a", "b"}}), json::array(), {{"ignore_merges", true}}))
                ->encode("abc", false),
            (Ids{6}));
  EXPECT_EQ(load(tokenizer_json(pairs({{"a", "b"}})))->encode("abc", false), (Ids{4, 2}));
}

TEST(BpeTokenizer, UnknownCharactersUseUnkFusedOrNotOrAreDropped) {
  json vocab_with_unk = kVocab;
  vocab_with_unk["<unk>"] = 12;
  json j = tokenizer_json(json::array());
  j["model"]["vocab"] = vocab_with_unk;
  j["model"]["unk_token"] = "<unk>";
  j["model"]["fuse_unk"] = true;
  EXPECT_EQ(load(j)->encode("aqqb", false), (Ids{0, 12, 1}));
  j["model"]["fuse_unk"] = false;
  EXPECT_EQ(load(j)->encode("aqqb", false), (Ids{0, 12, 12, 1}));
  // Without an unknown token the characters are dropped.
  EXPECT_EQ(load(tokenizer_json(json::array()))->encode("aqqb", false), (Ids{0, 1}));
}

TEST(BpeTokenizer, ByteFallbackSpellsUnknownCharactersAsBytes) {
  json j = tokenizer_json(json::array());
  j["model"]["vocab"]["<0xC3>"] = 20;
  j["model"]["vocab"]["<0xA9>"] = 21;
  j["model"]["byte_fallback"] = true;
  j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  const auto tokenizer = load(j);
  const Ids ids = tokenizer->encode(
      "a\xC3\xA9"
      "b",
      false);  // "aéb"
  EXPECT_EQ(ids, (Ids{0, 20, 21, 1}));
  EXPECT_EQ(tokenizer->decode(ids),
            "a\xC3\xA9"
            "b");
  // A lone lead byte cannot form a character: each such byte becomes U+FFFD.
  EXPECT_EQ(tokenizer->decode(Ids{0, 20, 1}),
            "a\xEF\xBF\xBD"
            "b");
}

TEST(BpeTokenizer, AddedTokensHonourStripAndSingleWordFlags) {
  const auto tokenizer =
      load(tokenizer_json(pairs({{"a", "b"}, {"b", "c"}}),
                          {added(7, "<mask>", {{"lstrip", true}, {"rstrip", true}, {"special", true}}),
                           added(9, "hello", {{"single_word", true}})}));
  // lstrip/rstrip: the spaces around <mask> belong to it.
  EXPECT_EQ(tokenizer->encode("a <mask>  b", false), (Ids{0, 7, 1}));
  EXPECT_EQ(tokenizer->encode("a  <mask>", false), (Ids{0, 7}));
  // single_word: "hello" inside a word is not the added token (its letters are not in the vocabulary).
  EXPECT_EQ(tokenizer->encode("a hello b", false), (Ids{0, 3, 9, 3, 1}));
  EXPECT_EQ(tokenizer->encode("ahello b", false), (Ids{0, 3, 1}));
  EXPECT_EQ(tokenizer->encode("hello_", false), (Ids{}));
  EXPECT_TRUE(tokenizer->is_special(7));
  EXPECT_FALSE(tokenizer->is_special(9));
}

TEST(BpeTokenizer, LongestAddedTokenWins) {
  const auto tokenizer =
      load(tokenizer_json(json::array(), {added(10, "x"), added(8, "<|im_start|>"), added(7, "<|im")}));
  EXPECT_EQ(tokenizer->encode("x<|im_start|>x<|imx", false), (Ids{10, 8, 10, 7, 10}));
}

TEST(BpeTokenizer, NormalizedAddedTokensMatchTheNormalizedText) {
  json j = tokenizer_json(pairs({{"a", "b"}, {"b", "c"}}), {added(9, "hello", {{"normalized", true}})});
  j["normalizer"] = {{"type", "Lowercase"}};
  const auto tokenizer = load(j);
  EXPECT_EQ(tokenizer->encode("HELLO abc", false), (Ids{9, 3, 4, 2}));
  // No decoder: tokens are joined with spaces.
  EXPECT_EQ(tokenizer->decode(Ids{9, 0, 1}), "hello a b");
}

TEST(BpeTokenizer, DecodeRendersOrSkipsSpecialTokens) {
  json j = tokenizer_json(pairs({{"a", "b"}}), {added(8, "<|im_start|>", {{"special", true}})});
  j["decoder"] = {{"type", "Fuse"}};
  const auto tokenizer = load(j);
  const Ids ids = tokenizer->encode("ab<|im_start|>c", false);
  EXPECT_EQ(ids, (Ids{4, 8, 2}));
  EXPECT_EQ(tokenizer->decode(ids), "ab<|im_start|>c");
  EXPECT_EQ(tokenizer->decode(ids, /*skip_special=*/true), "abc");
  EXPECT_EQ(tokenizer->id_to_piece(8), "<|im_start|>");
  EXPECT_EQ(tokenizer->piece_to_id("<|im_start|>"), 8);
  EXPECT_EQ(tokenizer->piece_to_id("zzz"), std::nullopt);
}

TEST(BpeTokenizer, MetaspaceDecoderDropsTheMarkersOfTheFirstTokenOnly) {
  json j = tokenizer_json(json::array());
  j["model"]["vocab"] = {{"\xE2\x96\x81"
                          "a",
                          0},
                         {"\xE2\x96\x81"
                          "b",
                          1},
                         {"c", 2}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}};
  const auto tokenizer = load(j);
  EXPECT_EQ(tokenizer->decode(Ids{0, 1, 2}), "a bc");
  EXPECT_EQ(tokenizer->decode(Ids{2, 1}), "c b");
}

TEST(BpeTokenizer, TemplatePostProcessorSetsBosDefault) {
  json j = tokenizer_json(json::array(), {added(8, "<|im_start|>", {{"special", true}})});
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single",
                          {{{"SpecialToken", {{"id", "<|im_start|>"}, {"type_id", 0}}}},
                           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
  const auto tokenizer = load(j);
  EXPECT_TRUE(tokenizer->add_bos());
  EXPECT_EQ(tokenizer->bos_id(), 8);
  EXPECT_EQ(tokenizer->encode("ab", true), (Ids{8, 0, 1}));
  EXPECT_EQ(tokenizer->encode("ab", false), (Ids{0, 1}));
}

TEST(BpeTokenizer, SplitPreTokenizerKeepsMergesInsideWords) {
  // Split on spaces (Isolated): "ab ab" is [ab][ ][ab], so no merge crosses the space.
  json j = tokenizer_json(pairs({{"a", "b"}, {"b", " "}}));
  j["model"]["vocab"]["b "] = 13;
  EXPECT_EQ(load(j)->encode("ab ab", false), (Ids{4, 3, 4}));
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Removed"}, {"invert", false}};
  EXPECT_EQ(load(j)->encode("ab ab", false), (Ids{4, 4}));
  j["pre_tokenizer"]["behavior"] = "MergedWithPrevious";
  j["model"]["merges"] = pairs({{"b", " "}, {"a", "b"}});
  EXPECT_EQ(load(j)->encode("ab ab", false), (Ids{0, 13, 4}));
}

TEST(BpeTokenizer, RejectsInvalidUtf8Input) {
  const auto tokenizer = load(tokenizer_json(json::array()));
  EXPECT_THROW(tokenizer->encode("a\xFF", false), Error);
  EXPECT_THROW(tokenizer->decode(Ids{99}), Error);
}

}  // namespace
}  // namespace ferry
