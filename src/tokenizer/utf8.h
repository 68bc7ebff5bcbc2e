// UTF-8 helpers shared by the tokenizers: validation, code point iteration and repair of byte
// sequences that are not valid UTF-8 (token-by-token decoding produces partial characters).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ferry/tokenizer.h"

namespace ferry::utf8 {

// Length of the well-formed character starting at s[0], or 0 if the bytes there are not one
// (including a truncated character at the end of s).
size_t char_length(std::string_view s);

// Offset of the first byte that is not part of a well-formed character, or s.size() if s is valid.
size_t first_invalid(std::string_view s);

inline bool is_valid(std::string_view s) {
  return first_invalid(s) == s.size();
}

// Decodes the character at s[pos] (which must be well-formed) and advances pos.
char32_t next_code_point(std::string_view s, size_t& pos);

void append_code_point(std::string& out, char32_t cp);

// Unicode White_Space (what Rust's char::is_whitespace and regex \s accept).
bool is_white_space(char32_t cp);

// Unicode \w: letters, marks, decimal and letter numbers, connector punctuation, ZWJ/ZWNJ.
bool is_word_char(char32_t cp);

// Appends `bytes` to `out` with ill-formed parts replaced by U+FFFD as `repair` says. When
// at_end is false, a valid-so-far but incomplete character at the end is not repaired: its bytes are
// left unconsumed. Returns the number of bytes consumed.
size_t append_repaired(std::string& out, std::string_view bytes, Utf8Repair repair, bool at_end);

inline std::string repaired(std::string_view bytes, Utf8Repair repair) {
  std::string out;
  out.reserve(bytes.size());
  append_repaired(out, bytes, repair, /*at_end=*/true);
  return out;
}

}  // namespace ferry::utf8
