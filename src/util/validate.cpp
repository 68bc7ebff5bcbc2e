// Input validation helpers (ferry/validate.h).
#include "ferry/validate.h"

#include <cmath>
#include <cstdio>

namespace ferry {
namespace {

[[noreturn]] void refuse(std::string_view name, const std::string& got, const std::string& expected,
                         std::string_view note) {
  std::string detail = "got " + got + "; expected " + expected;
  if (!note.empty()) detail += " (" + std::string(note) + ")";
  throw InvalidValue(std::string(name), detail);
}

std::string integer_range_text(int64_t lo, int64_t hi) {
  if (hi == std::numeric_limits<int64_t>::max()) return "an integer >= " + std::to_string(lo);
  if (lo == hi) return std::to_string(lo);
  return "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
}

}  // namespace

std::string number_text(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) return std::to_string(static_cast<int64_t>(value));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", value);
  return buf;
}

double require_positive(double value, std::string_view name, std::string_view note, double max) {
  return require_in_range(value, NumberRange{0, max, true, false}, name, note);
}

double require_non_negative(double value, std::string_view name, std::string_view note, double max) {
  return require_in_range(value, NumberRange{0, max, false, false}, name, note);
}

double require_in_range(double value, NumberRange r, std::string_view name, std::string_view note) {
  const bool above_lo = r.lo_open ? value > r.lo : value >= r.lo;
  const bool below_hi = r.hi_open ? value < r.hi : value <= r.hi;
  if (std::isfinite(value) && above_lo && below_hi) return value;
  std::string expected;
  if (r.hi >= kNoLimit) {
    expected = std::string("a finite number ") + (r.lo_open ? "> " : ">= ") + number_text(r.lo);
  } else if (r.lo_open || r.hi_open) {
    expected = std::string("a number ") + (r.lo_open ? "> " : ">= ") + number_text(r.lo) + " and " +
               (r.hi_open ? "< " : "<= ") + number_text(r.hi);
  } else {
    expected = "a number from " + number_text(r.lo) + " to " + number_text(r.hi);
  }
  refuse(name, number_text(value), expected, note);
}

int64_t require_count(int64_t value, int64_t lo, int64_t hi, std::string_view name, std::string_view note) {
  if (value >= lo && value <= hi) return value;
  refuse(name, std::to_string(value), integer_range_text(lo, hi), note);
}

int64_t require_whole_count(double value, int64_t lo, int64_t hi, std::string_view name, std::string_view note) {
  // Compare in double before converting: a double outside [lo, hi] (or NaN) never reaches the cast.
  // 2^63 is exact in double; values at or above it do not fit int64.
  constexpr double kTwo63 = 9223372036854775808.0;
  const bool whole = std::isfinite(value) && value == std::floor(value);
  if (whole && value >= -kTwo63 && value < kTwo63) {
    const auto v = static_cast<int64_t>(value);
    if (v >= lo && v <= hi) return v;
  }
  refuse(name, number_text(value), integer_range_text(lo, hi), note);
}

std::string require_choice(std::string_view value, std::initializer_list<std::string_view> allowed,
                           std::string_view name) {
  std::string list;
  for (std::string_view a : allowed) {
    if (a == value) return std::string(value);
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  std::string got = "'";  // built in steps: GCC 12's -Wrestrict misfires on "'" + std::string(...)
  got.append(value).append("'");
  refuse(name, got, "one of " + list, {});
}

std::string require_non_empty(std::string_view value, std::string_view name, std::string_view note) {
  if (!value.empty()) return std::string(value);
  refuse(name, "an empty string", "non-empty text", note);
}

}  // namespace ferry
