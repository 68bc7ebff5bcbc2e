// The portable attention kernel: any cache dtype (bf16, f16, f32), f32 math. Keys and values are staged
// 16 at a time into f32 tiles (keys [Dh][16], values [16][Dh]) so the dot products vectorise over keys
// and the value sums over dims; the same body is compiled for AVX-512, AVX2 and plain C++.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/attention_kernels.h"
#include "cpu/kv_elem.h"
#include "cpu/scratch.h"
#include "cpu/simd.h"

namespace ferry::cpu {

namespace {

// Widens n contiguous cache elements to f32, with the conversion instructions of one ISA level.
struct WidenScalar {
  void operator()(const void* src, DType dt, float* dst, int n) const {
    for (int i = 0; i < n; ++i) dst[i] = kv_load(src, dt, i);
  }
};

struct WidenAvx2 {
  FERRY_TARGET_AVX2 void operator()(const void* src, DType dt, float* dst, int n) const {
    int i = 0;
    if (dt == DType::F16)
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(src) + i))));
    else if (dt == DType::BF16)
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(
                                      _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(src) + i))), 16)));
    for (; i < n; ++i) dst[i] = kv_load(src, dt, i);
  }
};

struct WidenAvx512 {
  FERRY_TARGET_AVX512 void operator()(const void* src, DType dt, float* dst, int n) const {
    int i = 0;
    if (dt == DType::F16)
      for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(src) + i))));
    else if (dt == DType::BF16)
      for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(
                                      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(src) + i))), 16)));
    for (; i < n; ++i) dst[i] = kv_load(src, dt, i);
  }
};

template <typename Widen>
__attribute__((always_inline)) inline void attend_unit(const KvCacheLayer& kv, int kv_head, const int32_t* block_table,
                                                       const AttendRows& rows, float scale, Widen widen) {
  const int dh = kv.head_dim, bs = kv.block_size, n = rows.n;
  // Scratch: keys [Dh][16] | values [16][Dh] | acc [R][Dh] | one widened run [2 Dh].
  float* kf = scratch_as<float>(ScratchSlot::Attention, static_cast<size_t>(dh) * (34 + n));
  float* vf = kf + static_cast<size_t>(dh) * 16;
  float* acc = vf + static_cast<size_t>(dh) * 16;
  float* wide = acc + static_cast<size_t>(dh) * n;
  float m[kMaxAttendRows], l[kMaxAttendRows];
  int begin = rows.lo[0], end = 0;
  for (int r = 0; r < n; ++r) {
    m[r] = -std::numeric_limits<float>::infinity();
    l[r] = 0.0f;
    std::fill(acc + static_cast<size_t>(r) * dh, acc + static_cast<size_t>(r + 1) * dh, 0.0f);
    begin = std::min(begin, rows.lo[r]);
    end = std::max(end, rows.hi[r]);
  }
  const size_t elem = dtype_size(kv.dtype);
  const char* kbase = static_cast<const char*>(kv.k);
  const char* vbase = static_cast<const char*>(kv.v);
  for (int c0 = begin / 16 * 16; c0 < end; c0 += 16) {
    const size_t run = kv.run_offset(block_table[c0 / bs], kv_head);
    const int j0 = c0 % bs, n_valid = std::min(16, end - c0);
    for (int d2 = 0; d2 < dh / 2; ++d2) {  // 16 keys x 2 dims, contiguous (layout: attention.h)
      widen(kbase + (run + (static_cast<size_t>(d2) * bs + j0) * 2) * elem, kv.dtype, wide, 32);
      for (int j = 0; j < 16; ++j) {
        kf[(2 * d2) * 16 + j] = wide[2 * j];
        kf[(2 * d2 + 1) * 16 + j] = wide[2 * j + 1];
      }
    }
    for (int jp = 0; jp < 8; ++jp) {  // 2 keys x Dh, contiguous
      widen(vbase + (run + static_cast<size_t>(j0 / 2 + jp) * dh * 2) * elem, kv.dtype, wide, 2 * dh);
      for (int d = 0; d < dh; ++d) {
        vf[(2 * jp) * dh + d] = wide[2 * d];
        vf[(2 * jp + 1) * dh + d] = wide[2 * d + 1];
      }
    }
    // Keys past the end may never have been written: zero them so no NaN reaches the sums.
    for (int j = n_valid; j < 16; ++j) {
      for (int d = 0; d < dh; ++d) kf[d * 16 + j] = 0.0f;
      std::fill(vf + static_cast<size_t>(j) * dh, vf + static_cast<size_t>(j + 1) * dh, 0.0f);
    }
    for (int r = 0; r < n; ++r) {
      float s[16] = {};
      for (int d = 0; d < dh; ++d)
        for (int j = 0; j < 16; ++j) s[j] += rows.q[r][d] * kf[d * 16 + j];
      float mx = -std::numeric_limits<float>::infinity();
      bool any = false;
      for (int j = 0; j < 16; ++j) {
        const int pos = c0 + j;
        if (pos < rows.lo[r] || pos >= rows.hi[r]) continue;
        s[j] *= scale;
        mx = std::max(mx, s[j]);
        any = true;
      }
      if (!any) continue;
      const float m_new = std::max(m[r], mx);
      const float corr = std::exp(m[r] - m_new);  // 0 while the row has seen no key
      float p[16], psum = 0.0f;
      for (int j = 0; j < 16; ++j) {
        const int pos = c0 + j;
        p[j] = pos < rows.lo[r] || pos >= rows.hi[r] ? 0.0f : std::exp(s[j] - m_new);
        psum += p[j];
      }
      l[r] = l[r] * corr + psum;
      m[r] = m_new;
      float* a = acc + static_cast<size_t>(r) * dh;
      for (int d = 0; d < dh; ++d) a[d] *= corr;
      for (int j = 0; j < 16; ++j)
        if (p[j] != 0.0f)
          for (int d = 0; d < dh; ++d) a[d] += p[j] * vf[j * dh + d];
    }
  }
  for (int r = 0; r < n; ++r) {
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    for (int d = 0; d < dh; ++d) rows.out[r][d] = acc[static_cast<size_t>(r) * dh + d] * inv;
  }
}

template <typename Widen>
__attribute__((always_inline)) inline void attend_units(const KvCacheLayer& kv, const int32_t* block_table,
                                                        const AttendUnit* units, int n_units, float scale, Widen widen) {
  for (int u = 0; u < n_units; ++u) attend_unit(kv, units[u].kv_head, block_table, units[u].rows, scale, widen);
}

FERRY_TARGET_AVX512 void attend_units_avx512(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units,
                                             int n_units, float scale) {
  attend_units(kv, block_table, units, n_units, scale, WidenAvx512{});
}

FERRY_TARGET_AVX2 void attend_units_avx2(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units,
                                         int n_units, float scale) {
  attend_units(kv, block_table, units, n_units, scale, WidenAvx2{});
}

}  // namespace

void attend_portable(const KvCacheLayer& kv, const int32_t* block_table, const AttendUnit* units, int n_units,
                     float scale, Isa isa) {
  if (isa == Isa::Avx512) attend_units_avx512(kv, block_table, units, n_units, scale);
  else if (isa == Isa::Avx2) attend_units_avx2(kv, block_table, units, n_units, scale);
  else attend_units(kv, block_table, units, n_units, scale, WidenScalar{});
}

}  // namespace ferry::cpu
