#include "ferry/precision.h"

#include "ferry/error.h"

namespace ferry {

std::string_view precision_name(Precision p) {
  switch (p) {
    case Precision::Bf16: return "bf16";
    case Precision::Int8: return "int8";
    case Precision::Int4: return "int4";
  }
  return "?";
}

Precision parse_precision(std::string_view s, const std::string& where) {
  for (Precision p : {Precision::Bf16, Precision::Int8, Precision::Int4})
    if (s == precision_name(p)) return p;
  throw Error(where + ": '" + std::string(s) + "' is not a precision; expected bf16, int8 or int4");
}

DType precision_dtype(Precision p) {
  switch (p) {
    case Precision::Bf16: return DType::BF16;
    case Precision::Int8: return DType::I8;
    case Precision::Int4: return DType::I4;
  }
  return DType::BF16;
}

}  // namespace ferry
