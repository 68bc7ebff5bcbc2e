// Which SIMD level the CPU ops run at. Detected once from cpu_features() (FERRY_ISA=avx512|avx2|scalar in
// the environment caps it); tests and the op harness may lower it further to check every fallback.
//   Amx:    Avx512 plus AMX-BF16 tiles (tdpbf16ps), with the OS permission granted (cpu_features.h)
//   Avx512: AVX-512 F/BW/VL/DQ + BF16 (vdpbf16ps) + VNNI (vpdpbusd)
//   Avx2:   AVX2 + FMA + F16C
//   Scalar: plain C++
// Amx is a level of its own so the harness checks it and the fallback beneath it, but only the bf16
// matmuls and bf16-cache attention use tiles: active_isa() reports the SIMD level (at most Avx512, which
// every other op keys on) and amx_active() says whether the tiles may be used on top of it.
#pragma once

namespace ferry::cpu {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2, Amx = 3 };

const char* isa_name(Isa isa);

// The best level this CPU supports (after the FERRY_ISA cap). May be Amx.
Isa detected_isa();

// The SIMD level the ops use now: min(detected_isa(), the cap set below, Avx512). Read on every op call.
Isa active_isa();

// Whether the bf16 matmuls and attention may use AMX tiles now: detected_isa() and the cap are both Amx.
bool amx_active();

// The level in force, Amx included (for reports): amx_active() ? Amx : active_isa().
Isa active_level();

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
