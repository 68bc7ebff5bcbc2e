// Runtime ISA detection: fast kernels are chosen at run time so one binary never executes an
// instruction the CPU lacks.
#pragma once
#include <string>

namespace ferry {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_vnni = false;
  // AMX: the CPU has the tiles (CPUID), and the OS enabled them (XCR0) and granted this process the
  // XTILEDATA state (Linux arch_prctl(ARCH_REQ_XCOMP_PERM), asked once at detection). amx_bf16 / amx_int8
  // are only true when all of that holds, so they alone decide whether tile instructions may run.
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool has_avx512_core() const { return avx512f && avx512bw && avx512vl && avx512dq; }
  std::string describe() const;
};

// Detected once. FERRY_ISA=avx512|avx2|scalar in the environment caps what is used (for testing
// fallbacks): avx512 turns AMX off, avx2 also AVX-512, scalar everything.
const CpuFeatures& cpu_features();

}  // namespace ferry
