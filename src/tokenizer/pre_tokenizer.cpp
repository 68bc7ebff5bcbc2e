#include "tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <utility>

#include "tokenizer/byte_level.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"

namespace ferry {
namespace {

using namespace json_fields;

constexpr int kMaxNesting = 16;
constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581 '▁'

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct Segment {
  size_t start, end;
  bool is_match;
};

// Splits `text` at the matches of `regex` as tokenizers' Split does: the matches and the text between
// them form segments; `invert` swaps which are matches; `behavior` decides what happens to matches.
std::vector<std::pair<size_t, size_t>> split_ranges(const Regex& regex, std::string_view text,
                                                    SplitBehavior behavior, bool invert) {
  std::vector<Segment> segments;
  if (text.empty()) {
    segments.push_back({0, 0, false});
  } else {
    std::vector<std::pair<size_t, size_t>> matches;
    regex.find_all(text, matches);
    size_t prev = 0;
    for (auto [start, end] : matches) {
      if (prev != start) segments.push_back({prev, start, false});
      segments.push_back({start, end, true});
      prev = end;
    }
    if (prev != text.size()) segments.push_back({prev, text.size(), false});
  }
  if (invert)
    for (auto& s : segments) s.is_match = !s.is_match;

  std::vector<std::pair<size_t, size_t>> out;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const auto& s : segments) out.emplace_back(s.start, s.end);
      break;
    case SplitBehavior::kRemoved:
      for (const auto& s : segments)
        if (!s.is_match) out.emplace_back(s.start, s.end);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const auto& s : segments) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().second = s.end;
        } else {
          out.emplace_back(s.start, s.end);
        }
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().first = it->start;
        } else {
          out.emplace_back(it->start, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const auto& s : segments) {
        if (s.is_match == previous_match && !out.empty()) {
          out.back().second = s.end;
        } else {
          out.emplace_back(s.start, s.end);
        }
        previous_match = s.is_match;
      }
      break;
    }
  }
  return out;
}

void split_pieces(std::vector<PreToken>& pieces, const Regex& regex, SplitBehavior behavior, bool invert) {
  std::vector<PreToken> out;
  out.reserve(pieces.size() * 2);
  for (auto& piece : pieces) {
    bool first = true;
    for (auto [start, end] : split_ranges(regex, piece.text, behavior, invert)) {
      if (start == end) continue;
      out.push_back({piece.text.substr(start, end - start), piece.at_text_start && first && start == 0});
      first = false;
    }
  }
  pieces = std::move(out);
}

SplitBehavior parse_behavior(const json& j, const std::string& where) {
  const std::string name = get_string(j, "behavior", where);
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  fail(where + ".behavior", "unknown split behavior \"" + name + "\"");
}

class Split final : public PreTokenizer {
 public:
  Split(std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    split_pieces(pieces, *regex_, behavior_, invert_);
  }

 private:
  std::unique_ptr<Regex> regex_;
  SplitBehavior behavior_;
  bool invert_;
};

// Optional prefix space, optional GPT-2 split, then every byte shown as its byte-level character.
class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space),
        regex_(use_regex ? std::make_unique<Regex>(kGpt2SplitPattern, false, where) : nullptr) {}
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    if (add_prefix_space_) {
      for (auto& piece : pieces)
        if (piece.text.empty() || piece.text[0] != ' ') piece.text.insert(0, 1, ' ');
    }
    if (regex_) split_pieces(pieces, *regex_, SplitBehavior::kIsolated, false);
    for (auto& piece : pieces) {
      std::string encoded;
      encoded.reserve(piece.text.size() * 2);
      byte_level::append_encoded(encoded, piece.text);
      piece.text = std::move(encoded);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

// SentencePiece-style: spaces become the replacement character ('▁'), optionally prepended.
class Metaspace final : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split, const std::string& where)
      : replacement_(std::move(replacement)),
        scheme_(scheme),
        split_regex_(split ? std::make_unique<Regex>(replacement_, true, where) : nullptr) {}
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    for (auto& piece : pieces) {
      std::string replaced;
      replaced.reserve(piece.text.size() + replacement_.size());
      for (char c : piece.text) {
        if (c == ' ') {
          replaced.append(replacement_);
        } else {
          replaced.push_back(c);
        }
      }
      const bool prepend =
          scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && piece.at_text_start);
      if (prepend && replaced.compare(0, replacement_.size(), replacement_) != 0)
        replaced.insert(0, replacement_);
      piece.text = std::move(replaced);
    }
    if (split_regex_) split_pieces(pieces, *split_regex_, SplitBehavior::kMergedWithNext, false);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  std::unique_ptr<Regex> split_regex_;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    for (const auto& step : steps_) step->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

std::unique_ptr<PreTokenizer> make_regex_split(const char* pattern, SplitBehavior behavior, bool invert,
                                               const std::string& where) {
  return std::make_unique<Split>(std::make_unique<Regex>(pattern, false, where), behavior, invert);
}

}  // namespace

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const json& j, const std::string& where, int depth) {
  if (j.is_null()) return nullptr;
  if (depth > kMaxNesting) fail(where, "pre-tokenizers nested too deeply");
  require_object(j, where);
  const std::string type = get_string(j, "type", where);
  if (type == "Split") {
    return std::make_unique<Split>(regex_from_pattern_field(require(j, "pattern", where), where + ".pattern"),
                                   parse_behavior(j, where), get_bool_or(j, "invert", false, where));
  }
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevel>(get_bool_or(j, "add_prefix_space", true, where),
                                       get_bool_or(j, "use_regex", true, where), where);
  }
  if (type == "Metaspace") {
    const std::string replacement = get_string_or(j, "replacement", std::string(kMetaspace), where);
    if (replacement.empty()) fail(where + ".replacement", "must not be empty");
    PrependScheme scheme =
        get_bool_or(j, "add_prefix_space", true, where) ? PrependScheme::kAlways : PrependScheme::kNever;
    if (find(j, "prepend_scheme")) {
      const std::string name = get_string(j, "prepend_scheme", where);
      if (name == "always") {
        scheme = PrependScheme::kAlways;
      } else if (name == "first") {
        scheme = PrependScheme::kFirst;
      } else if (name == "never") {
        scheme = PrependScheme::kNever;
      } else {
        fail(where + ".prepend_scheme",
             "expected \"always\", \"first\" or \"never\", found \"" + name + "\"");
      }
    }
    return std::make_unique<Metaspace>(replacement, scheme, get_bool_or(j, "split", true, where), where);
  }
  if (type == "Digits") {
    const bool individual = get_bool_or(j, "individual_digits", false, where);
    return make_regex_split(individual ? R"(\p{N})" : R"(\p{N}+)", SplitBehavior::kIsolated, false, where);
  }
  if (type == "Whitespace") {
    // tokenizers' \w+|[^\w\s]+ with Rust's Unicode \w spelled out (PCRE2's \w has no marks).
    return make_regex_split(
        R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}]+|[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}\s]+)",
        SplitBehavior::kRemoved, true, where);
  }
  if (type == "WhitespaceSplit") return make_regex_split(R"(\s+)", SplitBehavior::kRemoved, false, where);
  if (type == "Sequence") {
    const json& list = require(j, "pretokenizers", where);
    if (!list.is_array()) fail(where + ".pretokenizers", "expected an array, found " + type_name(list));
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      auto step =
          parse_pre_tokenizer(list[i], where + ".pretokenizers[" + std::to_string(i) + "]", depth + 1);
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  fail(where, "pre-tokenizer type \"" + type +
                  "\" is not supported (supported: Split, ByteLevel, Metaspace, Digits, Whitespace, "
                  "WhitespaceSplit, Sequence)");
}

}  // namespace ferry
