// A compiled PCRE2 pattern (UTF + Unicode properties) used by the pre-tokenizers and normalizers.
// Patterns come from tokenizer.json and are compiled once at load time.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ferry {

class Regex {
 public:
  // literal: match `pattern` as plain text. `where` names the pattern's origin in error messages.
  // Throws ferry::Error if the pattern does not compile.
  Regex(std::string_view pattern, bool literal, std::string where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [start, end) byte ranges of all non-overlapping matches in `text` (valid UTF-8),
  // scanning left to right; an empty match right where the previous match ended is skipped.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8
  std::string where_;
};

// A tokenizer.json "pattern" field: {"String": "literal"} or {"Regex": "pcre"}.
std::unique_ptr<Regex> regex_from_pattern_field(const nlohmann::json& pattern, const std::string& where);

}  // namespace ferry
