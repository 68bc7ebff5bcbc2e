// AMX kernels for BF16 weights (tdpbf16ps), used when amx_active() (isa.h).
//
// The bf16 panels are already AMX B tiles: a panel [Kp/2][16][2] holds, for every 32 k (16 k-pairs), one
// contiguous 1 KiB block of 16 rows (k-pairs) x 64 bytes (16 output rows x 2 bf16) -- exactly the
// VNNI-paired B operand of tdpbf16ps, with a 64-byte stride. So the weights are used as packed at load
// time: no second copy, no reorder.
//
// The activations are packed per call into A tiles (pack_tiles_amx): [n_mblock][n_kblock][16][32] bf16,
// zero padded in k (to a multiple of 32) and in rows. With `terms` = 3 each f32 activation is split into
// three bf16 terms, x = h + m + l exactly (8 + 8 + 8 significant bits), and the terms take three
// consecutive tile rows; each product of bf16 terms is exact in f32, so the three partial sums added at the
// end give f32-accurate results, like f32 activations with f32 FMAs (the cpu target's numerics). A tile
// then holds 5 activation rows (15 tile rows used); terms = 1 holds 16 rows, rounded to bf16.
//
// Register blocking: 8 tiles = 2 x 2 C tiles (16 tile rows x 16 outputs, f32) + 2 A + 2 B. K is split in
// chunks whose A tiles fit in L2 (the B chunk of a panel pair is reused from L2 by every row block);
// partial C tiles wait in a per-thread buffer between chunks. The result of an output row depends only on
// that row's activations, never on the other rows of the batch or on M.
//
// Numerics of the tiles: tdpbf16ps treats bf16 denormals (|v| < 1.2e-38) as zero and flushes denormal
// results; the three-term split is exact for |x| from ~1e-33 (where the last term would be denormal) up
// to within 2^-9 of FLT_MAX (where the leading term rounds to infinity). Real activations are far inside.
#include <algorithm>
#include <cstring>

#include "cpu/matmul_kernels.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "cpu/simd.h"
#include "ferry/error.h"

namespace ferry::cpu {

namespace {

constexpr int kTileRows = 16;
constexpr int kTileK = 32;                      // bf16 per A tile row / k per B tile
constexpr int kTileElems = kTileRows * kTileK;  // 512 bf16 = 1 KiB
constexpr int kGroupPanels = 8;                 // panels whose partial C tiles wait between K chunks
constexpr size_t kAChunkBytes = 768 * 1024;     // A tiles of one K chunk (all row blocks): L2-resident
constexpr int kPrefetchBlocks = 4;              // k blocks of B (1 KiB per panel each) prefetched ahead

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Every tile 16 rows x 64 bytes: C (f32 16x16), A (bf16 16x32), B (bf16 pairs 16x16x2).
FERRY_TARGET_AMX void configure_tiles() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = kTileRows;
  }
  _tile_loadconfig(&cfg);
}

struct Ctx {
  const MatmulArgs* a;
  int n_kblock;               // k blocks of 32
  int n_mblock;               // row blocks of 16 tile rows
  int rows_per_block;         // activation rows per block: 16 / terms
  size_t mblock_elems;        // bf16 per row block: n_kblock * 512
  const uint16_t* b_tail[2];  // zero-padded copy of the last, partial k block of each panel (or null)
};

// Tiles: C[mi][pi] = 2 * mi + pi, A[mi] = 4 + mi, B[pi] = 6 + pi. MI row blocks x PI panels, k blocks
// [kb0, kb1). `first`: start from zero, else from `cbuf`; `last`: write y, else save to `cbuf`.
template <int MI, int PI>
struct Block {
  // One k block: C[mi][pi] += A[mi] · B[pi].
  FERRY_TARGET_AMX static inline void step(const void* pb0, const void* pb1, const uint16_t* pa0,
                                           const uint16_t* pa1) {
    _tile_loadd(6, pb0, 64);
    _tile_loadd(4, pa0, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (PI > 1) {
      _tile_loadd(7, pb1, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if constexpr (MI > 1) {
      _tile_loadd(5, pa1, 64);
      _tile_dpbf16ps(2, 5, 6);
    }
    if constexpr (MI > 1 && PI > 1) _tile_dpbf16ps(3, 5, 7);
  }

  FERRY_TARGET_AMX static void run(const Ctx& c, int panel, int mb, int kb0, int kb1, float* cbuf, bool first,
                                   bool last) {
    const MatmulArgs& a = *c.a;
    if (first) {
      _tile_zero(0);
      if constexpr (PI > 1) _tile_zero(1);
      if constexpr (MI > 1) _tile_zero(2);
      if constexpr (MI > 1 && PI > 1) _tile_zero(3);
    } else {
      _tile_loadd(0, cbuf, 64);
      if constexpr (PI > 1) _tile_loadd(1, cbuf + 256, 64);
      if constexpr (MI > 1) _tile_loadd(2, cbuf + 512, 64);
      if constexpr (MI > 1 && PI > 1) _tile_loadd(3, cbuf + 768, 64);
    }
    const size_t pbytes = a.w->panel_bytes();
    const uint8_t* b0 = a.w->data.data() + static_cast<size_t>(panel) * pbytes;
    const uint8_t* b1 = b0 + pbytes;
    const uint16_t* a0 = a.x_tiles + static_cast<size_t>(mb) * c.mblock_elems;
    const uint16_t* a1 = a0 + c.mblock_elems;
    const int kb_full = c.b_tail[0] ? std::min(kb1, c.n_kblock - 1) : kb1;
    if (mb == 0) {
      // The first row blocks meet these B tiles first, mostly from DRAM: prefetch them kPrefetchBlocks
      // ahead (the streamers alone leave the tile loads waiting). Later row blocks find them in L2.
      for (int kb = kb0; kb < kb_full; ++kb) {
        const size_t off = static_cast<size_t>(kb) * kTileElems;
        if (kb + kPrefetchBlocks < kb_full) {
          const char* q = reinterpret_cast<const char*>(
              b0 + (off + static_cast<size_t>(kPrefetchBlocks) * kTileElems) * 2);
          for (int l = 0; l < 1024; l += 64) _mm_prefetch(q + l, _MM_HINT_T0);
          if constexpr (PI > 1)
            for (int l = 0; l < 1024; l += 64) _mm_prefetch(q + pbytes + l, _MM_HINT_T0);
        }
        step(b0 + off * 2, b1 + off * 2, a0 + off, a1 + off);
      }
    } else {
      for (int kb = kb0; kb < kb_full; ++kb) {
        const size_t off = static_cast<size_t>(kb) * kTileElems;
        step(b0 + off * 2, b1 + off * 2, a0 + off, a1 + off);
      }
    }
    if (kb_full < kb1) {  // the partial last k block: B from the zero-padded copies
      const size_t off = static_cast<size_t>(kb_full) * kTileElems;
      step(c.b_tail[0], c.b_tail[1], a0 + off, a1 + off);
    }
    if (!last) {
      _tile_stored(0, cbuf, 64);
      if constexpr (PI > 1) _tile_stored(1, cbuf + 256, 64);
      if constexpr (MI > 1) _tile_stored(2, cbuf + 512, 64);
      if constexpr (MI > 1 && PI > 1) _tile_stored(3, cbuf + 768, 64);
      return;
    }
    alignas(64) float out[4][256];
    _tile_stored(0, out[0], 64);
    if constexpr (PI > 1) _tile_stored(1, out[1], 64);
    if constexpr (MI > 1) _tile_stored(2, out[2], 64);
    if constexpr (MI > 1 && PI > 1) _tile_stored(3, out[3], 64);
    const int n = a.w->rows, terms = a.x_terms;
    for (int pi = 0; pi < PI; ++pi) {
      const int col0 = (panel + pi) * kPanelRows;
      const int valid = std::min(kPanelRows, n - col0);
      const __mmask16 mask = valid >= 16 ? __mmask16(0xffff) : __mmask16((1u << valid) - 1);
      const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(mask, a.bias + col0) : _mm512_setzero_ps();
      for (int mi = 0; mi < MI; ++mi) {
        const float* t = out[2 * mi + pi];
        for (int i = 0; i < c.rows_per_block; ++i) {
          const int row = (mb + mi) * c.rows_per_block + i;
          if (row >= a.m) break;
          __m512 v = _mm512_load_ps(t + i * terms * 16);
          for (int j = 1; j < terms; ++j) v = _mm512_add_ps(v, _mm512_load_ps(t + (i * terms + j) * 16));
          _mm512_mask_storeu_ps(a.y + static_cast<size_t>(row) * n + col0, mask, _mm512_add_ps(v, bias));
        }
      }
    }
  }
};

using BlockFn = void (*)(const Ctx&, int, int, int, int, float*, bool, bool);

}  // namespace

size_t amx_tiles_elems(int m, int kp, int terms) {
  const int rows_per_block = kTileRows / terms;
  const size_t n_mblock = (m + rows_per_block - 1) / rows_per_block;
  const size_t n_kblock = (kp + kTileK - 1) / kTileK;
  return n_mblock * n_kblock * kTileElems;
}

FERRY_TARGET_AMX void matmul_panels_amx(const MatmulArgs& a, int panel_begin, int panel_end) {
  FERRY_ASSERT(a.w->dtype == DType::BF16 && a.x_tiles && (a.x_terms == 1 || a.x_terms == 3));
  Ctx c;
  c.a = &a;
  c.n_kblock = (a.w->cols_padded + kTileK - 1) / kTileK;
  c.rows_per_block = kTileRows / a.x_terms;
  c.n_mblock = (a.m + c.rows_per_block - 1) / c.rows_per_block;
  c.mblock_elems = static_cast<size_t>(c.n_kblock) * kTileElems;
  // K chunks: all of K unless the A tiles of every row block exceed kAChunkBytes.
  const size_t a_bytes_per_kblock = static_cast<size_t>(c.n_mblock) * kTileElems * 2;
  const int kc = std::max<int>(4, static_cast<int>(kAChunkBytes / a_bytes_per_kblock));
  const int n_kchunk = (c.n_kblock + kc - 1) / kc;
  const int tail_pairs = (a.w->cols_padded % kTileK) / 2;  // k-pairs in the partial last k block, or 0
  // Per-thread buffers: zero-padded tail B tiles [2][512] and, with several K chunks, partial C tiles.
  const size_t cbuf_floats =
      n_kchunk > 1 ? static_cast<size_t>(kGroupPanels / 2) * ((c.n_mblock + 1) / 2) * 4 * 256 : 0;
  float* scratch_f = scratch_as<float>(ScratchSlot::MatmulTile, 2 * 256 + cbuf_floats);
  uint16_t* tail = reinterpret_cast<uint16_t*>(scratch_f);
  float* cbuf = scratch_f + 2 * 256;

  static constexpr BlockFn kBlocks[2][2] = {{&Block<1, 1>::run, &Block<1, 2>::run},
                                            {&Block<2, 1>::run, &Block<2, 2>::run}};
  configure_tiles();
  for (int g0 = panel_begin; g0 < panel_end; g0 += kGroupPanels) {
    const int g1 = std::min(panel_end, g0 + kGroupPanels);
    for (int kch = 0; kch < n_kchunk; ++kch) {
      const int kb0 = kch * kc, kb1 = std::min(c.n_kblock, kb0 + kc);
      for (int p = g0; p < g1; p += 2) {
        const int np = std::min(2, g1 - p);
        c.b_tail[0] = c.b_tail[1] = nullptr;
        if (tail_pairs && kb1 == c.n_kblock) {
          std::memset(tail, 0, 2 * kTileElems * sizeof(uint16_t));
          for (int pi = 0; pi < np; ++pi) {
            const uint8_t* src = a.w->data.data() + static_cast<size_t>(p + pi) * a.w->panel_bytes() +
                                 static_cast<size_t>(c.n_kblock - 1) * kTileElems * 2;
            std::memcpy(tail + pi * kTileElems, src, static_cast<size_t>(tail_pairs) * 64);
          }
          c.b_tail[0] = tail;
          c.b_tail[1] = tail + kTileElems;
        }
        for (int mb = 0; mb < c.n_mblock; mb += 2) {
          const int nm = std::min(2, c.n_mblock - mb);
          float* cb = cbuf + ((static_cast<size_t>(p - g0) / 2) * ((c.n_mblock + 1) / 2) + mb / 2) * 4 * 256;
          kBlocks[nm - 1][np - 1](c, p, mb, kb0, kb1, cb, kch == 0, kch == n_kchunk - 1);
        }
      }
    }
  }
  _tile_release();
}

namespace {

// 32 f32 (lo: k 0..15, hi: k 16..31) -> 32 bf16 in k order, rounded to nearest even.
FERRY_TARGET_AMX inline __m512i to_bf16x32(__m512 lo, __m512 hi) {
  const __m256i l = (__m256i)_mm512_cvtneps_pbh(lo), h = (__m256i)_mm512_cvtneps_pbh(hi);
  return _mm512_inserti64x4(_mm512_castsi256_si512(l), h, 1);
}
FERRY_TARGET_AMX inline __m512 widen_bf16x16(__m256i b) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
}

// Row blocks [mb0, mb1) of pack_tiles_amx.
FERRY_TARGET_AMX void pack_blocks_f32(const float* x, int m, int k, int terms, int n_kblock, int64_t mb0,
                                      int64_t mb1, uint16_t* tiles) {
  const int rows_per_block = kTileRows / terms;
  const size_t mblock_elems = static_cast<size_t>(n_kblock) * kTileElems;
  for (int64_t mb = mb0; mb < mb1; ++mb) {
    uint16_t* blk = tiles + static_cast<size_t>(mb) * mblock_elems;
    for (int tr = 0; tr < kTileRows; ++tr) {
      const int i = tr / terms, t = tr % terms;
      const int64_t row = mb * rows_per_block + i;
      if (i >= rows_per_block || row >= m) {
        for (int kb = 0; kb < n_kblock; ++kb)
          _mm512_store_si512(blk + static_cast<size_t>(kb) * kTileElems + tr * kTileK,
                             _mm512_setzero_si512());
        continue;
      }
      const float* xr = x + static_cast<size_t>(row) * k;
      for (int kb = 0; kb < n_kblock; ++kb) {
        const int j = kb * kTileK;
        const int v0 = std::clamp(k - j, 0, 16), v1 = std::clamp(k - j - 16, 0, 16);
        __m512 lo = _mm512_maskz_loadu_ps(__mmask16((1u << v0) - 1), xr + j);
        __m512 hi = _mm512_maskz_loadu_ps(__mmask16((1u << v1) - 1), xr + j + 16);
        // Term t: the bf16 rounding of what the terms before it left over (exact f32 subtractions).
        for (int s = 0; s < t; ++s) {
          const __m256i bl = (__m256i)_mm512_cvtneps_pbh(lo), bh = (__m256i)_mm512_cvtneps_pbh(hi);
          lo = _mm512_sub_ps(lo, widen_bf16x16(bl));
          hi = _mm512_sub_ps(hi, widen_bf16x16(bh));
        }
        _mm512_store_si512(blk + static_cast<size_t>(kb) * kTileElems + tr * kTileK, to_bf16x32(lo, hi));
      }
    }
  }
}

// Row blocks [mb0, mb1) of pack_tiles_amx_bf16.
FERRY_TARGET_AMX void pack_blocks_bf16(const uint16_t* x, int m, int k, int n_kblock, int64_t mb0,
                                       int64_t mb1, uint16_t* tiles) {
  const size_t mblock_elems = static_cast<size_t>(n_kblock) * kTileElems;
  for (int64_t mb = mb0; mb < mb1; ++mb) {
    uint16_t* blk = tiles + static_cast<size_t>(mb) * mblock_elems;
    for (int tr = 0; tr < kTileRows; ++tr) {
      const int64_t row = mb * kTileRows + tr;
      for (int kb = 0; kb < n_kblock; ++kb) {
        uint16_t* dst = blk + static_cast<size_t>(kb) * kTileElems + tr * kTileK;
        if (row >= m) {
          _mm512_store_si512(dst, _mm512_setzero_si512());
          continue;
        }
        const int valid = std::clamp(k - kb * kTileK, 0, kTileK);
        const __mmask32 mask = valid >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << valid) - 1);
        _mm512_store_si512(dst,
                           _mm512_maskz_loadu_epi16(mask, x + static_cast<size_t>(row) * k + kb * kTileK));
      }
    }
  }
}

}  // namespace

void pack_tiles_amx(const float* x, int m, int k, int kp, int terms, uint16_t* tiles) {
  const int rows_per_block = kTileRows / terms;
  const int n_mblock = (m + rows_per_block - 1) / rows_per_block;
  const int n_kblock = (kp + kTileK - 1) / kTileK;
  parallel_range(n_mblock, static_cast<size_t>(m) * k * 4, [&](int64_t mb0, int64_t mb1) {
    pack_blocks_f32(x, m, k, terms, n_kblock, mb0, mb1, tiles);
  });
}

void pack_tiles_amx_bf16(const uint16_t* x, int m, int k, int kp, uint16_t* tiles) {
  const int n_mblock = (m + kTileRows - 1) / kTileRows;
  const int n_kblock = (kp + kTileK - 1) / kTileK;
  parallel_range(n_mblock, static_cast<size_t>(m) * k * 2,
                 [&](int64_t mb0, int64_t mb1) { pack_blocks_bf16(x, m, k, n_kblock, mb0, mb1, tiles); });
}

}  // namespace ferry::cpu
