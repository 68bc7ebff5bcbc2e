// The packed-weight matmul kernels (packed_matmul.h). Both decode weights with the functions of
// ferry/ops/packed_layout.h (checked against cpu::packed_at by tests/unit/packed_layout_test.cpp) and
// accumulate in fp32 with fmaf, k ascending within a thread.
//
//   small_kernel<MT, GATE_UP>  grid (panels, ceil(max_rows / MT), experts) x 128 threads (4 warps),
//                              __launch_bounds__(128); shared memory: 4 x 64 floats (static, 1 KiB).
//                              MT = 4 rows per block (2 for GATE_UP, which holds two accumulator sets).
//                              Thread t takes words t, t + 128, ... of the panel; per word it holds
//                              the V x values of each of its MT rows and the 16 weight rows' words.
//   tiled_kernel<GATE_UP>      grid (panels, ceil(max_rows / 64), experts) x 256 threads,
//                              __launch_bounds__(256); shared memory: (16 x 33) x (1 or 2) weights +
//                              64 x 33 x values + 64 row indices (static, <= 12.8 KiB). Thread t computes
//                              weight row t % 16 for rows t / 16 + 16 j, j < 4.
// Every block first finds its expert's assignment range; blocks past it (or past the expert's panels)
// return before any barrier, so the exit is uniform per block.
#include <algorithm>

#include "ferry/ops/activation_math.h"
#include "kernels/cuda_check.h"
#include "kernels/packed_matmul.h"

namespace ferry::cuda {

namespace {

constexpr int kSmallThreads = 128;
constexpr int kSmallWarps = kSmallThreads / 32;
constexpr int kTiledThreads = 256;
constexpr int kTileRows = 64;  // assignments per tiled block
constexpr int kTileK = 32;     // k per shared-memory step (a multiple of every V)
constexpr int kPanel = kPackedPanelRows;

enum Which : int { kGate = 0, kUp = 1, kDown = 2 };

struct Args {
  PackedLayout single;               // the matrix when table is null
  const ExpertLayout* table;         // grouped experts' weights (device)
  int which;                         // kGate (with kUp when GATE_UP) or kDown, for table
  const float* x;
  int ldx;
  float* y;
  int ldy;
  const float* bias;                 // [rows] or null (single matrix only)
  RowMap rows;
};

struct Span {
  int expert, begin, count;
};

__device__ __forceinline__ Span block_span(const RowMap& m) {
  if (!m.offsets) return Span{0, 0, m.n_rows};
  const int e = m.first_expert + static_cast<int>(blockIdx.z);
  const int begin = m.offsets[e];
  return Span{e, begin, m.offsets[e + 1] - begin};
}

__device__ __forceinline__ PackedLayout weight_of(const Args& a, int expert, int which) {
  if (!a.table) return a.single;
  const ExpertLayout& ex = a.table[expert];
  return which == kGate ? ex.gate : which == kUp ? ex.up : ex.down;
}

__device__ __forceinline__ int in_row(const RowMap& m, int assignment) {
  return m.in_rows ? m.in_rows[assignment] : assignment;
}
__device__ __forceinline__ int out_row(const RowMap& m, int assignment) {
  return m.out_rows ? m.out_rows[assignment] : assignment;
}

// Stores output (m, r) of a block: row = panel * 16 + r of the weights, assignment tile0 + m.
template <bool GATE_UP>
__device__ __forceinline__ void store(const Args& a, const Span& sp, int n_weight_rows, int panel, int tile0, int m,
                                      int r, float g, float u) {
  const int row = panel * kPanel + r, i = tile0 + m;
  if (i >= sp.count || row >= n_weight_rows) return;
  float v;
  if (GATE_UP)
    v = ::ferry::silu_mul(g, u);
  else
    v = a.bias ? g + a.bias[row] : g;
  a.y[static_cast<size_t>(out_row(a.rows, sp.begin + i)) * a.ldy + row] = v;
}

// ---- small: registers ----------------------------------------------------------------------------

template <int V>
struct DTypeOf;
template <> struct DTypeOf<1> { static constexpr DType value = DType::F32; };
template <> struct DTypeOf<2> { static constexpr DType value = DType::BF16; };
template <> struct DTypeOf<4> { static constexpr DType value = DType::I8; };
template <> struct DTypeOf<8> { static constexpr DType value = DType::I4; };

// acc[h][m][r] += sum over this thread's words of W_h[panel row r, k] * x[m][k].
template <int V, int MT, int H>
__device__ __forceinline__ void small_panel(const PackedLayout& w0, const PackedLayout& w1, int panel,
                                            const float* const (&xr)[MT], float (&acc)[H][MT][kPanel]) {
  constexpr DType kType = DTypeOf<V>::value;
  const int words = w0.cols_padded / V, cols = w0.cols;
  for (int w = threadIdx.x; w < words; w += kSmallThreads) {
    const int k0 = w * V;
    const int group = w0.group_size ? k0 / w0.group_size : 0;
    float xv[MT][V];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int j = 0; j < V; ++j) xv[m][j] = k0 + j < cols ? xr[m][k0 + j] : 0.0f;
#pragma unroll
    for (int r = 0; r < kPanel; ++r) {
#pragma unroll
      for (int h = 0; h < H; ++h) {
        const PackedLayout& wm = h == 0 ? w0 : w1;
        const uint32_t u = packed_word(wm, panel, w, r);
        const float s = packed_scale(wm, panel, group, r);
        const int z = packed_zero(wm, panel, group, r);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const float wv = packed_word_value(kType, u, j, s, z);
#pragma unroll
          for (int m = 0; m < MT; ++m) acc[h][m][r] = fmaf(wv, xv[m][j], acc[h][m][r]);
        }
      }
    }
  }
}

template <int MT, bool GATE_UP>
__global__ void __launch_bounds__(kSmallThreads) small_kernel(Args a) {
  constexpr int H = GATE_UP ? 2 : 1;
  constexpr int kOut = H * MT * kPanel;
  static_assert(kOut <= 64, "the reduction buffer holds 64 values per warp");
  __shared__ float red[kSmallWarps][64];

  const Span sp = block_span(a.rows);
  const int tile0 = static_cast<int>(blockIdx.y) * MT;
  if (tile0 >= sp.count) return;
  const PackedLayout w0 = weight_of(a, sp.expert, GATE_UP ? static_cast<int>(kGate) : a.which);
  const PackedLayout w1 = GATE_UP ? weight_of(a, sp.expert, kUp) : w0;
  const int panel = blockIdx.x;
  if (panel >= packed_n_panel(w0)) return;

  const int n_here = min(MT, sp.count - tile0);
  const float* xr[MT];
#pragma unroll
  for (int m = 0; m < MT; ++m)  // rows past the range repeat the last one; their sums are not stored
    xr[m] = a.x + static_cast<size_t>(in_row(a.rows, sp.begin + tile0 + min(m, n_here - 1))) * a.ldx;

  float acc[H][MT][kPanel];
#pragma unroll
  for (int h = 0; h < H; ++h)
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int r = 0; r < kPanel; ++r) acc[h][m][r] = 0.0f;

  switch (w0.dtype) {
    case DType::F32: small_panel<1, MT, H>(w0, w1, panel, xr, acc); break;
    case DType::BF16: small_panel<2, MT, H>(w0, w1, panel, xr, acc); break;
    case DType::I8: small_panel<4, MT, H>(w0, w1, panel, xr, acc); break;
    case DType::I4: small_panel<8, MT, H>(w0, w1, panel, xr, acc); break;
    default: break;
  }

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int h = 0; h < H; ++h)
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int r = 0; r < kPanel; ++r) {
        float v = acc[h][m][r];
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        if (lane == 0) red[warp][(h * MT + m) * kPanel + r] = v;
      }
  __syncthreads();
  for (int o = threadIdx.x; o < MT * kPanel; o += kSmallThreads) {
    const int m = o / kPanel, r = o % kPanel;
    float g = 0.0f, u = 0.0f;
    for (int w = 0; w < kSmallWarps; ++w) {
      g += red[w][m * kPanel + r];
      if (GATE_UP) u += red[w][(MT + m) * kPanel + r];
    }
    store<GATE_UP>(a, sp, w0.rows, panel, tile0, m, r, g, u);
  }
}

// ---- tiled: shared memory ------------------------------------------------------------------------

template <bool GATE_UP>
__global__ void __launch_bounds__(kTiledThreads) tiled_kernel(Args a) {
  constexpr int H = GATE_UP ? 2 : 1;
  __shared__ float ws[H][kPanel][kTileK + 1];  // +1: rows r of a warp fall in different banks
  __shared__ float xs[kTileRows][kTileK + 1];
  __shared__ int32_t x_row[kTileRows];

  const Span sp = block_span(a.rows);
  const int tile0 = static_cast<int>(blockIdx.y) * kTileRows;
  if (tile0 >= sp.count) return;
  const PackedLayout w0 = weight_of(a, sp.expert, GATE_UP ? static_cast<int>(kGate) : a.which);
  const PackedLayout w1 = GATE_UP ? weight_of(a, sp.expert, kUp) : w0;
  const int panel = blockIdx.x;
  if (panel >= packed_n_panel(w0)) return;

  const int tid = threadIdx.x;
  const int n_here = min(kTileRows, sp.count - tile0);
  if (tid < kTileRows) x_row[tid] = in_row(a.rows, sp.begin + tile0 + min(tid, n_here - 1));

  const int V = packed_values_per_word(w0.dtype);
  const int words = w0.cols_padded / V;
  const int r = tid % kPanel, mq = tid / kPanel;  // mq in [0, 16)
  float acc[H][4];
#pragma unroll
  for (int h = 0; h < H; ++h)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[h][j] = 0.0f;

  for (int k0 = 0; k0 < w0.cols_padded; k0 += kTileK) {
    __syncthreads();  // x_row is written (first step); the previous step's tiles are consumed
    const int w_begin = k0 / V, n_w = kTileK / V;
    for (int idx = tid; idx < kPanel * n_w; idx += kTiledThreads) {
      const int rr = idx % kPanel, wi = idx / kPanel, word = w_begin + wi;
#pragma unroll
      for (int h = 0; h < H; ++h) {
        const PackedLayout& wm = h == 0 ? w0 : w1;
        float* dst = &ws[h][rr][wi * V];
        if (word < words) {
          packed_row_word(wm, panel * kPanel + rr, word, dst);  // V values, wi * V + V <= kTileK
        } else {
          for (int j = 0; j < V; ++j) dst[j] = 0.0f;
        }
      }
    }
    for (int idx = tid; idx < kTileRows * kTileK; idx += kTiledThreads) {
      const int mm = idx / kTileK, kk = idx % kTileK, k = k0 + kk;
      xs[mm][kk] = k < w0.cols ? a.x[static_cast<size_t>(x_row[mm]) * a.ldx + k] : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kTileK; ++kk) {
#pragma unroll
      for (int h = 0; h < H; ++h) {
        const float wv = ws[h][r][kk];
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[h][j] = fmaf(wv, xs[mq + 16 * j][kk], acc[h][j]);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) store<GATE_UP>(a, sp, w0.rows, panel, tile0, mq + 16 * j, r, acc[0][j], acc[H - 1][j]);
}

// ---- launchers -----------------------------------------------------------------------------------

void check_layout(const PackedLayout& w, const char* what) {
  const int v = packed_values_per_word(w.dtype);
  if (v == 0) throw Error(std::string("cuda ") + what + ": weights must be f32, bf16, int8 or int4, got " +
                          std::string(dtype_name(w.dtype)));
  if (w.cols_padded % v != 0 || (w.group_size && w.group_size % 16 != 0) ||
      reinterpret_cast<uintptr_t>(w.data) % 4 != 0)
    throw Error(std::string("cuda ") + what + ": packed weights with a bad layout (cols_padded " +
                std::to_string(w.cols_padded) + ", group " + std::to_string(w.group_size) +
                ", or data not 4-byte aligned)");
}

void launch(const Args& a, int n_out, int max_rows, bool gate_up, cudaStream_t stream) {
  if (n_out <= 0 || max_rows <= 0 || (a.rows.offsets && a.rows.n_experts <= 0)) return;
  const unsigned panels = static_cast<unsigned>((n_out + kPanel - 1) / kPanel);
  const unsigned experts = a.rows.offsets ? static_cast<unsigned>(a.rows.n_experts) : 1u;
  if (experts > 65535u) throw Error("cuda packed matmul: more than 65535 experts in one call");
  if (max_rows <= kSmallMaxRows) {
    const int mt = gate_up ? 2 : 4;
    const dim3 grid(panels, static_cast<unsigned>((max_rows + mt - 1) / mt), experts);
    if (gate_up)
      small_kernel<2, true><<<grid, kSmallThreads, 0, stream>>>(a);
    else
      small_kernel<4, false><<<grid, kSmallThreads, 0, stream>>>(a);
  } else {
    const unsigned tiles = static_cast<unsigned>((max_rows + kTileRows - 1) / kTileRows);
    if (tiles > 65535u) throw Error("cuda packed matmul: " + std::to_string(max_rows) + " rows is too many for one call");
    const dim3 grid(panels, tiles, experts);
    if (gate_up)
      tiled_kernel<true><<<grid, kTiledThreads, 0, stream>>>(a);
    else
      tiled_kernel<false><<<grid, kTiledThreads, 0, stream>>>(a);
  }
  FERRY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void packed_matmul(const PackedLayout& w, const float* x, int ldx, float* y, int ldy, const float* bias,
                   const RowMap& rows, int max_rows, cudaStream_t stream) {
  check_layout(w, "packed_matmul");
  const Args a{w, nullptr, kGate, x, ldx, y, ldy, bias, rows};
  launch(a, w.rows, rows.offsets ? max_rows : std::min(max_rows, rows.n_rows), false, stream);
}

void expert_gate_up(const ExpertLayout* table, int n_out, const float* x, int ldx, float* act, int lda,
                    const RowMap& rows, int max_rows, cudaStream_t stream) {
  FERRY_ASSERT(table != nullptr && rows.offsets != nullptr);
  const Args a{PackedLayout{}, table, kGate, x, ldx, act, lda, nullptr, rows};
  launch(a, n_out, max_rows, true, stream);
}

void expert_down(const ExpertLayout* table, int n_out, const float* act, int lda, float* y, int ldy,
                 const RowMap& rows, int max_rows, cudaStream_t stream) {
  FERRY_ASSERT(table != nullptr && rows.offsets != nullptr);
  const Args a{PackedLayout{}, table, kDown, act, lda, y, ldy, nullptr, rows};
  launch(a, n_out, max_rows, false, stream);
}

}  // namespace ferry::cuda
