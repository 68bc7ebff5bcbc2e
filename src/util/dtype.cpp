#include "ferry/dtype.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace ferry {

DType dtype_from_string(std::string_view s) {
  std::string u(s);
  std::transform(u.begin(), u.end(), u.begin(), [](unsigned char c) { return std::toupper(c); });
  if (u == "F32" || u == "FP32" || u == "FLOAT32") return DType::F32;
  if (u == "F16" || u == "FP16" || u == "FLOAT16") return DType::F16;
  if (u == "BF16" || u == "BFLOAT16") return DType::BF16;
  if (u == "I8" || u == "INT8") return DType::I8;
  if (u == "I4" || u == "INT4") return DType::I4;
  if (u == "I32" || u == "INT32") return DType::I32;
  if (u == "I64" || u == "INT64") return DType::I64;
  if (u == "U8" || u == "UINT8") return DType::U8;
  if (u == "BOOL") return DType::BOOL;
  if (u == "F64" || u == "FLOAT64") return DType::F64;
  return DType::Unknown;
}

}  // namespace ferry
