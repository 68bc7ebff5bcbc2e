// Added tokens of a tokenizer.json ("added_tokens": <|im_start|>, <s>, ...): found in the text before
// normalization and pre-tokenization, as tokenizers does: leftmost-longest match, with the single_word,
// lstrip, rstrip and normalized flags.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ferry/tokenizer.h"

namespace ferry {

class Normalizer;

struct AddedToken {
  TokenId id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// Reads an "added_tokens" array. Throws ferry::Error naming `where` when malformed.
std::vector<AddedToken> parse_added_tokens(const nlohmann::json& list, const std::string& where);

// A piece of the input: an added token (id set) or text for the model (already normalized).
struct TextSegment {
  std::string text;
  std::optional<TokenId> added_id;
  bool at_text_start = false;  // begins where the input begins
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // `normalizer` (may be null) normalizes the text between added tokens and the content of
  // tokens with normalized=true; it must outlive this object.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Splits `text` into added tokens and normalized text between them (appended to `out`).
  void split(std::string_view text, std::vector<TextSegment>& out) const;

  const AddedToken* find_by_id(TokenId id) const;
  std::optional<TokenId> find_by_content(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }

 private:
  // Byte trie over token contents; leftmost-longest matching as aho-corasick's MatchKind::LeftmostLongest.
  struct Trie {
    std::unordered_map<uint64_t, int32_t> edges;  // (node << 8 | byte) -> child node
    std::vector<int32_t> token_at_node{-1};       // index into tokens_, or -1
    bool first_byte[256] = {};
    bool empty() const { return token_at_node.size() == 1; }
    void insert(std::string_view pattern, int32_t token_index);
    // Longest pattern starting at text[pos]: (length, token index) or (0, -1).
    std::pair<size_t, int32_t> longest_at(std::string_view text, size_t pos) const;
  };
  struct Match {
    size_t start, end;
    int32_t token_index;
  };
  std::vector<Match> find_matches(std::string_view text, const Trie& trie) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<TokenId, size_t> index_by_id_;
  std::unordered_map<std::string, size_t> index_by_content_;
  const Normalizer* normalizer_ = nullptr;
  Trie raw_trie_;         // normalized == false: matched in the input as written
  Trie normalized_trie_;  // normalized == true: matched in normalized text
};

}  // namespace ferry
