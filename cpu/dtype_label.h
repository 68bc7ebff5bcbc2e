// Internal to cpu/: dtype names for error messages. ferry_cpu sits below ferry_core in the link order,
// so it cannot call ferry_core's dtype_name().
#pragma once
#include <string>

#include "ferry/dtype.h"

namespace ferry::cpu {

inline std::string dtype_label(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I8: return "int8";
    case DType::I4: return "int4";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::U8: return "u8";
    case DType::BOOL: return "bool";
    case DType::F64: return "f64";
    default: return "unknown";
  }
}

}  // namespace ferry::cpu
