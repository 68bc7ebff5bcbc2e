// The attention kernels' dispatch, the reference, and the AVX-512 BF16 (vdpbf16ps) kernel. The others:
// attention_amx.cpp (AMX tiles, bf16 cache), attention_fma.cpp (f32 FMAs on widened bf16 / f16 lines),
// attention_portable.cpp (any cache dtype, any ISA level). Which serves a call (attend()):
//   Avx512 + AMX active, bf16 cache  -> AMX
//   Avx512, bf16 cache               -> vdpbf16ps where it is at least as fast as f32 FMAs (Zen 4),
//                                       else FMA (Intel: vdpbf16ps runs at half the FMA rate there)
//   Avx512, f16 cache                -> FMA
//   otherwise                        -> portable
// The vdpbf16ps kernel takes 32 keys per step: scores of all rows with vdpbf16ps over the [Dh/2][16][2]
// key layout (bf16 queries, pre-scaled), online softmax in f32, then the values with vdpbf16ps over the
// [8][Dh][2] value layout (bf16 probabilities) into f32 accumulators.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cpu/attention_kernels.h"
#include "cpu/kv_elem.h"
#include "cpu/scratch.h"
#include "cpu/simd_math.h"
#include "ferry/error.h"

namespace ferry::cpu {

void check_kv_layout(const KvCacheLayer& kv, const AttentionParams& p) {
  FERRY_ASSERT(kv.k && kv.v && kv.n_head_kv > 0 && kv.head_dim > 0);
  FERRY_ASSERT_MSG(kv.block_size > 0 && kv.block_size % 16 == 0, "KV block size must be a multiple of 16");
  FERRY_ASSERT_MSG(kv.head_dim % 2 == 0, "head_dim must be even");
  FERRY_ASSERT(kv.dtype == DType::BF16 || kv.dtype == DType::F16 || kv.dtype == DType::F32);
  FERRY_ASSERT(p.n_head > 0 && p.n_head % kv.n_head_kv == 0);
}

void attend(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units, int n_units, float scale,
            Isa isa) {
  if (isa == Isa::Avx512 && kv.head_dim % 16 == 0 && kv.dtype == DType::BF16) {
    const Bf16AttentionKernel k = bf16_attention_kernel();
    if (amx_active()) attend_bf16_amx(kv, block_table, units, n_units, scale);
    else if (k == Bf16AttentionKernel::Dpbf16 || (k == Bf16AttentionKernel::Auto && bf16_dot_product_is_fast()))
      attend_bf16_avx512(kv, block_table, units, n_units, scale);
    else
      attend_fma_avx512(kv, block_table, units, n_units, scale);
  } else if (isa == Isa::Avx512 && kv.head_dim % 16 == 0 && kv.dtype == DType::F16) {
    attend_fma_avx512(kv, block_table, units, n_units, scale);
  } else {
    attend_portable(kv, block_table, units, n_units, scale, isa);
  }
}

void attend_ref(const KvCacheLayer& kv, int kv_head, const int32_t* block_table, const float* q, int lo, int hi,
                float scale, float* out) {
  const int dh = kv.head_dim, bs = kv.block_size;
  std::vector<double> score(std::max(0, hi - lo));
  double mx = -std::numeric_limits<double>::infinity();
  for (int pos = lo; pos < hi; ++pos) {
    const size_t run = kv.run_offset(block_table[pos / bs], kv_head);
    double s = 0.0;
    for (int d = 0; d < dh; ++d) s += static_cast<double>(q[d]) * kv_load(kv.k, kv.dtype, run + key_index(d, pos % bs, bs));
    score[pos - lo] = s * scale;
    mx = std::max(mx, score[pos - lo]);
  }
  double sum = 0.0;
  for (double& s : score) sum += s = std::exp(s - mx);
  for (int d = 0; d < dh; ++d) {
    double acc = 0.0;
    for (int pos = lo; pos < hi; ++pos) {
      const size_t run = kv.run_offset(block_table[pos / bs], kv_head);
      acc += score[pos - lo] * kv_load(kv.v, kv.dtype, run + value_index(d, pos % bs, dh));
    }
    out[d] = hi > lo ? static_cast<float>(acc / sum) : 0.0f;
  }
}

StepLines step_lines(const KvCacheLayer& kv, int kv_head, const int32_t* block_table, int c0, int end) {
  StepLines pf;
  const int bs = kv.block_size, dh = kv.head_dim;
  pf.kstride = static_cast<size_t>(bs) * 4;
  pf.lines = dh / 2;
  for (int c = 0; c < 2; ++c) {
    const int key0 = c0 + 16 * c;
    if (key0 >= end) break;
    const size_t run = kv.run_offset(block_table[key0 / bs], kv_head);
    pf.k[c] = reinterpret_cast<const char*>(static_cast<const uint16_t*>(kv.k) + run + static_cast<size_t>(key0 % bs) * 2);
    pf.v[c] = reinterpret_cast<const char*>(static_cast<const uint16_t*>(kv.v) + run +
                                            static_cast<size_t>(key0 % bs / 2) * dh * 2);
  }
  return pf;
}

namespace {

// A step covers 32 keys: two 16-key chunks, each inside one cache block (block_size is a multiple of 16).
constexpr int kStepKeys = 32;
constexpr int kMaxUnits = 64;            // units per call
constexpr float kRescaleMargin = 12.0f;  // log2 units
constexpr float kLog2e = 1.44269504088896341f;

struct StepView {
  const uint16_t* k[2];  // first key pair of the chunk in its [Dh/2][block_size][2] key run
  const uint16_t* v[2];  // first key pair of the chunk in its [block_size/2][Dh][2] value run
  bool has[2];           // the chunk holds keys before the end
};

// Where the step of keys c0 .. c0 + 31 of kv head `kv_head` lives; keys at or past `end` are absent.
inline StepView step_view(const KvCacheLayer& kv, int kv_head, const int32_t* block_table, int c0, int end) {
  StepView sv;
  const int bs = kv.block_size, dh = kv.head_dim;
  for (int c = 0; c < 2; ++c) {
    const int key0 = c0 + 16 * c;
    sv.has[c] = key0 < end;
    const int at = sv.has[c] ? key0 : c0;  // an absent chunk aliases the first (never read past the table)
    const size_t run = kv.run_offset(block_table[at / bs], kv_head);
    sv.k[c] = static_cast<const uint16_t*>(kv.k) + run + static_cast<size_t>(at % bs) * 2;
    sv.v[c] = static_cast<const uint16_t*>(kv.v) + run + static_cast<size_t>(at % bs / 2) * dh * 2;
  }
  return sv;
}

// Values of one step for RP (1 or 2) rows over W x 16 dims starting at dim chunk dc0; p_pairs [RP][16]
// bf16 pairs (row stride 16). For each key pair the W lines are adjacent, so one pass reads the values
// in address order; the next row pair reads them again from L1.
// Not inlined: one copy per (RP, W, masked) keeps the file quick to compile (sanitizer builds included).
template <int RP, int W, bool kMasked>
__attribute__((noinline)) FERRY_TARGET_AVX512 void accumulate_values(const StepView& sv, int dh, int dc0, const int32_t* p_pairs, float* acc,
                                           const __mmask32* tail) {
  __m512 a[RP][W];
  for (int r = 0; r < RP; ++r)
    for (int w = 0; w < W; ++w) a[r][w] = _mm512_loadu_ps(acc + static_cast<size_t>(r) * dh + (dc0 + w) * 16);
  for (int c = 0; c < 2; ++c) {
    if (!sv.has[c]) break;
    for (int kp = 0; kp < 8; ++kp) {
      __m512bh pb[RP];
      for (int r = 0; r < RP; ++r) pb[r] = (__m512bh)_mm512_set1_epi32(p_pairs[r * 16 + c * 8 + kp]);
      const uint16_t* row = sv.v[c] + (static_cast<size_t>(kp) * dh + dc0 * 16) * 2;
      for (int w = 0; w < W; ++w) {
        const __m512bh vv = (__m512bh)(kMasked ? _mm512_maskz_loadu_epi16(tail[c * 8 + kp], row + w * 32)
                                               : _mm512_loadu_si512(row + w * 32));
        for (int r = 0; r < RP; ++r) a[r][w] = _mm512_dpbf16_ps(a[r][w], vv, pb[r]);
      }
    }
  }
  for (int r = 0; r < RP; ++r)
    for (int w = 0; w < W; ++w) _mm512_storeu_ps(acc + static_cast<size_t>(r) * dh + (dc0 + w) * 16, a[r][w]);
}

template <int RP, bool kMasked>
FERRY_TARGET_AVX512 void accumulate_values_rows(const StepView& sv, int dh, const int32_t* p_pairs, float* acc,
                                                const __mmask32* tail) {
  int dc0 = 0;  // dim chunks of 16 in passes of 8, 4, 2, 1
  for (; dc0 + 8 <= dh / 16; dc0 += 8) accumulate_values<RP, 8, kMasked>(sv, dh, dc0, p_pairs, acc, tail);
  if (dc0 + 4 <= dh / 16) {
    accumulate_values<RP, 4, kMasked>(sv, dh, dc0, p_pairs, acc, tail);
    dc0 += 4;
  }
  if (dc0 + 2 <= dh / 16) {
    accumulate_values<RP, 2, kMasked>(sv, dh, dc0, p_pairs, acc, tail);
    dc0 += 2;
  }
  if (dc0 < dh / 16) accumulate_values<RP, 1, kMasked>(sv, dh, dc0, p_pairs, acc, tail);
}

// Online-softmax state of one unit, in per-thread scratch: q pairs [8][Dh/2] i32 (bf16, pre-scaled by
// scale * log2(e)), acc [8][Dh] f32, p pairs [8][16] i32 (bf16 probabilities of the current step),
// l [8][16] f32 (row sums, reduced at the end), m [8] f32 (reference maxima, log2 units).
struct UnitState {
  int32_t* qb;
  float* acc;
  int32_t* pp;
  float* l;
  float* m;
};

// Keys at or past this position are not read: they may never have been written.
inline int rows_end(const AttendRows& rows) {
  int end = 0;
  for (int r = 0; r < rows.n; ++r) end = std::max(end, rows.hi[r]);
  return end;
}

size_t unit_state_bytes(int dh) {
  return kMaxAttendRows * (static_cast<size_t>(dh) / 2 * 4 + static_cast<size_t>(dh) * 4 + 16 * 4 + 16 * 4 + 4);
}

UnitState unit_state(char* base, int dh) {
  UnitState st;
  st.qb = reinterpret_cast<int32_t*>(base);
  st.acc = reinterpret_cast<float*>(base + kMaxAttendRows * static_cast<size_t>(dh) / 2 * 4);
  st.pp = reinterpret_cast<int32_t*>(st.acc + kMaxAttendRows * static_cast<size_t>(dh));
  st.l = reinterpret_cast<float*>(st.pp + kMaxAttendRows * 16);
  st.m = st.l + kMaxAttendRows * 16;
  return st;
}

// All rows, in pairs; the masked loads only for the step that reaches the end.
template <int R>
FERRY_TARGET_AVX512 void accumulate_step_values(const StepView& sv, int dh, bool masked, UnitState& st,
                                                const __mmask32* tail) {
  for (int r = 0; r + 1 < R; r += 2) {
    if (masked) accumulate_values_rows<2, true>(sv, dh, st.pp + r * 16, st.acc + static_cast<size_t>(r) * dh, tail);
    else accumulate_values_rows<2, false>(sv, dh, st.pp + r * 16, st.acc + static_cast<size_t>(r) * dh, tail);
  }
  if (R % 2) {
    const int r = R - 1;
    if (masked) accumulate_values_rows<1, true>(sv, dh, st.pp + r * 16, st.acc + static_cast<size_t>(r) * dh, tail);
    else accumulate_values_rows<1, false>(sv, dh, st.pp + r * 16, st.acc + static_cast<size_t>(r) * dh, tail);
  }
}

template <int R>
FERRY_TARGET_AVX512 void unit_begin(const AttendRows& rows, int dh, float scale, UnitState& st) {
  const int dh2 = dh / 2;
  const __m512 vscale = _mm512_set1_ps(scale * kLog2e);
  for (int r = 0; r < R; ++r) {
    for (int d = 0; d < dh; d += 16) {
      const __m256i b = (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(rows.q[r] + d), vscale));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.qb + static_cast<size_t>(r) * dh2 + d / 2), b);
      _mm512_storeu_ps(st.acc + static_cast<size_t>(r) * dh + d, _mm512_setzero_ps());
    }
    _mm512_storeu_ps(st.l + r * 16, _mm512_setzero_ps());
    st.m[r] = -std::numeric_limits<float>::infinity();
  }
}

// The 32 keys at positions c0 .. c0 + 31 for the rows of one unit: scores by vdpbf16ps over the key
// layout (16 keys per load, each broadcast query pair feeding both chunks), online softmax, then the
// values by vdpbf16ps with bf16 probabilities.
template <int R>
FERRY_TARGET_AVX512 void unit_step(const KvCacheLayer& kv, int kv_head, const int32_t* block_table,
                                   const AttendRows& rows, int c0, UnitState& st, const StepLines& pf) {
  const int dh = kv.head_dim, dh2 = dh / 2, bs = kv.block_size;
  const int end = rows_end(rows);
  const StepView sv = step_view(kv, kv_head, block_table, c0, end);
  // Scores: sa for the first chunk, sb for the second. When both chunks lie in one block (block_size >= 32)
  // their key lines interleave in address order and share each broadcast query pair; otherwise (two
  // blocks of 16) each chunk is read in its own pass so every pass is sequential.
  __m512 sa[R], sb[R];
  for (int r = 0; r < R; ++r) sa[r] = sb[r] = _mm512_setzero_ps();
  const size_t kstride = static_cast<size_t>(bs) * 2;  // elements between consecutive dim pairs
  if (bs >= kStepKeys) {
    for (int d2 = 0; d2 < dh2; ++d2) {
      prefetch_lines(pf, false, d2, d2 + 1);  // the next unit step's lines, spread over this loop
      prefetch_lines(pf, true, d2, d2 + 1);
      const __m512bh ka = (__m512bh)_mm512_loadu_si512(sv.k[0] + d2 * kstride);
      const __m512bh kb = (__m512bh)_mm512_loadu_si512(sv.k[1] + d2 * kstride);
      for (int r = 0; r < R; ++r) {
        const __m512bh qv = (__m512bh)_mm512_set1_epi32(st.qb[r * dh2 + d2]);
        sa[r] = _mm512_dpbf16_ps(sa[r], ka, qv);
        sb[r] = _mm512_dpbf16_ps(sb[r], kb, qv);
      }
    }
  } else {
    // Two accumulators per row and chunk (even / odd dim pairs) to overlap the dot-product latency.
    for (int c = 0; c < 2; ++c) {
      if (!sv.has[c]) break;
      __m512 e[R], o[R];
      for (int r = 0; r < R; ++r) e[r] = o[r] = _mm512_setzero_ps();
      for (int d2 = 0; d2 < dh2; d2 += 2) {
        if (c == 0) {  // the next unit step's lines, spread over the first pass
          prefetch_lines(pf, false, d2, d2 + 2);
          prefetch_lines(pf, true, d2, d2 + 2);
        }
        const __m512bh k0 = (__m512bh)_mm512_loadu_si512(sv.k[c] + d2 * kstride);
        const __m512bh k1 = (__m512bh)_mm512_loadu_si512(sv.k[c] + (d2 + 1) * kstride);
        for (int r = 0; r < R; ++r) {
          e[r] = _mm512_dpbf16_ps(e[r], k0, (__m512bh)_mm512_set1_epi32(st.qb[r * dh2 + d2]));
          o[r] = _mm512_dpbf16_ps(o[r], k1, (__m512bh)_mm512_set1_epi32(st.qb[r * dh2 + d2 + 1]));
        }
      }
      for (int r = 0; r < R; ++r) (c == 0 ? sa[r] : sb[r]) = _mm512_add_ps(e[r], o[r]);
    }
  }
  // Online softmax per row in log2 units, lazily rescaled: a row keeps a reference maximum m and rescales
  // its accumulators only when a score exceeds m + kRescaleMargin (so p = 2^(s - m) <= 2^12, harmless in
  // bf16 and f32); the row sums stay 16-lane vectors. Probabilities of masked keys are 0.
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i pos_a = _mm512_add_epi32(iota, _mm512_set1_epi32(c0));
  const __m512i pos_b = _mm512_add_epi32(iota, _mm512_set1_epi32(c0 + 16));
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
      if (m != -std::numeric_limits<float>::infinity()) {  // rows without a key yet have nothing to rescale
        const __m512 cv = _mm512_set1_ps(std::exp2(m - m_new));
        float* a = st.acc + static_cast<size_t>(r) * dh;
        for (int d = 0; d < dh; d += 16) _mm512_storeu_ps(a + d, _mm512_mul_ps(_mm512_loadu_ps(a + d), cv));
        _mm512_storeu_ps(st.l + r * 16, _mm512_mul_ps(_mm512_loadu_ps(st.l + r * 16), cv));
      }
      st.m[r] = m = m_new;
    }
    const __m512 mv = _mm512_set1_ps(m);
    const __m512 pa = _mm512_maskz_mov_ps(va, exp2_avx512(_mm512_sub_ps(sa[r], mv)));
    const __m512 pb = _mm512_maskz_mov_ps(vb, exp2_avx512(_mm512_sub_ps(sb[r], mv)));
    _mm512_storeu_ps(st.l + r * 16, _mm512_add_ps(_mm512_loadu_ps(st.l + r * 16), _mm512_add_ps(pa, pb)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.pp + r * 16), (__m256i)_mm512_cvtneps_pbh(pa));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.pp + r * 16 + 8), (__m256i)_mm512_cvtneps_pbh(pb));
  }
  // Values of keys at or past the end are masked to 0 before use (0 * NaN would poison the sums).
  __mmask32 tail[16];
  for (int kp = 0; kp < 16; ++kp) {
    const int key = c0 + 2 * kp;
    tail[kp] = (key < end ? __mmask32(0x55555555u) : 0) | (key + 1 < end ? __mmask32(0xaaaaaaaau) : 0);
  }
  accumulate_step_values<R>(sv, dh, c0 + kStepKeys > end, st, tail);
}

template <int R>
FERRY_TARGET_AVX512 void unit_finish(const AttendRows& rows, int dh, UnitState& st) {
  for (int r = 0; r < R; ++r) {
    const float l = _mm512_reduce_add_ps(_mm512_loadu_ps(st.l + r * 16));
    const __m512 inv = _mm512_set1_ps(l > 0.0f ? 1.0f / l : 0.0f);
    for (int d = 0; d < dh; d += 16)
      _mm512_storeu_ps(rows.out[r] + d, _mm512_mul_ps(_mm512_loadu_ps(st.acc + static_cast<size_t>(r) * dh + d), inv));
  }
}

// Calls fn.template operator()<R>() with R = n (1..8) as a compile-time constant.
template <typename Fn>
void with_rows(int n, Fn&& fn) {
  switch (n) {
    case 1: fn.template operator()<1>(); break;
    case 2: fn.template operator()<2>(); break;
    case 3: fn.template operator()<3>(); break;
    case 4: fn.template operator()<4>(); break;
    case 5: fn.template operator()<5>(); break;
    case 6: fn.template operator()<6>(); break;
    case 7: fn.template operator()<7>(); break;
    case 8: fn.template operator()<8>(); break;
    default: FERRY_ASSERT(!"attend: 1..8 rows per unit");
  }
}

}  // namespace

void attend_bf16_avx512(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units, int n_units,
                        float scale) {
  const int dh = kv.head_dim;
  FERRY_ASSERT(n_units >= 1 && n_units <= kMaxUnits);
  char* base = static_cast<char*>(scratch(ScratchSlot::Attention, unit_state_bytes(dh) * n_units));
  int begin = units[0].rows.lo[0], end = 0;
  int unit_end[kMaxUnits];
  for (int u = 0; u < n_units; ++u) {
    UnitState st = unit_state(base + unit_state_bytes(dh) * u, dh);
    with_rows(units[u].rows.n, [&]<int R>() { unit_begin<R>(units[u].rows, dh, scale, st); });
    for (int r = 0; r < units[u].rows.n; ++r) begin = std::min(begin, units[u].rows.lo[r]);
    unit_end[u] = rows_end(units[u].rows);
    end = std::max(end, unit_end[u]);
  }
  const int c_begin = begin / 16 * 16;
  // The unit step after (c0, u) in walk order; c0 = -1 when there is none.
  auto next_step = [&](int& c0, int& u) {
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
      UnitState st = unit_state(base + unit_state_bytes(dh) * u, dh);
      const StepLines pf = pc >= 0 ? step_lines(kv, units[pu].kv_head, block_table, pc, unit_end[pu]) : StepLines{};
      next_step(pc, pu);
      with_rows(units[u].rows.n,
                [&]<int R>() { unit_step<R>(kv, units[u].kv_head, block_table, units[u].rows, c0, st, pf); });
    }
  for (int u = 0; u < n_units; ++u) {
    UnitState st = unit_state(base + unit_state_bytes(dh) * u, dh);
    with_rows(units[u].rows.n, [&]<int R>() { unit_finish<R>(units[u].rows, dh, st); });
  }
}

}  // namespace ferry::cpu
