#include "tokenizer/added_vocabulary.h"

#include "tokenizer/json_fields.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/utf8.h"

namespace ferry {
namespace {

using namespace json_fields;

char32_t last_code_point(std::string_view s) {
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return utf8::next_code_point(s, start);
}

// Start of the run of white space that ends `s`.
size_t trailing_space_start(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    if (!utf8::is_white_space(utf8::next_code_point(s, pos))) break;
    end = start;
  }
  return end;
}

// Length of the run of white space that starts `s`.
size_t leading_space_length(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = pos;
    if (!utf8::is_white_space(utf8::next_code_point(s, next))) break;
    pos = next;
  }
  return pos;
}

}  // namespace

std::vector<AddedToken> parse_added_tokens(const json& list, const std::string& where) {
  std::vector<AddedToken> tokens;
  if (list.is_null()) return tokens;
  if (!list.is_array()) fail(where, "expected an array, found " + type_name(list));
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    const json& j = require_object(list[i], at);
    AddedToken t;
    const int64_t id = get_int_or(j, "id", -1, at);
    if (!find(j, "id")) fail(at, "missing field \"id\"");
    if (id < 0 || id > (int64_t{1} << 24)) fail(at + ".id", "out of range: " + std::to_string(id));
    t.id = static_cast<TokenId>(id);
    t.content = get_string(j, "content", at);
    if (!utf8::is_valid(t.content)) fail(at + ".content", "not valid UTF-8");
    t.single_word = get_bool_or(j, "single_word", false, at);
    t.lstrip = get_bool_or(j, "lstrip", false, at);
    t.rstrip = get_bool_or(j, "rstrip", false, at);
    t.special = get_bool_or(j, "special", false, at);
    t.normalized = get_bool_or(j, "normalized", !t.special, at);
    tokens.push_back(std::move(t));
  }
  return tokens;
}

void AddedVocabulary::Trie::insert(std::string_view pattern, int32_t token_index) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (char c : pattern) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(c);
    auto it = edges.find(key);
    if (it == edges.end()) {
      const auto child = static_cast<int32_t>(token_at_node.size());
      token_at_node.push_back(-1);
      it = edges.emplace(key, child).first;
    }
    node = it->second;
  }
  if (token_at_node[node] < 0) token_at_node[node] = token_index;  // first of equal patterns wins
  first_byte[static_cast<uint8_t>(pattern[0])] = true;
}

std::pair<size_t, int32_t> AddedVocabulary::Trie::longest_at(std::string_view text, size_t pos) const {
  std::pair<size_t, int32_t> best{0, -1};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = edges.find((static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(text[i]));
    if (it == edges.end()) break;
    node = it->second;
    if (token_at_node[node] >= 0) best = {i + 1 - pos, token_at_node[node]};
  }
  return best;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : normalizer_(normalizer) {
  // Later entries with the same content or id replace earlier ones, as when tokens are re-added.
  for (auto& t : tokens) {
    if (t.content.empty()) continue;
    if (auto it = index_by_content_.find(t.content); it != index_by_content_.end()) {
      index_by_id_.erase(tokens_[it->second].id);
      tokens_[it->second] = std::move(t);
      index_by_id_[tokens_[it->second].id] = it->second;
      continue;
    }
    index_by_content_[t.content] = tokens_.size();
    index_by_id_[t.id] = tokens_.size();
    tokens_.push_back(std::move(t));
  }
  // Special tokens come first in the tries, as in tokenizers (matters only for equal patterns).
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const AddedToken& t = tokens_[i];
      if (t.special != (pass == 0)) continue;
      if (!t.normalized) {
        raw_trie_.insert(t.content, static_cast<int32_t>(i));
      } else {
        std::string pattern = t.content;
        if (normalizer_) normalizer_->normalize(pattern);
        normalized_trie_.insert(pattern, static_cast<int32_t>(i));
      }
    }
  }
}

const AddedToken* AddedVocabulary::find_by_id(TokenId id) const {
  auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<TokenId> AddedVocabulary::find_by_content(std::string_view content) const {
  auto it = index_by_content_.find(std::string(content));
  if (it == index_by_content_.end()) return std::nullopt;
  return tokens_[it->second].id;
}

std::vector<AddedVocabulary::Match> AddedVocabulary::find_matches(std::string_view text,
                                                                  const Trie& trie) const {
  std::vector<Match> matches;
  if (trie.empty()) return matches;
  size_t start_offset = 0;  // end of the previous accepted match
  size_t pos = 0;
  while (pos < text.size()) {
    if (!trie.first_byte[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    const auto [length, token_index] = trie.longest_at(text, pos);
    if (length == 0) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + length;
    pos = stop;  // matches never overlap, even when one is discarded below
    const AddedToken& t = tokens_[token_index];
    if (t.single_word) {
      const bool word_before = start > 0 && utf8::is_word_char(last_code_point(text.substr(0, start)));
      size_t after = stop;
      const bool word_after = stop < text.size() && utf8::is_word_char(utf8::next_code_point(text, after));
      if (word_before || word_after) continue;
    }
    if (t.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), start_offset);
    if (t.rstrip) stop += leading_space_length(text.substr(stop));
    matches.push_back({start, stop, token_index});
    start_offset = stop;
  }
  return matches;
}

void AddedVocabulary::split(std::string_view text, std::vector<TextSegment>& out) const {
  // 1. Tokens matched in the text as written; 2. the text between them is normalized, then
  // 3. tokens with normalized=true are matched in it.
  auto add_normalized = [&](std::string_view raw, bool at_text_start) {
    std::string normalized(raw);
    if (normalizer_) normalizer_->normalize(normalized);
    size_t prev = 0;
    for (const Match& m : find_matches(normalized, normalized_trie_)) {
      if (prev < m.start)
        out.push_back({normalized.substr(prev, m.start - prev), std::nullopt, at_text_start && prev == 0});
      out.push_back({std::string(), tokens_[m.token_index].id, false});
      prev = m.end;
    }
    if (prev < normalized.size())
      out.push_back({normalized.substr(prev), std::nullopt, at_text_start && prev == 0});
  };
  size_t prev = 0;
  for (const Match& m : find_matches(text, raw_trie_)) {
    if (prev < m.start) add_normalized(text.substr(prev, m.start - prev), prev == 0);
    out.push_back({std::string(), tokens_[m.token_index].id, false});
    prev = std::max(prev, m.end);
  }
  if (prev < text.size() || text.empty()) add_normalized(text.substr(prev), prev == 0);
}

}  // namespace ferry
