// Runtime ISA detection: fast kernels are chosen at run time so one binary never executes an
// instruction the CPU lacks.
#pragma once
#include <string>

namespace ferry {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_vnni = false;
  bool has_avx512_core() const { return avx512f && avx512bw && avx512vl && avx512dq; }
  std::string describe() const;
};

// Detected once. FERRY_ISA=avx2|scalar in the environment caps what is used (for testing fallbacks).
const CpuFeatures& cpu_features();

}  // namespace ferry
