// Which SIMD level the CPU ops run at. Detected once from cpu_features() (FERRY_ISA=avx2|scalar in the
// environment caps it); tests and the op harness may lower it further to check every fallback.
//   Avx512: AVX-512 F/BW/VL/DQ + BF16 (vdpbf16ps) + VNNI (vpdpbusd)
//   Avx2:   AVX2 + FMA + F16C
//   Scalar: plain C++
#pragma once

namespace ferry::cpu {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);

// The best level this CPU supports (after the FERRY_ISA cap).
Isa detected_isa();

// The level the ops use now: min(detected_isa(), the cap set below). Read on every op call.
Isa active_isa();

// Process-wide cap on the level the ops use (for tests and benchmarks). Not for use while ops run.
void set_isa_cap(Isa cap);

class ScopedIsaCap {
 public:
  explicit ScopedIsaCap(Isa cap);
  ~ScopedIsaCap();
  ScopedIsaCap(const ScopedIsaCap&) = delete;
  ScopedIsaCap& operator=(const ScopedIsaCap&) = delete;

 private:
  Isa previous_;
};

}  // namespace ferry::cpu
