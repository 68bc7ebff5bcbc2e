// The f32-FMA attention kernel for bf16 and f16 caches at the AVX-512 level. Each 64-byte line of the
// cache (attention.h: keys [Dh/2][bs][2], values [bs/2][Dh][2]) is widened to two f32 vectors, its even
// and odd elements:
//   bf16: even = x << 16, odd = x & 0xffff0000 (two single-uop integer ops, no shuffles);
//   f16:  vcvtph2ps of both halves, then one vpermt2ps each for the even and odd lanes.
// For keys that is 16 keys at dim 2i and at dim 2i+1; for values 16 dims of key 2j and of key 2j+1. Both
// then feed plain FMAs with broadcast queries / probabilities (f32), so there is no rounding of q or p to
// bf16 here.
//
// Why a second bf16 kernel: vdpbf16ps runs at half the f32 FMA rate on Intel (Sapphire / Emerald
// Rapids, Cooper Lake) but at about twice it on AMD Zen 4. Per 64-byte line and R query rows the
// vdpbf16ps kernel issues R dot products, this one 2 conversions + 2R FMAs; bf16_dot_product_is_fast()
// measures the two instruction rates once and attend() picks the vdpbf16ps kernel only where its
// flop rate is at least the FMA rate (the AMX kernel comes first where the tiles are available). f16
// caches always come here (there is no f16 dot product before AVX512-FP16 / AMX-FP16).
//
// Online softmax as in the other kernels: log2 units (queries pre-scaled by scale * log2(e)), a lazily
// moved reference maximum, 16-lane row sums. Keys at or past the end are masked out of the scores, and
// their values are zeroed by masked loads in the last step (0 * NaN would poison the sums).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "cpu/attention_kernels.h"
#include "cpu/scratch.h"
#include "cpu/simd_math.h"
#include "ferry/error.h"

namespace ferry::cpu {

namespace {

constexpr int kStepKeys = 32;
constexpr int kMaxUnits = 64;
constexpr float kRescaleMargin = 12.0f;  // log2 units
constexpr float kLog2e = 1.44269504088896341f;

struct WidenBf16 {
  FERRY_TARGET_AVX512 static void widen(__m512i x, __m512& even, __m512& odd) {
    even = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
    odd = _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  }
};

struct WidenF16 {
  FERRY_TARGET_AVX512 static void widen(__m512i x, __m512& even, __m512& odd) {
    const __m512 lo = _mm512_cvtph_ps(_mm512_castsi512_si256(x));        // e0 o0 e1 o1 ... e7 o7
    const __m512 hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(x, 1));  // e8 o8 ... e15 o15
    const __m512i ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i io = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    even = _mm512_permutex2var_ps(lo, ie, hi);
    odd = _mm512_permutex2var_ps(lo, io, hi);
  }
};

// Per-unit state in per-thread scratch, 64-byte aligned arrays: q [8][Dh] f32 (pre-scaled),
// acc [8][Dh] f32, p [8][32] f32 (probabilities of the current step), l [8][16] f32, m [8] f32.
struct UnitState {
  float* q;
  float* acc;
  float* p;
  float* l;
  float* m;
};

size_t round64(size_t n) { return (n + 63) / 64 * 64; }

size_t unit_state_bytes(int dh) {
  const size_t r = kMaxAttendRows;
  return 2 * round64(r * dh * 4) + round64(r * 32 * 4) + round64(r * 16 * 4) + round64(r * 4);
}

UnitState unit_state(char* base, int dh) {
  const size_t r = kMaxAttendRows;
  UnitState st;
  st.q = reinterpret_cast<float*>(base);
  st.acc = reinterpret_cast<float*>(base + round64(r * dh * 4));
  st.p = reinterpret_cast<float*>(base + 2 * round64(r * dh * 4));
  st.l = st.p + r * 32;
  st.m = st.l + r * 16;
  return st;
}

inline int rows_end(const AttendRows& rows) {
  int end = 0;
  for (int r = 0; r < rows.n; ++r) end = std::max(end, rows.hi[r]);
  return end;
}

FERRY_TARGET_AVX512 void unit_begin(const AttendRows& rows, int dh, float scale, const UnitState& st) {
  const __m512 vscale = _mm512_set1_ps(scale * kLog2e);
  for (int r = 0; r < rows.n; ++r) {
    for (int d = 0; d < dh; d += 16) {
      _mm512_store_ps(st.q + static_cast<size_t>(r) * dh + d, _mm512_mul_ps(_mm512_loadu_ps(rows.q[r] + d), vscale));
      _mm512_store_ps(st.acc + static_cast<size_t>(r) * dh + d, _mm512_setzero_ps());
    }
    _mm512_store_ps(st.l + r * 16, _mm512_setzero_ps());
    st.m[r] = -std::numeric_limits<float>::infinity();
  }
}

FERRY_TARGET_AVX512 void unit_finish(const AttendRows& rows, int dh, const UnitState& st) {
  for (int r = 0; r < rows.n; ++r) {
    const float l = _mm512_reduce_add_ps(_mm512_load_ps(st.l + r * 16));
    const __m512 inv = _mm512_set1_ps(l > 0.0f ? 1.0f / l : 0.0f);
    for (int d = 0; d < dh; d += 16)
      _mm512_storeu_ps(rows.out[r] + d, _mm512_mul_ps(_mm512_load_ps(st.acc + static_cast<size_t>(r) * dh + d), inv));
  }
}

// Where the two 16-key chunks of the step at c0 live; an absent chunk (past the end) aliases the first.
struct Chunks {
  const uint16_t* k[2];
  const uint16_t* v[2];
  bool has1;
};

inline Chunks chunks(const KvCacheLayer& kv, int kv_head, const int32_t* block_table, int c0, int end) {
  Chunks ch;
  const int bs = kv.block_size, dh = kv.head_dim;
  ch.has1 = c0 + 16 < end;
  for (int c = 0; c < 2; ++c) {
    const int key0 = c == 1 && ch.has1 ? c0 + 16 : c0;
    const size_t run = kv.run_offset(block_table[key0 / bs], kv_head);
    ch.k[c] = static_cast<const uint16_t*>(kv.k) + run + static_cast<size_t>(key0 % bs) * 2;
    ch.v[c] = static_cast<const uint16_t*>(kv.v) + run + static_cast<size_t>(key0 % bs / 2) * dh * 2;
  }
  return ch;
}

// Values of one step for R rows over W x 16 dims from dim chunk dc: acc[r][w] += p . V. `tail` (masked
// step only): per key pair, which of its 32 16-bit elements belong to keys before the end.
template <typename Widen, int R, int W, bool kMasked>
__attribute__((noinline)) FERRY_TARGET_AVX512 void step_values(const Chunks& ch, int dh, int dc, const UnitState& st,
                                                               const __mmask32* tail) {
  __m512 acc[R][W];
  for (int r = 0; r < R; ++r)
    for (int w = 0; w < W; ++w) acc[r][w] = _mm512_load_ps(st.acc + static_cast<size_t>(r) * dh + (dc + w) * 16);
  for (int c = 0; c < 2; ++c) {
    if (c == 1 && !ch.has1) break;
    for (int kp = 0; kp < 8; ++kp) {
      const uint16_t* line = ch.v[c] + (static_cast<size_t>(kp) * dh + dc * 16) * 2;
      const float* pr = st.p + c * 16 + 2 * kp;
      for (int w = 0; w < W; ++w) {
        const __m512i x = kMasked ? _mm512_maskz_loadu_epi16(tail[c * 8 + kp], line + w * 32)
                                  : _mm512_loadu_si512(line + w * 32);
        __m512 e, o;
        Widen::widen(x, e, o);
        for (int r = 0; r < R; ++r) {
          acc[r][w] = _mm512_fmadd_ps(e, _mm512_set1_ps(pr[r * 32]), acc[r][w]);
          acc[r][w] = _mm512_fmadd_ps(o, _mm512_set1_ps(pr[r * 32 + 1]), acc[r][w]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int w = 0; w < W; ++w) _mm512_store_ps(st.acc + static_cast<size_t>(r) * dh + (dc + w) * 16, acc[r][w]);
}

template <typename Widen, int R, bool kMasked>
FERRY_TARGET_AVX512 void all_values(const Chunks& ch, int dh, const UnitState& st, const __mmask32* tail) {
  constexpr int W = R <= 2 ? 8 : R <= 4 ? 4 : 2;  // R x W accumulators (<= 16) stay in registers
  int dc = 0;
  for (; dc + W <= dh / 16; dc += W) step_values<Widen, R, W, kMasked>(ch, dh, dc, st, tail);
  for (; dc < dh / 16; ++dc) step_values<Widen, R, 1, kMasked>(ch, dh, dc, st, tail);
}

// One step of 32 keys for the R rows of one unit.
template <typename Widen, int R>
FERRY_TARGET_AVX512 void unit_step(const KvCacheLayer& kv, int kv_head, const int32_t* block_table,
                                   const AttendRows& rows, int c0, const UnitState& st, const StepLines& pf) {
  const int dh = kv.head_dim, dh2 = dh / 2;
  const int end = rows_end(rows);
  const Chunks ch = chunks(kv, kv_head, block_table, c0, end);
  const size_t kstride = static_cast<size_t>(kv.block_size) * 2;  // elements between dim pairs
  // Scores: sa for keys c0 .. c0 + 15, sb for the next 16, one dim pair per iteration.
  __m512 sa[R], sb[R];
  for (int r = 0; r < R; ++r) sa[r] = sb[r] = _mm512_setzero_ps();
  for (int d2 = 0; d2 < dh2; ++d2) {
    prefetch_lines(pf, false, d2, d2 + 1);  // the next unit step's lines, spread over this loop
    prefetch_lines(pf, true, d2, d2 + 1);
    __m512 ea, oa;
    Widen::widen(_mm512_loadu_si512(ch.k[0] + d2 * kstride), ea, oa);
    const float* q = st.q + 2 * d2;
    if (ch.has1) {
      __m512 eb, ob;
      Widen::widen(_mm512_loadu_si512(ch.k[1] + d2 * kstride), eb, ob);
      for (int r = 0; r < R; ++r) {
        const __m512 qe = _mm512_set1_ps(q[r * dh]), qo = _mm512_set1_ps(q[r * dh + 1]);
        sa[r] = _mm512_fmadd_ps(oa, qo, _mm512_fmadd_ps(ea, qe, sa[r]));
        sb[r] = _mm512_fmadd_ps(ob, qo, _mm512_fmadd_ps(eb, qe, sb[r]));
      }
    } else {
      for (int r = 0; r < R; ++r)
        sa[r] = _mm512_fmadd_ps(oa, _mm512_set1_ps(q[r * dh + 1]), _mm512_fmadd_ps(ea, _mm512_set1_ps(q[r * dh]), sa[r]));
    }
  }
  // Online softmax (lazy rescaling, see the top of attention_amx.cpp).
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i pos_a = _mm512_add_epi32(iota, _mm512_set1_epi32(c0));
  const __m512i pos_b = _mm512_add_epi32(pos_a, _mm512_set1_epi32(16));
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int r = 0; r < R; ++r) {
    __mmask16 va = 0xffff, vb = 0xffff;
    if (c0 < rows.lo[r] || c0 + kStepKeys > rows.hi[r]) {
      const __m512i lo = _mm512_set1_epi32(rows.lo[r]), hi = _mm512_set1_epi32(rows.hi[r]);
      va = _mm512_cmpge_epi32_mask(pos_a, lo) & _mm512_cmplt_epi32_mask(pos_a, hi);
      vb = _mm512_cmpge_epi32_mask(pos_b, lo) & _mm512_cmplt_epi32_mask(pos_b, hi);
    }
    const __m512 mx = _mm512_max_ps(_mm512_mask_mov_ps(neg_inf, va, sa[r]), _mm512_mask_mov_ps(neg_inf, vb, sb[r]));
    float m = st.m[r];
    if (_mm512_cmp_ps_mask(mx, _mm512_set1_ps(m + kRescaleMargin), _CMP_GT_OQ)) {
      const float m_new = _mm512_reduce_max_ps(mx);
      if (m != -std::numeric_limits<float>::infinity()) {
        const __m512 cv = _mm512_set1_ps(std::exp2(m - m_new));
        float* a = st.acc + static_cast<size_t>(r) * dh;
        for (int d = 0; d < dh; d += 16) _mm512_store_ps(a + d, _mm512_mul_ps(_mm512_load_ps(a + d), cv));
        _mm512_store_ps(st.l + r * 16, _mm512_mul_ps(_mm512_load_ps(st.l + r * 16), cv));
      }
      st.m[r] = m = m_new;
    }
    const __m512 mv = _mm512_set1_ps(m);
    const __m512 pa = _mm512_maskz_mov_ps(va, exp2_avx512(_mm512_sub_ps(sa[r], mv)));
    const __m512 pb = _mm512_maskz_mov_ps(vb, exp2_avx512(_mm512_sub_ps(sb[r], mv)));
    _mm512_store_ps(st.l + r * 16, _mm512_add_ps(_mm512_load_ps(st.l + r * 16), _mm512_add_ps(pa, pb)));
    _mm512_store_ps(st.p + r * 32, pa);
    _mm512_store_ps(st.p + r * 32 + 16, pb);
  }
  if (c0 + kStepKeys > end) {
    __mmask32 tail[16];
    for (int kp = 0; kp < 16; ++kp) {
      const int key = c0 + 2 * kp;
      tail[kp] = (key < end ? __mmask32(0x55555555u) : 0) | (key + 1 < end ? __mmask32(0xaaaaaaaau) : 0);
    }
    all_values<Widen, R, true>(ch, dh, st, tail);
  } else {
    all_values<Widen, R, false>(ch, dh, st, nullptr);
  }
}

template <typename Widen>
void attend_units(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units, int n_units,
                  float scale) {
  const int dh = kv.head_dim;
  FERRY_ASSERT(n_units >= 1 && n_units <= kMaxUnits && dh % 16 == 0);
  const size_t unit_bytes = unit_state_bytes(dh);
  char* base = static_cast<char*>(scratch(ScratchSlot::Attention, unit_bytes * n_units));
  int begin = units[0].rows.lo[0], end = 0;
  int unit_end[kMaxUnits];
  for (int u = 0; u < n_units; ++u) {
    FERRY_ASSERT(units[u].rows.n >= 1 && units[u].rows.n <= kMaxAttendRows);
    unit_begin(units[u].rows, dh, scale, unit_state(base + unit_bytes * u, dh));
    for (int r = 0; r < units[u].rows.n; ++r) begin = std::min(begin, units[u].rows.lo[r]);
    unit_end[u] = rows_end(units[u].rows);
    end = std::max(end, unit_end[u]);
  }
  const int c_begin = begin / 16 * 16;
  auto next_step = [&](int& c0, int& u) {  // the unit step after (c0, u); c0 = -1 when there is none
    while (c0 >= 0) {
      if (++u == n_units) {
        u = 0;
        c0 += kStepKeys;
        if (c0 >= end) c0 = -1;
      }
      if (c0 >= 0 && c0 < unit_end[u]) return;
    }
  };
  int pc = c_begin, pu = -1;  // the prefetch cursor: one unit step ahead of the walk
  next_step(pc, pu);
  next_step(pc, pu);
  for (int c0 = c_begin; c0 < end; c0 += kStepKeys)
    for (int u = 0; u < n_units; ++u) {
      if (c0 >= unit_end[u]) continue;
      const UnitState st = unit_state(base + unit_bytes * u, dh);
      const StepLines pf = pc >= 0 ? step_lines(kv, units[pu].kv_head, block_table, pc, unit_end[pu]) : StepLines{};
      next_step(pc, pu);
      switch (units[u].rows.n) {
#define FERRY_STEP(R) \
  case R: unit_step<Widen, R>(kv, units[u].kv_head, block_table, units[u].rows, c0, st, pf); break;
        FERRY_STEP(1) FERRY_STEP(2) FERRY_STEP(3) FERRY_STEP(4) FERRY_STEP(5) FERRY_STEP(6) FERRY_STEP(7) FERRY_STEP(8)
#undef FERRY_STEP
      }
    }
  for (int u = 0; u < n_units; ++u) unit_finish(units[u].rows, dh, unit_state(base + unit_bytes * u, dh));
}

// Independent chains of one instruction, timed on this thread: seconds for `iters` rounds of 12.
constexpr int kChains = 12;

FERRY_TARGET_AVX512 double time_fma(int iters) {
  __m512 a[kChains];
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-7f);
  for (int c = 0; c < kChains; ++c) a[c] = _mm512_set1_ps(static_cast<float>(c));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) a[c] = _mm512_fmadd_ps(a[c], x, y);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float s = 0;
  for (int c = 0; c < kChains; ++c) s += _mm512_reduce_add_ps(a[c]);
  asm volatile("" : : "x"(s));
  return dt;
}

FERRY_TARGET_AVX512 double time_dpbf16(int iters) {
  __m512 a[kChains];
  const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x33803380);
  for (int c = 0; c < kChains; ++c) a[c] = _mm512_set1_ps(static_cast<float>(c));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) a[c] = _mm512_dpbf16_ps(a[c], x, y);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float s = 0;
  for (int c = 0; c < kChains; ++c) s += _mm512_reduce_add_ps(a[c]);
  asm volatile("" : : "x"(s));
  return dt;
}

std::atomic<int> g_bf16_kernel_override{static_cast<int>(Bf16AttentionKernel::Auto)};

}  // namespace

void attend_fma_avx512(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units, int n_units,
                       float scale) {
  if (kv.dtype == DType::F16) attend_units<WidenF16>(kv, block_table, units, n_units, scale);
  else attend_units<WidenBf16>(kv, block_table, units, n_units, scale);
}

bool bf16_dot_product_is_fast() {
  static const bool fast = [] {
    if (const char* e = std::getenv("FERRY_ATTN_BF16")) {  // "dpbf16" or "fma": for measurements
      if (std::strcmp(e, "dpbf16") == 0) return true;
      if (std::strcmp(e, "fma") == 0) return false;
    }
    // ~0.1 ms each, best of 5: vdpbf16ps does 64 flops, an FMA 32. The vdpbf16ps kernel needs R dot
    // products per line where this one needs 2R FMAs and 2 conversions, so it wins from a flop rate of
    // about R / (R + 1) of the FMA's; at or above the FMA rate is clear of the noise.
    double t_fma = 1e9, t_dp = 1e9;
    for (int i = 0; i < 5; ++i) {
      t_fma = std::min(t_fma, time_fma(4000));
      t_dp = std::min(t_dp, time_dpbf16(4000));
    }
    return 64.0 / t_dp >= 32.0 / t_fma;
  }();
  return fast;
}

void set_bf16_attention_kernel(Bf16AttentionKernel k) { g_bf16_kernel_override.store(static_cast<int>(k)); }
Bf16AttentionKernel bf16_attention_kernel() { return static_cast<Bf16AttentionKernel>(g_bf16_kernel_override.load()); }

}  // namespace ferry::cpu
