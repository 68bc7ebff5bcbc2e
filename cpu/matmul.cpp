// matmul: activation preparation, ISA dispatch and the split of output panels over threads.
// The kernels are in matmul_amx.cpp, matmul_avx512.cpp, matmul_avx2.cpp and matmul_scalar.cpp.
#include "ferry/ops/matmul.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "cpu/matmul_kernels.h"
#include "cpu/scratch.h"
#include "ferry/error.h"
#include "ferry/ops/isa.h"

namespace ferry::cpu {

namespace {

// Below this many weight bytes one thread is faster than waking the others.
constexpr size_t kParallelMinBytes = 256 * 1024;

// BF16 weights, bf16-rounded activations: the smallest M at which the AMX tiles take over from the
// AVX-512 vdpbf16ps kernel, per level. Amx, measured on Emerald Rapids (2 threads; 14336x4096, 4096x14336
// and 1024x1024; docs/BENCHMARKS.md "Large-M bf16 matmul"): at M = 1-3 both stream the weights at DRAM
// bandwidth (within 10% either way), AMX is 8-30% ahead at M = 4-7 and 1.4-2.8x at M = 8-16. Avx512 without
// tiles (e.g. Zen 4): ferry's vdpbf16ps kernel serves every M -- oneDNN's bf16 matmul is no faster there
// (same section) and would need a second, reordered copy of every weight.
constexpr int kAmxMinRowsBf16 = 4;

using PanelFn = void (*)(const MatmulArgs&, int, int);

PanelFn panel_kernel(const MatmulArgs& a, Isa isa) {
  if (a.x_tiles) return &matmul_panels_amx;
  switch (isa) {
    case Isa::Avx512: return &matmul_panels_avx512;
    case Isa::Avx2: return &matmul_panels_avx2;
    default: return &matmul_panels_scalar;
  }
}

void run_panels(const MatmulArgs& a, Isa isa) {
  const int n_panel = a.w->n_panel();
  const PanelFn kernel = panel_kernel(a, isa);
  auto run = [&](int begin, int end) { kernel(a, begin, end); };
  const size_t work = a.w->weight_bytes() * static_cast<size_t>(std::max(1, a.m / 8));
  const int n_threads = std::min(omp_get_max_threads(), n_panel);
  if (n_threads <= 1 || work < kParallelMinBytes || omp_in_parallel()) {
    run(0, n_panel);
    return;
  }
  // Contiguous chunks of panels (a multiple of 4, the widest tile), about 8 per thread, handed out
  // dynamically: on a shared machine a thread that loses its core does not hold up the others.
  const int per_chunk = std::max(4, (n_panel / (n_threads * 8)) / 4 * 4);
  const int n_chunk = (n_panel + per_chunk - 1) / per_chunk;
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
  for (int c = 0; c < n_chunk; ++c) run(c * per_chunk, std::min(n_panel, (c + 1) * per_chunk));
}

// x [m][k] -> [m][kp], zero padded.
const float* padded_f32(const float* x, int m, int k, int kp) {
  if (k == kp) return x;
  float* out = scratch_as<float>(ScratchSlot::MatmulActivations, static_cast<size_t>(m) * kp);
  for (int i = 0; i < m; ++i) {
    std::memcpy(out + static_cast<size_t>(i) * kp, x + static_cast<size_t>(i) * k, sizeof(float) * k);
    std::fill(out + static_cast<size_t>(i) * kp + k, out + static_cast<size_t>(i + 1) * kp, 0.0f);
  }
  return out;
}

// Per-group sums of f32 activations [m][n_group] (the zero-point correction at Avx2 / Scalar).
const float* group_sums_f32(const float* x, int m, int kp, int group_size) {
  const int n_group = kp / group_size;
  float* sums = scratch_as<float>(ScratchSlot::MatmulActScales, static_cast<size_t>(m) * n_group);
  for (int i = 0; i < m; ++i)
    for (int g = 0; g < n_group; ++g) {
      const float* xg = x + static_cast<size_t>(i) * kp + static_cast<size_t>(g) * group_size;
      float s = 0.0f;
      for (int j = 0; j < group_size; ++j) s += xg[j];
      sums[static_cast<size_t>(i) * n_group + g] = s;
    }
  return sums;
}

}  // namespace

void matmul(const PackedMatrix& w, const float* x, float* y, int m, const float* bias) {
  if (m <= 0) return;
  FERRY_ASSERT(w.rows > 0 && w.cols > 0);
  const Isa isa = active_isa();
  const int k = w.cols, kp = w.cols_padded;
  MatmulArgs a;
  a.w = &w;
  a.m = m;
  a.y = y;
  a.bias = bias;
  if (w.dtype == DType::BF16 && m >= kAmxMinRowsBf16 && amx_active()) {
    uint16_t* tiles = scratch_as<uint16_t>(ScratchSlot::MatmulActivations, amx_tiles_elems(m, kp, 1));
    pack_tiles_amx(x, m, k, kp, 1, tiles);
    a.x_tiles = tiles;
  } else if (isa == Isa::Avx512 && w.dtype == DType::BF16) {
    uint16_t* xb = scratch_as<uint16_t>(ScratchSlot::MatmulActivations, static_cast<size_t>(m) * kp);
    convert_rows_bf16_avx512(x, m, k, kp, xb);
    a.x_bf16 = xb;
  } else if (isa == Isa::Avx512 && (w.dtype == DType::I8 || w.dtype == DType::I4)) {
    const int n_group = w.n_group();
    int8_t* xq = scratch_as<int8_t>(ScratchSlot::MatmulActivations, static_cast<size_t>(m) * kp);
    float* scales = scratch_as<float>(ScratchSlot::MatmulActScales, static_cast<size_t>(m) * n_group * 2);
    quantize_rows_q8_avx512(x, m, k, kp, w.group_size, xq, scales, scales + static_cast<size_t>(m) * n_group);
    a.x_q = xq;
    a.x_scale = scales;
    a.x_sum = scales + static_cast<size_t>(m) * n_group;
  } else {
    a.x_f32 = padded_f32(x, m, k, kp);
    if (w.group_size) a.x_sum = group_sums_f32(a.x_f32, m, kp, w.group_size);
  }
  run_panels(a, isa);
}

void matmul_xbf16(const PackedMatrix& w, const uint16_t* x_bf16, float* y, int m, const float* bias) {
  if (m <= 0) return;
  const Isa isa = active_isa();
  const int k = w.cols, kp = w.cols_padded;
  if (isa == Isa::Avx512 && w.dtype == DType::BF16) {
    MatmulArgs a;
    a.w = &w;
    a.m = m;
    a.y = y;
    a.bias = bias;
    if (m >= kAmxMinRowsBf16 && amx_active()) {
      uint16_t* tiles = scratch_as<uint16_t>(ScratchSlot::MatmulActivations, amx_tiles_elems(m, kp, 1));
      pack_tiles_amx_bf16(x_bf16, m, k, kp, tiles);
      a.x_tiles = tiles;
    } else if (k == kp) {
      a.x_bf16 = x_bf16;
    } else {
      uint16_t* xb = scratch_as<uint16_t>(ScratchSlot::MatmulActivations, static_cast<size_t>(m) * kp);
      for (int i = 0; i < m; ++i) {
        std::memcpy(xb + static_cast<size_t>(i) * kp, x_bf16 + static_cast<size_t>(i) * k, 2 * static_cast<size_t>(k));
        std::fill(xb + static_cast<size_t>(i) * kp + k, xb + static_cast<size_t>(i + 1) * kp, uint16_t{0});
      }
      a.x_bf16 = xb;
    }
    run_panels(a, isa);
    return;
  }
  // Other weight types compute from f32 activations.
  float* xf = scratch_as<float>(ScratchSlot::MatmulInput, static_cast<size_t>(m) * k);
  for (size_t i = 0; i < static_cast<size_t>(m) * k; ++i) xf[i] = bf16_to_f32(x_bf16[i]);
  matmul(w, xf, y, m, bias);
}

bool matmul_exact_amx(const PackedMatrix& w, const float* x, float* y, int m, const float* bias) {
  if (w.dtype != DType::BF16 || !amx_active()) return false;
  if (m <= 0) return true;
  const int k = w.cols, kp = w.cols_padded;
  MatmulArgs a;
  a.w = &w;
  a.m = m;
  a.y = y;
  a.bias = bias;
  uint16_t* tiles = scratch_as<uint16_t>(ScratchSlot::MatmulActivations, amx_tiles_elems(m, kp, 3));
  pack_tiles_amx(x, m, k, kp, 3, tiles);
  a.x_tiles = tiles;
  a.x_terms = 3;
  run_panels(a, Isa::Amx);
  return true;
}

void matmul_ref(const PackedMatrix& w, const float* x, float* y, int m, const float* bias) {
  const int n = w.rows, k = w.cols;
  float* wf = scratch_as<float>(ScratchSlot::Reference, static_cast<size_t>(n) * k);
  dequantize(w, wf);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double acc = bias ? bias[j] : 0.0;
      const float* wr = wf + static_cast<size_t>(j) * k;
      const float* xr = x + static_cast<size_t>(i) * k;
      for (int c = 0; c < k; ++c) acc += static_cast<double>(wr[c]) * xr[c];
      y[static_cast<size_t>(i) * n + j] = static_cast<float>(acc);
    }
}

}  // namespace ferry::cpu
