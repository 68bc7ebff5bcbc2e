// tokenizer.json "pre_tokenizer": splits normalized text into words that the model tokenizes
// independently (Split with a regex, ByteLevel, Metaspace, Digits, Whitespace, Sequence).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ferry {

struct PreToken {
  std::string text;
  bool at_text_start = false;  // begins where the whole input text begins (Metaspace "first")
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces each piece of `pieces` by the pieces it splits into (empty pieces are dropped).
  virtual void pre_tokenize(std::vector<PreToken>& pieces) const = 0;
};

// Null json -> nullptr (the whole text is one word). Throws ferry::Error naming `where`.
std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const nlohmann::json& j, const std::string& where,
                                                  int depth = 0);

// The GPT-2 split used by ByteLevel(use_regex=true).
inline constexpr const char* kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace ferry
