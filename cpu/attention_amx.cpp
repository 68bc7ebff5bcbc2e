// The AMX-BF16 attention kernel (Intel Sapphire Rapids and later), used when amx_active() (isa.h).
//
// The cache layout (attention.h) is already made of AMX tiles: within a (block, kv head) run
//   keys   [Dh/2][block_size][2]: 16 dim pairs x 16 keys x 2 = one B tile of Q.K^T (64-byte rows,
//          block_size * 4 bytes apart), K = 32 dims, N = 16 keys;
//   values [block_size/2][Dh][2]: 16 key pairs x 16 dims x 2 = one B tile of P.V (Dh * 4 bytes apart),
//          K = 32 keys, N = 16 dims.
// So a step of 32 keys for a unit of R query rows (R <= 8: a GQA group, or tokens x heads in prefill) is
// 2 x Dh/32 tile products for the scores and Dh/16 for the values, with no reordering. The tiles do in a
// few hundred cycles what costs vdpbf16ps ~2000 on this Intel (where it runs at half the f32 FMA rate), so
// the kernel is bound by reading the cache, not by arithmetic.
//
// Between the two products the scores go through memory: tiles -> [R][32] f32 -> online softmax with
// AVX-512 -> P [R][32] bf16 -> an A tile. The queries are pre-scaled by scale * log2(e), so the scores
// are in log2 units and p = 2^(s - m). The softmax is lazy: a row keeps a reference maximum m and
// rescales its accumulators only when a score exceeds m + kRescaleMargin (so p <= 2^12, harmless in bf16
// and f32), which after the first few steps almost never happens; the row sums l are kept as 16-lane
// vectors and reduced once at the end. The output accumulators [R][Dh] f32 live in memory and are loaded
// into a C tile, multiplied into and stored back, 16 dims at a time.
//
// Memory: every run of keys or values is a few KiB and the hardware prefetchers do not cross 4 KiB
// pages, so the tile loads would wait on DRAM. While a unit step computes, the cache lines of the next
// unit step are prefetched into L2, a few before each tile load (each prefetch holds an L1 fill buffer
// until its line arrives; a burst would starve the tile loads). Measured on a 2-vCPU Xeon 8592+ slice,
// 64 sequences x 2048 keys: without the prefetches ~65%, with them ~80% of a plain read of the same KV.
//
// Keys at or past the end of the sequence may never have been written (NaN): their scores are masked
// out, and in the last step the values are copied with those keys zeroed before the tile product
// (0 * NaN would poison the sums).
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/attention_kernels.h"
#include "cpu/scratch.h"
#include "cpu/simd.h"
#include "ferry/error.h"

#ifndef FERRY_TARGET_AMX
#define FERRY_TARGET_AMX \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2")))
#endif

namespace ferry::cpu {

namespace {

constexpr int kStepKeys = 32;
constexpr int kMaxUnits = 64;            // units per call
constexpr float kRescaleMargin = 12.0f;  // log2 units
constexpr float kLog2e = 1.44269504088896341f;
constexpr int kPrefetchAhead = 1;        // unit steps

// Tile instructions as inline asm with the register number a template constant (GCC's intrinsics paste
// it as text), and with a memory clobber on loads and stores so the compiler never moves the AVX-512
// stores of the probabilities past the tile load that reads them, nor the loads of the scores before the
// tile store that writes them.
template <int T>
inline void tile_zero() {
  asm volatile("tilezero %%tmm%c0" : : "n"(T));
}
template <int T>
inline void tile_load(const void* p, size_t stride) {
  asm volatile("tileloadd (%0,%1,1), %%tmm%c2" : : "r"(p), "r"(stride), "n"(T) : "memory");
}
template <int T>
inline void tile_store(void* p, size_t stride) {
  asm volatile("tilestored %%tmm%c2, (%0,%1,1)" : : "r"(p), "r"(stride), "n"(T) : "memory");
}
template <int C, int A, int B>  // C += A . B
inline void tile_dp() {
  asm volatile("tdpbf16ps %%tmm%c2, %%tmm%c1, %%tmm%c0" : : "n"(C), "n"(A), "n"(B));
}

// One configuration serves every block size and head dim (loading one costs ~300 cycles); R = the
// unit's rows:
//   tmm0, tmm1  [R][64 B]  C: scores of keys 0-15 / 16-31, then output accumulators
//   tmm2        [R][64 B]  A: queries (32 dims), then probabilities (32 keys)
//   tmm3, tmm4  [16][64 B] B: keys (16 dim pairs x 16 keys) / values (16 key pairs x 16 dims)
//   tmm5, tmm6  [R][32 B]  A: queries (16 dims) / probabilities of keys 0-15 and 16-31
//   tmm7        [8][64 B]  B: half tiles (8 dim pairs, or the 8 key pairs of one 16-key chunk)
// Half tiles serve a Dh that is an odd multiple of 16 and steps whose two 16-key chunks lie in two
// blocks (block_size 16).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

FERRY_TARGET_AMX void configure_tiles(int r) {
  TileConfig cfg;
  const int shapes[8][2] = {{r, 64}, {r, 64}, {r, 64}, {16, 64}, {16, 64}, {r, 32}, {r, 32}, {8, 64}};
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = static_cast<uint8_t>(shapes[t][0]);
    cfg.colsb[t] = static_cast<uint16_t>(shapes[t][1]);
  }
  // GCC 12 may drop the stores above as dead when only the builtin reads them: force them out.
  asm volatile("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}

FERRY_TARGET_AMX void release_tiles() { _tile_release(); }

// 2^x for x <= kRescaleMargin (degree-5 polynomial on the fraction, ~2e-7 relative error; x = -inf or
// NaN only in lanes the caller masks out).
FERRY_TARGET_AMX inline __m512 exp2_avx512(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);  // [-0.5, 0.5]
  __m512 p = _mm512_set1_ps(1.3333558146e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108665e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650696e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718056e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Per-unit state in per-thread scratch, every array 64-byte aligned:
//   q   [R][Dh] bf16 (pre-scaled)     acc [R][Dh] f32      s [R][32] f32 (scores of one step)
//   p   [R][32] bf16                  l   [R][16] f32      m [R] f32 (reference maxima)
struct UnitState {
  uint16_t* q;
  float* acc;
  float* s;
  uint16_t* p;
  float* l;
  float* m;
};

size_t round64(size_t n) { return (n + 63) / 64 * 64; }

size_t unit_state_bytes(int dh) {
  const size_t r = kMaxAttendRows;
  return round64(r * dh * 2) + round64(r * dh * 4) + round64(r * 32 * 4) + round64(r * 32 * 2) +
         round64(r * 16 * 4) + round64(r * 4);
}

UnitState unit_state(char* base, int dh) {
  const size_t r = kMaxAttendRows;
  UnitState st;
  st.q = reinterpret_cast<uint16_t*>(base);
  base += round64(r * dh * 2);
  st.acc = reinterpret_cast<float*>(base);
  base += round64(r * dh * 4);
  st.s = reinterpret_cast<float*>(base);
  base += round64(r * 32 * 4);
  st.p = reinterpret_cast<uint16_t*>(base);
  base += round64(r * 32 * 2);
  st.l = reinterpret_cast<float*>(base);
  base += round64(r * 16 * 4);
  st.m = reinterpret_cast<float*>(base);
  return st;
}

inline int rows_end(const AttendRows& rows) {
  int end = 0;
  for (int r = 0; r < rows.n; ++r) end = std::max(end, rows.hi[r]);
  return end;
}

FERRY_TARGET_AMX void unit_begin(const AttendRows& rows, int dh, float scale, const UnitState& st) {
  const __m512 vscale = _mm512_set1_ps(scale * kLog2e);
  for (int r = 0; r < rows.n; ++r) {
    for (int d = 0; d < dh; d += 16) {
      const __m256i b = (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(rows.q[r] + d), vscale));
      _mm256_store_si256(reinterpret_cast<__m256i*>(st.q + static_cast<size_t>(r) * dh + d), b);
      _mm512_store_ps(st.acc + static_cast<size_t>(r) * dh + d, _mm512_setzero_ps());
    }
    _mm512_store_ps(st.l + r * 16, _mm512_setzero_ps());
    st.m[r] = -std::numeric_limits<float>::infinity();
  }
}

FERRY_TARGET_AMX void unit_finish(const AttendRows& rows, int dh, const UnitState& st) {
  for (int r = 0; r < rows.n; ++r) {
    const float l = _mm512_reduce_add_ps(_mm512_load_ps(st.l + r * 16));
    const __m512 inv = _mm512_set1_ps(l > 0.0f ? 1.0f / l : 0.0f);
    for (int d = 0; d < dh; d += 16)
      _mm512_storeu_ps(rows.out[r] + d, _mm512_mul_ps(_mm512_load_ps(st.acc + static_cast<size_t>(r) * dh + d), inv));
  }
}

// Copies the value pairs of one 16-key chunk (8 rows of [Dh][2]) with keys at or past `end` zeroed;
// `key0` is the chunk's first key, `src` null for a chunk wholly past the end.
FERRY_TARGET_AMX void copy_tail_values(const uint16_t* src, int key0, int end, int dh, uint16_t* dst) {
  for (int kp = 0; kp < 8; ++kp) {
    const int key = key0 + 2 * kp;
    const __mmask32 keep = src == nullptr ? 0
                                          : (key < end ? __mmask32(0x55555555u) : 0) |
                                                (key + 1 < end ? __mmask32(0xaaaaaaaau) : 0);
    for (int d = 0; d < 2 * dh; d += 32) {
      const size_t at = static_cast<size_t>(kp) * dh * 2 + d;
      _mm512_store_si512(dst + at, keep ? _mm512_maskz_loadu_epi16(keep, src + at) : _mm512_setzero_si512());
    }
  }
}

// Part `part` of `parts` of the key (values = false) or value lines of `pf`.
__attribute__((always_inline)) inline void prefetch_part(const StepLines& pf, bool values, int part, int parts) {
  prefetch_lines(pf, values, pf.lines * part / parts, pf.lines * (part + 1) / parts);
}

// Online softmax of one step's scores st.s [R][32] into st.p [R][32] bf16, lazily rescaled (see top).
FERRY_TARGET_AMX void softmax_step(const AttendRows& rows, int c0, int dh, const UnitState& st) {
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i pos0 = _mm512_add_epi32(iota, _mm512_set1_epi32(c0));
  const __m512i pos1 = _mm512_add_epi32(pos0, _mm512_set1_epi32(16));
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int r = 0; r < rows.n; ++r) {
    const __m512 s0 = _mm512_load_ps(st.s + r * 32), s1 = _mm512_load_ps(st.s + r * 32 + 16);
    __mmask16 m0 = 0xffff, m1 = 0xffff;
    if (c0 < rows.lo[r] || c0 + kStepKeys > rows.hi[r]) {
      const __m512i lo = _mm512_set1_epi32(rows.lo[r]), hi = _mm512_set1_epi32(rows.hi[r]);
      m0 = _mm512_cmpge_epi32_mask(pos0, lo) & _mm512_cmplt_epi32_mask(pos0, hi);
      m1 = _mm512_cmpge_epi32_mask(pos1, lo) & _mm512_cmplt_epi32_mask(pos1, hi);
    }
    const __m512 mx = _mm512_max_ps(_mm512_mask_mov_ps(neg_inf, m0, s0), _mm512_mask_mov_ps(neg_inf, m1, s1));
    float m = st.m[r];
    if (_mm512_cmp_ps_mask(mx, _mm512_set1_ps(m + kRescaleMargin), _CMP_GT_OQ)) {
      // A score above the reference by more than the margin (or the row's first keys): move the reference
      // to this step's maximum and rescale what was accumulated under the old one.
      const float m_new = _mm512_reduce_max_ps(mx);
      if (m != -std::numeric_limits<float>::infinity()) {
        const __m512 corr = _mm512_set1_ps(std::exp2(m - m_new));
        float* a = st.acc + static_cast<size_t>(r) * dh;
        for (int e = 0; e < dh; e += 16) _mm512_store_ps(a + e, _mm512_mul_ps(_mm512_load_ps(a + e), corr));
        _mm512_store_ps(st.l + r * 16, _mm512_mul_ps(_mm512_load_ps(st.l + r * 16), corr));
      }
      st.m[r] = m = m_new;
    }
    const __m512 mv = _mm512_set1_ps(m);
    const __m512 p0 = _mm512_maskz_mov_ps(m0, exp2_avx512(_mm512_sub_ps(s0, mv)));
    const __m512 p1 = _mm512_maskz_mov_ps(m1, exp2_avx512(_mm512_sub_ps(s1, mv)));
    _mm512_store_ps(st.l + r * 16, _mm512_add_ps(_mm512_load_ps(st.l + r * 16), _mm512_add_ps(p0, p1)));
    _mm512_store_si512(st.p + r * 32, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
  }
}

// One step of 32 keys (c0 .. c0 + 31) for one unit; the tiles are configured for its row count.
FERRY_TARGET_AMX void unit_step(const KvCacheLayer& kv, int kv_head, const int32_t* block_table,
                                const AttendRows& rows, int c0, int end, const UnitState& st, uint16_t* vtail,
                                const StepLines& pf) {
  const int dh = kv.head_dim, bs = kv.block_size;
  const bool has1 = c0 + 16 < end;                    // chunk 1 holds keys before the end
  const bool one_block = c0 / bs == (c0 + 16) / bs;  // chunk 1 right after chunk 0 in one block
  const int32_t block0 = block_table[c0 / bs], block1 = has1 ? block_table[(c0 + 16) / bs] : block0;
  const size_t run0 = kv.run_offset(block0, kv_head), run1 = kv.run_offset(block1, kv_head);
  const int j0 = c0 % bs, j1 = has1 ? (c0 + 16) % bs : j0;  // an absent chunk aliases the first
  const uint16_t* k0 = static_cast<const uint16_t*>(kv.k) + run0 + static_cast<size_t>(j0) * 2;
  const uint16_t* k1 = static_cast<const uint16_t*>(kv.k) + run1 + static_cast<size_t>(j1) * 2;
  const uint16_t* v0 = static_cast<const uint16_t*>(kv.v) + run0 + static_cast<size_t>(j0 / 2) * dh * 2;
  const uint16_t* v1 = static_cast<const uint16_t*>(kv.v) + run1 + static_cast<size_t>(j1 / 2) * dh * 2;

  // Scores S = Q.K^T, 32 dims per product: the keys of 16 dim pairs are 16 * bs * 2 elements.
  const size_t qstride = static_cast<size_t>(dh) * 2;
  const size_t kstride = static_cast<size_t>(bs) * 4;  // bytes between dim pairs
  const size_t kslice = static_cast<size_t>(bs) * 32;
  const int score_parts = (dh + 31) / 32;
  tile_zero<0>();
  tile_zero<1>();
  int d = 0;
  for (; d + 32 <= dh; d += 32) {
    prefetch_part(pf, false, d / 32, score_parts);
    tile_load<2>(st.q + d, qstride);
    tile_load<3>(k0 + d / 32 * kslice, kstride);
    tile_dp<0, 2, 3>();
    if (has1) {
      tile_load<4>(k1 + d / 32 * kslice, kstride);
      tile_dp<1, 2, 4>();
    }
  }
  if (d < dh) {  // Dh an odd multiple of 16: the last 16 dims in half tiles
    prefetch_part(pf, false, d / 32, score_parts);
    tile_load<5>(st.q + d, qstride);
    tile_load<7>(k0 + d / 32 * kslice, kstride);
    tile_dp<0, 5, 7>();
    if (has1) {
      tile_load<7>(k1 + d / 32 * kslice, kstride);
      tile_dp<1, 5, 7>();
    }
  }
  tile_store<0>(st.s, 128);
  tile_store<1>(st.s + 16, 128);

  softmax_step(rows, c0, dh, st);

  // Values: acc[:, 16 dims] += P . V with the value pairs [key pair][16 dims][2], Dh * 4 bytes apart.
  const size_t stride = static_cast<size_t>(dh) * 4;
  bool contiguous = has1 && one_block;
  if (c0 + kStepKeys > end) {  // the last step: unwritten keys zeroed in a copy
    copy_tail_values(v0, c0, end, dh, vtail);
    copy_tail_values(has1 ? v1 : nullptr, c0 + 16, end, dh, vtail + static_cast<size_t>(8) * dh * 2);
    v0 = vtail;
    v1 = vtail + static_cast<size_t>(8) * dh * 2;
    contiguous = true;
  }
  const int value_parts = (dh + 31) / 32;
  if (contiguous) {  // the step's 16 key pairs as one tile, two slices of 16 dims at a time
    tile_load<2>(st.p, 64);
    int e = 0;
    for (; e + 32 <= dh; e += 32) {
      prefetch_part(pf, true, e / 32, value_parts);
      tile_load<0>(st.acc + e, stride);
      tile_load<3>(v0 + e * 2, stride);
      tile_load<1>(st.acc + e + 16, stride);
      tile_load<4>(v0 + (e + 16) * 2, stride);
      tile_dp<0, 2, 3>();
      tile_dp<1, 2, 4>();
      tile_store<0>(st.acc + e, stride);
      tile_store<1>(st.acc + e + 16, stride);
    }
    if (e < dh) {
      prefetch_part(pf, true, e / 32, value_parts);
      tile_load<0>(st.acc + e, stride);
      tile_load<3>(v0 + e * 2, stride);
      tile_dp<0, 2, 3>();
      tile_store<0>(st.acc + e, stride);
    }
  } else {  // two blocks: the 8 key pairs of each chunk as a half tile
    tile_load<5>(st.p, 64);
    tile_load<6>(st.p + 16, 64);
    for (int e = 0; e < dh; e += 16) {
      prefetch_part(pf, true, e / 16, dh / 16);
      tile_load<0>(st.acc + e, stride);
      tile_load<7>(v0 + e * 2, stride);
      tile_dp<0, 5, 7>();
      tile_load<7>(v1 + e * 2, stride);
      tile_dp<0, 6, 7>();
      tile_store<0>(st.acc + e, stride);
    }
  }
}

}  // namespace

void attend_bf16_amx(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units, int n_units,
                     float scale) {
  const int dh = kv.head_dim, bs = kv.block_size;
  FERRY_ASSERT(dh % 16 == 0 && bs % 16 == 0 && kv.dtype == DType::BF16);
  FERRY_ASSERT(n_units >= 1 && n_units <= kMaxUnits);
  const size_t unit_bytes = unit_state_bytes(dh);
  const size_t tail_bytes = round64(static_cast<size_t>(16) * dh * 2 * 2);
  char* base = static_cast<char*>(scratch(ScratchSlot::Attention, unit_bytes * n_units + tail_bytes));
  uint16_t* vtail = reinterpret_cast<uint16_t*>(base + unit_bytes * n_units);
  int begin = units[0].rows.lo[0], end = 0;
  int unit_end[kMaxUnits];
  for (int u = 0; u < n_units; ++u) {
    FERRY_ASSERT(units[u].rows.n >= 1 && units[u].rows.n <= kMaxAttendRows);
    unit_begin(units[u].rows, dh, scale, unit_state(base + unit_bytes * u, dh));
    for (int r = 0; r < units[u].rows.n; ++r) begin = std::min(begin, units[u].rows.lo[r]);
    unit_end[u] = rows_end(units[u].rows);
    end = std::max(end, unit_end[u]);
  }
  // With blocks of a multiple of 32 keys, steps start at a multiple of 32 and never straddle two blocks.
  const int c_begin = bs % 32 == 0 ? begin / 32 * 32 : begin / 16 * 16;
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
  int pc = c_begin, pu = -1;  // the prefetch cursor, kPrefetchAhead unit steps ahead of the walk
  for (int i = 0; i <= kPrefetchAhead; ++i) next_step(pc, pu);
  int configured = 0;  // rows the tiles are configured for
  for (int c0 = c_begin; c0 < end; c0 += kStepKeys)
    for (int u = 0; u < n_units; ++u) {
      const AttendRows& rows = units[u].rows;
      if (c0 >= unit_end[u]) continue;
      if (rows.n != configured) {
        configure_tiles(rows.n);
        configured = rows.n;
      }
      const StepLines pf = pc >= 0 ? step_lines(kv, units[pu].kv_head, block_table, pc, unit_end[pu]) : StepLines{};
      next_step(pc, pu);
      unit_step(kv, units[u].kv_head, block_table, rows, c0, unit_end[u], unit_state(base + unit_bytes * u, dh),
                vtail, pf);
    }
  if (configured) release_tiles();
  for (int u = 0; u < n_units; ++u) unit_finish(units[u].rows, dh, unit_state(base + unit_bytes * u, dh));
}

}  // namespace ferry::cpu
