// Internal to cpu/: function attributes that compile one function for one ISA level, so a single
// binary carries every level and picks at run time (see ferry/ops/isa.h). Only functions marked with
// these may use the matching intrinsics, and they run only when active_isa() allows.
#pragma once
#include <immintrin.h>

// GCC 12 reports its own AVX-512 intrinsics (_mm512_undefined_* inside setzero/reduce) as "maybe
// uninitialized" once inlined; the values are defined. Silence that false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define FERRY_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni,fma,f16c,avx2")))
#define FERRY_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
// AVX-512 plus AMX-BF16 tiles: only for code that runs when amx_active() (ferry/ops/isa.h).
#define FERRY_TARGET_AMX                                                   \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq," \
                        "avx512bf16,avx512vnni,fma,f16c,avx2")))
