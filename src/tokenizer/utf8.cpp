#include "tokenizer/utf8.h"

#include <utf8proc.h>

namespace ferry::utf8 {
namespace {

enum class Kind { kValid, kIllFormed, kTruncated };
struct Scan {
  Kind kind;
  size_t length;  // kValid: the character; otherwise the maximal ill-formed subpart
};

// Well-formed sequences per Unicode Table 3-7: the lead byte fixes the length and the range of the
// second byte; later bytes are 80..BF.
Scan scan(std::string_view s) {
  const auto b0 = static_cast<uint8_t>(s[0]);
  if (b0 < 0x80) return {Kind::kValid, 1};
  size_t n = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {Kind::kIllFormed, 1};
  }
  for (size_t i = 1; i < n; ++i) {
    if (i >= s.size()) return {Kind::kTruncated, i};
    const auto b = static_cast<uint8_t>(s[i]);
    const uint8_t min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xBF;
    if (b < min || b > max) return {Kind::kIllFormed, i};
  }
  return {Kind::kValid, n};
}

}  // namespace

size_t char_length(std::string_view s) {
  if (s.empty()) return 0;
  const Scan r = scan(s);
  return r.kind == Kind::kValid ? r.length : 0;
}

size_t first_invalid(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const Scan r = scan(s.substr(pos));
    if (r.kind != Kind::kValid) return pos;
    pos += r.length;
  }
  return pos;
}

char32_t next_code_point(std::string_view s, size_t& pos) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  const size_t n = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t cp = b0 & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<uint8_t>(s[pos + i]) & 0x3F);
  pos += n;
  return cp;
}

void append_code_point(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_white_space(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool is_word_char(char32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
  if (cp == 0x200C || cp == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

size_t append_repaired(std::string& out, std::string_view bytes, Utf8Repair repair, bool at_end) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t run_start = pos;
    while (pos < bytes.size() && static_cast<uint8_t>(bytes[pos]) < 0x80) ++pos;
    out.append(bytes.substr(run_start, pos - run_start));
    if (pos == bytes.size()) break;
    const Scan r = scan(bytes.substr(pos));
    if (r.kind == Kind::kValid) {
      out.append(bytes.substr(pos, r.length));
    } else if (r.kind == Kind::kTruncated && !at_end) {
      return pos;  // the rest of the character may still arrive
    } else {
      const size_t n_replacements = repair == Utf8Repair::kPerByte ? r.length : 1;
      for (size_t i = 0; i < n_replacements; ++i) out.append(kReplacement);
    }
    pos += r.length;
  }
  return pos;
}

}  // namespace ferry::utf8
