// CLI11 validators over ferry/validate.h: a flag's value is checked as it is parsed, before any work
// (before a model loads), and refused as "--flag: got V; expected ...". The validators parse the text
// the way CLI11 converts it (strtod for numbers, strtoll base 0 for integers), so they judge the value
// the option will hold.
#pragma once
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ferry/validate.h"

namespace ferry::cli {

namespace detail {

// Runs `check` on the flag's text; its InvalidValue becomes CLI11's message (CLI11 adds "--flag: ").
inline CLI::Validator flag_check(std::string description, std::function<void(const std::string&)> check) {
  return CLI::Validator(
      [check = std::move(check)](std::string& text) -> std::string {
        try {
          check(text);
        } catch (const InvalidValue& e) {
          return e.detail();
        }
        return {};
      },
      std::move(description));
}

// Whether the whole text is a number (into `out`).
inline bool parse_number(const std::string& text, double& out) {
  if (text.empty()) return false;
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size();
}

inline void parse_integer(const std::string& text, int64_t& out, const std::string& expected) {
  char* end = nullptr;
  errno = 0;
  long long v = text.empty() ? 0 : std::strtoll(text.c_str(), &end, 0);
  if (text.empty() || end != text.c_str() + text.size())
    throw InvalidValue("", "got '" + text + "'; expected " + expected);
  if (errno == ERANGE) throw InvalidValue("", "got " + text + ", which is out of range; expected " + expected);
  out = v;
}

}  // namespace detail

// A finite number > 0 (and <= max).
inline CLI::Validator positive_number(std::string note = {}, double max = kNoLimit) {
  return detail::flag_check("> 0", [note, max](const std::string& text) {
    double v = 0;
    if (!detail::parse_number(text, v)) throw InvalidValue("", "got '" + text + "'; expected a number > 0");
    require_positive(v, "", note, max);
  });
}

// A finite number >= 0 (and <= max).
inline CLI::Validator non_negative_number(std::string note = {}, double max = kNoLimit) {
  return detail::flag_check(">= 0", [note, max](const std::string& text) {
    double v = 0;
    if (!detail::parse_number(text, v)) throw InvalidValue("", "got '" + text + "'; expected a number >= 0");
    require_non_negative(v, "", note, max);
  });
}

// A finite number in `range`.
inline CLI::Validator number_in_range(NumberRange range, std::string note = {}) {
  std::string description = std::string(range.lo_open ? "(" : "[") + number_text(range.lo) + ", " +
                            number_text(range.hi) + (range.hi_open ? ")" : "]");
  if (range.hi >= kNoLimit) description = std::string(range.lo_open ? "> " : ">= ") + number_text(range.lo);
  return detail::flag_check(description, [range, note](const std::string& text) {
    double v = 0;
    if (!detail::parse_number(text, v)) throw InvalidValue("", "got '" + text + "'; expected a number");
    require_in_range(v, range, "", note);
  });
}

// An integer in [lo, hi].
inline CLI::Validator count_in_range(int64_t lo, int64_t hi, std::string note = {}) {
  std::string description = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return detail::flag_check(description, [lo, hi, note](const std::string& text) {
    int64_t v = 0;
    detail::parse_integer(text, v, "an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
    require_count(v, lo, hi, "", note);
  });
}

// One of `allowed`.
inline CLI::Validator one_of(std::vector<std::string> allowed) {
  std::string description;
  for (const auto& a : allowed) description += (description.empty() ? "" : "|") + a;
  return detail::flag_check("{" + description + "}", [allowed](const std::string& text) {
    for (const auto& a : allowed)
      if (a == text) return;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    throw InvalidValue("", "got '" + text + "'; expected one of " + list);
  });
}

// Text that is not empty.
inline CLI::Validator non_empty_text(std::string note = {}) {
  return detail::flag_check("", [note](const std::string& text) { require_non_empty(text, "", note); });
}

}  // namespace ferry::cli
