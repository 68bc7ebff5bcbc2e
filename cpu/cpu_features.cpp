#include "ferry/cpu_features.h"

#include <cstdlib>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <cstdint>
#include <cstring>
#include <string>

namespace ferry {

namespace {

#if defined(__x86_64__)
// XCR0: which register states the OS saves and restores (bit 17 XTILECFG, bit 18 XTILEDATA for AMX).
// Only valid when CPUID.1:ECX.OSXSAVE is set; xgetbv is encoded as bytes so no target flag is needed.
uint64_t read_xcr0() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return 0;
  uint32_t lo = 0, hi = 0;
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));  // xgetbv
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

// Linux 5.16+ keeps the 8 KiB tile data state off until a process asks for it; tile instructions
// fault (SIGILL) before that. The permission is per process and covers threads created later too.
bool request_amx_permission() {
#if defined(__linux__)
  constexpr long kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023;
  constexpr int kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long bitmask = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bitmask) != 0) return false;
  return (bitmask >> kXfeatureXtiledata) & 1;
#else
  return false;
#endif
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
#if defined(__clang__) && __clang_major__ < 15
  // clang 14's __builtin_cpu_supports does not know "f16c": read CPUID.1:ECX bit 29 directly.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  f.f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
#else
  f.f16c = __builtin_cpu_supports("f16c");
#endif
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512_vnni = __builtin_cpu_supports("avx512vnni");
  f.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
#endif
  const char* cap = std::getenv("FERRY_ISA");
  const bool no_amx = cap && (std::strcmp(cap, "avx512") == 0 || std::strcmp(cap, "avx2") == 0 ||
                              std::strcmp(cap, "scalar") == 0);
#if defined(__x86_64__)
  {
    // CPUID.(7,0):EDX bit 22 AMX-BF16, bit 24 AMX-TILE, bit 25 AMX-INT8.
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool leaf7 = __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx);
    const bool tile = leaf7 && (edx & (1u << 24));
    const bool os_tiles = tile && ((read_xcr0() >> 17) & 3) == 3;
    if (os_tiles && !no_amx && request_amx_permission()) {
      f.amx_tile = true;
      f.amx_bf16 = (edx >> 22) & 1;
      f.amx_int8 = (edx >> 25) & 1;
    }
  }
#endif
  if (cap) {
    if (std::strcmp(cap, "avx2") == 0 || std::strcmp(cap, "scalar") == 0) {
      f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512_vnni = f.avx512_bf16 = false;
    }
    if (std::strcmp(cap, "scalar") == 0) f.avx2 = f.fma = f.f16c = false;
  }
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string CpuFeatures::describe() const {
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (on) s += s.empty() ? name : std::string(" ") + name;
  };
  add(avx2, "avx2");
  add(fma, "fma");
  add(f16c, "f16c");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl");
  add(avx512dq, "avx512dq");
  add(avx512_vnni, "avx512_vnni");
  add(avx512_bf16, "avx512_bf16");
  add(amx_tile, "amx_tile");
  add(amx_bf16, "amx_bf16");
  add(amx_int8, "amx_int8");
  return s.empty() ? "scalar" : s;
}

}  // namespace ferry
