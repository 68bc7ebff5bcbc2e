// The one precision vocabulary: how weights are stored (routed experts, the KV cache in the planner's
// terms), spelled bf16 / int8 / int4 everywhere (policy files, --expert-dtype, --precisions), and the DType
// each is packed as. int8/int4 are group-wise (a bf16 scale per group of weights, int4 also a zero point).
#pragma once
#include <string>
#include <string_view>

#include "ferry/dtype.h"

namespace ferry {

enum class Precision { Bf16, Int8, Int4 };

std::string_view precision_name(Precision p);
// Parses "bf16", "int8" or "int4"; throws ferry::Error naming `where` and the known values otherwise.
Precision parse_precision(std::string_view s, const std::string& where);
// The DType the packed weights of a precision have (BF16, I8, I4).
DType precision_dtype(Precision p);

}  // namespace ferry
