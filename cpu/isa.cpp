#include "ferry/ops/isa.h"

#include <atomic>

#include "ferry/cpu_features.h"

namespace ferry::cpu {

namespace {
std::atomic<int> g_isa_cap{static_cast<int>(Isa::Amx)};

int capped_level() {
  const int cap = g_isa_cap.load(std::memory_order_relaxed);
  const int det = static_cast<int>(detected_isa());
  return cap < det ? cap : det;
}
}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Amx: return "amx";
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

Isa detected_isa() {
  static const Isa isa = [] {
    const CpuFeatures& f = cpu_features();
    if (f.has_avx512_core() && f.avx512_bf16 && f.avx512_vnni && f.fma && f.f16c)
      return f.amx_tile && f.amx_bf16 ? Isa::Amx : Isa::Avx512;
    if (f.avx2 && f.fma && f.f16c) return Isa::Avx2;
    return Isa::Scalar;
  }();
  return isa;
}

Isa active_isa() {
  const int level = capped_level();
  return static_cast<Isa>(level < static_cast<int>(Isa::Avx512) ? level : static_cast<int>(Isa::Avx512));
}

bool amx_active() { return capped_level() == static_cast<int>(Isa::Amx); }

Isa active_level() { return static_cast<Isa>(capped_level()); }

void set_isa_cap(Isa cap) { g_isa_cap.store(static_cast<int>(cap), std::memory_order_relaxed); }

ScopedIsaCap::ScopedIsaCap(Isa cap) : previous_(static_cast<Isa>(g_isa_cap.load())) { set_isa_cap(cap); }
ScopedIsaCap::~ScopedIsaCap() { set_isa_cap(previous_); }

}  // namespace ferry::cpu
