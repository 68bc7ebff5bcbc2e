// Input validation, one helper per kind of value a user gives ferry (a flag, a JSON field, a config key):
// a positive or non-negative finite number, a number in a range, a count in a range (also one given as a
// floating-point JSON number, converted without undefined behaviour), one of a set of names, non-empty
// text. Each returns the value when it is acceptable and otherwise throws ferry::InvalidValue, whose
// message names the input, the value and what is allowed:
//
//   --gpu-mem-gb: got -1; expected a number > 0 and <= 100000 (GB)
//   policy.json: key 'batch_size': got 0; expected an integer from 1 to 1048576
//
// `name` is how the user knows the input ("--gpu-mem-gb", "policy.json: key 'batch_size'"); `note`, when
// not empty, is added in parentheses after the requirement (a unit, what 0 means, what to do).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

#include "ferry/error.h"

namespace ferry {

class InvalidValue : public Error {
 public:
  InvalidValue(std::string name, std::string detail)
      : Error(name + ": " + detail), name_(std::move(name)), detail_(std::move(detail)) {}
  const std::string& name() const { return name_; }      // the flag or field
  const std::string& detail() const { return detail_; }  // "got -1; expected a number > 0 ..."

 private:
  std::string name_, detail_;
};

inline constexpr double kNoLimit = std::numeric_limits<double>::max();

// A finite number > 0 (and <= max).
double require_positive(double value, std::string_view name, std::string_view note = {}, double max = kNoLimit);
// A finite number >= 0 (and <= max).
double require_non_negative(double value, std::string_view name, std::string_view note = {},
                            double max = kNoLimit);

// A finite number between lo and hi; an open bound excludes itself: (0, 1] is {lo_open = true}.
struct NumberRange {
  double lo = 0, hi = kNoLimit;
  bool lo_open = false, hi_open = false;
};
double require_in_range(double value, NumberRange range, std::string_view name, std::string_view note = {});

// An integer in [lo, hi].
int64_t require_count(int64_t value, int64_t lo, int64_t hi, std::string_view name, std::string_view note = {});
// A whole number held in a double (a JSON number, a float flag) in [lo, hi], converted to an integer
// only once it is known to fit: NaN, infinities, fractions and out-of-range values are refused.
int64_t require_whole_count(double value, int64_t lo, int64_t hi, std::string_view name,
                            std::string_view note = {});

// One of `allowed`.
std::string require_choice(std::string_view value, std::initializer_list<std::string_view> allowed,
                           std::string_view name);
// Text that is not empty.
std::string require_non_empty(std::string_view value, std::string_view name, std::string_view note = {});

// How the helpers show a number: integers without a fraction, "nan", "inf", otherwise %g.
std::string number_text(double value);

}  // namespace ferry
