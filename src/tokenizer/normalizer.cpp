#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <vector>

#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace ferry {
namespace {

using namespace json_fields;

constexpr int kMaxNesting = 16;

bool is_ascii(const std::string& s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

class UnicodeForm final : public Normalizer {
 public:
  UnicodeForm(int options, std::string name) : options_(options), name_(std::move(name)) {}
  void normalize(std::string& text) const override {
    if (is_ascii(text)) return;  // every normal form leaves ASCII unchanged
    utf8proc_uint8_t* result = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                            static_cast<utf8proc_ssize_t>(text.size()), &result,
                                            static_cast<utf8proc_option_t>(options_));
    if (n < 0) throw Error(name_ + " normalization failed: " + utf8proc_errmsg(n));
    text.assign(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
    std::free(result);
  }

 private:
  int options_;
  std::string name_;
};

// Unicode lowercase as Rust's str::to_lowercase: simple mappings plus the two special cases it applies
// (U+0130 'İ' -> "i̇"; final sigma 'Σ' -> 'ς' after a letter and not before one).
class Lowercase final : public Normalizer {
 public:
  void normalize(std::string& text) const override {
    std::string out;
    out.reserve(text.size());
    size_t pos = 0;
    bool after_letter = false;
    while (pos < text.size()) {
      const char32_t cp = utf8::next_code_point(text, pos);
      if (cp == 0x130) {
        out.append("i\xCC\x87");
      } else if (cp == 0x3A3) {
        size_t next = pos;
        const bool before_letter = next < text.size() && is_letter(utf8::next_code_point(text, next));
        utf8::append_code_point(out, after_letter && !before_letter ? 0x3C2 : 0x3C3);
      } else {
        utf8::append_code_point(out,
                                static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
      }
      after_letter = is_letter(cp);
    }
    text = std::move(out);
  }

 private:
  static bool is_letter(char32_t cp) {
    const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
    return category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_LO;
  }
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class Replace final : public Normalizer {
 public:
  Replace(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(std::string& text) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    pattern_->find_all(text, matches);
    if (matches.empty()) return;
    std::string out;
    out.reserve(text.size());
    size_t pos = 0;
    for (auto [start, end] : matches) {
      out.append(text, pos, start - pos);
      out.append(content_);
      pos = end;
    }
    out.append(text, pos, std::string::npos);
    text = std::move(out);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        size_t next = begin;
        if (!utf8::is_white_space(utf8::next_code_point(text, next))) break;
        begin = next;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        size_t pos = start;
        if (!utf8::is_white_space(utf8::next_code_point(text, pos))) break;
        end = start;
      }
    }
    text = text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void normalize(std::string& text) const override {
    for (const auto& step : steps_) step->normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> parse_normalizer(const json& j, const std::string& where, int depth) {
  if (j.is_null()) return nullptr;
  if (depth > kMaxNesting) fail(where, "normalizers nested too deeply");
  require_object(j, where);
  const std::string type = get_string(j, "type", where);
  if (type == "NFC") return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_COMPOSE, type);
  if (type == "NFD") return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, type);
  if (type == "NFKC")
    return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, type);
  if (type == "NFKD")
    return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, type);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Prepend") return std::make_unique<Prepend>(get_string(j, "prepend", where));
  if (type == "Replace") {
    return std::make_unique<Replace>(
        regex_from_pattern_field(require(j, "pattern", where), where + ".pattern"),
        get_string(j, "content", where));
  }
  if (type == "Strip") {
    return std::make_unique<Strip>(get_bool_or(j, "strip_left", true, where),
                                   get_bool_or(j, "strip_right", true, where));
  }
  if (type == "Sequence") {
    const json& list = require(j, "normalizers", where);
    if (!list.is_array()) fail(where + ".normalizers", "expected an array, found " + type_name(list));
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      auto step = parse_normalizer(list[i], where + ".normalizers[" + std::to_string(i) + "]", depth + 1);
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  fail(where, "normalizer type \"" + type +
                  "\" is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, "
                  "Sequence)");
}

}  // namespace ferry
